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

import numpy as np

from latentrm.config import check_ratio
from latentrm.config.bounds import check_value
from latentrm.errors import ConfigError, DataError, LatentrmError
from latentrm.head.estimator import Estimator
from latentrm.head.train import standardization_stats
from latentrm.pairs import AugmentedPairs, check_pairs

log = logging.getLogger(__name__)


def check_finite(chosen: np.ndarray, rejected: np.ndarray, what: str) -> None:
    """DataError naming the first seed pair whose embeddings hold NaN/Inf.

    The sampling baselines would carry it into every new embedding of that pair (direct) or of
    the whole set (gaussian: it enters the mean and spread), silently.
    """
    for side, x in (("chosen", chosen), ("rejected", rejected)):
        bad = ~np.isfinite(x).all(axis=1)
        if bad.any():
            rows = np.flatnonzero(bad)
            raise DataError(
                f"{what}: {len(rows)} {side} embeddings hold NaN/Inf (first: seed pair "
                f"{int(rows[0])}); recompute them (latentrm embed --verify checks a cache)"
            )


class NoAugmenter(Estimator):
    """No augmentation: :meth:`augment` returns the original pairs whatever the ratio."""

    method = "none"
    fit_params = ()

    def fit(self, chosen: np.ndarray, rejected: np.ndarray) -> NoAugmenter:
        check_pairs(chosen, rejected, "fit")
        return self

    def augment(
        self, chosen: np.ndarray, rejected: np.ndarray, ratio: int, seed: int
    ) -> AugmentedPairs:
        check_ratio(ratio)
        return AugmentedPairs.originals(chosen, rejected, method=self.method)


class _SamplingBaseline(Estimator):
    """Shared :meth:`augment` of the sampling baselines: originals + `ratio` new pairs per seed.

    Subclasses set `method`, `chunk_size` and `_fitted` (an attribute fit() sets) and implement
    ``_draw(chosen, rejected, s0, s1, ratio, rng)`` -> (chosen (s1-s0, ratio, d), rejected (same))
    for seeds [s0, s1). Pool layout after the 2N originals: N*ratio chosen rows (seed-major), then
    N*ratio rejected rows; new pair (i, j) is (chosen row i*ratio + j, rejected row i*ratio + j).
    """

    method = ""
    chunk_size = 1024
    _fitted = ""

    def augment(
        self, chosen: np.ndarray, rejected: np.ndarray, ratio: int, seed: int
    ) -> AugmentedPairs:
        """Originals + ``ratio * N`` new pairs, deterministic given `seed`."""
        ratio = check_ratio(ratio)
        check_pairs(chosen, rejected, "augment")
        check_finite(chosen, rejected, f"{self.method} augment")
        if not hasattr(self, self._fitted):
            raise LatentrmError(f"{type(self).__name__}.augment called before fit()")
        t0 = time.perf_counter()
        rng = np.random.default_rng(seed)
        n, d = chosen.shape
        out = AugmentedPairs.originals(
            chosen, rejected, method=self.method, ratio=ratio, pool_rows=2 * n + 2 * n * ratio
        )
        base = 2 * n + n * ratio  # first row of the rejected block
        for s0 in range(0, n, self.chunk_size):
            s1 = min(n, s0 + self.chunk_size)
            c_new, r_new = self._draw(chosen, rejected, s0, s1, ratio, rng)
            out.pool[2 * n + s0 * ratio : 2 * n + s1 * ratio] = c_new.reshape(-1, d)
            out.pool[base + s0 * ratio : base + s1 * ratio] = r_new.reshape(-1, d)
        rows = np.arange(n * ratio, dtype=np.int64)
        out.add_pairs(2 * n + rows, base + rows, rows // ratio)
        out.stats.update({"kept": 2 * n * ratio, "seconds": time.perf_counter() - t0})
        log.info(
            "%s: %d seeds, %d pairs made in %.2fs", self.method, n, n * ratio, out.stats["seconds"]
        )
        return out

    def _draw(
        self,
        chosen: np.ndarray,
        rejected: np.ndarray,
        s0: int,
        s1: int,
        ratio: int,
        rng: np.random.Generator,
    ) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError


class DirectPerturbation(_SamplingBaseline):
    """Direct perturbation of the original embeddings.

    Each new pair of seed i is ``(c_i + eps_c, r_i + eps_r)`` with independent
    ``eps ~ N(0, diag((noise * std)^2))``, where ``std`` is the per-dimension standard deviation of
    the seed set (chosen and rejected together, learned in :meth:`fit` as ``std_``).
    """

    method = "direct"
    _fitted = "std_"
    fit_params = ()  # std_ comes from the data alone; the noise only changes sampling

    def __init__(self, noise: float = 0.1, chunk_size: int = 1024) -> None:
        check_value("synth.direct_noise", noise)
        self.noise, self.chunk_size = noise, chunk_size

    def fit(self, chosen: np.ndarray, rejected: np.ndarray) -> DirectPerturbation:
        check_pairs(chosen, rejected, "fit")
        check_finite(chosen, rejected, "direct fit")
        _, self.std_ = standardization_stats(chosen, rejected)
        return self

    def _draw(
        self,
        chosen: np.ndarray,
        rejected: np.ndarray,
        s0: int,
        s1: int,
        ratio: int,
        rng: np.random.Generator,
    ) -> tuple[np.ndarray, np.ndarray]:
        scale = (self.noise * self.std_).astype(np.float32)  # (d,)
        shape = (s1 - s0, ratio, chosen.shape[1])
        c = chosen[s0:s1, None] + rng.standard_normal(shape, np.float32) * scale
        r = rejected[s0:s1, None] + rng.standard_normal(shape, np.float32) * scale
        return c, r


class GaussianSampling(_SamplingBaseline):
    """Sample new pairs from Gaussians fitted to the chosen and to the rejected embeddings.

    ``cov="diag"`` (default): N(mean, diag(var)) per side, cheap and well-posed at any d.
    ``cov="full"``: N(mean, sample covariance) per side. With N < d the sample covariance is
    singular, so samples are drawn as ``mean + X_c^T g / sqrt(N - 1)`` with the centred seed
    embeddings X_c (N, d) and ``g ~ N(0, I_N)``: exactly that Gaussian, without a d x d matrix.
    Each seed gets `ratio` new pairs (c ~ N_chosen, r ~ N_rejected) attributed to it; they do not
    depend on the seed pair's own embeddings.
    """

    method = "gaussian"
    _fitted = "params_"
    fit_params = ("cov",)

    def __init__(self, cov: str = "diag", chunk_size: int = 1024) -> None:
        check_value("synth.gaussian_cov", cov)
        self.cov, self.chunk_size = cov, chunk_size

    def fit(self, chosen: np.ndarray, rejected: np.ndarray) -> GaussianSampling:
        check_pairs(chosen, rejected, "fit")
        check_finite(chosen, rejected, "gaussian fit")
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

    def _draw(
        self,
        chosen: np.ndarray,
        rejected: np.ndarray,
        s0: int,
        s1: int,
        ratio: int,
        rng: np.random.Generator,
    ) -> tuple[np.ndarray, np.ndarray]:
        m, d = (s1 - s0) * ratio, chosen.shape[1]
        out = []
        for mean, spread in self.params_:
            if self.cov == "diag":
                out.append(mean + rng.standard_normal((m, d), np.float32) * spread)
            else:
                out.append(mean + rng.standard_normal((m, spread.shape[0]), np.float32) @ spread)
        return out[0], out[1]


class CrossPromptPairs(Estimator):
    """Cross-prompt pairs of originals only: chosen_i preferred to rejected_j, i != j.

    A free baseline for the paper's cross pairing: no generative model and no new embedding, only
    new pairings of the labelled ones. If it helps as much as LENS with cross pairing, the VAE is
    not what helps. Each seed i gets `ratio` distinct partners j != i (new pair (c_i, r_j),
    attributed to seed i); randomness from ``numpy.random.Generator(seed)``.
    """

    method = "cross-prompt"
    fit_params = ()

    def fit(self, chosen: np.ndarray, rejected: np.ndarray) -> CrossPromptPairs:
        check_pairs(chosen, rejected, "fit")
        return self

    def augment(
        self, chosen: np.ndarray, rejected: np.ndarray, ratio: int, seed: int
    ) -> AugmentedPairs:
        ratio = check_ratio(ratio)
        check_pairs(chosen, rejected, "augment")
        n = len(chosen)
        if ratio > n - 1:
            raise ConfigError(
                f"cross-prompt pairs: ratio {ratio} needs more than {ratio} seed pairs, got {n}"
            )
        t0 = time.perf_counter()
        rng = np.random.default_rng(seed)
        offsets = rng.integers(1, n, size=(n, ratio))  # partner j = (i + offset) % n, never i
        for i in range(n):  # redraw the rare rows with a repeated partner
            while len(set(offsets[i].tolist())) < ratio:
                offsets[i] = rng.integers(1, n, size=ratio)
        seeds = np.repeat(np.arange(n, dtype=np.int64), ratio)
        partners = (seeds + offsets.ravel()) % n
        out = AugmentedPairs.originals(chosen, rejected, method=self.method, ratio=ratio)
        out.add_pairs(seeds, n + partners, seeds)
        out.stats.update({"kept": 0, "seconds": time.perf_counter() - t0})
        log.info(
            "%s: %d seeds, %d pairs made in %.2fs", self.method, n, n * ratio, out.stats["seconds"]
        )
        return out
