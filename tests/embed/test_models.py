"""Model resolution: decoder detection, the offline aliases, the model-file hash memo."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from latentrm.embed.embedder import Embedder
from latentrm.embed.models import (
    SMOLLM2_GGUF,
    _HashMemo,
    is_decoder_config,
    load_hf_model,
    not_dense_weights,
    resolve_model,
)
from latentrm.errors import ConfigError
from latentrm.testing import cfg_for


def test_is_decoder_config():
    from transformers import BertConfig, LlamaConfig, T5Config

    assert is_decoder_config(LlamaConfig())
    assert not is_decoder_config(BertConfig())
    assert is_decoder_config(BertConfig(is_decoder=True))
    with pytest.raises(ConfigError, match="encoder-decoder"):
        is_decoder_config(T5Config())


def test_resolve_model_aliases():
    folder, gguf = resolve_model("smollm2")
    assert gguf == SMOLLM2_GGUF and (Path(folder) / gguf).is_file()
    minilm, none = resolve_model("minilm")
    assert none is None and (Path(minilm) / "model.safetensors").is_file()
    assert resolve_model("org/some-model") == ("org/some-model", None)
    assert resolve_model("./local/dir") == ("./local/dir", None)
    with pytest.raises(ConfigError, match="not found"):
        Embedder(cfg_for("./no/such/model"))


# --- GGUF: dense weights in the compute dtype, dequantised once at load ---------------------------
def write_tiny_gguf(path: Path, seed: int = 0) -> np.ndarray:
    """A random 2-layer Llama (hidden 32) as a GGUF with Q8_0 matrices and the test tokenizer.

    Returns the dequantised token embedding (vocab, 32) float32, what a loader must end up with.
    """
    import gguf

    from latentrm.testing import build_tokenizer

    tok = build_tokenizer()
    merges = json.loads(tok.backend_tokenizer.to_str())["model"]["merges"]
    tokens = [t for t, _ in sorted(tok.get_vocab().items(), key=lambda kv: kv[1])]
    specials = set(tok.all_special_ids)
    q8 = gguf.GGMLQuantizationType.Q8_0
    w = gguf.GGUFWriter(str(path), "llama")
    n_embd, n_ff, n_head, n_kv, n_layer = 32, 64, 4, 2, 2
    w.add_context_length(4096)
    w.add_embedding_length(n_embd)
    w.add_block_count(n_layer)
    w.add_feed_forward_length(n_ff)
    w.add_head_count(n_head)
    w.add_head_count_kv(n_kv)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_rope_freq_base(10000.0)
    w.add_tokenizer_model("gpt2")
    w.add_token_list(tokens)
    w.add_token_types([3 if i in specials else 1 for i in range(len(tokens))])
    w.add_token_merges([" ".join(m) if isinstance(m, list) else m for m in merges])
    w.add_bos_token_id(tok.bos_token_id)
    w.add_eos_token_id(tok.eos_token_id)
    w.add_pad_token_id(tok.pad_token_id)
    w.add_chat_template(tok.chat_template)
    rng = np.random.default_rng(seed)
    embd = None
    hd = n_embd // n_head
    shapes = {"token_embd.weight": (len(tokens), n_embd), "output_norm.weight": (n_embd,)}
    for b in range(n_layer):
        shapes |= {
            f"blk.{b}.attn_norm.weight": (n_embd,),
            f"blk.{b}.ffn_norm.weight": (n_embd,),
            f"blk.{b}.attn_q.weight": (n_embd, n_embd),
            f"blk.{b}.attn_k.weight": (n_kv * hd, n_embd),
            f"blk.{b}.attn_v.weight": (n_kv * hd, n_embd),
            f"blk.{b}.attn_output.weight": (n_embd, n_embd),
            f"blk.{b}.ffn_gate.weight": (n_ff, n_embd),
            f"blk.{b}.ffn_up.weight": (n_ff, n_embd),
            f"blk.{b}.ffn_down.weight": (n_embd, n_ff),
        }
    for name, shape in shapes.items():
        a = (rng.standard_normal(shape) * 0.05).astype(np.float32)
        if len(shape) == 1:
            w.add_tensor(name, 1.0 + a)
            continue
        q = gguf.quants.quantize(a, q8)
        w.add_tensor(name, q, raw_dtype=q8)
        if name == "token_embd.weight":
            embd = gguf.quants.dequantize(q, q8)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    assert embd is not None
    return embd


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    folder = tmp_path_factory.mktemp("gguf")
    return folder, write_tiny_gguf(folder / "tiny.gguf")


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_gguf_loads_dense_in_the_compute_dtype_without_the_cast_warning(tiny_gguf, dtype):
    from transformers.utils import logging as hf_logging

    folder, embd = tiny_gguf
    records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record.getMessage())

    hf_log = hf_logging.get_logger("transformers")
    handler = Keep(logging.WARNING)
    hf_log.addHandler(handler)
    try:
        _, model = load_hf_model(str(folder), "tiny.gguf", None, False, dtype, "cpu")
    finally:
        hf_log.removeHandler(handler)
    assert not [m for m in records if "every matmul will cast" in m]
    assert not_dense_weights(model, dtype) == []
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert len(linears) == 2 * 7 and all(type(m) is torch.nn.Linear for m in linears)
    assert all(p.dtype == dtype for p in model.parameters())
    # The Q8_0 blocks were unpacked once: the embedding is the dequantised table in `dtype`.
    got = model.get_input_embeddings().weight
    assert torch.equal(got, torch.from_numpy(embd).to(dtype))


def test_not_dense_weights_names_casting_and_packed_weights():
    lin = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.LayerNorm(4))
    assert not_dense_weights(lin, torch.float32) == []
    lin[1].to(torch.bfloat16)  # a norm kept in another dtype casts at every call
    assert not_dense_weights(lin, torch.float32) == [
        "1.weight (Tensor torch.bfloat16)",
        "1.bias (Tensor torch.bfloat16)",
    ]

    class GgufLinear(torch.nn.Module):  # transformers' packed GGUF blocks
        pass

    lin.append(GgufLinear())
    assert not_dense_weights(lin, torch.bfloat16) == [
        "2 (GgufLinear)",
        "0.weight (Tensor torch.float32)",
        "0.bias (Tensor torch.float32)",
    ]


def test_model_hashes_follow_rewrites_that_keep_size_and_mtime(tmp_path):
    f = tmp_path / "weights.bin"
    f.write_bytes(b"a" * 100)
    memo_path = tmp_path / "file-hashes.json"
    first = _HashMemo(memo_path).sha256(f)
    st = f.stat()
    f.write_bytes(b"b" * 100)  # same size...
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))  # ...and the old mtime
    _HashMemo._mem.clear()
    assert _HashMemo(memo_path).sha256(f) != first  # ctime moved: rehashed
    assert json.loads(memo_path.read_text())[str(f.resolve())]["ctime_ns"] == f.stat().st_ctime_ns
