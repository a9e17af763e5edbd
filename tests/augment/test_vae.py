from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from latentrm.augment.vae import (
    DivergenceVAE,
    VAEFitter,
    check_divergence,
    divergence_vae_loss,
    kl_std_normal,
    n_parameters,
    recon_loss,
    w2_diag_gaussians,
)
from latentrm.config import VAEConfig
from latentrm.errors import ConfigError, TrainingError
from latentrm.testing import toy_pairs

FAST = VAEConfig(epochs=15, patience=15, batch_size=32)


pytestmark = pytest.mark.usefixtures("one_thread")


def t(*rows):
    return torch.tensor(rows, dtype=torch.float32)


def test_parameter_count_at_4096():
    # enc 4096*64+64, mu/logvar heads 2*(64*16+16), dec 16*64+64, 64*4096+4096
    expected = (4096 * 64 + 64) + 2 * (64 * 16 + 16) + (16 * 64 + 64) + (64 * 4096 + 4096)
    assert expected == 531_616
    assert n_parameters(DivergenceVAE(4096)) == expected


def test_w2_known_gaussians():
    zero = t([0.0, 0.0])
    # Same spread, means (0,0) vs (3,4): W2 = ||mu1 - mu2|| = 5.
    assert w2_diag_gaussians(zero, zero, t([3.0, 4.0]), zero).item() == pytest.approx(5.0)
    # Same means, s1 = (1,1) vs s2 = (2,2) (logvar ln 4): W2 = ||s1 - s2|| = sqrt(2).
    lv4 = t([math.log(4.0)] * 2)
    assert w2_diag_gaussians(zero, zero, zero, lv4).item() == pytest.approx(math.sqrt(2.0))
    # Both: mean gap (1,0), std gap (1,1): sqrt(1 + 2).
    assert w2_diag_gaussians(zero, zero, t([1.0, 0.0]), lv4).item() == pytest.approx(math.sqrt(3))
    # Batched: (B,) output, symmetric.
    mu1, mu2 = t([0.0, 0.0], [1.0, 1.0]), t([3.0, 4.0], [1.0, 1.0])
    lv = torch.zeros(2, 2)
    out = w2_diag_gaussians(mu1, lv, mu2, lv)
    assert out.shape == (2,) and out.tolist() == pytest.approx([5.0, 0.0])
    assert torch.equal(out, w2_diag_gaussians(mu2, lv, mu1, lv))


def test_w2_gradient_is_unit_direction_and_zero_at_identity():
    mu1 = t([0.0, 0.0]).requires_grad_()
    w2_diag_gaussians(mu1, torch.zeros(1, 2), t([3.0, 4.0]), torch.zeros(1, 2)).sum().backward()
    assert mu1.grad.flatten().tolist() == pytest.approx([-0.6, -0.8])  # (mu1 - mu2) / W2

    mu = torch.randn(4, 3, requires_grad=True)
    lv = torch.randn(4, 3, requires_grad=True)
    w = w2_diag_gaussians(mu, lv, mu.detach().clone(), lv.detach().clone())
    assert torch.equal(w, torch.zeros(4))  # exact: no epsilon bias
    w.sum().backward()
    assert torch.isfinite(mu.grad).all() and torch.isfinite(lv.grad).all()
    assert torch.equal(mu.grad, torch.zeros_like(mu)) and torch.equal(lv.grad, torch.zeros_like(lv))


def test_kl_known_values():
    # 0.5 * (mu^2 + e^lv - lv - 1) summed over dims.
    assert kl_std_normal(t([1.0, 2.0]), t([0.0, 0.0])).item() == pytest.approx(2.5)
    assert kl_std_normal(t([0.0]), t([math.log(2.0)])).item() == pytest.approx(
        0.5 * (1.0 - math.log(2.0))
    )
    assert kl_std_normal(torch.zeros(3, 16), torch.zeros(3, 16)).tolist() == [0.0, 0.0, 0.0]


def test_extreme_logvars_are_clamped_finite():
    mu = torch.zeros(2, 3, requires_grad=True)
    lv = t([1e4, -1e4, 50.0], [-50.0, 0.0, 1e30]).requires_grad_()
    kl = kl_std_normal(mu, lv)
    # Clamped to [-10, 10]: row 0 = f(10) + f(-10) + f(10), f(l) = 0.5 (e^l - l - 1).
    f = lambda v: 0.5 * (math.exp(v) - v - 1)  # noqa: E731
    assert kl.tolist() == pytest.approx([2 * f(10) + f(-10), f(-10) + f(0) + f(10)], rel=1e-5)
    w2 = w2_diag_gaussians(mu, lv, mu.detach() + 1.0, -lv.detach())
    (kl.sum() + w2.sum()).backward()
    for g in (mu.grad, lv.grad):
        assert torch.isfinite(g).all()
    assert torch.isfinite(w2).all()


def test_recon_losses():
    x, x_hat = t([1.0, 2.0]), t([0.0, 0.0])
    assert recon_loss(x_hat, x, "mse").item() == pytest.approx(2.5)  # 0.5 * (1 + 4)
    # d * (1 - cos): orthogonal -> 2, identical direction -> 0.
    assert recon_loss(t([0.0, 1.0]), t([1.0, 0.0]), "cosine").item() == pytest.approx(2.0)
    assert recon_loss(t([2.0, 2.0]), t([1.0, 1.0]), "cosine").item() == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ConfigError, match="recon"):
        recon_loss(x_hat, x, "l1")


def test_divergence_loss_matches_formula():
    torch.manual_seed(0)
    model = DivergenceVAE(6, hidden=(5,), latent_dim=3)
    pos, neg = torch.randn(4, 6), torch.randn(4, 6)
    loss, parts = divergence_vae_loss(model, pos, neg, beta=0.5, gamma=0.3, sample=False)
    mp, lp = model.encode(pos)
    mn, ln = model.encode(neg)
    rec = 0.5 * ((model.decode(mp) - pos) ** 2).sum(1)
    rec = rec + 0.5 * ((model.decode(mn) - neg) ** 2).sum(1)
    kl = kl_std_normal(mp, lp) + kl_std_normal(mn, ln)
    w2 = torch.sqrt(((mp - mn) ** 2).sum(1) + ((torch.exp(lp / 2) - torch.exp(ln / 2)) ** 2).sum(1))
    expected = (rec + 0.5 * kl - 0.3 * w2).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert parts["w2"] == pytest.approx(w2.mean().item(), rel=1e-5)
    assert parts["recon"] == pytest.approx(rec.mean().item(), rel=1e-5)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.floats(-30, 30), min_size=4, max_size=4),
    st.lists(st.floats(-12, 12), min_size=4, max_size=4),
    st.floats(0.05, 2.0),
    st.floats(0.0, 2.0),
)
def test_kl_anchor_bounds_divergence_term(mus, lvs, beta, gamma):
    # beta*(KL+ + KL-) - gamma*W2 >= -gamma^2/beta: both KLs >= |(dmu, ds)|^2 / 4, W2 = |(dmu, ds)|.
    mu1, mu2 = torch.tensor([mus[:2]]), torch.tensor([mus[2:]])
    lv1, lv2 = torch.tensor([lvs[:2]]), torch.tensor([lvs[2:]])
    value = beta * (kl_std_normal(mu1, lv1) + kl_std_normal(mu2, lv2)) - gamma * w2_diag_gaussians(
        mu1, lv1, mu2, lv2
    )
    assert value.item() >= -(gamma**2) / beta - 1e-3


@pytest.fixture(scope="module")
def toy():
    c, r, _ = toy_pairs(200, 12, seed=3)
    return c, r


def test_fitter_standardises_with_seed_stats(toy):
    c, r = toy
    fit = VAEFitter(FAST, seed=0, val_fraction=0.1).fit(c, r)
    both = np.concatenate([c, r]).astype(np.float64)
    assert np.allclose(fit.mean_, both.mean(0), atol=1e-5)
    assert np.allclose(fit.std_, both.std(0), atol=1e-5)
    x = fit.standardize(c)
    assert abs(float(torch.cat([x, fit.standardize(r)]).mean())) < 1e-5
    assert np.allclose(fit.unstandardize(x), c, atol=1e-5)
    h = fit.history_
    assert len(h["val_loss"]) == h["epochs_run"] and h["val_loss"][-1] < h["val_loss"][0]
    assert set(h["val_parts"]) == {"loss", "recon", "kl", "w2", "divergence"}


def test_fitter_deterministic(toy):
    c, r = toy
    a = VAEFitter(FAST, seed=0, val_fraction=0.1).fit(c, r).model_.state_dict()
    b = VAEFitter(FAST, seed=0, val_fraction=0.1).fit(c, r).model_.state_dict()
    other = VAEFitter(FAST, seed=1, val_fraction=0.1).fit(c, r).model_.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], other[k]) for k in a)


def test_fitter_gamma_one_stays_sane(toy):
    # -gamma*W2 is bounded by the KL anchor: at gamma=1 training still decreases and W2 stays
    # moderate (it would grow without bound if the encoder could push the posteriors apart freely).
    c, r = toy
    cfg = dataclasses.replace(FAST, gamma=1.0, epochs=30, patience=30)
    fit = VAEFitter(cfg, seed=0, val_fraction=0.1).fit(c, r)
    h = fit.history_
    assert all(math.isfinite(v) for v in h["train_loss"] + h["val_loss"])
    assert h["val_loss"][-1] < h["val_loss"][0]
    parts = h["val_parts"]
    assert 0 < parts["w2"] < 20 and parts["loss"] > -1.0  # bound: loss >= -gamma^2/beta = -1


def test_fitter_rejects_nan_and_bad_config(toy):
    c, r = toy
    bad = c.copy()
    bad[3, 2] = np.nan
    with pytest.raises(TrainingError, match="NaN"):
        VAEFitter(FAST, seed=0, val_fraction=0.1).fit(bad, r)
    with pytest.raises(ConfigError, match="beta"):
        VAEFitter(dataclasses.replace(FAST, beta=0.0), seed=0, val_fraction=0.1).fit(c, r)
    with pytest.raises(ConfigError, match="same shape|one shape"):
        VAEFitter(FAST, seed=0, val_fraction=0.1).fit(c, r[:10])


def test_fitter_uses_given_validation(toy):
    c, r = toy
    fit = VAEFitter(FAST, seed=0, val_fraction=0.1).fit(c[:150], r[:150], val=(c[150:], r[150:]))
    expected = divergence_vae_loss(
        fit.model_,
        fit.standardize(c[150:]),
        fit.standardize(r[150:]),
        FAST.beta,
        FAST.gamma,
        sample=False,
    )[0].item()
    assert fit.history_["best_val"] == pytest.approx(expected, rel=1e-5)


def test_recon_reduction_mean_is_the_sum_over_d():
    x_hat = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    x = torch.zeros(1, 4)
    # 0.5 * (1 + 4 + 9 + 16) = 15 summed; / 4 dimensions averaged
    assert recon_loss(x_hat, x, "mse", "sum").item() == pytest.approx(15.0)
    assert recon_loss(x_hat, x, "mse", "mean").item() == pytest.approx(3.75)
    with pytest.raises(ConfigError, match="vae.recon_reduction"):
        recon_loss(x_hat, x, "mse", "median")


def test_w2_squared_divergence_and_its_bound():
    model = DivergenceVAE(4, (), latent_dim=2)
    with torch.no_grad():  # encoder = identity on the first 2 dims, logvar 0: posteriors known
        model.mu_head.weight.zero_()
        model.mu_head.weight[0, 0] = model.mu_head.weight[1, 1] = 1.0
        model.mu_head.bias.zero_()
        model.logvar_head.weight.zero_()
        model.logvar_head.bias.zero_()
    e_pos = torch.tensor([[3.0, 0.0, 0.0, 0.0]])
    e_neg = torch.tensor([[0.0, 4.0, 0.0, 0.0]])
    # mu+ = (3, 0), mu- = (0, 4), equal variances: W2 = 5, W2^2 = 25
    _, w2 = divergence_vae_loss(model, e_pos, e_neg, 1.0, 0.1, sample=False)
    _, sq = divergence_vae_loss(
        model, e_pos, e_neg, 1.0, 0.1, sample=False, divergence="w2_squared"
    )
    assert w2["w2"] == pytest.approx(5.0) and w2["divergence"] == pytest.approx(0.5)
    assert sq["w2"] == pytest.approx(5.0) and sq["divergence"] == pytest.approx(2.5)
    assert sq["loss"] == pytest.approx(w2["loss"] - 2.0)
    check_divergence("w2_squared", beta=1.0, gamma=0.2)  # 0.2 < 1/4: bounded
    with pytest.raises(ConfigError, match="gamma < vae.beta/4"):
        check_divergence("w2_squared", beta=1.0, gamma=0.25)
    with pytest.raises(ConfigError, match="needs vae.beta > 0"):
        check_divergence("w2", beta=0.0, gamma=0.1)
    with pytest.raises(ConfigError, match="vae.divergence must be one of"):
        check_divergence("kl", beta=1.0, gamma=0.1)


def test_w2_squared_with_too_large_gamma_is_refused_before_training():
    # refused when the config is built (issue 23 item 4), so a fitter never gets to train with it
    with pytest.raises(ConfigError, match="unbounded below"):
        dataclasses.replace(FAST, divergence="w2_squared", gamma=0.5)
    VAEFitter(
        dataclasses.replace(FAST, divergence="w2_squared", gamma=0.2), seed=0, val_fraction=0.1
    )
