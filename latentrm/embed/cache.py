"""The on-disk embedding cache format: one folder per (model, texts, settings), resumable chunks.

Layout of ``cache_root/<key>/`` (key = the first 24 hex digits of the SHA-256 of the request):
``meta.json`` (the request: kind, content hash, row count, model identity and KEY_FIELDS; the
embedder's metadata; the chunk size), ``ids.json``, and ``chunk-NNNNN.npy`` files, chunk c holding
rows [c*chunk_size, (c+1)*chunk_size) of the flat row list (pairs: chosen_0..chosen_{N-1},
rejected_0..rejected_{N-1}). Every file is written atomically, so a killed run leaves only whole
chunks. Readers here check shapes, dtypes and finiteness and name the file that is wrong.

Writers: :mod:`latentrm.embed.cached` (one process), :mod:`latentrm.embed.scale` (sharded ranks)
and :mod:`latentrm.embed.ray_engine` (Ray actors); all plan a folder with :func:`plan_cache`,
write its meta.json with :func:`ensure_meta` and chunks with :func:`write_chunk`;
:func:`verify_cache` checks a finished folder.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from latentrm import __version__
from latentrm.config import EmbedConfig
from latentrm.embed.embedder import check_embed_config
from latentrm.embed.models import resolve_identity
from latentrm.errors import CacheError
from latentrm.io import atomic_write, atomic_write_json, sha256_json

if TYPE_CHECKING:
    from latentrm.data.types import CandidateSet, PreferenceDataset

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

@dataclass(frozen=True)
class CachePlan:
    """Where a request's rows live and which chunks are still missing."""

    dir: Path
    request: dict  # meta.json["request"]: what the key is made of
    chunk_size: int
    n_rows: int
    missing: list[int]

    @property
    def n_chunks(self) -> int:
        return -(-self.n_rows // self.chunk_size)

    def bounds(self, c: int) -> tuple[int, int]:
        return c * self.chunk_size, min(self.n_rows, (c + 1) * self.chunk_size)


def plan_folder(request: dict, root: Path, chunk_size: int) -> CachePlan:
    """The folder under `root` that answers `request`, and its missing chunks.

    CacheError when an existing folder was made with a different request; an existing folder's
    chunk size wins over `chunk_size`.
    """
    d = root / sha256_json(request)[:24]
    if (d / "meta.json").exists():
        meta = read_meta(d)
        check_same(d, meta["request"], request, list(request))
        chunk_size = meta["chunk_size"]
    n = request["n_rows"]
    missing = [c for c in range(-(-n // chunk_size)) if not chunk_path(d, c).exists()]
    return CachePlan(dir=d, request=request, chunk_size=chunk_size, n_rows=n, missing=missing)


def ensure_meta(plan: CachePlan, emb_meta: dict, ids_doc: dict | None) -> None:
    """Write (ids.json +) meta.json before the first chunk, or check the existing meta.json.

    Always before the first chunk: the reader takes a folder with chunks but no meta.json for
    corrupt. Several writers (shards, actors) may race here: each file is replaced atomically and
    all writers agree on every field a reader checks (only `created`/`device` differ).
    """
    if (plan.dir / "meta.json").exists():
        check_same(plan.dir, read_meta(plan.dir)["embedder"], emb_meta, RESOLVED_FIELDS)
        return
    if ids_doc is not None:
        atomic_write_json(plan.dir / "ids.json", ids_doc)
    meta = {
        "request": plan.request,
        "embedder": emb_meta,
        "chunk_size": plan.chunk_size,
        "created": time.time(),
    }
    atomic_write_json(plan.dir / "meta.json", meta)


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
        ident = resolve_identity(expect, d.parent / "file-hashes.json")
        if ident is not None:
            check_same(d, meta["request"], {"model_identity": ident}, ["model_identity"])
    ids = json.loads((d / "ids.json").read_text())["ids"]
    rows = load_rows(d, meta)
    n = len(ids)
    if rows.shape[0] != 2 * n:
        raise CacheError(f"cache at {d}: {rows.shape[0]} rows for {n} pairs")
    return PairEmbeddings(ids=ids, chosen=rows[:n], rejected=rows[n:], meta=meta)


# --- what goes into one cache folder ------------------------------------------------------------
@dataclass(frozen=True)
class FlatRows:
    """The flat (prompt, response) row list behind one cache folder, as `latentrm.embed` has it."""

    kind: str  # "pairs" | "candidates"
    content_hash: str
    prompts: list  # row i: tuple of messages
    responses: list[str]
    ids_doc: dict  # what ids.json holds


def pair_rows(ds: PreferenceDataset) -> FlatRows:
    """Rows chosen_0..chosen_{N-1}, rejected_0..rejected_{N-1}, as `embed_pairs` orders them."""
    return FlatRows(
        kind="pairs",
        content_hash=ds.content_hash(),
        prompts=[p.prompt for p in ds.pairs] * 2,
        responses=[p.chosen for p in ds.pairs] + [p.rejected for p in ds.pairs],
        ids_doc={"ids": [p.id for p in ds.pairs]},
    )


def candidate_rows(sets: Sequence[CandidateSet]) -> FlatRows:
    """Every candidate response, set by set, exactly as `embed_candidates` orders them."""
    return FlatRows(
        kind="candidates",
        content_hash=candidates_hash(sets),
        prompts=[s.prompt for s in sets for _ in s.responses],
        responses=[r for s in sets for r in s.responses],
        ids_doc={"ids": [s.id for s in sets], "counts": [len(s.responses) for s in sets]},
    )


def plan_cache(rows: FlatRows, cfg: EmbedConfig, cache_root: str | Path) -> CachePlan:
    """The cache folder `latentrm.embed` uses for `rows` under `cfg`, and its missing chunks.

    Loads no model (a local model's identity is its file hashes, a Hub model's its commit).
    CacheError when an existing folder was made with a different request.
    """
    check_embed_config(cfg)
    root = Path(cache_root)
    identity = resolve_identity(cfg, root / "file-hashes.json", download=True)
    request = cache_request(cfg, identity, rows.kind, rows.content_hash, len(rows.responses))
    return plan_folder(request, root, cfg.chunk_size)


# --- verification ---------------------------------------------------------------------------------
def verify_cache(cache_dir: str | Path) -> dict:
    """Check a cache folder is complete: every chunk present, float32 (rows, d), finite, and the row
    count agrees with ids.json. Returns {"dir", "kind", "rows", "dim", "chunks", "stale_tmp"};
    CacheError listing every missing or bad chunk otherwise.
    """
    d = Path(cache_dir)
    meta = read_meta(d)
    n, cs, dim = meta["request"]["n_rows"], meta["chunk_size"], meta["embedder"]["dim"]
    kind = meta["request"].get("kind")
    problems: list[str] = []
    n_chunks = -(-n // cs)
    for c in range(n_chunks):
        p = chunk_path(d, c)
        if not p.exists():
            problems.append(f"{p.name} missing")
            continue
        try:
            read_chunk(p, min(n, (c + 1) * cs) - c * cs, dim)
        except CacheError as e:
            problems.append(str(e).replace(f"{p}: ", f"{p.name}: ").split(";")[0])
    try:
        ids = json.loads((d / "ids.json").read_text())
    except (OSError, ValueError) as e:
        problems.append(f"ids.json unreadable ({e})")
    else:
        expect = 2 * len(ids["ids"]) if kind == "pairs" else sum(ids.get("counts", []))
        if expect != n:
            problems.append(f"ids.json describes {expect} rows, meta.json {n}")
    if problems:
        shown = "; ".join(problems[:10]) + (
            f"; ... {len(problems) - 10} more" if len(problems) > 10 else ""
        )
        raise CacheError(f"cache at {d} is incomplete: {shown}")
    # temp files of killed writers: harmless (never read), reported so they can be deleted
    stale = sorted(p.name for p in d.glob(".*.tmp"))
    return {
        "dir": str(d),
        "kind": kind,
        "rows": n,
        "dim": dim,
        "chunks": n_chunks,
        "stale_tmp": stale,
    }
