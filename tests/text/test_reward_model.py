"""latentrm.text.reward_model: full and LoRA fine-tunes of a tiny random Llama (`tiny_lm`,
offline, seconds) and the experiment's entry point."""

from __future__ import annotations

import numpy as np
import pytest

from latentrm.config import SelfRewardConfig, TextRewardConfig
from latentrm.errors import ConfigError
from latentrm.testing import planted_pairs, user_prompt, word_tokenizer
from latentrm.text.lm import text_baselines_available
from latentrm.text.reward_model import TextRewardModel

pytestmark = pytest.mark.skipif(not text_baselines_available(), reason="needs latentrm[text]")


def trainable(model) -> dict[str, int]:
    return {n: p.numel() for n, p in model.named_parameters() if p.requires_grad}


def test_full_fit_trains_every_weight_and_scores_deterministically(tiny_lm):
    ds = planted_pairs(16, seed=1)
    cfg = TextRewardConfig(epochs=1, batch_size=8, max_length=32, device="cpu")
    rm = TextRewardModel(tiny_lm, "full", cfg, seed=0).fit(ds)
    assert rm.n_train_pairs_ == 16
    # 16 pairs / batch 8 = 2 optimiser steps, each logged with a finite BT loss.
    losses = [h["loss"] for h in rm.history_ if "loss" in h]
    assert len(losses) == 2 and np.isfinite(losses).all()
    assert rm.n_trainable_ == rm.n_params_  # full fine-tune: nothing frozen
    # Llama with untied embeddings minus lm_head (V*16) plus the score head (16*1, no bias).
    v = len(word_tokenizer())
    layer = 4 * 16 * 16 - 2 * 16 * 8 + 3 * 16 * 32 + 2 * 16  # q,o 16x16; k,v 16x8; mlp; 2 norms
    assert rm.n_params_ == v * 16 + 2 * layer + 16 + 16
    s1 = rm.score(ds.prompts, ds.chosen)
    s2 = rm.score(ds.prompts, ds.chosen)
    assert s1.shape == (16,) and s1.dtype == np.float32
    np.testing.assert_array_equal(s1, s2)
    # Batching/padding does not change a score: one at a time equals the padded batch.
    one_by_one = zip(ds.prompts[:4], ds.chosen[:4], strict=True)
    single = np.array([rm.score([p], [r])[0] for p, r in one_by_one])
    np.testing.assert_allclose(single, s1[:4], rtol=1e-5, atol=1e-6)


def test_lora_trains_only_adapters_and_score_head(tiny_lm):
    ds = planted_pairs(16, seed=2)
    cfg = TextRewardConfig(epochs=1, batch_size=8, max_length=32, lora_r=4, device="cpu")
    rm = TextRewardModel(tiny_lm, "lora", cfg, seed=0).fit(ds)
    names = trainable(rm.model_)
    assert all("lora_" in n or "score" in n for n in names)
    # Per layer: q_proj A (4x16) + B (16x4), v_proj A (4x16) + B (8x4); score head copy 16x1.
    per_layer = 4 * 16 + 16 * 4 + 4 * 16 + 8 * 4
    assert rm.n_trainable_ == sum(names.values()) == 2 * per_layer + 16
    losses = [h["loss"] for h in rm.history_ if "loss" in h]
    assert len(losses) == 2 and np.isfinite(losses).all()
    assert rm.score(ds.prompts[:3], ds.rejected[:3]).shape == (3,)


def test_planted_preference_is_learned(tiny_lm):
    train, test = planted_pairs(48, seed=3, source="tr"), planted_pairs(32, seed=4, source="te")
    cfg = TextRewardConfig(epochs=6, batch_size=8, max_length=32, lr=1e-2, device="cpu")
    rm = TextRewardModel(tiny_lm, "full", cfg, seed=0).fit(train, val=test)
    losses = [h["loss"] for h in rm.history_ if "loss" in h]
    assert np.mean(losses[-6:]) < 0.5 * np.log(2) < np.mean(losses[:6])
    rc, rr = rm.score(test.prompts, test.chosen), rm.score(test.prompts, test.rejected)
    assert np.mean(rc > rr) >= 0.9  # chance is 0.5


def test_bad_mode_and_unfitted_score():
    with pytest.raises(ConfigError):
        TextRewardModel("x", "qlora")
    with pytest.raises(RuntimeError):
        TextRewardModel("x", "lora").score([user_prompt("w1")], ["w2"])


def test_experiment_entry_point_self_rewarding_adds_ratio_pairs(tiny_lm):
    from latentrm.config import load_config
    from latentrm.text.reward_model import text_reward_model

    cfg = load_config(None, [f"embed.model={tiny_lm}", "embed.device=cpu", "ratios=[2]"])
    train = planted_pairs(4, seed=7)
    synth = SelfRewardConfig(max_new_tokens=4, device="cpu")
    text = TextRewardConfig(max_length=32, device="cpu")
    rm = text_reward_model(
        cfg, "self-rewarding", train, None, 0, cfg.ratios[0], text_cfg=text, synth_cfg=synth
    )
    assert rm.ratio_ == 2 and rm.mode == "lora" and rm.n_train_pairs_ == 4 + 2 * 4
    assert len(rm.synthesis_.pairs) == 8
    with pytest.raises(ConfigError):
        text_reward_model(cfg, "dpo", train, None, 0)


def test_experiment_entry_point_takes_text_and_self_rewarding_sections_from_the_config(tiny_lm):
    from latentrm.config import load_config
    from latentrm.text.reward_model import text_reward_model

    cfg = load_config(
        None,
        [
            f"embed.model={tiny_lm}",
            "embed.device=cpu",
            "ratios=[1]",
            "text.max_length=16",
            "text.lora_r=2",
            "text.max_train_pairs=3",
            "self_rewarding.max_new_tokens=3",
            "self_rewarding.train_mode=full",
        ],
    )
    rm = text_reward_model(cfg, "lora", planted_pairs(5, seed=3), None, 0)
    assert rm.cfg.max_length == 16 and rm.cfg.lora_r == 2 and rm.n_train_pairs_ == 3
    assert rm.cfg.device == "cpu"  # "auto" in the text section follows embed.device
    sr = text_reward_model(cfg, "self-rewarding", planted_pairs(4, seed=1), None, 0, cfg.ratios[0])
    assert sr.mode == "full" and sr.ratio_ == 1 and sr.n_train_pairs_ == 3  # max_train_pairs
