"""Embeddings through the on-disk cache: compute only the missing chunks, in this process.

:func:`embed_pairs` and :func:`embed_candidates` are what the pipeline calls. The cache format is
:mod:`latentrm.embed.cache`; the other engines (shards, Ray: :mod:`latentrm.embed.scale`) fill the
same folders chunk by chunk with :func:`embed_chunk`, so a cache made by any of them is read here.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm.auto import tqdm

from latentrm.config import EmbedConfig
from latentrm.embed.cache import (
    KEY_FIELDS,
    CachePlan,
    FlatRows,
    PairEmbeddings,
    cache_request,
    candidate_rows,
    chunk_path,
    ensure_meta,
    load_rows,
    pair_rows,
    plan_folder,
    read_meta,
    write_chunk,
)
from latentrm.embed.embedder import Embedder, check_embed_config
from latentrm.embed.models import resolve_identity
from latentrm.errors import CacheError, ConfigError

if TYPE_CHECKING:
    from latentrm.data.types import CandidateSet, PreferenceDataset

log = logging.getLogger(__name__)


def cached_rows(
    rows: FlatRows, cfg: EmbedConfig, cache_root: str | Path, embedder: Embedder | None
) -> tuple[np.ndarray, dict]:
    """All (N, d) rows of `rows` from cache_root/<key>, computing only the missing chunks.

    The model is loaded only when a chunk is missing (or a Hub model's commit is unknown here).
    Returns the rows and the folder's meta.json plus meta["cache"]: where, hit or not, seconds.
    """
    check_embed_config(cfg)
    t0 = time.perf_counter()
    root = Path(cache_root)
    memo = root / "file-hashes.json"
    if embedder is not None:
        asked = {f: getattr(cfg, f) for f in (*KEY_FIELDS, "model", "gguf_file", "revision")}
        have = {f: getattr(embedder.cfg, f) for f in asked}
        if asked != have:
            raise ConfigError(f"embedder was built with {have}, but the request asks {asked}")
        identity = embedder.identity(memo)
    else:
        found = resolve_identity(cfg, memo)
        if found is None:  # a Hub model not downloaded yet: loading it resolves the commit
            embedder = Embedder(cfg)
            found = embedder.identity(memo)
        identity = found
    request = cache_request(cfg, identity, rows.kind, rows.content_hash, len(rows.responses))
    plan = plan_folder(request, root, cfg.chunk_size)
    d, missing = plan.dir, plan.missing
    if missing:
        embedder = embedder if embedder is not None else Embedder(cfg)
        ensure_meta(plan, embedder.metadata(), rows.ids_doc)
        todo = sum(hi - lo for lo, hi in map(plan.bounds, missing))
        log.info(
            "cache %s: computing %d of %d chunks (%d rows)", d, len(missing), plan.n_chunks, todo
        )
        with tqdm(total=todo, unit="text", desc="embed", disable=not cfg.show_progress) as bar:
            for c in missing:
                lo, hi = plan.bounds(c)
                out = embed_chunk(
                    embedder, plan, c, rows.prompts[lo:hi], rows.responses[lo:hi], bar
                )
                write_chunk(chunk_path(d, c), out)
    meta = read_meta(d)
    values = load_rows(d, meta)
    secs = time.perf_counter() - t0
    info = {"dir": str(d), "hit": not missing, "chunks_computed": len(missing), "seconds": secs}
    log.info("cache %s: %s in %.1fs", d,
             "hit" if not missing else f"{len(missing)} chunks computed", secs)
    return values, {**meta, "cache": info}


def embed_pairs(
    ds: PreferenceDataset, cfg: EmbedConfig, cache_root: str | Path,
    embedder: Embedder | None = None,
) -> PairEmbeddings:
    """Chosen and rejected embeddings of every pair, from cache_root/<key> (computed if missing).

    Rows are chosen_0..chosen_{N-1}, rejected_0..rejected_{N-1}; the model is loaded only when a
    chunk is missing. meta["cache"] says where, whether it was a hit and how long it took.
    """
    rows = pair_rows(ds)
    values, meta = cached_rows(rows, cfg, cache_root, embedder)
    n = len(ds)
    return PairEmbeddings(ids=rows.ids_doc["ids"], chosen=values[:n], rejected=values[n:],
                          meta=meta)


def embed_candidates(
    sets: list[CandidateSet], cfg: EmbedConfig, cache_root: str | Path,
    embedder: Embedder | None = None,
) -> list[np.ndarray]:
    """One (N_i, d) float32 array per candidate set (row j = responses[j]), cached like pairs."""
    values, _ = cached_rows(candidate_rows(sets), cfg, cache_root, embedder)
    counts = [len(s.responses) for s in sets]
    return np.split(values, np.cumsum(counts)[:-1]) if sets else []


def check_identity(plan: CachePlan, embedder: Embedder) -> None:
    """CacheError unless `embedder` holds the weights `plan` was made for (a worker's check)."""
    ident = embedder.identity(plan.dir.parent / "file-hashes.json")
    if ident != plan.request["model_identity"]:
        raise CacheError(
            f"this worker's model is {ident}, but the run was planned for "
            f"{plan.request['model_identity']} (different weights on this node?)"
        )


def embed_chunk(
    embedder: Embedder, plan: CachePlan, c: int, prompts: Sequence, responses: Sequence[str],
    bar: Any = None,
) -> np.ndarray:
    """Rows of chunk `c` of `plan`; ConfigError (naming the rows) if the model made NaN/Inf."""
    rows = embedder.embed(prompts, responses, bar=bar)
    if not np.isfinite(rows).all():
        lo, hi = plan.bounds(c)
        raise ConfigError(
            f"the model produced NaN/Inf embeddings for rows {lo}..{hi - 1} "
            f"(dtype={embedder.cfg.dtype}; float32 avoids overflow)"
        )
    return rows
