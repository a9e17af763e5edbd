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
from latentrm.head.reward import (
    RewardHead,
    RewardHeadFitter,
    bradley_terry_loss,
)
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
        math.log(2))
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
    import latentrm.head.reward as R

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
