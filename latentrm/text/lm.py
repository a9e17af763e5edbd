"""Causal / sequence-classification LMs for the text baselines: loading, chat rendering, encoding.

Shared by :mod:`latentrm.text.reward_model` (reward models fine-tuned on text) and
:mod:`latentrm.text.self_rewarding` (the base model writes and judges new responses). Model names
resolve like embedder names (aliases ``smollm2``, ``gemma3-270m``; GGUF files are de-quantised to
float32 by transformers). trl/peft/transformers are imported inside functions, so importing this
module needs only the core dependencies; check ``text_baselines_available()``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import logging
import time
from collections.abc import Sequence
from typing import Any

from latentrm.data.formats import render_plain
from latentrm.data.types import Message
from latentrm.embed.models import load_hf_model, resolve_model
from latentrm.errors import ConfigError

Prompt = Sequence[Message]

log = logging.getLogger(__name__)


def text_baselines_available() -> bool:
    """True when the ``text`` extra (trl, peft, accelerate) is importable."""
    return all(importlib.util.find_spec(m) is not None for m in ("trl", "peft", "accelerate"))


def require_text_extra() -> None:
    if not text_baselines_available():
        raise ConfigError(
            "text baselines need the optional extra: pip install 'latentrm[text]' "
            "(trl, peft, accelerate)"
        )


def load_text_model(base_model: str, gguf_file: str | None, causal: bool) -> tuple[Any, Any]:
    """(float32 model, tokenizer with a pad token); causal=False: a 1-label sequence classifier.

    Model names resolve like embedder names (aliases; an explicit gguf_file wins); loading is
    :func:`latentrm.embed.models.load_hf_model`, on the CPU (the trainer moves it).
    """
    import torch

    folder, alias_gguf = resolve_model(base_model)
    gguf = gguf_file or alias_gguf
    if causal:
        tok, model = load_hf_model(
            folder, gguf, None, False, torch.float32, "cpu", "AutoModelForCausalLM"
        )
    else:
        try:  # silences the expected "score.weight newly initialised" load report
            from trl.trainer.reward_trainer import suppress_seqcls_warning
        except ImportError:  # pragma: no cover - older/newer trl
            suppress_seqcls_warning = contextlib.nullcontext
        with suppress_seqcls_warning():
            tok, model = load_hf_model(
                folder,
                gguf,
                None,
                False,
                torch.float32,
                "cpu",
                "AutoModelForSequenceClassification",
                num_labels=1,
            )
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    if getattr(model, "hf_quantizer", None) is not None and gguf:
        # The GGUF tensors are de-quantised to float32 at load, yet transformers keeps a "gguf
        # quantizer" tag on the model, and Trainer refuses to fine-tune "quantized" models. Every
        # weight is a plain float32 tensor, so the tag is removed (transformers' own remover).
        model.hf_quantizer.remove_quantization_config(model)
        model.config._is_quantized = False
    # Sequence classifiers pool the last token that is not pad_token_id.
    model.config.pad_token_id = tok.pad_token_id
    return model, tok


def use_chat(tok: Any, text_format: str) -> bool:
    if text_format not in ("auto", "chat", "plain"):
        raise ConfigError(f"text_format must be auto | chat | plain, got {text_format!r}")
    if text_format == "chat" and not tok.chat_template:
        raise ConfigError("text_format=chat but the tokenizer has no chat template")
    return text_format == "chat" or (text_format == "auto" and bool(tok.chat_template))


def token_ids(tok: Any, prompt: Prompt, response: str | None, chat: bool) -> list[int]:
    """Token ids of the rendered (prompt, response); None: ends with the generation prompt."""
    if chat:
        msgs = list(prompt) + (
            [] if response is None else [{"role": "assistant", "content": response}]
        )
        text = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=response is None)
        return tok(text, add_special_tokens=False)["input_ids"]
    return tok(render_plain(prompt, response))["input_ids"]


def prompt_ids(tok: Any, prompt: Prompt, chat: bool, max_tokens: int) -> list[int]:
    """Generation prompt ids, at most `max_tokens`: drop the earliest turns, then cut from the left.

    The context a policy generates from (self-rewarding synthesis, rejection sampling) and, for
    rejection-sampling fine-tuning, the context it is then trained on.
    """
    msgs = list(prompt)
    ids = token_ids(tok, msgs, None, chat)
    while len(ids) > max_tokens and len(msgs) > 1:
        msgs = msgs[1:]
        ids = token_ids(tok, msgs, None, chat)
    return ids[-max_tokens:]


def encode_texts(
    tok: Any, prompts: Sequence[Prompt], responses: Sequence[str], max_length: int, chat: bool
) -> list[list[int]]:
    """One id list per (prompt, response), at most max_length long.

    Too long: drop tokens from the left (prompt first); when the response part alone exceeds the
    budget, keep only its first max_length tokens (the prompt is then gone entirely).
    """
    if len(prompts) != len(responses):
        raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
    out = []
    for p, r in zip(prompts, responses, strict=True):
        ids = token_ids(tok, p, r, chat)
        if len(ids) > max_length:
            n_prompt = len(token_ids(tok, p, None, chat))
            ids = (
                ids[n_prompt : n_prompt + max_length]
                if len(ids) - n_prompt >= max_length
                else ids[-max_length:]
            )
        out.append(ids)
    return out


def pad_batch(
    seqs: Sequence[Sequence[int]], pad_id: int, left: bool, device: Any
) -> tuple[Any, Any]:
    """(input_ids, attention_mask), each (B, T) int64."""
    import torch

    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        sl = slice(width - len(s), width) if left else slice(0, len(s))
        ids[i, sl] = torch.tensor(s, dtype=torch.long)
        mask[i, sl] = 1
    return ids.to(device), mask.to(device)


@dataclasses.dataclass
class TrainerRun:
    """What a finished TRL trainer run leaves: the trained model, its log and its size."""

    model: Any
    history: list[dict[str, Any]]
    seconds: float
    n_params: int
    n_trainable: int


def run_trainer(trainer: Any, what: str, n_examples: int, mode: str, lr: float) -> TrainerRun:
    """Train a TRL trainer quietly (its print()ed log dicts go to the returned history instead)
    and log what it trains: `what` (e.g. "rs-sft"), `n_examples` of them, `mode` (lora | full)."""
    from transformers import PrinterCallback

    trainer.remove_callback(PrinterCallback)  # without tqdm the Trainer print()s every log dict
    params = list(trainer.model.parameters())
    n_params = sum(p.numel() for p in params)
    n_trainable = sum(p.numel() for p in params if p.requires_grad)
    log.info(
        "%s (%s): %d examples, %d/%d trainable params, lr %g",
        what,
        mode,
        n_examples,
        n_trainable,
        n_params,
        lr,
    )
    t0 = time.perf_counter()
    trainer.train()
    return TrainerRun(
        trainer.model,
        list(trainer.state.log_history),
        time.perf_counter() - t0,
        n_params,
        n_trainable,
    )
