from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from latentrm.augment.synth import LensAugmenter, default_top_k, sample_grid_pairs, top_k_samples
from latentrm.augment.vae import DivergenceVAE
from latentrm.config import SynthConfig, VAEConfig
from latentrm.errors import ConfigError
from latentrm.pairs import AugmentedPairs

VAE = VAEConfig(epochs=5, patience=5, batch_size=32)  # the `lens` fixture's
N, D = 40, 10  # the `lens_data` fixture's


pytestmark = pytest.mark.usefixtures("one_thread")


def row_owner(aug: AugmentedPairs, n: int, k: int, side: str) -> np.ndarray:
    """Seed each pool row belongs to, per the documented LENS layout; -1 = other side's row."""
    rows = np.arange(len(aug.pool))
    owner = np.full(len(rows), -1)
    if side == "chosen":
        owner[:n] = rows[:n]
        syn = (rows >= 2 * n) & (rows < 2 * n + n * k)
        owner[syn] = (rows[syn] - 2 * n) // k
    else:
        owner[n : 2 * n] = rows[n : 2 * n] - n
        syn = rows >= 2 * n + n * k
        owner[syn] = (rows[syn] - 2 * n - n * k) // k
    return owner


@pytest.mark.parametrize(
    "ratio,k", [(1, 1), (2, 1), (3, 1), (4, 2), (8, 2), (9, 3), (15, 3), (16, 4), (24, 4), (25, 5)]
)
def test_default_top_k(ratio, k):
    assert default_top_k(ratio) == k
    assert (1 + k) ** 2 - 1 >= ratio > k**2 - 1 or k == 1


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 30), st.integers(1, 5), st.data())
def test_grid_sampler_property(n, k, data):
    ratio = data.draw(st.integers(0, (1 + k) ** 2 - 1))
    gen = torch.Generator().manual_seed(data.draw(st.integers(0, 99)))
    a, b = sample_grid_pairs(n, k, ratio, gen)
    assert a.shape == b.shape == (n, ratio)
    assert ((a >= 0) & (a <= k) & (b >= 0) & (b <= k)).all()
    assert not ((a == 0) & (b == 0)).any()  # never the seed pair itself
    cells = a * (1 + k) + b
    assert all(len(set(row)) == ratio for row in cells.tolist())  # no duplicates within a seed


def test_grid_sampler_too_many():
    with pytest.raises(ConfigError, match="ratio 9"):
        sample_grid_pairs(3, 2, 9, torch.Generator())


@pytest.mark.parametrize("ratio", [1, 2, 4, 8, 16])
def test_lens_pair_counts_and_within_seed(lens_data, lens, ratio):
    c, r = lens_data
    aug = lens.augment(c, r, ratio, seed=0)
    k = default_top_k(ratio)
    assert len(aug) == N + ratio * N and aug.pool.shape == (2 * N + 2 * N * k, D)
    assert aug.pool.dtype == np.float32 and aug.n_seed == N
    # Originals first, unchanged.
    assert np.array_equal(aug.pool[:N], c) and np.array_equal(aug.pool[N : 2 * N], r)
    assert aug.chosen_idx[:N].tolist() == list(range(N))
    assert aug.rejected_idx[:N].tolist() == list(range(N, 2 * N))
    assert not aug.synthetic[:N].any() and aug.synthetic[N:].all()
    # Exactly ratio new pairs per seed, no duplicates, no pair mixes two seeds.
    assert np.bincount(aug.seed_idx[N:], minlength=N).tolist() == [ratio] * N
    pairs = set(zip(aug.chosen_idx.tolist(), aug.rejected_idx.tolist(), strict=True))
    assert len(pairs) == len(aug)
    c_owner = row_owner(aug, N, k, "chosen")[aug.chosen_idx]
    r_owner = row_owner(aug, N, k, "rejected")[aug.rejected_idx]
    assert np.array_equal(c_owner, aug.seed_idx) and np.array_equal(r_owner, aug.seed_idx)
    assert aug.stats["candidates_drawn"] == 2 * N * 16
    assert aug.stats["kept"] == 2 * N * k and aug.stats["pairs_made"] == ratio * N
    assert aug.method == "lens" and aug.ratio == ratio


@settings(max_examples=40, deadline=None)
@given(st.integers(1, N), st.integers(1, 16), st.integers(0, 2), st.integers(0, 1000))
def test_lens_augment_property(lens_data, lens, n, ratio, extra_k, seed):
    # Any N, ratio and top_k: exact counts, every pair within its seed, no duplicate pairs.
    c, r = lens_data[0][:n], lens_data[1][:n]
    k = default_top_k(ratio) + extra_k
    aug = LensAugmenter(VAE, SynthConfig(top_k=k, chunk_size=7), seed=0, val_fraction=0.1)
    aug.vae_ = lens.vae_
    out = aug.augment(c, r, ratio, seed=seed)
    assert len(out) == n * (1 + ratio)
    assert np.bincount(out.seed_idx, minlength=n).tolist() == [1 + ratio] * n
    assert np.array_equal(row_owner(out, n, k, "chosen")[out.chosen_idx], out.seed_idx)
    assert np.array_equal(row_owner(out, n, k, "rejected")[out.rejected_idx], out.seed_idx)
    pairs = set(zip(out.chosen_idx.tolist(), out.rejected_idx.tolist(), strict=True))
    assert len(pairs) == len(out)


def test_lens_bad_ratio(lens_data, lens):
    # One rule for every ratio (config.check_ratio): 0 is no augmentation, which is method none.
    for bad in (0, 1.5):
        with pytest.raises(ConfigError, match=f"ratio must be an integer >= 1, got {bad}"):
            lens.augment(*lens_data, bad, seed=0)


def test_lens_deterministic_and_chunk_invariant(lens_data, lens):
    a = lens.augment(*lens_data, 4, seed=7)
    b = lens.augment(*lens_data, 4, seed=7)
    other = lens.augment(*lens_data, 4, seed=8)
    assert a.pool.tobytes() == b.pool.tobytes()
    assert np.array_equal(a.chosen_idx, b.chosen_idx)
    assert not np.array_equal(a.pool[2 * N :], other.pool[2 * N :])
    # Refitting from scratch with the same seed gives bit-identical synthetic embeddings.
    again = LensAugmenter(VAE, SynthConfig(), seed=0, val_fraction=0.1).fit(*lens_data)
    again = again.augment(*lens_data, 4, seed=7)
    assert again.pool.tobytes() == a.pool.tobytes()
    small = LensAugmenter(VAE, SynthConfig(chunk_size=3), seed=0, val_fraction=0.1)
    small.vae_ = lens.vae_
    chunked = small.augment(*lens_data, 4, seed=7)
    assert np.array_equal(chunked.chosen_idx, a.chosen_idx)
    assert np.allclose(chunked.pool, a.pool, atol=1e-5)


def test_synthetic_embeddings_stay_near_their_seed(lens_data, lens):
    c, r = lens_data
    aug = lens.augment(c, r, 8, seed=0)
    syn_c = aug.pool[2 * N : 2 * N + 2 * N].reshape(N, 2, D)  # k = 2 per seed
    dist_own = np.linalg.norm(syn_c - c[:, None], axis=-1).mean()
    dist_other = np.linalg.norm(syn_c - np.roll(c, 1, axis=0)[:, None], axis=-1).mean()
    assert dist_own < dist_other


def _identity_vae(d: int) -> DivergenceVAE:
    """hidden=(): mu = x, logvar = logvar bias, decode(z) = z (d == latent_dim)."""
    m = DivergenceVAE(d, hidden=(), latent_dim=d)
    with torch.no_grad():
        for lin in (m.mu_head, m.decoder[0]):
            lin.weight.copy_(torch.eye(d))
            lin.bias.zero_()
        m.logvar_head.weight.zero_()
        m.logvar_head.bias.copy_(torch.tensor([0.0, math.log(100.0)]))  # var (1, 100)
    return m


def test_top_k_keeps_the_most_likely():
    m = _identity_vae(2)
    x = torch.tensor([[1.0, 0.0]])
    eta = torch.tensor([[[0.0, 3.0], [-0.9, 0.0], [2.0, 0.0], [0.0, -1.5], [-1.0, 0.5]]])
    # z = x + eta: (1,3), (0.1,0), (3,0), (1,-1.5), (0,0.5)
    # prior -0.5|z|^2: best (0.1,0), (0,0.5), (1,-1.5)
    kept = top_k_samples(m, x, eta, 3, "prior")[0]
    assert torch.allclose(kept, torch.tensor([[0.1, 0.0], [0.0, 0.5], [1.0, -1.5]]))
    # posterior, var (1, 100): eta_1^2 + eta_2^2/100 = .09, .81, 4, .0225, 1.0025
    kept = top_k_samples(m, x, eta, 3, "posterior")[0]
    assert torch.allclose(kept, torch.tensor([[1.0, -1.5], [1.0, 3.0], [0.1, 0.0]]))
    # recon -|z - x|^2 = -|eta|^2 (decoder is identity): 9, .81, 4, 2.25, 1.25
    kept = top_k_samples(m, x, eta, 3, "recon")[0]
    assert torch.allclose(kept, torch.tensor([[0.1, 0.0], [0.0, 0.5], [1.0, -1.5]]))
    with pytest.raises(ConfigError, match="likelihood"):
        top_k_samples(m, x, eta, 1, "max")


@pytest.mark.parametrize("likelihood", ["prior", "posterior", "recon"])
def test_lens_likelihoods_run(lens_data, lens, likelihood):
    aug2 = LensAugmenter(VAE, SynthConfig(likelihood=likelihood), seed=0, val_fraction=0.1)
    aug2.vae_ = lens.vae_
    out = aug2.augment(*lens_data, 2, seed=0)
    assert len(out) == 3 * N and np.isfinite(out.pool).all()


def test_lens_top_k_config_checks(lens_data, lens):
    aug = LensAugmenter(VAE, SynthConfig(top_k=1), seed=0, val_fraction=0.1)
    aug.vae_ = lens.vae_
    with pytest.raises(ConfigError, match="top_k=1 gives only 3"):
        aug.augment(*lens_data, 4, seed=0)
    with pytest.raises(ConfigError, match="top_k=20 must be <= synth.n_candidates=16"):
        SynthConfig(top_k=20, n_candidates=16)  # refused when built, before any training
    aug.synth_cfg = SynthConfig(n_candidates=1)  # the default top_k for ratio 4 is 2
    with pytest.raises(ConfigError, match=r"synth.top_k=2 must be in \[1, synth.n_candidates=1\]"):
        aug.augment(*lens_data, 4, seed=0)


def test_cross_pairing_is_the_papers_cross_product(lens_data, lens):
    c, r = lens_data
    aug = copy.copy(lens).set_params(synth_cfg=SynthConfig(pairing="cross"))
    out = aug.augment(c, r, 4, seed=3)
    k = 2  # default_top_k(4)
    assert len(out) == N * 5 and out.synthetic[N:].all() and not out.synthetic[:N].any()
    new_c, new_r = out.chosen_idx[N:], out.rejected_idx[N:]
    # chosen side: an original chosen row or a kept chosen sample; rejected side likewise
    assert ((new_c < N) | ((new_c >= 2 * N) & (new_c < 2 * N + N * k))).all()
    assert (((new_r >= N) & (new_r < 2 * N)) | (new_r >= 2 * N + N * k)).all()
    assert not ((new_c < N) & (new_r == new_c + N)).any()  # never a seed pair itself
    assert len(set(zip(new_c.tolist(), new_r.tolist(), strict=True))) == N * 4  # distinct
    # seeds of both sides differ for most pairs (any seed with any seed), and each pair's seed is
    # its chosen side's
    owner_c = np.where(new_c < N, new_c, (new_c - 2 * N) // k)
    owner_r = np.where(new_r < 2 * N, new_r - N, (new_r - 2 * N - N * k) // k)
    assert np.array_equal(out.seed_idx[N:], owner_c) and (owner_c != owner_r).mean() > 0.8
    again = aug.augment(c, r, 4, seed=3)
    assert np.array_equal(again.chosen_idx, out.chosen_idx)  # deterministic


def test_noise_on_a_posterior_sample_differs_from_noise_on_the_mean(lens_data, lens):
    c, r = lens_data
    mean = lens.augment(c, r, 2, seed=0)
    sample = copy.copy(lens).set_params(synth_cfg=SynthConfig(noise_on="sample"))
    a, b = sample.augment(c, r, 2, seed=0), sample.augment(c, r, 2, seed=0)
    assert np.array_equal(a.pool, b.pool)  # deterministic given the seed
    assert np.array_equal(a.chosen_idx, mean.chosen_idx)  # the same pairing draws
    assert not np.allclose(a.pool[2 * N :], mean.pool[2 * N :])


def test_residual_decoding_keeps_what_the_vae_cannot_reconstruct():
    model = DivergenceVAE(4, hidden=(), latent_dim=2)  # keeps only the first 2 coordinates
    with torch.no_grad():
        model.mu_head.weight.copy_(torch.eye(2, 4))
        model.decoder[0].weight.copy_(torch.eye(4, 2))
        for lin in (model.mu_head, model.decoder[0], model.logvar_head):
            lin.bias.zero_()
        model.logvar_head.weight.zero_()
    x = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    eta = torch.zeros(1, 3, 2)  # no noise: every sample sits on the latent centre
    plain = top_k_samples(model, x, eta, 2, "prior")
    residual = top_k_samples(model, x, eta, 2, "prior", residual=True)
    assert torch.allclose(plain[0, 0], torch.tensor([1.0, 2.0, 0.0, 0.0]))  # the decoder's mean
    assert torch.allclose(residual, x[:, None].expand(1, 2, 4))  # x + g(c) - g(c) = x
    eta = torch.full((1, 3, 2), 0.5)
    moved = top_k_samples(model, x, eta, 1, "prior", residual=True)
    # e + g(c + eta) - g(c): the decoder's move (+0.5 on the two coordinates it models)
    assert torch.allclose(moved[0, 0], torch.tensor([1.5, 2.5, 3.0, 4.0]))
