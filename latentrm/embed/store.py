"""The on-disk embedding cache: a content-addressed store of vectors per embedder setting.

Layout of ``cache_root/``::

    file-hashes.json                 memo of model file hashes (path, size, mtime, ctime)
    <store>/                         one per embedder setting: model identity, pooling, layers,
                                     max_length, text format, dtype (the store key, hashed)
      store.json                     what the store holds (the key + the embedder's metadata),
                                     created once by the first writer, never rewritten
      chunks/<id>.<sha>.npy          (rows, L, d) float32 vectors, L = the stored layers
      chunks/<id>.json               the chunk's row keys, its .npy file name, that file's SHA-256
      views/<view>.json              one embedded dataset: its row keys in order, ids, kind

Rows are found by their *content*: a row's key is the SHA-256 of its (prompt messages, response),
so the same texts are embedded once whatever file, subset or ids they come with, and `latentrm
experiment` reuses what `latentrm run` embedded. A view (``views/<view>.json``) records one
request (the rows of a dataset, in order) so `latentrm synth` / `train` can read it back without
the data file; it names the embedder config the rows came from.

Safety without locks: a request's rows are cut into chunks of ``chunk_size`` in request order, so
every writer (a process, its shards, Ray actors) plans the same chunks; a chunk's id is the hash of
its row keys and its vectors go to a file named by their own checksum, written atomically before
the small JSON that points at it. Files are never modified, only added, so concurrent writers of
any chunk size cannot mix rows; a row stored twice resolves to its oldest copy, so a vector once
stored never changes. A chunk whose file does not match its checksum (a flipped byte) is detected
on read and by `verify_cache`, set aside, and recomputed by the next run. Views (writing, loading
and verifying one embedded dataset) are :mod:`latentrm.embed.views`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from latentrm import __version__
from latentrm.config import EmbedConfig
from latentrm.embed.chunks import (
    Chunk,
    StoreMismatch,
    index_rows,
    list_chunks,
    read_chunk,
    read_json,
    set_aside,
    write_chunk,
)
from latentrm.embed.embedder import pick_layer
from latentrm.embed.models import resolve_identity
from latentrm.embed.spec import resolve_spec
from latentrm.errors import CacheError
from latentrm.io import sha256_json

if TYPE_CHECKING:
    from latentrm.data.types import CandidateSet, PreferenceDataset

log = logging.getLogger(__name__)

FORMAT = "latentrm.embedding-store/2"
# Embedder metadata that every writer of one store must agree on.
RESOLVED_FIELDS = (
    "is_decoder",
    "pooling",
    "layers",
    "max_length",
    "text_format",
    "dtype",
    "dim",
    "normalize",
)


# --- what a request is ----------------------------------------------------------------------------
def row_key(prompt: Sequence[dict[str, str]], response: str) -> str:
    """The content key of one (prompt messages, response) row."""
    doc = [[[m["role"], m["content"]] for m in prompt], response]
    text = json.dumps(doc, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class FlatRows:
    """The flat (prompt, response) row list of one request (a dataset's view of a store)."""

    kind: str  # "pairs" | "candidates"
    prompts: list  # row i: tuple of messages
    responses: list[str]
    ids_doc: dict  # pairs: {"ids"}; candidates: {"ids", "counts"}
    keys: list[str] = field(default_factory=list)  # row_key of each row

    def __post_init__(self) -> None:
        if not self.keys:
            keys = [row_key(p, r) for p, r in zip(self.prompts, self.responses, strict=True)]
            object.__setattr__(self, "keys", keys)


def pair_rows(ds: PreferenceDataset) -> FlatRows:
    """Rows chosen_0..chosen_{N-1}, rejected_0..rejected_{N-1} of a dataset of pairs."""
    return FlatRows(
        kind="pairs",
        prompts=[p.prompt for p in ds.pairs] * 2,
        responses=[p.chosen for p in ds.pairs] + [p.rejected for p in ds.pairs],
        ids_doc={"ids": [p.id for p in ds.pairs]},
    )


def candidate_rows(sets: Sequence[CandidateSet]) -> FlatRows:
    """Every candidate response, set by set."""
    return FlatRows(
        kind="candidates",
        prompts=[s.prompt for s in sets for _ in s.responses],
        responses=[r for s in sets for r in s.responses],
        ids_doc={"ids": [s.id for s in sets], "counts": [len(s.responses) for s in sets]},
    )


def store_request(cfg: EmbedConfig, identity: dict) -> dict:
    """What decides the vectors of a store (its key): weights and every setting that changes them.

    Batch size, threads, device and the chunk size do not; the dtype is the resolved one (`auto`
    means bfloat16 on CPUs and GPUs with bf16 units, float32 elsewhere: `embed.spec`).
    """
    spec = resolve_spec(cfg)
    return {
        "format": FORMAT,
        "model_identity": identity,
        "pooling": cfg.pooling,
        "layers": list(spec.layers),
        "max_length": cfg.max_length,
        "text_format": cfg.text_format,
        "dtype": spec.dtype,
        "latentrm_version": __version__,
    }


# --- reading a store ------------------------------------------------------------------------------
def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def read_store_meta(d: Path) -> dict:
    """store.json of the store at `d` (CacheError naming the file if unreadable, foreign or
    malformed: the embedder's dim and stored layers are what every read is shaped by)."""
    meta = read_json(d / "store.json", "store description")
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or "embedder" not in meta:
        raise CacheError(
            f"{d / 'store.json'}: not a latentrm embedding store of format "
            f"{FORMAT}; delete {d} to rebuild it"
        )
    emb = meta["embedder"]
    why = (
        "'embedder' is not an object"
        if not isinstance(emb, dict)
        else "'request' is not an object"
        if not isinstance(meta.get("request"), dict)
        else f"embedder dim {emb.get('dim')!r} is not a positive integer"
        if not (_is_int(emb.get("dim")) and emb["dim"] >= 1)
        else f"embedder layers {emb.get('layers')!r} is not a list of layer indices"
        if not (
            isinstance(emb.get("layers"), list)
            and emb["layers"]
            and all(map(_is_int, emb["layers"]))
        )
        else None
    )
    if why:
        raise CacheError(f"{d / 'store.json'}: malformed ({why}); delete {d} to rebuild it")
    return meta


# --- planning a request ---------------------------------------------------------------------------
@dataclass
class CachePlan:
    """Where a request's rows live: the store, the request's chunks and which are still missing.

    `chunks[c]` lists row positions of the request (deduplicated by content, request order);
    chunk c is missing when any of its rows is in no complete chunk of the store.
    """

    dir: Path
    request: dict  # store.json["request"]: what the store key is made of
    rows: FlatRows
    chunk_size: int
    chunks: list[list[int]]
    missing: list[int]

    @property
    def n_chunks(self) -> int:
        return len(self.chunks)

    def chunk_keys(self, c: int) -> list[str]:
        return [self.rows.keys[i] for i in self.chunks[c]]

    def chunk_id(self, c: int) -> str:
        return sha256_json(self.chunk_keys(c))[:32]

    @property
    def view_path(self) -> Path:
        """Where this request's view is recorded (see :func:`latentrm.embed.views.write_view`)."""
        return self.dir / "views" / f"{sha256_json([self.rows.kind, self.rows.keys])[:24]}.json"

    def write(self, c: int, vectors: np.ndarray) -> None:
        """Store the vectors of chunk `c` (see :func:`write_chunk`)."""
        write_chunk(self.dir, self.chunk_id(c), self.chunk_keys(c), vectors)

    def n_rows(self, chunks: Sequence[int]) -> int:  # rows in chunks `chunks` of this plan
        return sum(len(self.chunks[c]) for c in chunks)


def plan_store(rows: FlatRows, request: dict, root: Path, chunk_size: int) -> CachePlan:
    """The store under `root` for `request`, the request's chunks and the missing ones."""
    if chunk_size < 1:
        raise CacheError(f"chunk_size must be >= 1, got {chunk_size}")
    d = root / sha256_json(request)[:24]
    if (d / "store.json").exists():
        meta = read_store_meta(d)
        if meta.get("request") != request:
            raise CacheError(f"{d / 'store.json'} describes another store; delete {d}")
    first: dict[str, int] = {}
    for i, k in enumerate(rows.keys):
        first.setdefault(k, i)
    unique = sorted(first.values())
    chunks = [unique[i : i + chunk_size] for i in range(0, len(unique), chunk_size)]
    have = index_rows(list_chunks(d)) if (d / "chunks").is_dir() else {}
    missing = [c for c, rs in enumerate(chunks) if any(rows.keys[i] not in have for i in rs)]
    return CachePlan(d, request, rows, chunk_size, chunks, missing)


def plan_cache(rows: FlatRows, cfg: EmbedConfig, cache_root: str | Path) -> CachePlan:
    """The plan for embedding `rows` under `cfg` in `cache_root`; loads no model.

    A local model's identity is its file hashes, a Hub model's its commit (only its config.json
    is fetched when the model is not in the local HF cache).
    """
    root = Path(cache_root)
    identity = resolve_identity(cfg, root / "file-hashes.json", download=True)
    return plan_store(rows, store_request(cfg, identity), root, cfg.chunk_size)


# --- writing --------------------------------------------------------------------------------------
def ensure_store(plan: CachePlan, emb_meta: dict) -> None:
    """Create store.json once (exclusively: the first writer wins), or check it agrees.

    Every writer of a store must have resolved the embedder the same way (dim, pooling, layers,
    dtype, ...); a writer that disagrees is refused before it writes a chunk.
    """
    path = plan.dir / "store.json"
    if not path.exists():
        meta = {
            "format": FORMAT,
            "request": plan.request,
            "embedder": emb_meta,
            "created": time.time(),
        }
        plan.dir.mkdir(parents=True, exist_ok=True)
        tmp = plan.dir / f".store.{os.getpid()}.{time.monotonic_ns()}.tmp"
        tmp.write_text(json.dumps(meta, indent=2, sort_keys=True, default=str) + "\n")
        try:
            os.link(tmp, path)  # atomic and exclusive: fails if another writer was first
        except FileExistsError:
            pass
        finally:
            tmp.unlink(missing_ok=True)
    check_same(
        plan.dir,
        read_store_meta(plan.dir)["embedder"],
        emb_meta,
        RESOLVED_FIELDS,
        "this embedder has",
    )


def check_same(
    d: Path,
    made: Mapping[str, Any],
    asked: Mapping[str, Any],
    fields: Iterable[str],
    asked_as: str = "asked",
) -> None:
    """CacheError naming each field of `fields` where the store at `d` was `made` otherwise."""
    bad = [f for f in fields if made.get(f) != asked.get(f)]
    if bad:
        have = ", ".join(f"{f}={made.get(f)!r}" for f in bad)
        want = ", ".join(f"{f}={asked.get(f)!r}" for f in bad)
        raise CacheError(f"cache at {d} was made with {have}, {asked_as} {want}")


# --- reading a request ----------------------------------------------------------------------------
def read_vectors(
    d: Path, keys: Sequence[str], layer: int | str
) -> tuple[np.ndarray, list[Chunk], dict]:
    """(N, d) vectors of `keys` at `layer` (a stored hidden-state index, or "mean").

    Chunks whose file fails its checksum are set aside and their rows reported missing:
    CacheError names how many, so the caller can recompute them. Returns the vectors, the
    chunks that failed (empty when all is well) and store.json as read.
    """
    meta = read_store_meta(d)
    emb = meta["embedder"]
    layers, dim = list(emb["layers"]), int(emb["dim"])
    chunks = list_chunks(d)
    index = index_rows(chunks)
    cache: dict[int, np.ndarray] = {}
    bad: list[Chunk] = []
    for k in keys:
        if k not in index:
            raise CacheError(
                f"cache at {d}: a requested row is not stored (an interrupted run?); rerun embed"
            )
        ci = index[k][0]
        if ci not in cache:
            try:
                cache[ci] = pick_layer(read_chunk(d, chunks[ci], dim, len(layers)), layers, layer)
            except StoreMismatch:
                raise
            except CacheError as e:
                set_aside(d, chunks[ci], str(e).split(": ", 1)[-1])
                bad.append(chunks[ci])
                cache[ci] = np.full((len(chunks[ci].keys), dim), np.nan, np.float32)
    # Allocated once a chunk has confirmed store.json's dim (or every chunk was bad).
    out = np.empty((len(keys), dim), np.float32)
    for i, k in enumerate(keys):
        ci, r = index[k]
        out[i] = cache[ci][r]
    return out, bad, meta
