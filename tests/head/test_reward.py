from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from latentrm.augment.synth import LensAugmenter
from latentrm.config import RewardConfig, SynthConfig, VAEConfig
from latentrm.errors import ConfigError, TrainingError
from latentrm.evaluate import pairwise_accuracy
from latentrm.head.fitter import RewardHeadFitter
from latentrm.head.reward import RewardHead, bradley_terry_loss
from latentrm.pairs import AugmentedPairs

FAST = RewardConfig(epochs=30, patience=5, batch_size=64, hidden=(32,))


pytestmark = pytest.mark.usefixtures("one_thread")


def test_bt_loss_known_values():
    # softplus(-(r+ - r-)) = log(1 + exp(-(r+ - r-)))
    assert bradley_terry_loss(torch.tensor([1.0]), torch.tensor([0.0])).item() == pytest.approx(
        math.log(1 + math.exp(-1))
    )  # 0.31326
    assert bradley_terry_loss(torch.zeros(3), torch.zeros(3)).item() == pytest.approx(math.log(2))
    mean = (math.log(1 + math.exp(-1)) + math.log(1 + math.e)) / 2  # margins +1 and -1
    assert bradley_terry_loss(torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])).item() == (
        pytest.approx(mean)
    )
    # Stable at huge margins: -1000 -> 1000 exactly, +1000 -> 0.
    big = bradley_terry_loss(torch.tensor([-500.0, 500.0]), torch.tensor([500.0, -500.0]))
    assert big.item() == pytest.approx(500.0)


def test_head_standardises_inputs():
    head = RewardHead(2, hidden=(), dropout=0.0)
    with torch.no_grad():
        head.mlp[0].weight.copy_(torch.tensor([[1.0, -2.0]]))
        head.mlp[0].bias.fill_(0.5)
    head.set_standardization(np.array([1.0, 1.0]), np.array([2.0, 0.5]))
    # ((3-1)/2) * 1 + ((2-1)/0.5) * -2 + 0.5 = 1 - 4 + 0.5
    assert head.score(np.array([[3.0, 2.0]])).tolist() == pytest.approx([-2.5])
    assert head(torch.zeros(4, 2)).shape == (4,)
    with pytest.raises(ConfigError, match=r"\(N, 2\)"):
        head.score(np.zeros((3, 5)))


def accuracy(head: RewardHead, pairs) -> float:
    return pairwise_accuracy(head.score(pairs[0]), head.score(pairs[1]))


def test_end_to_end_losses_fall_and_head_beats_chance(head_pairs):
    train, val, test, w = head_pairs
    c, r = train
    vae = VAEConfig(epochs=20, batch_size=64)
    lens = LensAugmenter(vae, SynthConfig(), seed=0, val_fraction=0.1).fit(c, r)
    aug = lens.augment(c, r, 4, seed=0)
    assert len(aug) == 400 * 5
    vae_hist = lens.vae_.history_
    assert vae_hist["val_loss"][vae_hist["best_epoch"]] < vae_hist["val_loss"][0]
    for data in (AugmentedPairs.originals(c, r), aug):
        fitter = RewardHeadFitter(FAST, seed=0).fit(data, val)
        head, h = fitter.head_, fitter.history_
        assert h["train_loss"][h["best_epoch"]] < h["train_loss"][0] < math.log(2) + 0.1
        assert h["best_val"] < math.log(2) - 0.05
        # The planted direction ranks 85% of pairs right (see toy_pairs); the head must get close.
        assert accuracy(head, test) > 0.7
        assert head.training is False


def test_best_weights_restored(head_pairs):
    train, val, _, _ = head_pairs
    fitter = RewardHeadFitter(FAST, seed=0).fit(AugmentedPairs.originals(*train), val)
    head = fitter.head_
    val_now = bradley_terry_loss(
        torch.from_numpy(head.score(val[0])), torch.from_numpy(head.score(val[1]))
    ).item()
    assert val_now == pytest.approx(fitter.history_["best_val"], rel=1e-6)


def test_standardisation_from_seed_rows_only(head_pairs):
    train, val, _, _ = head_pairs
    aug = AugmentedPairs.originals(*train, pool_rows=1000)
    aug.pool[800:] = 1e6  # synthetic rows must not leak into the statistics
    aug.add_pairs(np.array([800]), np.array([801]), np.array([0]))
    head = RewardHeadFitter(dataclasses.replace(FAST, epochs=1), seed=0).fit(aug, val).head_
    both = np.concatenate(train)
    assert np.allclose(head.mean.numpy(), both.mean(0), atol=1e-5)


def test_deterministic(head_pairs):
    train, val, _, _ = head_pairs
    data = AugmentedPairs.originals(*train)
    a = RewardHeadFitter(FAST, seed=0).fit(data, val).head_.state_dict()
    b = RewardHeadFitter(FAST, seed=0).fit(data, val).head_.state_dict()
    other = RewardHeadFitter(FAST, seed=1).fit(data, val).head_.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["mlp.0.weight"], other["mlp.0.weight"])


def test_nan_embedding_raises_training_error(head_pairs):
    train, val, _, _ = head_pairs
    c = train[0].copy()
    c[5, 3] = np.nan
    with pytest.raises(TrainingError, match="epoch 0 step 0"):
        RewardHeadFitter(FAST, seed=0).fit(AugmentedPairs.originals(c, train[1]), val)


def test_bradley_terry_loss_with_targets_margins_and_weights():
    rc, rr = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 0.0])
    plain = bradley_terry_loss(rc, rr)
    # margins 1 and 0: deltas 0 and 0 -> log 2 each
    assert bradley_terry_loss(rc, rr, margin=torch.tensor([1.0, 0.0])).item() == pytest.approx(
        math.log(2)
    )
    # a soft target t: t*softplus(-d) + (1-t)*softplus(d); d = 1, t = 0.5 -> (0.3133 + 1.3133) / 2
    t = torch.tensor([0.5, 1.0])
    want = ((math.log1p(math.exp(-1)) + math.log1p(math.e)) / 2 + math.log(2)) / 2
    assert bradley_terry_loss(rc, rr, target=t).item() == pytest.approx(want, rel=1e-6)
    assert bradley_terry_loss(rc, rr, target=torch.ones(2)).item() == pytest.approx(plain.item())
    # weights (3, 1): (3 * 0.3133 + 1 * log 2) / 4
    want = (3 * math.log1p(math.exp(-1)) + math.log(2)) / 4
    got = bradley_terry_loss(rc, rr, weight=torch.tensor([3.0, 1.0])).item()
    assert got == pytest.approx(want, rel=1e-6)


def test_synthetic_pairs_weigh_lambda_and_soft_labels_reach_the_loss(head_pairs, monkeypatch):
    import latentrm.head.fitter as R  # where the fitter looks the loss up

    train, val, _, _ = head_pairs
    aug = AugmentedPairs.originals(*train, pool_rows=802)
    aug.pool[800:] = aug.pool[:2]
    aug.add_pairs(np.array([800]), np.array([801]), np.array([0]))
    seen = {}
    orig = R.bradley_terry_loss

    def spy(rc, rr, target=None, margin=None, weight=None):
        seen.setdefault("weight", weight)
        return orig(rc, rr, target, margin, weight)

    monkeypatch.setattr(R, "bradley_terry_loss", spy)
    cfg = dataclasses.replace(FAST, epochs=1, batch_size=1000, synthetic_weight=0.25)
    RewardHeadFitter(cfg, seed=0).fit(aug, val)
    w = seen["weight"].numpy()
    assert sorted(np.unique(w).tolist()) == [0.25, 1.0] and (w == 0.25).sum() == 1


def test_fixed_epochs_train_exactly_that_many(head_pairs):
    train, val, _, _ = head_pairs
    cfg = dataclasses.replace(FAST, epochs=7, patience=1, early_stopping=False)
    h = RewardHeadFitter(cfg, seed=0).fit(AugmentedPairs.originals(*train), val).history_
    assert h["epochs_run"] == 7 and h["best_epoch"] == 6 and len(h["val_loss"]) == 7


def test_ensemble_is_the_mean_of_heads_each_missing_one_fold(head_pairs):
    from latentrm.head.reward import EnsembleHead

    train, val, test, _ = head_pairs
    cfg = dataclasses.replace(FAST, ensemble=4)
    fit = RewardHeadFitter(cfg, seed=0).fit(AugmentedPairs.originals(*train), val)
    head = fit.head_
    assert isinstance(head, EnsembleHead) and len(head.members) == 4
    assert len(fit.history_["members"]) == 4
    each = np.stack([m.score(test[0]) for m in head.members])
    np.testing.assert_allclose(head.score(test[0]), each.mean(0), atol=1e-5)
    np.testing.assert_allclose(head.spread(test[0]), each.std(0), atol=1e-5)
    # member k standardises with the 3/4 of the seeds it trained on: the means differ
    means = [m.mean.numpy() for m in head.members]
    assert not np.allclose(means[0], means[1])
    assert accuracy(head, test) > 0.7


# --- small-data heads (issue 21) -----------------------------------------------------------------
def test_newton_solves_the_l2_bradley_terry_problem_by_hand():
    from latentrm.head.fitter import _newton_bt

    one = torch.float64
    ones, zeros = torch.ones(1, dtype=one), torch.zeros(1, dtype=one)
    # One pair, one dimension: min softplus(-w) + l2/2 w^2 has l2 w = sigmoid(-w); at w = ln 3,
    # sigmoid(-ln 3) = 1/4, so l2 = 1 / (4 ln 3).
    w, _ = _newton_bt(torch.tensor([[1.0]], dtype=one), ones, zeros, ones, 1 / (4 * math.log(3)))
    assert w.tolist() == pytest.approx([math.log(3)], rel=1e-9)
    # One pair in 2-D, x = (3, 4) (n < d: solved in the span of x): w = a (0.6, 0.8), z = 5a,
    # the optimum has 5 sigmoid(-5a) = l2 a; for z = ln 3 (a = ln 3 / 5): l2 = 1.25 / a.
    a = math.log(3) / 5
    w, _ = _newton_bt(torch.tensor([[3.0, 4.0]], dtype=one), ones, zeros, ones, 1.25 / a)
    assert w.tolist() == pytest.approx([0.6 * a, 0.8 * a], rel=1e-9)
    # A soft target 1/2 on the same pair: the optimum is w = 0 for any l2.
    w, _ = _newton_bt(torch.tensor([[3.0, 4.0]], dtype=one), ones / 2, zeros, ones, 0.1)
    assert w.abs().max().item() < 1e-12


def test_linear_l2_head_scores_the_newton_solution(head_pairs):
    from latentrm.head.fitter import L2_GRID, _newton_bt

    train, val, test, _ = head_pairs
    cfg = dataclasses.replace(FAST, hidden=(), l2=0.1)
    fit = RewardHeadFitter(cfg, seed=0).fit(AugmentedPairs.originals(*train), val)
    head = fit.head_
    std = head.std.double()
    x = (torch.from_numpy(train[0]).double() - torch.from_numpy(train[1]).double()) / std
    n = len(x)
    w, _ = _newton_bt(
        x,
        torch.ones(n, dtype=x.dtype),
        torch.zeros(n, dtype=x.dtype),
        torch.ones(n, dtype=x.dtype),
        0.1,
    )
    np.testing.assert_allclose(
        head.mlp[0].weight[0].detach().numpy(), w.float().numpy(), rtol=1e-5, atol=1e-7
    )
    assert head.mlp[0].bias.item() == 0.0 and fit.history_["l2"] == 0.1
    assert accuracy(head, test) > 0.7
    # cv: the grid value with the lowest out-of-fold loss (ties: the stronger), and its accuracy
    fit = RewardHeadFitter(dataclasses.replace(cfg, l2="cv"), seed=0).fit(
        AugmentedPairs.originals(*train), val
    )
    losses = fit.history_["l2_cv_loss"]
    assert sorted(float(k) for k in losses) == sorted(L2_GRID)
    assert fit.history_["l2"] == min(L2_GRID, key=lambda lam: (losses[f"{lam:g}"], -lam))
    assert 0.5 < fit.history_["oof_accuracy"] <= 1.0


def test_head_settings_that_do_not_go_together_are_refused(head_pairs):
    train, val, _, _ = head_pairs
    aug = AugmentedPairs.originals(*train)
    bad = [
        ({"l2": 0.1}, "reward.hidden=\\[\\]"),
        ({"cross_fit": 3, "ensemble": 2}, "two ensembles"),
        ({"cross_fit": 1}, "0 \\(off\\) or >= 2"),
    ]
    for changes, match in bad:
        with pytest.raises(ConfigError, match=match):
            RewardHeadFitter(dataclasses.replace(FAST, **changes), seed=0).fit(aug, val)
    with pytest.raises(ConfigError, match="reward.l2: must be a finite number, got often"):
        RewardConfig(l2="often")


def test_cross_fit_members_train_outside_and_stop_on_their_own_fold(head_pairs):
    from latentrm.data.splits import seed_folds
    from latentrm.head.reward import EnsembleHead
    from latentrm.head.train import standardization_stats

    train, _, test, _ = head_pairs
    c, r = train[0][:50], train[1][:50]
    cfg = dataclasses.replace(FAST, cross_fit=5)
    # val is not used: a nonsense validation set changes nothing
    fit = RewardHeadFitter(cfg, seed=3).fit(AugmentedPairs.originals(c, r), None)
    other = RewardHeadFitter(cfg, seed=3).fit(AugmentedPairs.originals(c, r), (r[:5], c[:5]))
    np.testing.assert_array_equal(fit.head_.score(test[0]), other.head_.score(test[0]))
    head = fit.head_
    assert isinstance(head, EnsembleHead) and len(head.members) == 5
    folds = seed_folds(50, 5, 3)
    for k, m in enumerate(head.members):  # member k standardises with the 40 seeds outside k
        mean, _ = standardization_stats(c[folds != k], r[folds != k])
        np.testing.assert_allclose(m.mean.numpy(), mean, rtol=1e-6)
        # and stopped on fold k's 10 pairs: its best validation loss is their BT loss
        hc, hr = m.score(c[folds == k]), m.score(r[folds == k])
        loss = bradley_terry_loss(torch.from_numpy(hc), torch.from_numpy(hr)).item()
        assert fit.history_["members"][k]["best_val"] == pytest.approx(loss, rel=1e-5)
    # out-of-fold accuracy: every seed pair scored by the member that never saw it
    correct = []
    for i in range(50):
        m = head.members[folds[i]]
        correct.append(float(m.score(c[i : i + 1])[0] > m.score(r[i : i + 1])[0]))
    assert fit.history_["oof_accuracy"] == pytest.approx(np.mean(correct))


def test_small_data_replaces_only_a_plain_head_below_the_threshold():
    from latentrm.head.fitter import (
        SMALL_DATA_HEAD,
        effective_reward,
        epoch0_heads,
        ignores_validation,
    )

    cfg = RewardConfig(small_data=300)
    assert effective_reward(cfg, 299) == dataclasses.replace(cfg, **SMALL_DATA_HEAD)
    assert effective_reward(cfg, 300) == cfg  # at the threshold: the plain head
    explicit = dataclasses.replace(cfg, ensemble=5)  # asked for: kept
    assert effective_reward(explicit, 100) == explicit
    assert effective_reward(RewardConfig(small_data=0), 10) == RewardConfig(small_data=0)
    # every fold keeps 2 pairs: 10 pairs -> 5 folds, 9 -> 4, 4 -> 2, 3 -> the plain head
    assert [effective_reward(cfg, n).cross_fit for n in (10, 9, 4, 3)] == [5, 4, 2, 0]
    assert ignores_validation(RewardConfig(cross_fit=5), 10_000)
    assert ignores_validation(RewardConfig(hidden=(), l2="cv"), 10_000)
    assert not ignores_validation(RewardConfig(small_data=0), 10)
    assert epoch0_heads({"best_epoch": 0}) == (1, 1)
    assert epoch0_heads({"members": [{"best_epoch": 0}, {"best_epoch": 3}, {"best_epoch": 0}]}) == (
        2,
        3,
    )
