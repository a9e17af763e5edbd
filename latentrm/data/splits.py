"""Deterministic splits: seed / held-out pairs, and the validation part carved from the seed set."""

from __future__ import annotations

import numpy as np

from latentrm.errors import ConfigError


# --- splits ---------------------------------------------------------------------------------------
def split_indices(
    n: int, n_seed: int, n_test: int | None, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Disjoint (seed, held-out) index arrays (sorted int64) from one permutation of range(n).

    The seed set is the permutation's first n_seed entries, so with one `seed` a smaller seed set is
    a subset of a larger one; held-out is the next n_test entries (all the rest if n_test is None).
    """
    if n_seed < 1 or (n_test is not None and n_test < 0):
        raise ConfigError(
            f"data.n_seed must be >= 1 and data.n_test >= 0, got {n_seed} and {n_test}"
        )
    if n_seed > n:
        raise ConfigError(f"asked for {n_seed} seed pairs (data.n_seed) but the data has {n} pairs")
    if n_test is not None and n_seed + n_test > n:
        raise ConfigError(
            f"asked for {n_seed} seed + {n_test} test pairs (data.n_seed + data.n_test) but the "
            f"data has {n} pairs"
        )
    perm = np.random.default_rng(seed).permutation(n)
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
