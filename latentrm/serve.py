"""Put a trained reward model to work: batched scoring, Best-of-N, reward online RL (TRL).

Everything here sits on one contract, `Scorer.score(prompts, responses) -> (N,) float32`, prompts
as tuples of ``{"role", "content"}`` messages; `latentrm.model.RewardModel` is the real one. Inputs
arrive in the shapes people already have: plain strings or chat messages (TRL's "standard" and
"conversational" formats); the row files of `latentrm score`/`bon` (JSONL, JSON, CSV or Parquet)
are :mod:`latentrm.recipes.score`'s. A score that is NaN or Inf is never served:
`score_in_batches` (which every path here uses) raises instead, so nothing writes NaN and
Best-of-N never picks from broken scores.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from latentrm.data.messages import as_batch, as_prompt, as_response
from latentrm.data.types import Prompt
from latentrm.errors import DataError
from latentrm.head.reward import check_scores
from latentrm.model import RewardModel

log = logging.getLogger(__name__)


class Scorer(Protocol):
    """What serve needs of a reward model (`latentrm.model.RewardModel` satisfies it)."""

    def score(self, prompts: Sequence[Prompt], responses: Sequence[str]) -> np.ndarray: ...


def as_scorer(
    model_or_dir: Scorer | str | Path,
    embedder: Any | None = None,
    *,
    trust_remote_code: bool = False,
) -> Scorer:
    """A ready scorer: returned as is when it has `.score`, else the RewardModel of a model
    folder or Hub repo id (`RewardModel.from_pretrained`).

    `embedder` (an already loaded `latentrm.embed.Embedder`) saves loading the LLM again.
    `trust_remote_code` (the caller's decision, never the folder's) lets the embedder run its
    repository's code.
    """
    if hasattr(model_or_dir, "score"):
        return model_or_dir  # type: ignore[return-value]
    return RewardModel.from_pretrained(
        str(model_or_dir), embedder=embedder, trust_remote_code=trust_remote_code
    )


# --- scoring --------------------------------------------------------------------------------------
def score_in_batches(
    model: Scorer,
    prompts: Sequence[Prompt],
    responses: Sequence[str],
    batch_size: int | None = None,
    log_progress: bool = True,
    spread: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """`model.score` over slices of `batch_size` rows (bounds memory) -> (N,) float32.

    ModelError if any score is NaN/Inf, whatever the scorer. `log_progress`: an INFO line per
    slice (the CLI's progress; the TRL reward function stays quiet). `spread`: also the ensemble
    members' std per row, `(scores, spreads)` (`RewardModel.score(..., return_spread=True)`).
    """
    n = len(prompts)
    if n != len(responses):
        raise ValueError(f"{n} prompts but {len(responses)} responses")
    if n == 0:
        empty = np.zeros(0, dtype=np.float32)
        return (empty, empty.copy()) if spread else empty
    step = n if not batch_size or batch_size >= n else batch_size
    out, spreads = [], []
    for start in range(0, n, step):
        p, r = prompts[start : start + step], responses[start : start + step]
        if spread:
            s, sd = model.score(p, r, return_spread=True)  # type: ignore[call-arg]
            spreads.append(np.asarray(sd, np.float32))
        else:
            s = model.score(p, r)
        s = np.asarray(s)
        if s.shape != (min(step, n - start),):
            raise ValueError(
                f"model.score returned shape {s.shape} for {min(step, n - start)} rows"
            )
        out.append(s.astype(np.float32, copy=False))
        if step < n and log_progress:
            log.info("scored %d/%d", min(start + step, n), n)
    scores = check_scores(np.concatenate(out), "model.score")
    return (scores, np.concatenate(spreads)) if spread else scores


def has_spread(model: Scorer) -> bool:
    """Whether `model` is a reward model whose head is an ensemble (it can report a spread)."""
    return len(getattr(getattr(model, "head", None), "members", ())) > 1


class TRLRewardFunc:
    """A reward function as TRL's online trainers (GRPOTrainer, RLOOTrainer) call it.

    ``f(prompts=..., completions=..., completion_ids=..., **dataset_columns) -> list[float]``, one
    reward per (prompt, completion), in input order. Prompts and completions may be plain text
    ("standard" format) or lists of ``{"role", "content"}`` messages ("conversational"), mixed per
    item. A class instance rather than a closure so TRL can pickle it; `__name__` is what TRL logs
    the reward under (``rewards/<name>/mean``).
    """

    def __init__(
        self, model: Scorer, name: str = "latentrm", batch_size: int | None = None
    ) -> None:
        self.model = model
        self.__name__ = name
        self.batch_size = batch_size

    def __call__(
        self,
        prompts: Sequence[Any],
        completions: Sequence[Any],
        completion_ids: Sequence[Any] | None = None,
        **kwargs: Any,
    ) -> list[float]:
        prompts = as_batch(prompts, "prompts", "prompts")
        completions = as_batch(completions, "completions", "completions")
        if len(prompts) != len(completions):
            raise ValueError(f"{len(prompts)} prompts but {len(completions)} completions")
        ctx, resp = [], []
        for i, (p, c) in enumerate(zip(prompts, completions, strict=True)):
            c_prompt, c_text = as_response(
                c, as_prompt(p, field=f"prompts[{i}]"), field=f"completions[{i}]"
            )
            ctx.append(c_prompt)
            resp.append(c_text)
        scores = score_in_batches(self.model, ctx, resp, self.batch_size, log_progress=False)
        return [float(s) for s in scores]

    def __repr__(self) -> str:
        return f"TRLRewardFunc(name={self.__name__!r}, model={type(self.model).__name__})"


def make_trl_reward_func(
    model_or_dir: Scorer | str | Path,
    name: str = "latentrm",
    batch_size: int | None = None,
    embedder: Any | None = None,
    *,
    trust_remote_code: bool = False,
) -> TRLRewardFunc:
    """Reward function for ``GRPOTrainer(reward_funcs=...)`` from a RewardModel or its saved dir.

    ``f(prompts=, completions=, **kw) -> list[float]``; `name` is its ``__name__`` (TRL's log key).
    Quiet (no progress bars, no INFO lines per call); raises ModelError rather than return a
    NaN reward. `trust_remote_code` as in :func:`as_scorer`.
    """
    scorer = as_scorer(model_or_dir, embedder, trust_remote_code=trust_remote_code)
    return TRLRewardFunc(scorer, name=name, batch_size=batch_size)


def best_of_n(
    model: Scorer,
    prompts: Sequence[Any],
    candidates: Sequence[Sequence[Any]],
    batch_size: int | None = None,
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Pick the highest-scoring candidate per prompt.

    Returns ``(indices, scores)``: indices (n,) int64, the argmax per prompt (the first on ties);
    scores[i] (len(candidates[i]),) float32. All candidates go through one batched scoring pass.
    Errors name the prompt and candidate (``candidates[i][j]``); a NaN/Inf score is a ModelError,
    never a silent pick.
    """
    prompts = as_batch(prompts, "prompts", "prompts")
    candidates = as_batch(candidates, "candidates", "candidate lists")
    if len(prompts) != len(candidates):
        raise ValueError(f"{len(prompts)} prompts but {len(candidates)} candidate lists")
    parsed: list[list[tuple[Prompt, str]]] = []
    for i, (p, cands) in enumerate(zip(prompts, candidates, strict=True)):
        cands = as_batch(cands, f"candidates[{i}]", "candidates")
        if len(cands) == 0:
            raise DataError(f"prompt {i} has no candidates", field="candidates")
        prompt = as_prompt(p, field=f"prompts[{i}]")
        parsed.append(
            [as_response(c, prompt, field=f"candidates[{i}][{j}]") for j, c in enumerate(cands)]
        )
    return pick_best(model, parsed, batch_size)


def pick_best(
    model: Scorer, parsed: Sequence[Sequence[tuple[Prompt, str]]], batch_size: int | None
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Best-of-N over parsed (context, response) candidates: (indices, per-prompt scores)."""
    flat = [item for group in parsed for item in group]
    scores = score_in_batches(model, [c for c, _ in flat], [t for _, t in flat], batch_size)
    split = np.split(scores, np.cumsum([len(g) for g in parsed])[:-1])
    return np.array([int(np.argmax(s)) for s in split], dtype=np.int64), split


__all__ = [
    "Scorer",
    "TRLRewardFunc",
    "as_scorer",
    "best_of_n",
    "has_spread",
    "make_trl_reward_func",
    "pick_best",
    "score_in_batches",
]
