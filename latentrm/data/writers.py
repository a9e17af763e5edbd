"""Writing rows: the counterpart of :func:`latentrm.data.readers.read_rows` (score/bon outputs)."""

from __future__ import annotations

import csv
import gzip
import io
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from latentrm.data.readers import file_kind
from latentrm.errors import DataError
from latentrm.io import atomic_write, atomic_write_bytes


def _columns(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    cols: dict[str, None] = {}
    for r in rows:
        cols.update(dict.fromkeys(r))
    return list(cols)


def check_output_path(path: str | Path) -> str:
    """The output format of `path` (its data suffix), checked before any work starts.

    DataError naming the path for an unknown suffix.
    """
    kind = file_kind(path)
    if kind is None:
        raise DataError(
            "unknown output type (use .jsonl, .json, .csv, .tsv or .parquet, optionally .gz)",
            path=str(path),
        )
    return kind


def write_rows(rows: Sequence[Mapping[str, Any]], path: str | Path) -> None:
    """Write rows atomically as .jsonl/.json/.csv/.tsv/.parquet (chosen by suffix; .gz compresses).

    CSV cells that are lists or dicts are written as JSON text (read_rows decodes message lists).
    """
    path = Path(path)
    suffix = check_output_path(path)
    if suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        cols = _columns(rows)
        try:
            table = pa.Table.from_pydict({c: [r.get(c) for r in rows] for c in cols})
        except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
            raise DataError(
                f"cannot store these rows as Parquet ({e}); mixed types in a column? write .jsonl",
                path=str(path),
            ) from None
        atomic_write(path, lambda p: pq.write_table(table, p))
        return
    if suffix in (".csv", ".tsv"):
        buf = io.StringIO()
        writer = csv.DictWriter(
            buf, fieldnames=_columns(rows), delimiter="\t" if suffix == ".tsv" else ","
        )
        writer.writeheader()
        for r in rows:
            writer.writerow({k: _csv_cell(v) for k, v in r.items()})
        text = buf.getvalue()
    elif suffix == ".json":
        text = json.dumps(list(rows), ensure_ascii=False, indent=1) + "\n"
    else:
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    data = text.encode("utf-8")
    atomic_write_bytes(path, gzip.compress(data) if path.name.lower().endswith(".gz") else data)


def _csv_cell(v: Any) -> Any:
    return json.dumps(v, ensure_ascii=False) if isinstance(v, (list, dict, tuple)) else v
