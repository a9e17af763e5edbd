"""The on-disk embedding cache format: one folder per (model, texts, settings), resumable chunks.

Layout of ``cache_root/<key>/`` (key = the first 24 hex digits of the SHA-256 of the request):
``meta.json`` (the request: kind, content hash, row count, model identity and KEY_FIELDS; the
embedder's metadata; the chunk size), ``ids.json``, and ``chunk-NNNNN.npy`` files, chunk c holding
rows [c*chunk_size, (c+1)*chunk_size) of the flat row list (pairs: chosen_0..chosen_{N-1},
rejected_0..rejected_{N-1}). Every file is written atomically, so a killed run leaves only whole
chunks. Readers here check shapes, dtypes and finiteness and name the file that is wrong.

Writers: :func:`latentrm.embed.embed_pairs` / ``embed_candidates`` (one process) and
:mod:`latentrm.distributed` (Ray actors, sharded ranks); both use only these functions.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from latentrm import __version__
from latentrm.errors import CacheError
from latentrm.io import atomic_write, sha256_json
from latentrm.models import model_identity, resolve_model

if TYPE_CHECKING:
    from latentrm.config import EmbedConfig
    from latentrm.data import CandidateSet

# Request fields that decide the numbers in a cache (its key); batch size, threads, device do not.
KEY_FIELDS = ("pooling", "layer", "max_length", "text_format", "dtype")
# Embedder metadata that must match between the run that started a cache and one that resumes it.
RESOLVED_FIELDS = ("is_decoder", "pooling", "layer", "max_length", "text_format", "dtype", "dim")


@dataclass
class PairEmbeddings:
    ids: list[str]
    chosen: np.ndarray  # (N, d) float32, row i = pair i
    rejected: np.ndarray  # (N, d) float32
    meta: dict


def cache_request(
    cfg: EmbedConfig, identity: dict, kind: str, content_hash: str, n_rows: int
) -> dict:
    """The request a cache folder answers; its hash names the folder."""
    return {
        "kind": kind,
        "content_hash": content_hash,
        "n_rows": n_rows,
        "model_identity": identity,
        **{f: getattr(cfg, f) for f in KEY_FIELDS},
        "latentrm_version": __version__,
    }


def check_same(where: Path, made: dict, asked: dict, fields: Sequence[str]) -> None:
    """CacheError naming every field in `fields` where the cache at `where` differs."""
    bad = [f for f in fields if made.get(f) != asked.get(f)]
    if bad:
        parts = ", ".join(f"{f}={made.get(f)!r}" for f in bad)
        want = ", ".join(f"{f}={asked.get(f)!r}" for f in bad)
        raise CacheError(f"cache at {where} was made with {parts}, asked {want}")


def chunk_path(d: Path, c: int) -> Path:
    return d / f"chunk-{c:05d}.npy"


def write_chunk(path: Path, rows: np.ndarray) -> None:
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:  # a file object: np.save would append .npy to a path
            np.save(f, rows, allow_pickle=False)

    atomic_write(path, write)


def read_chunk(path: Path, n: int, dim: int) -> np.ndarray:
    try:
        rows = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise CacheError(f"{path}: unreadable chunk ({e}); delete it to recompute") from None
    if rows.shape != (n, dim) or rows.dtype != np.float32:
        raise CacheError(
            f"{path}: expected float32 ({n}, {dim}), found {rows.dtype} {rows.shape}; "
            "delete it to recompute"
        )
    if not np.isfinite(rows).all():
        raise CacheError(f"{path}: chunk holds NaN/Inf values; delete it to recompute")
    return rows


def read_meta(d: Path) -> dict:
    try:
        return json.loads((d / "meta.json").read_text())
    except (OSError, ValueError) as e:
        raise CacheError(f"{d}: cannot read meta.json ({e})") from None


def load_rows(d: Path, meta: dict) -> np.ndarray:
    n, cs, dim = meta["request"]["n_rows"], meta["chunk_size"], meta["embedder"]["dim"]
    out = np.empty((n, dim), dtype=np.float32)
    for c in range(-(-n // cs)):
        lo, hi = c * cs, min(n, (c + 1) * cs)
        p = chunk_path(d, c)
        if not p.exists():
            raise CacheError(f"{d}: chunk {p.name} is missing (an interrupted run?); rerun embed")
        out[lo:hi] = read_chunk(p, hi - lo, dim)
    return out


def candidates_hash(sets: Sequence[CandidateSet]) -> str:
    recs = [[s.id, [[m["role"], m["content"]] for m in s.prompt], list(s.responses)] for s in sets]
    return sha256_json(recs)


def load_pair_cache(cache_dir: str | Path, expect: EmbedConfig | None = None) -> PairEmbeddings:
    """Read a complete pair cache folder; with `expect`, CacheError if it was made differently."""
    d = Path(cache_dir)
    meta = read_meta(d)
    if meta["request"].get("kind") != "pairs":
        raise CacheError(f"cache at {d} holds {meta['request'].get('kind')}, not pairs")
    if expect is not None:
        asked = {f: getattr(expect, f) for f in KEY_FIELDS}
        check_same(d, meta["request"], asked, KEY_FIELDS)
        path, alias_gguf = resolve_model(expect.model)
        ident = model_identity(
            path, expect.gguf_file or alias_gguf, expect.revision, d.parent / "file-hashes.json"
        )
        if ident is not None:
            check_same(d, meta["request"], {"model_identity": ident}, ["model_identity"])
    ids = json.loads((d / "ids.json").read_text())["ids"]
    rows = load_rows(d, meta)
    n = len(ids)
    if rows.shape[0] != 2 * n:
        raise CacheError(f"cache at {d}: {rows.shape[0]} rows for {n} pairs")
    return PairEmbeddings(ids=ids, chosen=rows[:n], rejected=rows[n:], meta=meta)
