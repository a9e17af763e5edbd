"""Which pairs to send to annotators: a pool of unlabelled comparisons -> the K worth labelling.

A pool is either

- pairs (:class:`~latentrm.data.types.PreferencePair`: a prompt and two responses; which one the
  file calls chosen is ignored), or
- candidate sets (:class:`~latentrm.data.types.CandidateSet`: a prompt and N responses, e.g. a
  policy's samples): every two different, non-empty responses of a set are a candidate pair, and
  at most one pair per set (per prompt) goes into a batch, the set's best by the strategy.

:func:`suggest_pairs` embeds every response once, scores it with each member of the head,
and lets :func:`latentrm.head.acquire.select` choose; `RewardModel.suggest` is the way in with
a loaded model. Diversity features are the pairs' embedding differences standardised by the
pool's responses (:func:`~latentrm.head.acquire.pair_features`); pairs already labelled
(`labelled`) are the first k-center centers, so a batch also stays away from them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from latentrm.data.types import CandidateSet, PreferencePair, Prompt
from latentrm.errors import ConfigError, DataError
from latentrm.head.acquire import pair_features, response_scale, select
from latentrm.head.reward import EnsembleHead, RewardHead, check_scores

log = logging.getLogger(__name__)

EmbedFn = Callable[[Sequence[Prompt], Sequence[str]], np.ndarray]  # -> (N, d) float32


@dataclass(frozen=True)
class Suggestion:
    """One pair to label. `rank` 1 = chosen first; `score` the strategy's acquisition value (None
    for random); `margin` the head's mean r(a) - r(b) and `p_a` = sigmoid(margin) the probability
    that a wins; `disagreement` BALD (None for a single head); `entropy` the predictive entropy.
    Candidate-set pools also give the set (`set_id`) and the responses' indices in it."""

    id: str
    prompt: Prompt
    response_a: str
    response_b: str
    rank: int
    strategy: str
    score: float | None
    margin: float
    p_a: float
    disagreement: float | None
    entropy: float
    set_id: str | None = None
    index_a: int | None = None
    index_b: int | None = None


def _flatten(
    pool: Sequence[PreferencePair] | Sequence[CandidateSet], swap: np.ndarray | None
) -> tuple[list[Prompt], list[str], np.ndarray, np.ndarray, np.ndarray, list[tuple]]:
    """(prompts, texts) of every response once, and per candidate pair its response rows a, b,
    its group and (id, set id, index a, index b)."""
    prompts: list[Prompt] = []
    texts: list[str] = []
    a, b, groups, meta = [], [], [], []
    if all(isinstance(x, PreferencePair) for x in pool):
        for g, p in enumerate(pool):
            first, second = (
                (p.rejected, p.chosen) if swap is not None and swap[g] else (p.chosen, p.rejected)
            )
            prompts += [p.prompt, p.prompt]
            texts += [first, second]
            a.append(2 * g)
            b.append(2 * g + 1)
            groups.append(g)
            meta.append((p.id, None, None, None))
    elif all(isinstance(x, CandidateSet) for x in pool):
        for g, s in enumerate(pool):
            base = len(texts)
            prompts += [s.prompt] * len(s.responses)
            texts += list(s.responses)
            for i in range(len(s.responses)):
                for j in range(i + 1, len(s.responses)):
                    if s.responses[i] and s.responses[j] and s.responses[i] != s.responses[j]:
                        a.append(base + i)
                        b.append(base + j)
                        groups.append(g)
                        meta.append((f"{s.id}:{i}-{j}", s.id, i, j))
    else:
        raise ConfigError("a pool is a list of PreferencePair or of CandidateSet (not mixed)")
    if not a:
        raise DataError(
            "the pool has no pair to compare (candidate sets need two different, "
            "non-empty responses)"
        )
    as_int = np.asarray
    return prompts, texts, as_int(a, np.int64), as_int(b, np.int64), as_int(groups), meta


def suggest_pairs(
    embed: EmbedFn,
    head: RewardHead | EnsembleHead,
    pool: Sequence[PreferencePair] | Sequence[CandidateSet],
    k: int,
    *,
    strategy: str = "hybrid",
    seed: int = 0,
    labelled: Sequence[PreferencePair] | None = None,
    top_m: int | None = None,
    shuffle_sides: bool = True,
    where: str = "reward model",
) -> list[Suggestion]:
    """The k pairs of `pool` to label next by `strategy` (latentrm.head.acquire), best first.

    `embed(prompts, responses)` gives (N, d) embeddings (the model's embedder); `head` scores them
    (an ensemble's members give BALD; strategy bald with a single head is a ConfigError, hybrid
    then ranks by entropy). `shuffle_sides`: a pair pool's two responses go out as a/b in a
    seeded random order (a file's chosen/rejected order must not hint the answer to annotators);
    candidate sets keep their order (a = the lower index). Fewer than k when the pool has fewer
    pairs (one per set).
    """
    pool = list(pool)
    if not pool:
        raise DataError("the pool is empty")
    swap = None
    if shuffle_sides and isinstance(pool[0], PreferencePair):
        swap = np.random.default_rng([seed, 11]).random(len(pool)) < 0.5
    prompts, texts, a, b, groups, meta = _flatten(pool, swap)
    emb = np.asarray(embed(prompts, texts), np.float32)  # (T, d), every response once
    scores = np.stack([check_scores(m.score(emb), where) for m in head.members])  # (K, T)
    margins = (scores[:, a] - scores[:, b]).astype(np.float64)  # (K, P)
    if strategy == "hybrid" and margins.shape[0] == 1:
        log.warning(
            "hybrid with a single head ranks by predictive entropy, which did no better "
            "than random labels on HH (REPORT.md, active selection); an ensemble head "
            "(reward.ensemble: 5) ranks by BALD"
        )
    features = lab = None
    if strategy in ("diversity", "hybrid"):
        scale = response_scale(emb)
        features = pair_features(emb[a], emb[b], scale)
        if labelled:
            lp = [p.prompt for p in labelled]
            le = np.asarray(
                embed([*lp, *lp], [p.chosen for p in labelled] + [p.rejected for p in labelled]),
                np.float32,
            )
            lab = pair_features(le[: len(labelled)], le[len(labelled) :], scale)
    acq = select(
        strategy, margins, k, features=features, groups=groups, labelled=lab, seed=seed, top_m=top_m
    )
    out = []
    for rank, (i, s) in enumerate(zip(acq.index.tolist(), acq.score.tolist(), strict=True), 1):
        pid, set_id, ia, ib = meta[i]
        m = float(acq.margin[i])
        dis = float(acq.disagreement[i])
        out.append(
            Suggestion(
                id=pid,
                prompt=prompts[a[i]],
                response_a=texts[a[i]],
                response_b=texts[b[i]],
                rank=rank,
                strategy=strategy,
                score=None if np.isnan(s) else float(s),
                margin=m,
                p_a=float(0.5 * (1.0 + np.tanh(0.5 * m))),
                disagreement=None if np.isnan(dis) else dis,
                entropy=float(acq.entropy[i]),
                set_id=set_id,
                index_a=ia,
                index_b=ib,
            )
        )
    if len(out) < k:
        log.warning(
            "the pool holds %d pairs to suggest (one per candidate set), fewer than k=%d",
            len(out),
            k,
        )
    return out


__all__ = ["Suggestion", "suggest_pairs"]
