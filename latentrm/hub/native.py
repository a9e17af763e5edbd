"""The native export: a plain transformers ``<Arch>ForSequenceClassification`` (no custom code;
OpenRLHF loads only this) for a LINEAR head (or an ensemble of linear heads) on a decoder read at
its last layer with last-token pooling and no normalisation.

The head's standardisation is folded into ``score.weight``; the constant offset cannot be stored
(``score`` has no bias): logits are latentrm's scores minus ``config.latentrm_offset``, so
preferences are unchanged and absolute values shift. The pieces both exports share (tokenizer,
weights, staging) are :mod:`latentrm.hub.export`'s.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from latentrm import __version__
from latentrm.errors import ConfigError
from latentrm.head.reward import EnsembleHead, RewardHead
from latentrm.hub.export import (
    Staging,
    base_config,
    check_dense,
    export_pad_token,
    install_staged,
    resolved_dtype,
    save_tokenizer,
    save_weights,
    write_config,
)
from latentrm.runtime import TORCH_DTYPES

log = logging.getLogger(__name__)

# model_type -> sequence-classification class whose `score` is a bias-free Linear (d -> 1).
NATIVE_ARCHS = {
    "llama": "LlamaForSequenceClassification",
    "mistral": "MistralForSequenceClassification",
    "qwen2": "Qwen2ForSequenceClassification",
    "qwen3": "Qwen3ForSequenceClassification",
    "gemma": "GemmaForSequenceClassification",
    "gemma2": "Gemma2ForSequenceClassification",
    "gemma3_text": "Gemma3TextForSequenceClassification",
}


def native_reason(rm: Any) -> str | None:
    """None when `rm` can be exported as a plain *ForSequenceClassification, else why not."""
    emb, members = rm.embedder, list(rm.head.members)
    mtype = getattr(emb.model.config, "model_type", "")
    if any(m.hidden for m in members):
        return "the head is an MLP; only a linear head folds into `score`"
    if emb.pooling != "last":
        return f"pooling={emb.pooling!r}; sequence-classification models pool the last token"
    if list(emb.layers) != [-1] or emb.cfg.layer != -1:
        return f"layer={emb.cfg.layer!r}; `score` reads the last layer only"
    if getattr(emb, "normalize", False):
        return "the embeddings are L2-normalised; `score` reads the raw hidden state"
    if mtype not in NATIVE_ARCHS:
        return f"model_type={mtype!r} has no known *ForSequenceClassification with a `score` head"
    return None


def fold_linear_head(head: RewardHead | EnsembleHead) -> tuple[torch.Tensor, float]:
    """(w (1, d), c) with head(e) == e @ w.T + c: standardisation (and ensemble mean) folded in.

    One linear head: r = w0 . (e - mu) / sigma + b = (w0 / sigma) . e + (b - (w0 / sigma) . mu);
    an ensemble's mean of linear heads is the mean of their folded (w, c).
    """
    ws, cs = [], []
    for m in head.members:
        lin = m.mlp[-1]
        w = lin.weight.detach().double() / m.std.double()  # (1, d)
        ws.append(w)
        cs.append(float(lin.bias.detach().double() - (w * m.mean.double()).sum()))
    return torch.stack(ws).mean(0), float(sum(cs) / len(cs))


def export_native(
    rm: Any,
    out_dir: str | Path,
    *,
    dtype: str | None = None,
    max_shard_size: str = "5GB",
    record: dict[str, Any] | None = None,
) -> list[str]:
    """Write a plain <Arch>ForSequenceClassification export (see the module docstring).

    ``config.json`` holds the dropped constant as ``latentrm_offset`` (latentrm's score =
    logit + offset) and as OpenRLHF's ``mean`` = -offset, ``std`` = 1. ConfigError when the
    model does not allow it (:func:`native_reason`). Returns the names of the files written.
    """
    why = native_reason(rm)
    if why is not None:
        raise ConfigError(f"cannot export natively: {why}; use the custom-code export")
    emb = rm.embedder
    dt = resolved_dtype(emb, dtype)
    check_dense(emb)
    w, c = fold_linear_head(rm.head)
    cfg = base_config(emb, dt)
    pad = export_pad_token(emb)
    cfg.update(
        architectures=[NATIVE_ARCHS[cfg["model_type"]]],
        num_labels=1,
        id2label={0: "reward"},
        label2id={"reward": 0},
        problem_type="regression",
        pad_token_id=emb.tokenizer.convert_tokens_to_ids(pad) if pad is not None else None,
        latentrm_offset=c,
        value_head_prefix="score",
        mean=-c,
        std=1.0,  # OpenRLHF: (logit - mean) / std
        latentrm={
            "format": "latentrm.hf-native/1",
            "latentrm_version": __version__,
            "embedder": record or {},
            "offset": c,
            "max_length": emb.max_length,
            "max_response_chars": rm.max_response_chars,
        },
    )
    log.warning(
        "native export: latentrm scores inputs longer than %d tokens after cutting prompt tokens "
        "from the left; a plain %s runs no code to do that, and TRL or RewardBench pass whole "
        "texts: cut them with the model card's latentrm_cut, or use the custom-code export",
        emb.max_length,
        cfg["architectures"][0],
    )
    out = Path(out_dir)
    with Staging(out) as stage:
        write_config(cfg, stage)
        state = {f"model.{k}": v.to(TORCH_DTYPES[dt]) for k, v in emb.model.state_dict().items()}
        state["score.weight"] = w.to(TORCH_DTYPES[dt])
        save_weights(state, stage, max_shard_size)
        # No custom code cuts over-long inputs here: `truncation=True` cuts prompt tokens from
        # the left at latentrm's max_length (close to latentrm; NATIVE_CUT in the card is exact).
        save_tokenizer(emb, stage, pad, emb.max_length)
        names = install_staged(stage, out)
    (out / "modeling_latentrm.py").unlink(missing_ok=True)  # a native folder runs no custom code
    return names
