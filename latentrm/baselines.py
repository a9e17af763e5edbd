"""The paper's latent-space baselines, behind the same Augmenter interface as LENS.

- :class:`NoAugmenter`: the seed pairs only.
- :class:`DirectPerturbation`: Gaussian noise added straight to the original embeddings.
- :class:`GaussianSampling`: new embeddings drawn from a Gaussian fitted to all chosen embeddings
  and one fitted to all rejected embeddings.

Each augmenting baseline makes exactly ``ratio`` new pairs per seed pair (``ratio * N`` in all),
attributed to that seed pair in ``seed_idx``; randomness comes from ``numpy.random.Generator(seed)``
and is drawn chunk by chunk (``chunk_size`` seeds at a time) so temporaries stay small.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable

import numpy as np

from latentrm.errors import ConfigError, LatentrmError
from latentrm.synth import AugmentedPairs, check_ratio
from latentrm.vae import check_pairs, standardization_stats

log = logging.getLogger(__name__)


class NoAugmenter:
    """No augmentation: :meth:`augment` returns the original pairs whatever the ratio."""

    method = "none"

    def fit(self, chosen: np.ndarray, rejected: np.ndarray) -> NoAugmenter:
        check_pairs(chosen, rejected, "fit")
        return self

    def augment(
        self, chosen: np.ndarray, rejected: np.ndarray, ratio: int, seed: int
    ) -> AugmentedPairs:
        check_ratio(ratio)
        return AugmentedPairs.originals(chosen, rejected, method=self.method)


def _synthetic_pairs(
    chosen: np.ndarray, rejected: np.ndarray, ratio: int, method: str, chunk_size: int,
    draw: Callable[[int, int], tuple[np.ndarray, np.ndarray]],
) -> AugmentedPairs:
    """Originals + ratio*N pairs whose both sides are new rows drawn by `draw`.

    ``draw(s0, s1)`` returns (chosen (s1-s0, ratio, d), rejected (s1-s0, ratio, d)) for seeds
    [s0, s1). Pool layout after the 2N originals: N*ratio chosen rows (seed-major), then N*ratio
    rejected rows; new pair (i, j) is (chosen row i*ratio + j, rejected row i*ratio + j).
    """
    t0 = time.perf_counter()
    n, d = chosen.shape
    out = AugmentedPairs.originals(
        chosen, rejected, method=method, ratio=ratio, pool_rows=2 * n + 2 * n * ratio
    )
    if ratio == 0:
        return out
    for s0 in range(0, n, chunk_size):
        s1 = min(n, s0 + chunk_size)
        c_new, r_new = draw(s0, s1)
        out.pool[2 * n + s0 * ratio : 2 * n + s1 * ratio] = c_new.reshape(-1, d)
        base = 2 * n + n * ratio
        out.pool[base + s0 * ratio : base + s1 * ratio] = r_new.reshape(-1, d)
    rows = np.arange(n * ratio, dtype=np.int64)
    out.add_pairs(2 * n + rows, 2 * n + n * ratio + rows, rows // ratio)
    out.stats.update({"kept": 2 * n * ratio, "seconds": time.perf_counter() - t0})
    log.info("%s: %d seeds, %d pairs made in %.2fs", method, n, n * ratio, out.stats["seconds"])
    return out


class DirectPerturbation:
    """Direct perturbation of the original embeddings.

    Each new pair of seed i is ``(c_i + eps_c, r_i + eps_r)`` with independent
    ``eps ~ N(0, diag((noise * std)^2))``, where ``std`` is the per-dimension standard deviation of
    the seed set (chosen and rejected together, learned in :meth:`fit` as ``std_``).
    """

    method = "direct"

    def __init__(self, noise: float = 0.1, chunk_size: int = 4096) -> None:
        if noise < 0:
            raise ConfigError(f"synth.direct_noise must be >= 0, got {noise}")
        self.noise, self.chunk_size = noise, chunk_size

    def fit(self, chosen: np.ndarray, rejected: np.ndarray) -> DirectPerturbation:
        check_pairs(chosen, rejected, "fit")
        _, self.std_ = standardization_stats(chosen, rejected)
        return self

    def augment(
        self, chosen: np.ndarray, rejected: np.ndarray, ratio: int, seed: int
    ) -> AugmentedPairs:
        ratio = check_ratio(ratio)
        check_pairs(chosen, rejected, "augment")
        if not hasattr(self, "std_"):
            raise LatentrmError("DirectPerturbation.augment called before fit()")
        rng = np.random.default_rng(seed)
        scale = (self.noise * self.std_).astype(np.float32)  # (d,)

        def draw(s0: int, s1: int) -> tuple[np.ndarray, np.ndarray]:
            shape = (s1 - s0, ratio, chosen.shape[1])
            c = chosen[s0:s1, None] + rng.standard_normal(shape, np.float32) * scale
            r = rejected[s0:s1, None] + rng.standard_normal(shape, np.float32) * scale
            return c, r

        return _synthetic_pairs(chosen, rejected, ratio, self.method, self.chunk_size, draw)


class GaussianSampling:
    """Sample new pairs from Gaussians fitted to the chosen and to the rejected embeddings.

    ``cov="diag"`` (default): N(mean, diag(var)) per side, cheap and well-posed at any d.
    ``cov="full"``: N(mean, sample covariance) per side. With N < d the sample covariance is
    singular, so samples are drawn as ``mean + X_c^T g / sqrt(N - 1)`` with the centred seed
    embeddings X_c (N, d) and ``g ~ N(0, I_N)``: exactly that Gaussian, without a d x d matrix.
    Each seed gets `ratio` new pairs (c ~ N_chosen, r ~ N_rejected) attributed to it; they do not
    depend on the seed pair's own embeddings.
    """

    method = "gaussian"

    def __init__(self, cov: str = "diag", chunk_size: int = 4096) -> None:
        if cov not in ("diag", "full"):
            raise ConfigError(f"synth.gaussian_cov must be 'diag' or 'full', got {cov!r}")
        self.cov, self.chunk_size = cov, chunk_size

    def fit(self, chosen: np.ndarray, rejected: np.ndarray) -> GaussianSampling:
        check_pairs(chosen, rejected, "fit")
        self.params_ = []
        for x in (chosen, rejected):
            x64 = x.astype(np.float64)
            mean = x64.mean(0)
            if self.cov == "diag":
                spread = x64.std(0)  # (d,)
            else:
                spread = (x64 - mean) / math.sqrt(max(len(x) - 1, 1))  # (N, d) square-root factor
            self.params_.append((mean.astype(np.float32), spread.astype(np.float32)))
        return self

    def augment(
        self, chosen: np.ndarray, rejected: np.ndarray, ratio: int, seed: int
    ) -> AugmentedPairs:
        ratio = check_ratio(ratio)
        check_pairs(chosen, rejected, "augment")
        if not hasattr(self, "params_"):
            raise LatentrmError("GaussianSampling.augment called before fit()")
        rng = np.random.default_rng(seed)
        d = chosen.shape[1]

        def sample(side: int, m: int) -> np.ndarray:
            mean, spread = self.params_[side]
            if self.cov == "diag":
                return mean + rng.standard_normal((m, d), np.float32) * spread
            return mean + rng.standard_normal((m, spread.shape[0]), np.float32) @ spread

        def draw(s0: int, s1: int) -> tuple[np.ndarray, np.ndarray]:
            m = (s1 - s0) * ratio
            return sample(0, m), sample(1, m)

        return _synthetic_pairs(chosen, rejected, ratio, self.method, self.chunk_size, draw)
