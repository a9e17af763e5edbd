"""The one reader for every command: files, folders and Hub datasets -> numbered raw records.

Training data (`latentrm.data.load`), serving inputs (`latentrm score` / `bon`) and anything else
latentrm reads goes through :func:`read_sources`, so all accept the same inputs:

- files: .jsonl / .ndjson, .json (a list, or ``{"data": [...]}``), .csv / .tsv (nested cells may
  hold JSON), .parquet; each may be gzip-compressed (``.gz``); a UTF-8 BOM is ignored;
- a folder written by ``datasets.Dataset.save_to_disk`` (or ``DatasetDict.save_to_disk``, whose
  split ``data.split`` is read), loaded with ``datasets.load_from_disk``;
- a folder of data files (e.g. ``train-00000-of-00002.parquet`` shards): every data file in it,
  each read by its own kind and named in its own errors; other files are listed in a warning;
- anything that is not a local path: a Hugging Face Hub dataset id, read with ``datasets``. A
  local path is never sent to ``datasets.load_dataset``.

Each record carries its number for error messages: the file line for .jsonl/.csv/.tsv (the line a
CSV record starts on), the 1-based record number for .json, .parquet and datasets. Unreadable
input raises ``DataError`` naming the file (and line). Parsing the records is
:mod:`latentrm.data.formats`.
"""

from __future__ import annotations

import contextlib
import csv
import gzip
import io
import json
import logging
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from latentrm.config import DataConfig
from latentrm.errors import ConfigError, DataError

log = logging.getLogger(__name__)

SUFFIXES = (".jsonl", ".ndjson", ".json", ".csv", ".tsv", ".parquet")
# What json.loads raises past ~1000 nesting levels is RecursionError, not a JSONDecodeError.
_TOO_DEEP = "JSON nested too deeply (over ~1000 levels of lists/objects)"


class _Literal(str):
    """NaN / Infinity / -Infinity as parsed: Python's json reads these, JSON does not."""


def _loads(text: str) -> tuple[Any, bool]:
    """json.loads(text), and whether it met a non-standard literal (left as a _Literal)."""
    seen: list[str] = []
    obj = json.loads(text, parse_constant=lambda c: seen.append(c) or _Literal(c))
    return obj, bool(seen)


def _literal_at(obj: Any, where: str) -> tuple[_Literal, str] | None:
    """The first NaN/Infinity literal in `obj` and its path ('candidates[0].gold')."""
    if isinstance(obj, _Literal):
        return obj, where
    if isinstance(obj, dict):
        items: Iterable[tuple[str, Any]] = (
            (f"{where}.{k}" if where else str(k), v) for k, v in obj.items())
    elif isinstance(obj, list):
        items = ((f"{where}[{i}]", v) for i, v in enumerate(obj))
    else:
        return None
    return next((hit for w, v in items if (hit := _literal_at(v, w)) is not None), None)


def _refuse_literals(records: list[tuple[int, Any]], label: str) -> None:
    """DataError naming the record and field of the first NaN/Infinity literal: a score/bon run
    echoes input fields, and strict JSON output could not hold it."""
    for line, rec in records:
        try:
            hit = _literal_at(rec, "")
        except RecursionError:
            raise DataError(_TOO_DEEP, path=label, line=line) from None
        if hit is not None:
            raise DataError(f"{hit[0]} is not valid JSON (write null or a number)", path=label,
                            line=line, field=hit[1] or None)


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
            obj, odd = _loads(text)
        except json.JSONDecodeError as e:
            raise DataError(
                f"malformed JSON: {e.msg} (column {e.colno})", path=label, line=i
            ) from None
        except RecursionError:
            raise DataError(_TOO_DEEP, path=label, line=i) from None
        if odd:
            _refuse_literals([(i, obj)], label)
        out.append((i, obj))
    return out


def _json_records(data: bytes, label: str) -> list[tuple[int, Any]]:
    try:
        obj, odd = _loads(_decode(data, label))
    except json.JSONDecodeError as e:
        raise DataError(
            f"malformed JSON: {e.msg} (column {e.colno})", path=label, line=e.lineno
        ) from None
    except RecursionError:
        raise DataError(_TOO_DEEP, path=label) from None
    if isinstance(obj, dict) and isinstance(obj.get("data"), list):
        obj = obj["data"]
    if not isinstance(obj, list):
        raise DataError('expected a JSON list of records or {"data": [...]}', path=label)
    records = list(enumerate(obj, 1))
    if odd:
        _refuse_literals(records, label)
    return records


def _csv_cell(key: str, value: str | None) -> Any:
    """CSV cells are strings; nested columns hold JSON: message lists, summaries, candidates, info.

    Only the structure each column can have is decoded, so a text cell such as "{}" stays text.
    RecursionError (JSON nested past ~1000 levels) is the caller's to report.
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


def _csv_field_limit(text: str) -> int:
    """The csv module's cell size limit while reading `text`.

    Its default (128 KiB) refuses long cells that JSONL reads fine; responses are cut to
    data.max_response_chars after reading, like every other format's, so the only bound that
    means anything is the text itself: no cell can be longer.
    """
    return max(csv.field_size_limit(), len(text) + 1)


@contextlib.contextmanager
def _field_size_limit(limit: int) -> Iterator[None]:
    old = csv.field_size_limit(limit)
    try:
        yield
    finally:
        csv.field_size_limit(old)


def _csv_records(data: bytes, label: str, delimiter: str = ",") -> list[tuple[int, Any]]:
    text = _decode(data, label)
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter)
    out = []
    start = 1
    with _field_size_limit(_csv_field_limit(text)):
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
                rec = {}
                for k, v in row.items():
                    if v is None:
                        continue
                    try:
                        rec[k] = _csv_cell(k, v)
                    except RecursionError:
                        raise DataError(_TOO_DEEP, path=label, line=start, field=k) from None
                if isinstance(rec.get("choice"), str) and rec["choice"].strip().isdigit():
                    rec["choice"] = int(rec["choice"])
                out.append((start, rec))
                start = reader.line_num + 1
        except csv.Error as e:
            # The line the failing record starts on: reader.line_num is where the csv module
            # gave up, past every line of a multi-line cell.
            raise DataError(f"malformed CSV: {e}", path=label, line=start) from None
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


def _read_file(p: Path, label: str) -> Source:
    data = p.read_bytes()
    if p.name.lower().endswith(".gz"):
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as e:
            raise DataError(f"not a valid gzip file ({e})", path=label) from None
    kind = file_kind(p)
    if kind is None:
        raise DataError(f"unknown file type; use one of {', '.join(SUFFIXES)}", path=label)
    name = p.name[:-3] if p.name.lower().endswith(".gz") else p.name
    stem = name[: -len(kind)]
    if kind in (".jsonl", ".ndjson"):
        records = _jsonl_records(data, label)
    elif kind == ".json":
        records = _json_records(data, label)
    elif kind in (".csv", ".tsv"):
        records = _csv_records(data, label, "\t" if kind == ".tsv" else ",")
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            records = list(enumerate(pq.read_table(io.BytesIO(data)).to_pylist(), 1))
        except (pa.ArrowException, OSError) as e:
            raise DataError(f"not a readable parquet file ({e})", path=label) from None
    return Source(label, stem, records)


def _is_saved_dataset(p: Path) -> bool:
    """A folder written by `Dataset.save_to_disk` / `DatasetDict.save_to_disk`."""
    return (p / "dataset_dict.json").is_file() or (
        (p / "state.json").is_file() and (p / "dataset_info.json").is_file())


def _read_saved_dataset(path: str, p: Path, cfg: DataConfig) -> Source:
    import datasets

    try:
        ds = datasets.load_from_disk(str(p))
    except Exception as e:  # noqa: BLE001 - any failure to read the folder is one user-facing line
        raise DataError(f"not a readable datasets folder (load_from_disk: {e})", path=path) from e
    if isinstance(ds, datasets.DatasetDict):
        if cfg.split not in ds:
            raise DataError(f"no split data.split={cfg.split!r}; the saved DatasetDict has "
                            f"{', '.join(map(repr, ds))}", path=path)
        return Source(f"{path}[{cfg.split}]", f"{p.name}/{cfg.split}",
                      records_from_datasets(ds[cfg.split]))
    return Source(path, p.name, records_from_datasets(ds))


def _read_folder(path: str, p: Path) -> list[Source]:
    """Every data file directly in folder `p`, in name order, each with its own label."""
    entries = sorted(e for e in p.iterdir() if not e.name.startswith("."))
    files = [e for e in entries if e.is_file() and file_kind(e) is not None]
    others = [e.name + ("/" if e.is_dir() else "") for e in entries if e not in files]
    if not files:
        hint = f"; it holds {', '.join(others[:5])}" if others else " (it is empty)"
        raise DataError(f"no data files ({', '.join(SUFFIXES)}, optionally .gz) in this folder"
                        f"{hint}", path=path)
    if others:
        shown = ", ".join(others[:5]) + (", ..." if len(others) > 5 else "")
        log.warning("%s: read %d data files; ignored %d entries that are not data files (%s)",
                    path, len(files), len(others), shown)
    return [_read_file(f, str(Path(path) / f.name)) for f in files]


def read_sources(path: str | Path | None, cfg: DataConfig) -> list[Source]:
    """The sources `path` names: one per data file (several for a folder of files), or the one
    saved datasets folder or Hub dataset."""
    if path is None or str(path).strip() == "":
        raise ConfigError(
            "data.path is not set: name the preference data, e.g. data.path=pairs.jsonl (a "
            ".jsonl/.json/.csv/.tsv/.parquet file, a folder of them, a Dataset.save_to_disk "
            "folder or a Hugging Face Hub id)")
    path = str(path)
    p = Path(path).expanduser()
    if p.is_file():
        return [_read_file(p, path)]
    if p.is_dir():
        if _is_saved_dataset(p):
            return [_read_saved_dataset(path, p, cfg)]
        return _read_folder(path, p)
    if _looks_local(path):
        raise DataError("file not found", path=path)
    return [_read_hub(path, cfg)]


def read_source(path: str | Path | None, cfg: DataConfig) -> Source:
    """The one source `path` names (:func:`read_sources`); a folder of several files is refused."""
    sources = read_sources(path, cfg)
    if len(sources) > 1:
        names = ", ".join(Path(s.label).name for s in sources[:4])
        more = ", ..." if len(sources) > 4 else ""
        raise DataError(f"a folder of {len(sources)} data files ({names}{more}): give one file",
                        path=str(path))
    return sources[0]


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

    The same reader as training data (:func:`read_source`: files, a saved datasets folder, Hub
    ids); every record must be an object. One source only: the lines name one file.
    """
    src = read_source(str(path), cfg or DataConfig())
    for line, rec in src.records:
        if not isinstance(rec, dict):
            raise DataError(
                f"expected an object, got {type(rec).__name__}", path=src.label, line=line
            )
    return src.records
