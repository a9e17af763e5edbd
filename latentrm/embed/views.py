"""Views: one embedded dataset recorded in a store, written, read back and verified.

A view (``<store>/views/<view>.json``, see :mod:`latentrm.embed.store` for the whole layout)
records one request: its row keys in order, its ids and the embedder config the rows came from,
so `latentrm synth` / `train` read the vectors back without the data file, and `latentrm embed
--verify` checks a store or a view is intact.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from latentrm.config import EmbedConfig, from_dict, to_dict
from latentrm.embed.chunks import (
    StoreMismatch,
    index_rows,
    list_chunks,
    read_chunk,
    read_json,
    set_aside,
)
from latentrm.embed.models import resolve_identity
from latentrm.embed.store import CachePlan, check_same, read_store_meta, read_vectors, store_request
from latentrm.errors import CacheError, LatentrmError
from latentrm.io import atomic_write_json


@dataclass
class PairEmbeddings:
    ids: list[str]
    chosen: np.ndarray  # (N, d) float32, row i = pair i
    rejected: np.ndarray  # (N, d) float32
    meta: dict


def write_view(plan: CachePlan, cfg: EmbedConfig) -> Path:
    """Record the request as a view (its rows in order, ids, and the embedder config)."""
    doc = {
        "kind": plan.rows.kind,
        "keys": plan.rows.keys,
        **plan.rows.ids_doc,
        "embed": to_dict(cfg),
        "created": time.time(),
    }
    view = plan.view_path
    if not view.exists():
        atomic_write_json(view, doc)
    return view


def load_view(path: str | Path, expect: EmbedConfig | None = None) -> tuple[dict, Path]:
    """A view file (or a store folder holding exactly one view) -> (view document, store dir).

    With `expect`, CacheError if the store was made for other weights or settings.
    """
    p = Path(path)
    if p.is_dir():
        if (p / "store.json").exists():
            views = sorted((p / "views").glob("*.json"))
            if len(views) != 1:
                raise CacheError(
                    f"{p} holds {len(views)} embedded datasets; pass one of its views/<id>.json"
                )
            p = views[0]
        else:
            raise CacheError(
                f"{p}: not an embedding cache (no store.json); pass the path "
                "`latentrm embed` printed"
            )
    if not p.is_file():
        raise CacheError(f"{p}: no such embedding cache view")
    view = read_json(p, "embedded dataset description")
    d = p.parent.parent
    if not isinstance(view, dict) or "keys" not in view or "kind" not in view:
        raise CacheError(f"{p}: not a latentrm embedding view; delete it")
    why = _malformed(view)
    if why:
        raise CacheError(
            f"{p}: malformed embedding view ({why}); delete it and rerun `latentrm embed`"
        )
    view["embed_config"] = view_embed_config(view, p)
    if expect is not None:
        meta = read_store_meta(d)
        ident = resolve_identity(expect, d.parent / "file-hashes.json")
        asked = store_request(
            expect, ident if ident is not None else meta["request"]["model_identity"]
        )
        check_same(d, meta["request"], asked, [k for k in asked if k != "latentrm_version"])
    return view, d


def _malformed(view: dict) -> str | None:
    """What is wrong with a view document's fields (None: nothing)."""
    keys, ids, counts = view.get("keys"), view.get("ids"), view.get("counts")
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        return "'keys' must be a list of row keys"
    if view.get("kind") not in ("pairs", "candidates"):
        return f"'kind' must be pairs or candidates, got {view.get('kind')!r:.40}"
    if not isinstance(ids, list):
        return "'ids' must be a list"
    if view.get("embed") is not None and not isinstance(view["embed"], dict):
        return "'embed' must be an object"
    if view["kind"] == "candidates" and not (
        isinstance(counts, list)
        and len(counts) == len(ids)
        and all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in counts)
        and sum(counts) == len(keys)
    ):
        return "'counts' must be a count of rows per id, summing to the rows"
    return None


def view_embed_config(view: dict, path: str | Path = "embedding view") -> EmbedConfig:
    """The embedder config a view was made with (what a head trained on it must embed with),
    checked like any embed config: a bad value is refused here, not by `score` after `train`
    wrote a model with it."""
    try:
        cfg = from_dict(EmbedConfig, view.get("embed") or {}, prefix="embed.")
    except LatentrmError as e:
        raise CacheError(f"{path}: bad embedder config ({e}); delete the view") from None
    return cfg


def load_pair_cache(path: str | Path, expect: EmbedConfig | None = None) -> PairEmbeddings:
    """The pairs of a view written by `latentrm embed` (all rows present and intact).

    The embedder config comes from the view, so reading needs no flags; with `expect`, CacheError
    if the store was made differently.
    """
    view, d = load_view(path, expect)
    if view["kind"] != "pairs":
        raise CacheError(f"{path} holds {view['kind']}, not pairs")
    ecfg = view["embed_config"]
    rows, bad, store = read_vectors(
        d, view["keys"], expect.layer if expect is not None else ecfg.layer
    )
    if bad:
        files = ", ".join(ch.file for ch in bad[:3]) + (", ..." if len(bad) > 3 else "")
        raise CacheError(
            f"cache at {d}: {len(bad)} chunks failed their checksum and were set "
            f"aside ({files}); rerun `latentrm embed` to recompute them"
        )
    n = len(view["ids"])
    if rows.shape[0] != 2 * n:
        raise CacheError(f"{path}: {rows.shape[0]} rows for {n} pairs")
    meta = {**store, "view": str(path), "embed": ecfg}
    return PairEmbeddings(ids=list(view["ids"]), chosen=rows[:n], rejected=rows[n:], meta=meta)


def verify_cache(path: str | Path) -> dict:
    """Check a store (or the store of a view): every chunk's file is present, matches its
    checksum, and holds finite float32 vectors of the right shape; for a view, every row is stored.

    Returns {"dir", "chunks", "rows", "dim", "layers", "stale_tmp"}; CacheError listing what is
    wrong otherwise (bad chunks are set aside, so the next `latentrm embed` recomputes them).
    """
    p = Path(path)
    keys: list[str] | None = None
    if p.is_file():
        view, d = load_view(p)
        keys = list(view["keys"])
    else:
        d = p
    meta = read_store_meta(d)
    emb = meta["embedder"]
    dim, n_layers = int(emb["dim"]), len(emb["layers"])
    problems: list[str] = []
    chunks = list_chunks(d)
    for ch in chunks:
        try:
            read_chunk(d, ch, dim, n_layers)
        except StoreMismatch:
            raise
        except CacheError as e:
            problems.append(f"{ch.file}: {str(e).split(': ', 1)[-1]}")
            set_aside(d, ch, str(e).split(": ", 1)[-1])
    if keys is not None:
        index = index_rows(list_chunks(d))
        absent = sum(k not in index for k in keys)
        if absent:
            problems.append(f"{absent} of the view's {len(keys)} rows are not stored")
    if problems:
        shown = "; ".join(problems[:10]) + (
            f"; ... {len(problems) - 10} more" if len(problems) > 10 else ""
        )
        raise CacheError(
            f"cache at {d} is not intact: {shown} (bad chunks were set aside: "
            "rerun `latentrm embed` to recompute them)"
        )
    stale = sorted(x.name for x in d.rglob(".*.tmp"))
    rows = sum(len(ch.keys) for ch in chunks)
    return {
        "dir": str(d),
        "chunks": len(chunks),
        "rows": rows if keys is None else len(keys),
        "dim": dim,
        "layers": emb["layers"],
        "stale_tmp": stale,
    }
