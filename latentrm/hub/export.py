"""A latentrm reward model as a transformers sequence-classification model.

Two targets, both loadable with ``AutoModelForSequenceClassification.from_pretrained(path)`` and
returning one score per sequence (``logits`` (B, 1)), so RewardBench, TRL (``reward_funcs=path``)
and pipelines use them as they use any reward model:

* :func:`export_transformers`: custom code (``modeling_latentrm.py`` + ``auto_map``; load with
  ``trust_remote_code=True``): any head (MLP, ensemble), pooling, layer(s), normalisation. The
  weights are the embedder's (GGUF: dequantised) under ``model.`` and the head's under ``head.``.
  Its inputs are canonicalised to latentrm's own token ids (framing, left truncation of the
  prompt), so scores equal latentrm's whatever the caller's tokenizer settings.
* :func:`latentrm.hub.native.export_native`: a plain ``<Arch>ForSequenceClassification`` (no
  custom code) for a linear head on a decoder's last layer; the pieces both exports share
  (tokenizer, weights, staging) are here.

Both write the tokenizer with a chat template that renders texts exactly as latentrm does (for
plain-text embedders such as MiniLM: an HH-style template reproducing
:func:`latentrm.data.formats.render_plain`). Files are written into a staging folder inside the
target and moved into place one by one (each appears complete).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from latentrm import __version__
from latentrm.errors import ConfigError
from latentrm.io import current_umask
from latentrm.runtime import TORCH_DTYPES

if TYPE_CHECKING:
    from latentrm.hub.modeling_latentrm import LatentRMConfig

log = logging.getLogger(__name__)

# Imported only to export: it pulls in transformers' modelling stack (a second of start-up).
MODELING_FILE = Path(__file__).with_name("modeling_latentrm.py")
# Renders messages exactly like latentrm.data.formats.render_plain: leading system messages as
# plain text (joined by a blank line), every other turn as "\n\n<Name>: <content>" (user -> Human,
# assistant -> Assistant, other roles capitalised), "\n\nAssistant:" as the generation prompt.
HH_CHAT_TEMPLATE = (
    "{%- set ns = namespace(turns=false) -%}"
    "{%- for m in messages -%}"
    "{%- if m['role'] == 'system' and not ns.turns -%}"
    "{{- ('\n\n' if not loop.first else '') + m['content'] -}}"
    "{%- else -%}"
    "{%- set ns.turns = true -%}"
    "{%- if m['role'] == 'user' -%}{%- set name = 'Human' -%}"
    "{%- elif m['role'] == 'assistant' -%}{%- set name = 'Assistant' -%}"
    "{%- else -%}{%- set name = m['role'] | capitalize -%}{%- endif -%}"
    "{{- '\n\n' + name + ': ' + m['content'] -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '\n\nAssistant:' -}}{%- endif -%}"
)


# --- what latentrm's tokenisation looks like ----------------------------------------------------
def _find(hay: Sequence[int], needle: Sequence[int]) -> int:
    for i in range(len(hay) - len(needle) + 1):
        if list(hay[i : i + len(needle)]) == list(needle):
            return i
    return -1


def _count_repeats(ids: Sequence[int], frame: Sequence[int], front: bool) -> int:
    k, n = len(frame), 0
    if not k:
        return 0
    while len(ids) >= k * (n + 1):
        part = ids[n * k : (n + 1) * k] if front else ids[len(ids) - (n + 1) * k : len(ids) - n * k]
        if list(part) != list(frame):
            break
        n += 1
    return n


def calibrate(emb: Any) -> dict[str, Any]:
    """Token framing, special tokens and response marker of a loaded Embedder (LatentRMConfig)."""
    tok = emb.tokenizer
    probe = "probe text"
    with_sp = tok(probe, add_special_tokens=True)["input_ids"]
    without = tok(probe, add_special_tokens=False)["input_ids"]
    at = _find(with_sp, without)
    if at < 0:
        raise ConfigError(f"{emb.cfg.model}: cannot locate the tokenizer's special tokens")
    prefix, suffix = list(with_sp[:at]), list(with_sp[at + len(without) :])
    prompt = ({"role": "user", "content": "Hello there"},)
    ours = emb.tokenize([prompt], ["General Kenobi"])[0]
    if emb.text_format == "chat":
        gen = tok.apply_chat_template(list(prompt), tokenize=False, add_generation_prompt=True)
        nogen = tok.apply_chat_template(list(prompt), tokenize=False)
        marker = gen[len(nogen) :] if gen.startswith(nogen) and len(gen) > len(nogen) else ""
    else:
        marker = "\n\nAssistant:"
    marker_ids = tok(marker, add_special_tokens=False)["input_ids"] if marker else []
    if marker_ids and _find(ours, marker_ids) < 0:
        marker_ids = []  # tokenised differently in context: cut prompt-first without a marker
    return {
        "prefix_ids": prefix,
        "n_prefix": _count_repeats(ours, prefix, front=True),
        "suffix_ids": suffix,
        "n_suffix": _count_repeats(ours, suffix, front=False),
        "special_token_ids": sorted(int(i) for i in (tok.all_special_ids or [])),
        "response_marker_ids": list(marker_ids),
    }


def _self_check(emb: Any, cfg: LatentRMConfig) -> None:
    """The export's canonicalisation must give latentrm's token ids for a text tokenised either
    way (add_special_tokens True/False), also when the text is cut; the export fails otherwise."""
    prompt = [
        {"role": "user", "content": "How do I boil an egg?"},
        {"role": "assistant", "content": "In water."},
        {"role": "user", "content": "How long?"},
    ]
    resp = "About eight minutes for a firm yolk."
    from latentrm.hub.modeling_latentrm import canonical_ids

    text, _ = emb.render(prompt, resp)
    want = emb.tokenize([prompt], [resp])[0]
    for special in (True, False):
        got = canonical_ids(cfg, emb.tokenizer(text, add_special_tokens=special)["input_ids"])
        if got != want:
            raise ConfigError(
                f"transformers export self-check failed for {emb.cfg.model} "
                f"(add_special_tokens={special}): {got[:8]}... != {want[:8]}...; use latentrm to "
                "score with this embedder"
            )


# --- pieces of both exports --------------------------------------------------------------------
def export_pad_token(emb: Any) -> str | None:
    """The pad token the exported tokenizer uses.

    Tools that find the last token by pad id (GenericForSequenceClassification: the rightmost
    token != pad_token_id; TRL's get_reward: attention = ids != pad_token_id) fail when pad == eos
    and eos / end-of-turn tokens occur in the text (SmolLM2: pad = eos = <|im_end|>, which closes
    every chat turn). Decoders therefore pad with a token latentrm's rendering never produces.
    """
    tok = emb.tokenizer
    pad = tok.pad_token
    if not emb.is_decoder or (
        tok.pad_token_id is not None and tok.pad_token_id != tok.eos_token_id
    ):
        return pad
    vocab = tok.get_vocab()
    for t in ("<|endoftext|>", "<pad>", "<|finetune_right_pad_id|>", tok.unk_token):
        if t and t in vocab and t != tok.eos_token:
            return t
    return pad


def check_dense(emb: Any) -> None:
    """The export writes dense weights: a model whose weights stay packed (GGUF kernels) has
    none to write."""
    bad = [k for k, v in emb.model.state_dict().items() if not torch.is_floating_point(v)]
    if bad:
        raise ConfigError(
            f"{emb.cfg.model}: weights are not dense floats ({bad[:3]}...); load it dequantised "
            "to export it"
        )


def v4_compat(cfg: dict[str, Any]) -> dict[str, Any]:
    """Also write the pre-v5 spellings, so transformers 4.x (RewardBench pins 4.51 / 4.57) reads
    the same model: v5 keeps RoPE settings only in `rope_parameters`, and 4.x would silently use
    its default rope_theta (10000; SmolLM2 uses 100000)."""
    rp = cfg.get("rope_parameters")
    if isinstance(rp, dict) and "rope_theta" in rp:
        cfg.setdefault("rope_theta", rp["rope_theta"])
        if rp.get("rope_type", "default") != "default":
            cfg.setdefault("rope_scaling", {k: v for k, v in rp.items() if k != "rope_theta"})
    if "dtype" in cfg:
        cfg.setdefault("torch_dtype", cfg["dtype"])
    return cfg


def base_config(emb: Any, dtype: str) -> dict[str, Any]:
    cfg = emb.model.config.to_dict()
    # A GGUF-loaded config keeps quantization_config: transformers would then treat the dense
    # safetensors of the export as a packed GGUF checkpoint.
    for k in ("auto_map", "_name_or_path", "transformers_version", "quantization_config"):
        cfg.pop(k, None)
    cfg["dtype"] = dtype
    return v4_compat(cfg)


# transformers' "no limit" (tokenization_utils_base.VERY_LARGE_INTEGER): truncation=True without
# max_length then cuts nothing, and no "(634 > 512) ... indexing errors" warning is logged.
NO_LIMIT = int(1e30)


def save_tokenizer(emb: Any, out: Path, pad_token: str | None, model_max_length: int) -> None:
    """The embedder's tokenizer with the export's chat template and pad token, truncating from
    the LEFT (prompt tokens go first, as in latentrm) at `model_max_length` tokens."""
    tok = emb.tokenizer
    old_template, old_pad = getattr(tok, "chat_template", None), tok.pad_token
    try:
        if emb.text_format == "plain":
            tok.chat_template = HH_CHAT_TEMPLATE
        if pad_token is not None:
            tok.pad_token = pad_token
        tok.save_pretrained(str(out))
    finally:
        tok.chat_template = old_template
        tok.pad_token = old_pad
    tc = out / "tokenizer_config.json"
    if tc.exists():
        d = json.loads(tc.read_text(encoding="utf-8"))
        # transformers 5 echoes load-time arguments into the file; they are not tokenizer settings
        for k in (
            "is_local",
            "local_files_only",
            "gguf_file",
            "revision",
            "trust_remote_code",
            "_commit_hash",
        ):
            d.pop(k, None)
        # PreTrainedTokenizerFast in 4.x returns token_type_ids, which
        # LlamaForSequenceClassification.forward rejects (RewardBench passes **inputs)
        d.setdefault("model_input_names", list(tok.model_input_names))
        d["truncation_side"] = "left"
        d["model_max_length"] = model_max_length
        if d.get("tokenizer_class") == "TokenizersBackend":  # a transformers-5-only name
            d["tokenizer_class"] = "PreTrainedTokenizerFast"
        tmpl = out / "chat_template.jinja"
        if tmpl.exists() and "chat_template" not in d:
            d["chat_template"] = tmpl.read_text(encoding="utf-8")  # < 4.47 reads it only here
        tc.write_text(json.dumps(d, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def save_weights(state: dict[str, torch.Tensor], out: Path, max_shard_size: str) -> None:
    from huggingface_hub import save_torch_state_dict

    state = {k: v.detach().contiguous().cpu() for k, v in state.items()}
    save_torch_state_dict(state, str(out), max_shard_size=max_shard_size, metadata={"format": "pt"})


def write_config(doc: dict[str, Any], out: Path) -> None:
    (out / "config.json").write_text(
        json.dumps(doc, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8"
    )


def install_staged(stage: Path, out: Path) -> list[str]:
    """Move every file of `stage` into `out` (one os.replace each), dropping weight files of an
    earlier export that this one does not have (stale shards would shadow the new weights)."""
    names = sorted(p.name for p in stage.iterdir() if p.is_file())
    for old in out.glob("model*.safetensors*"):
        if old.name not in names:
            old.unlink()
    mode = 0o666 & ~current_umask()  # huggingface_hub writes weights 0600 (a private temp file)
    for name in names:
        os.chmod(stage / name, mode)
        os.replace(stage / name, out / name)
    return names


class Staging:
    """A staging folder inside `out` (same file system: moves are atomic), removed afterwards."""

    def __init__(self, out: Path) -> None:
        out.mkdir(parents=True, exist_ok=True)
        self.path = Path(tempfile.mkdtemp(prefix=".export-", dir=out))

    def __enter__(self) -> Path:
        return self.path

    def __exit__(self, *exc: object) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def resolved_dtype(emb: Any, dtype: str | None) -> str:
    dt = dtype or emb.dtype
    if dt not in TORCH_DTYPES:
        raise ConfigError(f"export dtype must be one of {', '.join(TORCH_DTYPES)}, got {dt!r}")
    return dt


# --- custom-code export ------------------------------------------------------------------------
def export_transformers(
    rm: Any,
    out_dir: str | Path,
    *,
    dtype: str | None = None,
    max_shard_size: str = "5GB",
    record: dict[str, Any] | None = None,
) -> list[str]:
    """Write the custom-code transformers export of RewardModel `rm` into `out_dir`.

    `dtype` of the base weights (default: the dtype the embedder computes in, so the export
    scores as latentrm did); the head stays float32. `record` is the embedder's identity, stored
    in ``config.json["latentrm"]``. Returns the names of the files written.
    """
    from latentrm.hub.modeling_latentrm import LatentRMConfig

    emb, head = rm.embedder, rm.head
    dt = resolved_dtype(emb, dtype)
    check_dense(emb)
    pad = export_pad_token(emb)
    cfg = LatentRMConfig(
        base_config=base_config(emb, dt),
        pooling=emb.pooling,
        layer=emb.cfg.layer,
        layers=list(emb.layers),
        normalize=bool(getattr(emb, "normalize", False)),
        head_config=head.config(),
        truncate_length=emb.max_length,
        text_format=emb.text_format,
        latentrm={
            "format": "latentrm.hf/1",
            "latentrm_version": __version__,
            "embedder": record or {},
            "max_response_chars": rm.max_response_chars,
        },
        **calibrate(emb),
    )
    cfg.architectures = ["LatentRMForSequenceClassification"]
    cfg.pad_token_id = emb.tokenizer.convert_tokens_to_ids(pad) if pad is not None else None
    cfg.auto_map = {
        "AutoConfig": "modeling_latentrm.LatentRMConfig",
        "AutoModelForSequenceClassification": "modeling_latentrm.LatentRMForSequenceClassification",
    }
    cfg.dtype = dt
    # The pipeline's default function for one label is a sigmoid; the raw logit is the reward.
    cfg.id2label, cfg.label2id, cfg.problem_type = {0: "reward"}, {"reward": 0}, "regression"
    _self_check(emb, cfg)
    out = Path(out_dir)
    with Staging(out) as stage:
        doc = cfg.to_dict()
        doc.setdefault("torch_dtype", dt)  # transformers 4.x spelling of `dtype`
        write_config(doc, stage)
        shutil.copyfile(MODELING_FILE, stage / "modeling_latentrm.py")
        state = {f"model.{k}": v.to(TORCH_DTYPES[dt]) for k, v in emb.model.state_dict().items()}
        state.update({f"head.{k}": v.float() for k, v in head.state_dict().items()})
        save_weights(state, stage, max_shard_size)
        # The model cuts over-long inputs itself (canonical_ids): the tokenizer must not cut first,
        # so `truncation=True` (RewardBench, pipelines) leaves the text whole.
        save_tokenizer(emb, stage, pad, NO_LIMIT)
        return install_staged(stage, out)
