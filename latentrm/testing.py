"""Synthetic data with a known answer, and tiny offline models, for tests, benchmarks and demos.

Never used by the pipeline. Cheap to import: torch, tokenizers and transformers are imported only
inside the functions that build models.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from latentrm.config import EmbedConfig
from latentrm.data import Message, PreferenceDataset, PreferencePair, Prompt


# --- toy data -------------------------------------------------------------------------------------
def toy_pairs(
    n: int,
    d: int,
    seed: int,
    rank: int = 8,
    signal: float = 1.0,
    noise: float = 0.5,
    chunk: int = 4096,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Synthetic preference pairs with a planted preference direction (tests, benchmarks, demos).

    Each pair shares a prompt "content" vector ``c @ U`` (rank `rank`, per-dimension variance ~1).
    Each response gets a quality ``q ~ N(0, 1)`` and the embedding
    ``content + signal * q * w + noise * eps`` with a unit direction w; chosen is the response with
    the higher quality. The ideal reward ``e @ w`` ranks a pair correctly with probability
    ``1/2 + arctan(signal / noise) / pi`` (0.852 with the defaults).

    Returns (chosen (n, d), rejected (n, d), w (d,)), float32; one seed fixes U, w and the pairs.
    Rows are generated `chunk` at a time in float32, so peak memory is the two outputs.
    """
    rng = np.random.default_rng(seed)
    u = (rng.standard_normal((rank, d)) / math.sqrt(rank)).astype(np.float32)  # (rank, d)
    w = rng.standard_normal(d)
    w = (w / np.linalg.norm(w)).astype(np.float32)
    chosen, rejected = np.empty((n, d), np.float32), np.empty((n, d), np.float32)
    for s0 in range(0, n, chunk):
        m = min(n, s0 + chunk) - s0
        content = rng.standard_normal((m, rank), np.float32) @ u  # (m, d)
        q = np.sort(rng.standard_normal((m, 2), np.float32), axis=1)  # (m, 2): low, high
        for out, quality in ((chosen, q[:, 1:]), (rejected, q[:, :1])):
            eps = rng.standard_normal((m, d), np.float32)
            out[s0 : s0 + m] = content + signal * quality * w + noise * eps
    return chosen, rejected, w


# --- messages and data files ---------------------------------------------------------------------
def user_message(text: str) -> Message:
    return {"role": "user", "content": text}


def assistant_message(text: str) -> Message:
    return {"role": "assistant", "content": text}


def user_prompt(text: str) -> Prompt:
    """A one-turn prompt: the user says `text`."""
    return (user_message(text),)


# One valid HH-RLHF record: two replies to the same one-turn dialogue.
HH_RECORD = {
    "chosen": "\n\nHuman: hi\n\nAssistant: hello",
    "rejected": "\n\nHuman: hi\n\nAssistant: go",
}


def write_jsonl(path: Path, records: list) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), "utf-8")
    return path


# --- tiny embedding models (latentrm.embed) ------------------------------------------------------
# Randomly initialised Llama decoder / BERT encoder with a byte-level BPE tokenizer trained on
# CORPUS: saved to a folder, they load offline in seconds.
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
CORPUS = [
    "the quick brown fox jumps over the lazy dog",
    "how do I bake bread at home? mix flour water salt and yeast then wait",
    "I cannot help with that request, but here is something else you could try",
    "pens paper ink jokes pranks friends arm draw list choose fun examples",
    "Human: Assistant: what are some good books to read this summer",
] * 4


def build_tokenizer(chat_template: str | None = CHAT_TEMPLATE, bert: bool = False, **kw: str):
    """Byte-level BPE (no unknown tokens) wrapped as a fast HF tokenizer; BOS or CLS/SEP framing."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    specials = (
        ["[PAD]", "[CLS]", "[SEP]"] if bert else ["<pad>", "<s>", "<|im_start|>", "<|im_end|>"]
    )
    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=320,
        special_tokens=specials,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tk.train_from_iterator(CORPUS, trainer)
    if bert:
        tk.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]",
            special_tokens=[("[CLS]", tk.token_to_id("[CLS]")), ("[SEP]", tk.token_to_id("[SEP]"))],
        )
        return PreTrainedTokenizerFast(
            tokenizer_object=tk, pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]"
        )
    tk.post_processor = processors.TemplateProcessing(
        single="<s> $A", special_tokens=[("<s>", tk.token_to_id("<s>"))]
    )
    kw = {"pad_token": "<pad>", **kw}
    tok = PreTrainedTokenizerFast(
        tokenizer_object=tk,
        bos_token="<s>",
        eos_token="<|im_end|>",
        additional_special_tokens=["<|im_start|>"],
        **kw,
    )
    if chat_template:
        tok.chat_template = chat_template
    return tok


def save_tiny_llama(folder: Path, tok: Any, seed: int = 0) -> Path:
    """A random 2-layer Llama (hidden 32) with tokenizer `tok`, saved to `folder`."""
    import torch
    from transformers import LlamaConfig, LlamaModel

    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
    )
    LlamaModel(cfg).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def save_tiny_bert(folder: Path, seed: int = 0) -> Path:
    """A random 2-layer BERT (hidden 32, 128 positions) + CLS/SEP tokenizer, saved to `folder`."""
    import torch
    from transformers import BertConfig, BertModel

    tok = build_tokenizer(None, bert=True)
    torch.manual_seed(seed)
    cfg = BertConfig(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=128,
        pad_token_id=tok.pad_token_id,
    )
    BertModel(cfg).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def cfg_for(model: Path | str, **kw: Any) -> EmbedConfig:
    """EmbedConfig for a local test model: CPU, float32 (exact comparisons with a manual forward
    pass), batches of 3, no progress bar; `kw` overrides."""
    base = {
        "model": str(model),
        "show_progress": False,
        "batch_size": 3,
        "device": "cpu",
        "dtype": "float32",
    }
    return EmbedConfig(**{**base, **kw})


def make_pairs(n: int, prompt_words: int = 0) -> list[PreferencePair]:
    """Pairs of varied lengths (so batches pad), sharing each prompt, differing in the reply."""
    words = " ".join(CORPUS).split()
    pairs = []
    for i in range(n):
        prompt = [{"role": "user", "content": " ".join(words[i : i + 3 + 4 * (i % 3)])}]
        if i % 2:
            prompt = [
                {"role": "system", "content": "be kind"},
                *prompt,
                {"role": "assistant", "content": "sure"},
                {"role": "user", "content": words[i]},
            ]
        if prompt_words:
            filler = " ".join(words[j % len(words)] for j in range(prompt_words))
            prompt = [{"role": "user", "content": filler}]
        chosen = " ".join(words[i + 1 : i + 2 + 2 * (i % 4)])
        rejected = " ".join(words[i + 7 : i + 9 + i % 5])
        pairs.append(PreferencePair(f"p{i}", tuple(prompt), chosen, rejected))
    return pairs


# --- tiny causal LM data (latentrm.text) ---------------------------------------------------------
_WORD_SPECIAL = ["<pad>", "<unk>", "<s>", "</s>", "<user>", "<assistant>", "<system>"]
_WORDS = ["A", "B", "good", "bad", "Human:", "Assistant:", "..."] + [f"w{i}" for i in range(40)]
_WORD_CHAT = (
    "{% for m in messages %}<{{ m['role'] }}> {{ m['content'] }} </s> {% endfor %}"
    "{% if add_generation_prompt %}<assistant> {% endif %}"
)


def word_tokenizer(chat: bool = True):
    """Word-level tokenizer over w0..w39, good/bad, A/B and role tags; a chat template if `chat`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(_WORD_SPECIAL + _WORDS)}
    raw = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    raw.decoder = decoders.WordPiece()  # joins word tokens with spaces
    tok = PreTrainedTokenizerFast(
        tokenizer_object=raw,
        pad_token="<pad>",
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="</s>",
    )
    if chat:
        tok.chat_template = _WORD_CHAT
    return tok


def planted_pairs(n: int, seed: int, source: str = "planted") -> PreferenceDataset:
    """Chosen responses end in 'good', rejected in 'bad'; prompts and fillers random words."""
    rng = np.random.default_rng(seed)
    pairs = []
    for i in range(n):
        words = lambda k: " ".join(f"w{j}" for j in rng.integers(0, 40, k))  # noqa: E731
        prompt = user_prompt(words(3))
        filler = words(2)
        pairs.append(PreferencePair(f"{source}-{i}", prompt, f"{filler} good", f"{filler} bad"))
    return PreferenceDataset(pairs, source)


# --- small run configs (latentrm.recipes) --------------------------------------------------------
def small_overrides(path: Path, out: Path, *extra: str) -> list[str]:
    """key=value overrides for a run on `path` that takes seconds: 80 seed + 40 test pairs,
    ratio 2, tiny VAE and the plain head (not the small-data one), artifacts under `out`; `extra`
    overrides come last."""
    return [
        f"data.path={path}",
        "data.n_seed=80",
        "data.n_test=40",
        "data.val_fraction=0.2",
        f"out_dir={out}",
        f"cache_dir={out}/cache",
        "ratios=[2]",
        "vae.epochs=20",
        "vae.hidden=[16]",
        "vae.latent_dim=4",
        "vae.batch_size=16",
        "reward.hidden=[32]",
        "reward.epochs=25",
        "reward.batch_size=16",
        "reward.lr=1e-3",
        "reward.dropout=0.1",
        "eval.n_bootstrap=200",
        "reward.small_data=0",
        "threads=1",
        *extra,
    ]
