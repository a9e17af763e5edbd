"""Writing rows: the counterpart of :func:`latentrm.data.readers.read_rows` (score/bon outputs),
and the check every command makes of its output file before any work starts."""

from __future__ import annotations

import csv
import errno
import gzip
import io
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from latentrm.data.decode import SUFFIXES, file_kind
from latentrm.errors import DataError
from latentrm.io import atomic_write, atomic_write_bytes, check_writable_parent


def _columns(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    cols: dict[str, None] = {}
    for r in rows:
        cols.update(dict.fromkeys(r))
    return list(cols)


def _suffix_list(kinds: Sequence[str]) -> str:
    gz = ", optionally .gz" if any(k != ".parquet" for k in kinds) else ""
    return (", ".join(kinds[:-1]) + " or " + kinds[-1] if len(kinds) > 1 else kinds[0]) + gz


def check_output_path(path: str | Path, kinds: Sequence[str] = SUFFIXES) -> str:
    """The output format of `path` (its data suffix, one of `kinds`), checked before any work
    starts: a known suffix, not an existing folder, and a place we can create a file in.

    DataError / ConfigError naming the path otherwise.
    """
    kind = file_kind(path)
    if kind is None or kind not in kinds or (kind == ".parquet" and str(path).endswith(".gz")):
        raise DataError(f"unknown output type (use {_suffix_list(tuple(kinds))})", path=str(path))
    if Path(path).is_dir():
        raise DataError("is a folder; give the output file's name", path=str(path))
    check_writable_parent(path, "output file")
    return kind


def _json_line(row: Any, path: Path, i: int, **kw: Any) -> str:
    """`row` as strict JSON (no NaN/Infinity, which other tools refuse) or a DataError."""
    try:
        return json.dumps(row, ensure_ascii=False, allow_nan=False, **kw)
    except (ValueError, TypeError) as e:
        bad = (
            next((k for k, v in row.items() if not _json_ok(v)), None)
            if isinstance(row, Mapping)
            else None
        )
        raise DataError(
            f"row {i} cannot be written as JSON ({e}); nothing was written",
            path=str(path),
            field=bad,
        ) from None


def _json_ok(v: Any) -> bool:
    try:
        json.dumps(v, allow_nan=False)
    except (ValueError, TypeError):
        return False
    return True


_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


def write_rows(rows: Sequence[Mapping[str, Any]], path: str | Path) -> None:
    """Write rows atomically as .jsonl/.json/.csv/.tsv/.parquet (chosen by suffix; .gz compresses).

    CSV cells that are lists or dicts are written as JSON text (read_rows decodes message lists).
    JSON output is strict: a NaN/Infinity or bytes value is a DataError naming the row and field.
    A full disk is a DataError naming `path`: nothing is written, and the command that made
    the rows (score, bon) starts over when run again.
    """
    path = Path(path)
    try:
        _write_rows(rows, path)
    except OSError as e:
        if e.errno not in _FULL:
            raise
        raise DataError(
            f"disk full while writing {len(rows)} rows ({e.strerror}); nothing was "
            "written. Free space and run the command again: it scores every row "
            "again",
            path=str(path),
        ) from None


def _write_rows(rows: Sequence[Mapping[str, Any]], path: Path) -> None:
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
        lines = [_json_line(r, path, i, indent=1) for i, r in enumerate(rows, 1)]
        text = "[\n" + ",\n".join(lines) + ("\n]\n" if lines else "]\n")
    else:
        text = "".join(_json_line(r, path, i) + "\n" for i, r in enumerate(rows, 1))
    data = text.encode("utf-8")
    atomic_write_bytes(path, gzip.compress(data) if path.name.lower().endswith(".gz") else data)


def _csv_cell(v: Any) -> Any:
    return json.dumps(v, ensure_ascii=False) if isinstance(v, (list, dict, tuple)) else v
