"""Export an augmented training set (originals + synthetic pairs) to one Parquet file.

Layout: one row per training pair, embeddings inline. We chose inline `fixed_size_list<float32>[d]`
columns over a separate embeddings table keyed by pool row: one self-contained file that pandas,
`datasets.load_dataset("parquet", ...)` or DuckDB read with no join, each row a complete training
example. The price is duplication: a pool row used by several pairs is stored each time. LENS keeps
k samples per side and makes `ratio` pairs per seed from the (1+k)^2 grid, so the file holds
(1+ratio)/(1+k) times the pool's floats: 1.5x at ratio 2 (k=1), 1.7x at 4 (k=2), 3x at 8 (k=2).

Columns:
  pair_id            str    "<seed_id>/<j>", j = position of the pair among its seed's pairs
  seed_id            str    id of the labelled seed pair it derives from
  seed_index         int64  that seed pair's index (AugmentedPairs.seed_idx)
  source             str    "original" | "synthetic"
  method             str    augmenter ("none", "lens", "direct", "gaussian")
  ratio              int64  augmentation ratio of the set
  chosen_row         int64  pool row of the chosen embedding (AugmentedPairs.chosen_idx)
  rejected_row       int64  pool row of the rejected embedding
  chosen_synthetic   bool   chosen embedding is synthetic (pool row >= 2N)
  rejected_synthetic bool
  chosen_embedding   fixed_size_list<float32>[d]
  rejected_embedding fixed_size_list<float32>[d]
Schema metadata key ``latentrm`` holds JSON: format version, method, ratio, stats, n_seed, dim,
pool_rows, pair counts and caller metadata (e.g. the embedder's).

`read_augmented` rebuilds an `AugmentedPairs`. Pool rows that no pair references (kept samples the
pairing did not draw, reserved rows) are not stored, so the pool comes back compacted: referenced
rows in their original order, indices remapped. The originals stay at rows [0, 2N); every pair's
chosen/rejected embeddings, provenance and order come back bit-identical.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from latentrm.data.writers import check_output_path
from latentrm.errors import DataError
from latentrm.io import atomic_write
from latentrm.pairs import AugmentedPairs, check_augmented, load_augmented

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
META_KEY = b"latentrm"
_ROWS_PER_GROUP = 8192  # row groups bound the memory of gathering pool rows while writing


def _schema(d: int, meta: Mapping[str, Any]) -> Any:
    import pyarrow as pa

    emb = pa.list_(pa.float32(), d)
    fields = [
        ("pair_id", pa.string()),
        ("seed_id", pa.string()),
        ("seed_index", pa.int64()),
        ("source", pa.string()),
        ("method", pa.string()),
        ("ratio", pa.int64()),
        ("chosen_row", pa.int64()),
        ("rejected_row", pa.int64()),
        ("chosen_synthetic", pa.bool_()),
        ("rejected_synthetic", pa.bool_()),
        ("chosen_embedding", emb),
        ("rejected_embedding", emb),
    ]
    return pa.schema(fields, metadata={META_KEY: json.dumps(meta, default=str).encode("utf-8")})


def _pair_ids(seed_ids: Sequence[str], seed_idx: np.ndarray) -> list[str]:
    seen: dict[int, int] = {}
    out = []
    for s in seed_idx.tolist():
        j = seen.get(s, 0)
        seen[s] = j + 1
        out.append(f"{seed_ids[s]}/{j}")
    return out


def export_augmented(
    aug: AugmentedPairs,
    path: str | Path,
    seed_ids: Sequence[str],
    meta: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Write `aug` as Parquet at `path` (a .parquet file, atomically); returns the metadata stored
    in the schema. A malformed set (`pairs.check_augmented`) is refused before anything is written.

    `seed_ids[i]` names seed pair i (pool rows i and N+i), so len(seed_ids) = N. `meta` (JSON-able,
    e.g. the embedder's metadata) is stored alongside.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    check_output_path(path, (".parquet",))
    n = len(seed_ids)
    if n != aug.n_seed:
        raise DataError(f"{n} seed ids for {aug.n_seed} original pairs", path=str(path))
    check_augmented(aug, "the augmented pairs to export")
    pool = np.asarray(aug.pool)
    ci, ri = np.asarray(aug.chosen_idx, np.int64), np.asarray(aug.rejected_idx, np.int64)
    si, syn = np.asarray(aug.seed_idx, np.int64), np.asarray(aug.synthetic, bool)
    p = len(ci)
    c_syn, r_syn = ci >= 2 * n, ri >= 2 * n
    d = pool.shape[1]
    info = {
        "format_version": FORMAT_VERSION,
        "method": aug.method,
        "ratio": int(aug.ratio),
        "stats": dict(aug.stats),
        "n_seed": n,
        "dim": d,
        "pool_rows": int(pool.shape[0]),
        "pairs": p,
        "synthetic_pairs": int(syn.sum()),
        "meta": dict(meta or {}),
    }
    schema = _schema(d, info)
    pair_ids = _pair_ids(seed_ids, si)

    def emb(rows: np.ndarray) -> pa.FixedSizeListArray:
        flat = pa.array(np.ascontiguousarray(pool[rows], dtype=np.float32).reshape(-1))
        return pa.FixedSizeListArray.from_arrays(flat, d)

    def write(tmp: Path) -> None:
        with pq.ParquetWriter(tmp, schema) as writer:
            for start in range(0, max(p, 1), _ROWS_PER_GROUP):
                sl = slice(start, min(p, start + _ROWS_PER_GROUP))
                cols = [
                    pa.array(pair_ids[sl], pa.string()),
                    pa.array([str(seed_ids[s]) for s in si[sl].tolist()], pa.string()),
                    pa.array(si[sl]),
                    pa.array(np.where(syn[sl], "synthetic", "original").tolist(), pa.string()),
                    pa.array([aug.method] * (sl.stop - sl.start), pa.string()),
                    pa.array(np.full(sl.stop - sl.start, int(aug.ratio), np.int64)),
                    pa.array(ci[sl]),
                    pa.array(ri[sl]),
                    pa.array(c_syn[sl]),
                    pa.array(r_syn[sl]),
                    emb(ci[sl]),
                    emb(ri[sl]),
                ]
                writer.write_table(pa.Table.from_arrays(cols, schema=schema))

    atomic_write(Path(path), write)
    log.info("wrote %d pairs (%d synthetic, d=%d) to %s", p, int(syn.sum()), d, path)
    return info


@dataclass
class ExportedAugmented:
    """What `read_augmented` returns: the pairs, the seed ids and the stored metadata."""

    aug: AugmentedPairs
    seed_ids: list[str]
    info: dict[str, Any]


def _embeddings(column: Any, d: int) -> np.ndarray:
    arr = column.combine_chunks()
    # flatten() respects slicing offsets, unlike .values
    return (
        arr.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False).reshape(-1, d)
    )


def read_augmented(path: str | Path) -> ExportedAugmented:
    """Read a file written by `export_augmented` back into an AugmentedPairs (pool compacted)."""
    import pyarrow.parquet as pq

    path = Path(path)
    if not path.is_file():
        raise DataError("file not found", path=str(path))
    try:
        table = pq.read_table(path)
    except Exception as e:  # pyarrow raises several types for corrupt files
        raise DataError(f"cannot read Parquet: {e}", path=str(path)) from None
    raw = (table.schema.metadata or {}).get(META_KEY)
    if raw is None:
        raise DataError("not a latentrm export (no 'latentrm' schema metadata)", path=str(path))
    info = json.loads(raw)
    if info.get("format_version") != FORMAT_VERSION:
        raise DataError(
            f"unsupported export format_version {info.get('format_version')}", path=str(path)
        )
    n, d = int(info["n_seed"]), int(info["dim"])
    ci = table.column("chosen_row").to_numpy().astype(np.int64)
    ri = table.column("rejected_row").to_numpy().astype(np.int64)
    si = table.column("seed_index").to_numpy().astype(np.int64)
    ce = _embeddings(table.column("chosen_embedding"), d)
    re_ = _embeddings(table.column("rejected_embedding"), d)
    # Compact the pool to the referenced rows, keeping their order (originals first).
    rows = np.unique(np.concatenate([ci, ri]))
    pool = np.empty((len(rows), d), np.float32)
    pool[np.searchsorted(rows, ci)] = ce
    pool[np.searchsorted(rows, ri)] = re_
    seed_ids = [""] * n
    for s, sid in zip(si.tolist(), table.column("seed_id").to_pylist(), strict=True):
        seed_ids[s] = sid
    aug = AugmentedPairs(
        pool=pool,
        chosen_idx=np.searchsorted(rows, ci).astype(np.int64),
        rejected_idx=np.searchsorted(rows, ri).astype(np.int64),
        seed_idx=si,
        synthetic=np.asarray(table.column("source").to_pylist()) == "synthetic",
        method=str(info["method"]),
        ratio=int(info["ratio"]),
        stats=dict(info.get("stats", {})),
    )
    return ExportedAugmented(aug=aug, seed_ids=seed_ids, info=info)


def export_synth_dir(augmented_dir: str | Path, out: str | Path) -> dict[str, Any]:
    """Export what `latentrm synth` wrote (pairs.save_augmented) to Parquet; returns the metadata.

    Seed ids come from the synth header; sets saved without ids get ``seed-<i>``. `out` is
    checked (a .parquet file we can create) before the set is read; the set is checked as it is
    read, so its errors name the input files.
    """
    check_output_path(out, (".parquet",))
    aug, _val, head = load_augmented(augmented_dir)
    ids = head.get("ids")
    if ids is None:
        ids = [f"seed-{i}" for i in range(aug.n_seed)]
    if not isinstance(ids, list) or len(ids) != aug.n_seed:
        n_ids = len(ids) if isinstance(ids, list) else type(ids).__name__
        raise DataError(
            f"{n_ids} seed ids for {aug.n_seed} seed pairs",
            path=str(Path(augmented_dir) / "augmented.json"),
            field="ids",
        )
    meta = {"source_dir": str(augmented_dir), **dict(head.get("meta") or {})}
    return export_augmented(aug, out, [str(i) for i in ids], meta=meta)
