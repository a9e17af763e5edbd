from __future__ import annotations

import numpy as np
import pytest

from latentrm.augment.baselines import DirectPerturbation, GaussianSampling, NoAugmenter
from latentrm.errors import ConfigError, LatentrmError
from latentrm.testing import toy_pairs

N, D = 30, 6


@pytest.fixture(scope="module")
def data():
    c, r, _ = toy_pairs(N, D, seed=0)
    return c, r


def check_layout(aug, c, r, ratio):
    """Originals first; ratio new pairs per seed, attributed to it; new rows all distinct."""
    assert len(aug) == N * (1 + ratio) and aug.pool.shape == (2 * N + 2 * N * ratio, D)
    assert np.array_equal(aug.pool[:N], c) and np.array_equal(aug.pool[N : 2 * N], r)
    assert np.bincount(aug.seed_idx[N:], minlength=N).tolist() == [ratio] * N
    assert aug.synthetic.sum() == N * ratio == aug.stats["pairs_made"]
    new_rows = np.concatenate([aug.chosen_idx[N:], aug.rejected_idx[N:]])
    assert len(np.unique(new_rows)) == len(new_rows) and (new_rows >= 2 * N).all()


def test_no_augmenter_ignores_ratio(data):
    aug = NoAugmenter().fit(*data).augment(*data, 8, seed=0)
    assert len(aug) == N and aug.method == "none" and not aug.synthetic.any()
    with pytest.raises(ConfigError, match="ratio"):
        NoAugmenter().augment(*data, -2, seed=0)


@pytest.mark.parametrize("ratio", [1, 2, 4, 8, 16])
def test_direct_layout(data, ratio):
    c, r = data
    aug = DirectPerturbation(0.1).fit(c, r).augment(c, r, ratio, seed=0)
    check_layout(aug, c, r, ratio)
    assert aug.method == "direct"


def test_direct_noise_scale_and_attribution(data):
    c, r = data
    ratio = 200
    aug = DirectPerturbation(0.5).fit(c, r).augment(c, r, ratio, seed=1)
    std = np.concatenate([c, r]).std(0)
    new = slice(N, None)
    dc = aug.pool[aug.chosen_idx[new]] - c[aug.seed_idx[new]]  # noise on the chosen side
    dr = aug.pool[aug.rejected_idx[new]] - r[aug.seed_idx[new]]
    # noise std = direct_noise * per-dim seed-set std (N*ratio = 6000 draws per dim -> ~1% error)
    assert np.allclose(dc.std(0) / std, 0.5, rtol=0.05)
    assert np.allclose(dr.std(0) / std, 0.5, rtol=0.05)
    assert np.allclose(dc.mean(0) / std, 0.0, atol=0.03)
    assert abs(np.corrcoef(dc[:, 0], dr[:, 0])[0, 1]) < 0.05  # sides perturbed independently


def test_direct_zero_noise_copies_originals(data):
    c, r = data
    aug = DirectPerturbation(0.0).fit(c, r).augment(c, r, 2, seed=0)
    assert np.array_equal(aug.pool[aug.chosen_idx], c[aug.seed_idx])
    assert np.array_equal(aug.pool[aug.rejected_idx], r[aug.seed_idx])


def test_direct_checks(data):
    with pytest.raises(ConfigError, match="direct_noise"):
        DirectPerturbation(-1.0)
    with pytest.raises(LatentrmError, match="before fit"):
        DirectPerturbation(0.1).augment(*data, 2, seed=0)


@pytest.mark.parametrize("cov", ["diag", "full"])
@pytest.mark.parametrize("ratio", [1, 4, 16])
def test_gaussian_layout(data, cov, ratio):
    c, r = data
    aug = GaussianSampling(cov, chunk_size=7).fit(c, r).augment(c, r, ratio, seed=0)
    check_layout(aug, c, r, ratio)
    assert aug.method == "gaussian"


def test_gaussian_diag_moments(data):
    c, r = data
    aug = GaussianSampling("diag").fit(c, r).augment(c, r, 300, seed=0)
    new = slice(N, None)
    for side, src in ((aug.chosen_idx, c), (aug.rejected_idx, r)):
        x = aug.pool[side[new]]
        assert np.allclose(x.mean(0), src.mean(0), atol=0.05 * src.std(0).max())
        assert np.allclose(x.std(0), src.std(0), rtol=0.05)


def test_gaussian_full_covariance_and_span():
    rng = np.random.default_rng(0)
    base = rng.standard_normal((5, 1))
    # Two perfectly correlated dims + one independent: full cov keeps the correlation.
    c = np.concatenate([base, 2 * base, rng.standard_normal((5, 1))], 1).astype(np.float32)
    r = c + 1.0
    g = GaussianSampling("full").fit(c, r)
    aug = g.augment(c, r, 2000, seed=0)
    x = aug.pool[aug.chosen_idx[5:]]
    assert np.allclose(x[:, 1], 2 * x[:, 0], atol=1e-4)  # lies in the data's span
    assert np.allclose(np.cov(x.T), np.cov(c.T), rtol=0.1, atol=0.05)
    xr = aug.pool[aug.rejected_idx[5:]]
    assert np.allclose(xr.mean(0), r.mean(0), atol=0.1)
    with pytest.raises(ConfigError, match="gaussian_cov"):
        GaussianSampling("low-rank")


def test_baselines_deterministic(data):
    for aug in (DirectPerturbation(0.1), GaussianSampling("diag"), GaussianSampling("full")):
        aug.fit(*data)
        a, b = aug.augment(*data, 4, seed=3), aug.augment(*data, 4, seed=3)
        assert a.pool.tobytes() == b.pool.tobytes()
        assert not np.array_equal(a.pool, aug.augment(*data, 4, seed=4).pool)


def test_cross_prompt_pairs_originals_across_seeds(data):
    from latentrm.augment.baselines import CrossPromptPairs

    c, r = data
    aug = CrossPromptPairs().fit(c, r).augment(c, r, 4, seed=0)
    assert len(aug) == N * 5 and aug.pool.shape == (2 * N, D)  # no new embeddings
    new_c, new_r = aug.chosen_idx[N:], aug.rejected_idx[N:]
    assert np.array_equal(new_c, aug.seed_idx[N:]) and (new_r >= N).all()
    assert (new_r - N != new_c).all()  # chosen_i with rejected_j, j != i
    assert np.bincount(aug.seed_idx, minlength=N).tolist() == [5] * N  # ratio per seed
    assert len(set(zip(new_c.tolist(), new_r.tolist(), strict=True))) == N * 4  # distinct
    with pytest.raises(ConfigError, match="ratio 40 needs more than 40 seed pairs"):
        CrossPromptPairs().augment(c, r, 40, seed=0)


@pytest.mark.parametrize(
    "make",
    [
        lambda: DirectPerturbation(0.1),
        lambda: GaussianSampling("diag"),
        lambda: GaussianSampling("full"),
    ],
)
def test_sampling_baselines_refuse_nan_embeddings(data, make):
    """A NaN in one seed embedding would reach new embeddings silently (direct: that seed's;
    gaussian: every one, through the mean)."""
    from latentrm.errors import DataError

    c, r = data[0].copy(), data[1].copy()
    c[3, 2] = np.nan
    with pytest.raises(
        DataError,
        match=r"fit: 1 chosen embeddings hold NaN/Inf \(first: seed "
        r"pair 3\)",
    ):
        make().fit(c, r)
    fitted = make().fit(data[0], data[1])
    r = data[1].copy()
    r[[5, 7], 0] = np.inf
    with pytest.raises(
        DataError,
        match=r"augment: 2 rejected embeddings hold NaN/Inf \(first: "
        r"seed pair 5\)",
    ):
        fitted.augment(data[0], r, 2, 0)
