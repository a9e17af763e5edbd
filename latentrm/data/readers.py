"""The one reader for every command: files, folders and Hub datasets -> numbered raw records.

Training data (`latentrm.data.load`), serving inputs (`latentrm score` / `bon`) and anything else
latentrm reads goes through :func:`read_source`, so all accept the same inputs:

- files: .jsonl / .ndjson, .json (a list, or ``{"data": [...]}``), .csv / .tsv (nested cells may
  hold JSON), .parquet; each may be gzip-compressed (``.gz``); a UTF-8 BOM is ignored;
- anything that is not a local path: a Hugging Face Hub dataset id, read with ``datasets``.

Each record carries its number for error messages: the file line for .jsonl/.csv/.tsv, the
1-based record number for .json, .parquet and Hub datasets. Unreadable input raises
``DataError`` naming the file (and line). Parsing the records is :mod:`latentrm.data.formats`.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from latentrm.config import DataConfig
from latentrm.errors import DataError

SUFFIXES = (".jsonl", ".ndjson", ".json", ".csv", ".tsv", ".parquet")


@dataclass
class Source:
    label: str  # names the input in errors and PreferenceDataset.source
    stem: str  # prefix of generated ids
    records: list[tuple[int, Any]]  # (line or record number, record)


def _decode(data: bytes, label: str) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise DataError(
            "not valid UTF-8 (re-save the file as UTF-8)", path=label, line=line
        ) from None


def _jsonl_records(data: bytes, label: str) -> list[tuple[int, Any]]:
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    out = []
    # Split bytes on b"\n" only: JSON escapes newlines inside strings, while str.splitlines() would
    # also break at U+2028 and friends, which may appear raw inside JSON strings.
    for i, raw in enumerate(data.split(b"\n"), 1):
        if not raw.strip():
            continue
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            msg = f"not valid UTF-8 (byte {e.start + 1} of the line; re-save the file as UTF-8)"
            raise DataError(msg, path=label, line=i) from None
        try:
            out.append((i, json.loads(text)))
        except json.JSONDecodeError as e:
            raise DataError(
                f"malformed JSON: {e.msg} (column {e.colno})", path=label, line=i
            ) from None
    return out


def _json_records(data: bytes, label: str) -> list[tuple[int, Any]]:
    try:
        obj = json.loads(_decode(data, label))
    except json.JSONDecodeError as e:
        raise DataError(
            f"malformed JSON: {e.msg} (column {e.colno})", path=label, line=e.lineno
        ) from None
    if isinstance(obj, dict) and isinstance(obj.get("data"), list):
        obj = obj["data"]
    if not isinstance(obj, list):
        raise DataError('expected a JSON list of records or {"data": [...]}', path=label)
    return list(enumerate(obj, 1))


def _csv_cell(key: str, value: str | None) -> Any:
    """CSV cells are strings; nested columns hold JSON: message lists, summaries, candidates, info.

    Only the structure each column can have is decoded, so a text cell such as "{}" stays text.
    """
    if value is None or value.strip()[:1] not in ("[", "{"):
        return value
    try:
        obj = json.loads(value)
    except json.JSONDecodeError:
        return value
    if key == "info":
        return obj if isinstance(obj, dict) else value
    if not isinstance(obj, list) or not obj or not all(isinstance(m, dict) for m in obj):
        return value
    if key in ("summaries", "candidates") or all("role" in m for m in obj):
        return obj
    return value


def _csv_records(data: bytes, label: str, delimiter: str = ",") -> list[tuple[int, Any]]:
    reader = csv.DictReader(io.StringIO(_decode(data, label), newline=""), delimiter=delimiter)
    out = []
    try:
        reader.fieldnames  # reads the header, so line_num counts it  # noqa: B018
        start = reader.line_num + 1
        for row in reader:
            if None in row:
                raise DataError(
                    f"row has more fields than the header ({len(reader.fieldnames or [])})",
                    path=label,
                    line=start,
                )
            rec = {k: _csv_cell(k, v) for k, v in row.items() if v is not None}
            if isinstance(rec.get("choice"), str) and rec["choice"].strip().isdigit():
                rec["choice"] = int(rec["choice"])
            out.append((start, rec))
            start = reader.line_num + 1
    except csv.Error as e:
        raise DataError(f"malformed CSV: {e}", path=label, line=reader.line_num) from None
    return out


def records_from_datasets(ds: Any) -> list[tuple[int, Any]]:
    """Rows of a `datasets.Dataset` as (1-based row number, dict); used for Hub ids and in tests."""
    if not hasattr(ds, "column_names") or isinstance(ds.column_names, dict):
        raise DataError(f"expected one split of a dataset, got {type(ds).__name__}; set data.split")
    return [(i, dict(row)) for i, row in enumerate(ds, 1)]


def _looks_local(path: str) -> bool:
    return path.endswith((*SUFFIXES, ".gz")) or path.startswith(("/", ".", "~"))


def file_kind(path: str | Path) -> str | None:
    """The data suffix of `path` ('.jsonl', '.csv', ...) before any '.gz'; None if unknown."""
    name = Path(path).name.lower()
    name = name[:-3] if name.endswith(".gz") else name
    return next((s for s in SUFFIXES if name.endswith(s)), None)


def read_source(path: str, cfg: DataConfig) -> Source:
    p = Path(path).expanduser()
    if not p.is_file():
        if _looks_local(path) and not p.is_dir():
            raise DataError("file not found", path=path)
        return _read_hub(path, cfg)
    data = p.read_bytes()
    if p.name.lower().endswith(".gz"):
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as e:
            raise DataError(f"not a valid gzip file ({e})", path=path) from None
    kind = file_kind(p)
    if kind is None:
        raise DataError(f"unknown file type; use one of {', '.join(SUFFIXES)}", path=path)
    name = p.name[:-3] if p.name.lower().endswith(".gz") else p.name
    stem = name[: -len(kind)]
    if kind in (".jsonl", ".ndjson"):
        records = _jsonl_records(data, path)
    elif kind == ".json":
        records = _json_records(data, path)
    elif kind in (".csv", ".tsv"):
        records = _csv_records(data, path, "\t" if kind == ".tsv" else ",")
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            records = list(enumerate(pq.read_table(io.BytesIO(data)).to_pylist(), 1))
        except (pa.ArrowException, OSError) as e:
            raise DataError(f"not a readable parquet file ({e})", path=path) from None
    return Source(path, stem, records)


def _read_hub(name: str, cfg: DataConfig) -> Source:
    import datasets

    label = f"{name}[{cfg.split}]"
    try:
        ds = datasets.load_dataset(name, cfg.hub_config, split=cfg.split)
    except Exception as e:  # noqa: BLE001 - every failure of the Hub path becomes one user-facing line
        msg = f"could not load Hub dataset (config={cfg.hub_config!r}, split={cfg.split!r}): {e}"
        raise DataError(msg, path=name) from e
    return Source(label, f"{name}/{cfg.split}", records_from_datasets(ds))


def read_rows(path: str | Path, cfg: DataConfig | None = None) -> list[tuple[int, dict[str, Any]]]:
    """(line, row) pairs of a file of row objects (what `latentrm score` / `bon` read).

    The same reader as training data (:func:`read_source`); every record must be an object.
    """
    src = read_source(str(path), cfg or DataConfig())
    for line, rec in src.records:
        if not isinstance(rec, dict):
            raise DataError(
                f"expected an object, got {type(rec).__name__}", path=src.label, line=line
            )
    return src.records
