"""Embeddings through the on-disk cache: compute only the missing chunks, in this process.

:func:`embed_pairs` and :func:`embed_candidates` are what the pipeline calls. The cache format is
:mod:`latentrm.embed.store`; the other engines (shards, Ray: :mod:`latentrm.embed.scale`,
:mod:`latentrm.embed.ray_engine`) fill the same stores chunk by chunk with :func:`embed_chunk`, so
vectors made by any of them are read here.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm.auto import tqdm

from latentrm.config import EmbedConfig
from latentrm.embed.embedder import Embedder
from latentrm.embed.models import resolve_identity
from latentrm.embed.spec import resolve_spec
from latentrm.embed.store import (
    CachePlan,
    FlatRows,
    candidate_rows,
    ensure_store,
    pair_rows,
    plan_store,
    read_vectors,
    store_request,
)
from latentrm.embed.views import PairEmbeddings, write_view
from latentrm.errors import CacheError, ConfigError

if TYPE_CHECKING:
    from latentrm.data.types import CandidateSet, PreferenceDataset

log = logging.getLogger(__name__)

# Fields of EmbedConfig a given Embedder must have been built with to serve a request.
_SAME_EMBEDDER = ("model", "gguf_file", "revision", "pooling", "max_length", "text_format")


def _check_embedder(embedder: Embedder, cfg: EmbedConfig) -> None:
    have = {f: getattr(embedder.cfg, f) for f in _SAME_EMBEDDER}
    asked = {f: getattr(cfg, f) for f in _SAME_EMBEDDER}
    spec = resolve_spec(cfg)
    if (
        have != asked
        or not set(spec.layers) <= set(embedder.layers)
        or (embedder.dtype != spec.dtype)
    ):
        raise ConfigError(
            f"embedder was built with {have} (layers {embedder.layers}, "
            f"{embedder.dtype}), but the request asks {asked} (layers "
            f"{list(spec.layers)}, {spec.dtype})"
        )


def cached_rows(
    rows: FlatRows, cfg: EmbedConfig, cache_root: str | Path, embedder: Embedder | None
) -> tuple[np.ndarray, dict]:
    """All (N, d) vectors of `rows` at embed.layer, computing only the missing chunks.

    The model is loaded only when a chunk is missing (or a Hub model's commit is unknown here).
    A chunk that fails its checksum is set aside and recomputed. Returns the vectors and the
    store's description plus meta["cache"]: the store, the view, hit or not, seconds.
    """
    t0 = time.perf_counter()
    root = Path(cache_root)
    memo = root / "file-hashes.json"
    if embedder is not None:
        _check_embedder(embedder, cfg)
        identity = embedder.identity(memo)
    else:
        found = resolve_identity(cfg, memo)
        if found is None:  # a Hub model not downloaded yet: loading it resolves the commit
            embedder = Embedder(cfg)
            found = embedder.identity(memo)
        identity = found
    request = store_request(cfg, identity)
    computed = 0
    for attempt in range(2):  # a second pass only when a stored chunk failed its checksum
        plan = plan_store(rows, request, root, cfg.chunk_size)
        if attempt == 0:
            check_writable(plan, root)
        if plan.missing:
            embedder = embedder if embedder is not None else Embedder(cfg)
            computed += compute_chunks(embedder, plan, plan.missing, cfg.show_progress)
        values, bad, store = read_vectors(plan.dir, rows.keys, cfg.layer)
        if not bad:
            break
        if attempt:
            raise CacheError(
                f"cache at {plan.dir}: chunks fail their checksum right after "
                "being written; is the disk failing?"
            )
    view = write_view(plan, cfg)
    secs = time.perf_counter() - t0
    info = {
        "dir": str(plan.dir),
        "view": str(view),
        "hit": not computed,
        "chunks_computed": computed,
        "seconds": secs,
    }
    log.info(
        "cache %s: %s in %.1fs",
        plan.dir,
        "hit" if not computed else f"{computed} chunks computed",
        secs,
    )
    return values, {**store, "cache": info}


def check_writable(plan: CachePlan, root: Path) -> None:
    """ConfigError naming `root` if the request needs writing (missing chunks, or its view) and
    the cache cannot be written: a read-only cache serves what it holds, nothing more."""
    if not plan.missing and plan.view_path.exists():
        return
    for d in (plan.dir, root):
        if d.exists():
            if not os.access(d, os.W_OK | os.X_OK):
                what = (
                    f"{len(plan.missing)} of {plan.n_chunks} chunks are not stored yet"
                    if plan.missing
                    else "this dataset's view is not recorded yet"
                )
                raise ConfigError(
                    f"{root}: no permission to write in this cache ({what}); "
                    "embed into a cache you can write to"
                )
            return


def compute_chunks(
    embedder: Embedder,
    plan: CachePlan,
    todo: Sequence[int],
    show_progress: bool,
    desc: str = "embed",
) -> int:
    """Embed and store chunks `todo` of `plan` with `embedder`; returns how many."""
    ensure_store(plan, embedder.metadata())
    n_rows = plan.n_rows(todo)
    log.info(
        "cache %s: computing %d of %d chunks (%d rows)", plan.dir, len(todo), plan.n_chunks, n_rows
    )
    with tqdm(total=n_rows, unit="text", desc=desc, disable=not show_progress) as bar:
        for c in todo:
            plan.write(c, embed_chunk(embedder, plan, c, bar))
    return len(todo)


def embed_chunk(embedder: Embedder, plan: CachePlan, c: int, bar: Any = None) -> np.ndarray:
    """(rows, L, d) vectors of chunk `c` of `plan`; ConfigError if the model made NaN/Inf."""
    rows = plan.chunks[c]
    return embed_texts(
        embedder,
        [plan.rows.prompts[i] for i in rows],
        [plan.rows.responses[i] for i in rows],
        f"chunk {c} of {plan.dir}",
        bar,
    )


def embed_texts(
    embedder: Embedder,
    prompts: Sequence[Any],
    responses: Sequence[str],
    where: str,
    bar: Any = None,
) -> np.ndarray:
    """(rows, L, d) vectors of the texts of one chunk; ConfigError if the model made NaN/Inf."""
    out = embedder.embed_layers(prompts, responses, bar=bar)
    if not np.isfinite(out).all():
        raise ConfigError(
            f"the model produced NaN/Inf embeddings in {where} "
            f"(dtype={embedder.dtype}; float32 avoids overflow)"
        )
    return out


def check_identity(plan: CachePlan, embedder: Embedder) -> None:
    """CacheError unless `embedder` holds the weights `plan` was made for (a worker's check)."""
    ident = embedder.identity(plan.dir.parent / "file-hashes.json")
    if ident != plan.request["model_identity"]:
        raise CacheError(
            f"this worker's model is {ident}, but the run was planned for "
            f"{plan.request['model_identity']} (different weights on this node?)"
        )


def embed_pairs(
    ds: PreferenceDataset,
    cfg: EmbedConfig,
    cache_root: str | Path,
    embedder: Embedder | None = None,
) -> PairEmbeddings:
    """Chosen and rejected embeddings of every pair, from the cache (computed if missing).

    Rows are chosen_0..chosen_{N-1}, rejected_0..rejected_{N-1}; the model is loaded only when a
    row is missing. meta["cache"] says where, whether it was a hit and how long it took.
    """
    rows = pair_rows(ds)
    values, meta = cached_rows(rows, cfg, cache_root, embedder)
    n = len(ds)
    return PairEmbeddings(
        ids=rows.ids_doc["ids"], chosen=values[:n], rejected=values[n:], meta=meta
    )


def embed_candidates(
    sets: list[CandidateSet],
    cfg: EmbedConfig,
    cache_root: str | Path,
    embedder: Embedder | None = None,
) -> list[np.ndarray]:
    """One (N_i, d) float32 array per candidate set (row j = responses[j]), cached like pairs."""
    values, _ = cached_rows(candidate_rows(sets), cfg, cache_root, embedder)
    counts = [len(s.responses) for s in sets]
    return np.split(values, np.cumsum(counts)[:-1]) if sets else []
