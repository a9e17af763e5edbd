"""Evaluation: pairwise accuracy, bootstrap / Student-t intervals, Best-of-N gold, fidelity.

Everything here is a pure function of scores (numpy arrays), so each metric is testable on
hand-made numbers. Models enter only as a `ScoreFn` (embeddings -> rewards): `RewardHead.score`.

Conventions:
- A pair counts 1 when r(chosen) > r(rejected), 0.5 on an exact tie, 0 otherwise. Ties get half
  credit so that a constant reward model scores 50%, the chance level, instead of 0% or 100%.
- Best-of-N draws depend only on (seed, candidate-set id), never on the method being evaluated, so
  every method is judged on the very same N-candidate draws.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from latentrm.errors import DataError

if TYPE_CHECKING:
    from latentrm.data.types import CandidateSet

log = logging.getLogger(__name__)

ScoreFn = Callable[[np.ndarray], np.ndarray]
"""(N, d) float32 embeddings -> (N,) rewards for any N, batching inside (as RewardHead.score)."""


# --- pairwise accuracy and intervals ------------------------------------------------------------
def pair_correctness(r_chosen: np.ndarray, r_rejected: np.ndarray) -> np.ndarray:
    """Per-pair credit: 1.0 if r_chosen > r_rejected, 0.5 on an exact tie, else 0.0. Shape (N,)."""
    rc = np.asarray(r_chosen, dtype=np.float64).reshape(-1)
    rr = np.asarray(r_rejected, dtype=np.float64).reshape(-1)
    if rc.shape != rr.shape:
        raise ValueError(f"r_chosen has {rc.size} scores but r_rejected has {rr.size}")
    if not (np.isfinite(rc).all() and np.isfinite(rr).all()):
        raise ValueError("reward scores contain NaN or Inf")
    return np.where(rc > rr, 1.0, np.where(rc == rr, 0.5, 0.0))


def pairwise_accuracy(r_chosen: np.ndarray, r_rejected: np.ndarray) -> float:
    """Share of pairs ranked correctly (ties count 0.5, see `pair_correctness`); NaN if empty."""
    correct = pair_correctness(r_chosen, r_rejected)
    return float(correct.mean()) if correct.size else float("nan")


def bootstrap_ci(
    values: np.ndarray | Sequence[float],
    n_bootstrap: int = 1000,
    seed: int = 0,
    stat: Callable[[np.ndarray], Any] = np.mean,
    level: float = 0.95,
) -> tuple[float, float]:
    """Percentile bootstrap interval of `stat(values)`: resample `values` with replacement.

    Returns (lo, hi), the (1-level)/2 and (1+level)/2 quantiles of `stat` over `n_bootstrap`
    resamples. `stat` takes a (n_bootstrap, n) array with `axis=-1` (numpy reductions do) or,
    failing that, one 1-D resample at a time.
    """
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    if v.size == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, v.size, size=(n_bootstrap, v.size))
    samples = v[idx]  # (n_bootstrap, n)
    try:
        boot = np.asarray(stat(samples, axis=-1), dtype=np.float64)
    except TypeError:  # stat without an axis argument: one resample at a time
        boot = np.array([stat(s) for s in samples], dtype=np.float64)
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(boot, [alpha, 1.0 - alpha])
    return float(lo), float(hi)


def mean_ci_over_seeds(
    values: np.ndarray | Sequence[float], level: float = 0.95
) -> tuple[float, float]:
    """(mean, half_width) of a Student-t interval across seeds: t_{(1+level)/2, n-1} * s / sqrt(n).

    Seeds are few (5-10), so the t quantile, not the normal one, sets the width. NaN values are
    dropped; with fewer than two finite values the half width is NaN (no spread to estimate).
    """
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return float("nan"), float("nan")
    mean = float(v.mean())
    if v.size < 2:
        return mean, float("nan")
    from scipy import stats  # here: importing scipy.stats slows every CLI start

    sem = float(v.std(ddof=1)) / np.sqrt(v.size)
    return mean, float(stats.t.ppf((1.0 + level) / 2.0, df=v.size - 1) * sem)


# --- Best-of-N ----------------------------------------------------------------------------------
def bon_draws(
    sets: Sequence[CandidateSet], n: int, draws: int, seed: int, skip_short: bool = False
) -> list[np.ndarray | None]:
    """Candidate indices for Best-of-N: per set a (draws, n) int64 array, or None for a skipped set.

    Each set's draws come from `default_rng([seed, crc32(set.id)])`: they depend only on the seed
    and the set id, so every method (and any subset/reordering of the sets) sees identical draws. A
    set with fewer than `n` candidates raises DataError naming it, or with `skip_short` is skipped.
    """
    if n < 1 or draws < 1:
        raise ValueError(f"Best-of-N needs n >= 1 and draws >= 1, got n={n}, draws={draws}")
    out: list[np.ndarray | None] = []
    for s in sets:
        k = len(s.responses)
        if k < n:
            if not skip_short:
                raise DataError(
                    f"candidate set '{s.id}' has {k} candidates, fewer than N={n} for Best-of-N "
                    "(lower eval.best_of_n or set eval.skip_short=true)"
                )
            out.append(None)
            continue
        rng = np.random.default_rng([seed, zlib.crc32(s.id.encode("utf-8"))])
        out.append(np.stack([rng.choice(k, size=n, replace=False) for _ in range(draws)]))
    return out


def bon_gold(
    scores: Sequence[np.ndarray],
    sets: Sequence[CandidateSet],
    n: int,
    draws: int = 1,
    seed: int = 0,
    skip_short: bool = False,
    n_bootstrap: int = 1000,
) -> dict[str, float]:
    """Best-of-N gold: mean gold of the reward model's pick among N drawn candidates.

    `scores[i]` holds the reward of each response of `sets[i]` (NaN for responses that were never
    scored; a drawn candidate must have a score). For every set and draw (see `bon_draws`):
      picked  = gold of the top-scored drawn candidate (score ties: mean gold of the tied ones,
                i.e. the expected gold under a uniform tie-break),
      floor   = mean gold of the N drawn candidates (expected gold of a uniform random pick),
      ceiling = max gold of the N drawn candidates (an oracle pick).
    Returns their means over all (set, draw); `bon_gap_closed` = (picked - floor) / (ceiling -
    floor) computed on those means (NaN when ceiling == floor); a percentile bootstrap 95% CI of the
    picked mean (resampling sets); and counts.
    """
    if len(scores) != len(sets):
        raise ValueError(f"{len(scores)} score arrays for {len(sets)} candidate sets")
    idx = bon_draws(sets, n, draws, seed, skip_short)
    picked, floor, ceiling = [], [], []
    per_set_picked = []
    for s, sc, d in zip(sets, scores, idx, strict=True):
        if d is None:
            continue
        sc = np.asarray(sc, dtype=np.float64)
        gold = np.asarray(s.gold, dtype=np.float64)
        if sc.shape != gold.shape:
            raise ValueError(f"set '{s.id}': {sc.size} scores for {gold.size} candidates")
        ds, dg = sc[d], gold[d]  # (draws, n)
        if not np.isfinite(ds).all():
            raise ValueError(f"set '{s.id}': a drawn candidate has no finite score")
        top = ds == ds.max(axis=1, keepdims=True)  # (draws, n) tied maxima
        p = (dg * top).sum(axis=1) / top.sum(axis=1)
        picked.append(p)
        floor.append(dg.mean(axis=1))
        ceiling.append(dg.max(axis=1))
        per_set_picked.append(float(p.mean()))
    n_skipped = sum(d is None for d in idx)
    if n_skipped:
        log.warning(
            "Best-of-%d: skipped %d candidate sets with fewer than %d candidates", n, n_skipped, n
        )
    if not picked:
        nan = float("nan")
        return {
            "bon_picked": nan,
            "bon_floor": nan,
            "bon_ceiling": nan,
            "bon_gap_closed": nan,
            "bon_picked_lo": nan,
            "bon_picked_hi": nan,
            "bon_prompts": 0,
            "bon_skipped": n_skipped,
            "bon_n": n,
            "bon_draws": draws,
        }
    pk, fl, ce = (float(np.concatenate(x).mean()) for x in (picked, floor, ceiling))
    gap = (pk - fl) / (ce - fl) if ce > fl else float("nan")
    lo, hi = bootstrap_ci(per_set_picked, n_bootstrap, seed)
    return {
        "bon_picked": pk,
        "bon_floor": fl,
        "bon_ceiling": ce,
        "bon_gap_closed": float(gap),
        "bon_picked_lo": lo,
        "bon_picked_hi": hi,
        "bon_prompts": len(picked),
        "bon_skipped": n_skipped,
        "bon_n": n,
        "bon_draws": draws,
    }


def spearman_with_gold(
    scores: Sequence[np.ndarray], gold: Sequence[np.ndarray]
) -> dict[str, float]:
    """Spearman rank correlation of reward scores with gold, per prompt (averaged) and pooled.

    Only candidates with a finite score count (unscored ones are NaN). A prompt with fewer than 2
    scored candidates, or whose scores or gold are all equal, has no defined correlation and is left
    out of the average (`spearman_prompts` counts the prompts used).
    """
    from scipy import stats

    per_prompt, all_s, all_g = [], [], []
    for sc, g in zip(scores, gold, strict=True):
        sc, g = np.asarray(sc, dtype=np.float64), np.asarray(g, dtype=np.float64)
        keep = np.isfinite(sc)
        sc, g = sc[keep], g[keep]
        all_s.append(sc)
        all_g.append(g)
        if sc.size >= 2 and np.ptp(sc) > 0 and np.ptp(g) > 0:
            per_prompt.append(float(stats.spearmanr(sc, g).statistic))
    s = np.concatenate(all_s) if all_s else np.zeros(0)
    g = np.concatenate(all_g) if all_g else np.zeros(0)
    pooled = (
        float(stats.spearmanr(s, g).statistic)
        if s.size >= 2 and np.ptp(s) > 0 and np.ptp(g) > 0
        else float("nan")
    )
    return {
        "spearman_prompt": float(np.mean(per_prompt)) if per_prompt else float("nan"),
        "spearman_pooled": pooled,
        "spearman_prompts": len(per_prompt),
    }
