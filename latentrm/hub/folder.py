"""The latentrm files of a reward model folder: what they hold, reading and writing them.

    head.safetensors, head.json   the head (latentrm.hub.head: save_head / load_head)
    embed_config.json             the EmbedConfig, never with `trust_remote_code`
    latentrm.json                 FORMAT, version, the embedder's identity record, the serving
                                  data rule (max_response_chars), the head config, training info

Reading checks every file and raises one ModelError naming it; the embed config can never turn
on remote code (a file asking for it is ignored with a warning: only the caller decides).
The identity checks compare a recorded embedder with the one that gets loaded.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from latentrm import __version__
from latentrm.config import EmbedConfig, from_dict, to_dict
from latentrm.embed.models import models_home
from latentrm.errors import ConfigError, ModelError
from latentrm.head.reward import EnsembleHead, RewardHead
from latentrm.head.train import History
from latentrm.hub.head import read_model_json, save_head
from latentrm.io import atomic_write_json

log = logging.getLogger(__name__)

FORMAT = "latentrm.reward_model/2"
INFO_FILE = "latentrm.json"
# What from_pretrained downloads from the Hub: never the transformers copy of the base weights.
LATENTRM_FILES = (
    "latentrm.json",
    "head.safetensors",
    "head.json",
    "embed_config.json",
    "README.md",
)


def hash_memo() -> Path | None:
    """Where file hashes of embedders are memoised across runs (by path, size, mtime, inode);
    None (hash in memory only) where that folder cannot be written."""
    path = models_home().parent / "file-hashes.json"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return path if os.access(path.parent, os.W_OK) else None


def write_files(
    out: Path,
    embed_cfg: EmbedConfig,
    head: RewardHead | EnsembleHead,
    history: History | None,
    record: dict[str, Any],
    max_response_chars: int | None,
    training: dict[str, Any],
) -> None:
    """Write the head, embed_config.json and latentrm.json of a model into `out`."""
    cfg = to_dict(embed_cfg)
    cfg.pop("trust_remote_code", None)  # a saved folder can never turn remote code on
    ident = record.get("model_identity") or {}
    if ident.get("commit"):
        cfg["revision"] = ident["commit"]  # the exact Hub weights the head was trained on
    save_head(head, out, history)
    atomic_write_json(out / "embed_config.json", cfg)
    atomic_write_json(
        out / INFO_FILE,
        {
            "format": FORMAT,
            "latentrm_version": __version__,
            "embedder": record,
            "data": {"max_response_chars": max_response_chars},
            "head": head.config(),
            "training": training,
        },
    )


def check_identity(
    recorded: dict[str, Any] | None, have: dict[str, Any] | None, model: str, where: str
) -> None:
    """ModelError unless the weights `have` (model_identity) are the `recorded` record's."""
    want = (recorded or {}).get("model_identity")
    if not want or not have:
        return
    if "files" in want:
        theirs = have.get("files") or {}
        diff = sorted(
            k for k in set(want["files"]) | set(theirs) if want["files"].get(k) != theirs.get(k)
        )
        if diff:
            raise ModelError(
                f"{where}: embedder {model!r} resolves to files that differ from the ones the "
                f"head was trained on ({', '.join(diff[:4])}); point embed_overrides="
                "{'model': ...} at the recorded weights, or pass check_identity=False to score "
                "anyway"
            )
    elif want.get("commit") and have.get("commit") and want["commit"] != have["commit"]:
        raise ModelError(
            f"{where}: embedder {model!r} is at commit {have['commit']} but the "
            f"head was trained on commit {want['commit']}"
        )


def check_resolved(recorded: dict[str, Any] | None, emb: Any, where: str) -> None:
    """The loaded embedder computes what the recorded one did: same pooling, text format,
    normalisation, layers and length (else ModelError); another dtype only warns (e.g. a head
    trained on bf16 embeddings served where bf16 is not native)."""
    rec = recorded or {}
    if not rec.get("resolved"):
        return
    for key in ("pooling", "text_format", "normalize", "max_length", "layers"):
        want, have = rec.get(key), getattr(emb, key, None)
        if want is not None and have is not None and want != have:
            raise ModelError(
                f"{where}: the head was trained on embeddings with {key}={want!r} "
                f"but the embedder now gives {key}={have!r}"
            )
    if rec.get("dtype") and rec["dtype"] != emb.dtype:
        log.warning(
            "%s: the head was trained on %s embeddings, served with %s ones: scores "
            "differ slightly (embed_overrides={'dtype': %r} matches training)",
            where,
            rec["dtype"],
            emb.dtype,
            rec["dtype"],
        )


# --- reading ---------------------------------------------------------------------------
# Embed settings that change what the head reads; latentrm.json records the training values.
_TRAINED_WITH = ("layer", "pooling", "max_length", "text_format")


def check_trained_with(
    values: dict[str, Any], recorded: dict[str, Any] | None, where: str, info: Path
) -> None:
    """ModelError naming the field where `values` (embed_config.json as read, or the caller's
    embed_overrides) differ from what the head was trained with (latentrm.json's `embedder`).

    A record of a loaded embedder (`resolved`) holds resolved values: `auto` pooling or text
    format may stand for them, and a longer max_length is checked once the embedder is loaded
    (it may be capped by the model); `layer` is always the configured one.
    """
    rec = recorded or {}
    resolved = bool(rec.get("resolved"))
    for key in _TRAINED_WITH:
        want, have = rec.get(key), values.get(key)
        if want is None or key not in values or have == want:
            continue
        if resolved and (
            have == "auto"
            or key == "max_length"
            and isinstance(have, int)
            and isinstance(want, int)
            and have > want
        ):
            continue
        raise ModelError(
            f"{where}: {key}={have!r} but the head was trained with {key}={want!r} "
            f"({info.name}); scores would silently change: put it back, or train a "
            "new head"
        )


def read_embed_config(
    d: Path,
    trust_remote_code: bool,
    overrides: dict[str, Any] | None,
    root: Path | None = None,
    recorded: dict[str, Any] | None = None,
) -> EmbedConfig:
    """The folder's EmbedConfig; remote code only as the caller says, never as the file says.

    `root`: where the folder's files may link to (default: the folder; :func:`model_file`).
    `recorded`: latentrm.json's embedder record; embed_config.json and `overrides` must agree
    with its training values (:func:`check_trained_with`).
    """
    if overrides is not None and not isinstance(overrides, Mapping):
        raise ConfigError(
            "embed_overrides must be a dict of embed config fields, got "
            f"{type(overrides).__name__} (e.g. embed_overrides={{'device': 'cpu'}})"
        )
    p = d / "embed_config.json"
    if not p.is_symlink() and not p.exists():
        hint = ""
        if (d / "head.json").exists() and (d.parent.parent / "config.yaml").exists():
            hint = (
                "; a bare head of an older `latentrm run`: rerun it, or save "
                "RewardModel(load_config('<run>/config.yaml').embed, load_head(dir)) here "
                "(a model folder never reads files outside itself)"
            )
        raise ModelError(f"{d}: not a reward model (embed_config.json missing){hint}")
    raw = read_model_json(p, root if root is not None else d)
    if not isinstance(raw, dict) or not isinstance(raw.get("model"), str):
        raise ModelError(f"{p}: expected a JSON object naming the embedder's 'model'")
    if raw.pop("trust_remote_code", False):
        log.warning(
            "%s asks for trust_remote_code: ignored; a model folder never enables remote code "
            "(pass trust_remote_code=True / --trust-remote-code if you trust %s's code)",
            p,
            raw["model"],
        )
    extra = dict(overrides or {})
    if "trust_remote_code" in extra:
        raise ConfigError("embed_overrides: pass trust_remote_code as its own argument")
    try:
        cfg = from_dict(EmbedConfig, {**raw, **extra}, prefix="embed.")
    except ConfigError as e:
        raise ModelError(f"{p}: {e}") from None
    check_trained_with(raw, recorded, str(p), d / INFO_FILE)  # values valid by now
    check_trained_with(extra, recorded, "embed_overrides", d / INFO_FILE)
    if trust_remote_code:
        log.warning(
            "trust_remote_code=True: the embedder %s may run Python code from its repository",
            cfg.model,
        )
    return dataclasses.replace(cfg, trust_remote_code=bool(trust_remote_code))


def read_info(d: Path, root: Path | None = None) -> dict[str, Any]:
    """latentrm.json, checked ({} for folders written before it existed)."""
    p = d / INFO_FILE
    if not p.is_symlink() and not p.exists():
        return {}
    info = read_model_json(p, root if root is not None else d)
    if not isinstance(info, dict) or info.get("format") != FORMAT:
        fmt = info.get("format") if isinstance(info, dict) else None
        raise ModelError(f"{p}: not a latentrm model record (format {fmt!r}, expected {FORMAT!r})")
    for key in ("embedder", "data", "training"):
        if info.get(key) is not None and not isinstance(info[key], dict):
            raise ModelError(f"{p}: {key!r} must be an object")
    _check_record(info.get("embedder") or {}, p)
    info["data"] = info.get("data") or {}
    n = info["data"].get("max_response_chars")
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise ModelError(f"{p}: 'max_response_chars' must be an integer >= 1, got {n!r}")
    return info


def _check_record(rec: dict[str, Any], p: Path) -> None:
    """latentrm.json's embedder record, type-checked field by field (ModelError naming it)."""

    def bad(key: str, what: str) -> ModelError:
        return ModelError(f"{p}: 'embedder.{key}' must be {what}, got {rec.get(key)!r:.80}")

    for key in ("model", "path", "gguf_file", "revision", "pooling", "text_format", "dtype"):
        if rec.get(key) is not None and not isinstance(rec[key], str):
            raise bad(key, "a string")
    for key in ("max_length", "dim"):
        v = rec.get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int)):
            raise bad(key, "an integer")
    layer = rec.get("layer")
    if (
        layer is not None
        and layer != "mean"
        and (isinstance(layer, bool) or not isinstance(layer, int))
    ):
        raise bad("layer", "an integer or 'mean'")
    layers = rec.get("layers")
    if layers is not None and not (
        isinstance(layers, list)
        and all(isinstance(x, int) and not isinstance(x, bool) for x in layers)
    ):
        raise bad("layers", "a list of integers")
    ident = rec.get("model_identity")
    if ident is None:
        return
    if not isinstance(ident, dict):
        raise bad("model_identity", "an object")
    files = ident.get("files")
    if files is not None and not (
        isinstance(files, dict)
        and all(isinstance(k, str) and isinstance(v, str) for k, v in files.items())
    ):
        raise ModelError(
            f"{p}: 'embedder.model_identity.files' must be an object of file "
            f"name -> sha256, got {files!r:.80}"
        )
    if ident.get("commit") is not None and not isinstance(ident["commit"], str):
        raise ModelError(
            f"{p}: 'embedder.model_identity.commit' must be a string, got {ident['commit']!r:.80}"
        )
