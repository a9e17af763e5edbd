"""Deterministic splits: seed / held-out pairs, and the validation part carved from the seed set."""

from __future__ import annotations

import logging

import numpy as np

from latentrm.errors import ConfigError

log = logging.getLogger(__name__)


# --- splits ---------------------------------------------------------------------------------------
def split_indices(
    n: int, n_seed: int, n_test: int | None, seed: int, fixed_test: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Disjoint (seed, held-out) index arrays (sorted int64) from one permutation of range(n).

    The seed set is the permutation's first n_seed entries, so with one `seed` a smaller seed set is
    a subset of a larger one; held-out is the next n_test entries (all the rest if n_test is None),
    or with `fixed_test` the permutation's last n_test entries, the same whatever n_seed is. Asking
    for more seed pairs than there are (beside n_test) warns and uses all of them.
    """
    if n_seed < 1 or (n_test is not None and n_test < 0):
        raise ConfigError(
            f"data.n_seed must be >= 1 and data.n_test >= 0, got {n_seed} and {n_test}"
        )
    if fixed_test and n_test is None:
        raise ConfigError("data.fixed_test needs data.n_test (how many pairs to hold out)")
    room = n - (n_test or 0)
    if room < 1:
        raise ConfigError(f"data.n_test={n_test} leaves no seed pairs of the data's {n} pairs")
    if n_seed > room:
        log.warning(
            "data.n_seed=%d but the data has %d pairs%s: using all %d as seed pairs",
            n_seed,
            n,
            f" beside {n_test} held out" if n_test else "",
            room,
        )
        n_seed = room
    perm = np.random.default_rng(seed).permutation(n)
    if fixed_test:
        return (
            np.sort(perm[:n_seed]).astype(np.int64),
            np.sort(perm[n - n_test :]).astype(np.int64),
        )
    end = n if n_test is None else n_seed + n_test
    return np.sort(perm[:n_seed]).astype(np.int64), np.sort(perm[n_seed:end]).astype(np.int64)


def carve_validation(
    idx: np.ndarray, fraction: float, seed: int, stream: tuple[int, ...] = (1,)
) -> tuple[np.ndarray, np.ndarray]:
    """Split index array `idx` into (train, val), val = round(fraction * len) entries (sorted).

    With fraction > 0 and >= 2 entries both parts get at least one entry. The permutation comes
    from ``default_rng([seed, *stream])``: the default stream (1,) is tagged apart from
    split_indices', so equal seeds do not correlate the two splits; the VAE's early-stopping
    holdout uses ``stream=()``.
    """
    if not 0 <= fraction < 1:
        raise ConfigError(f"data.val_fraction must be in [0, 1), got {fraction}")
    idx = np.asarray(idx, dtype=np.int64)
    n_val = int(round(fraction * len(idx)))
    if fraction > 0 and len(idx) >= 2:
        n_val = min(max(n_val, 1), len(idx) - 1)
    perm = np.random.default_rng([seed, *stream]).permutation(len(idx))
    return np.sort(idx[perm[n_val:]]), np.sort(idx[perm[:n_val]])


def seed_folds(n: int, k: int, seed: int) -> np.ndarray:
    """(n,) fold index in [0, k) of each of n items: a seeded permutation cut in k near-equal parts.

    Its own random stream ([seed, 5]), unrelated to the split's and the validation carve's.
    """
    if not 2 <= k <= n:
        raise ConfigError(f"need 2 <= folds <= items, got {k} folds for {n}")
    folds = np.empty(n, np.int64)
    perm = np.random.default_rng([seed, 5]).permutation(n)
    for f, part in enumerate(np.array_split(perm, k)):
        folds[part] = f
    return folds


def group_folds(groups: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Fold of each item such that items of one group share a fold (e.g. pairs of one prompt)."""
    uniq, inv = np.unique(np.asarray(groups), return_inverse=True)
    return seed_folds(len(uniq), k, seed)[inv]
