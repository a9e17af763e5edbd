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
import re
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

# What one compressed input may cost: a .gz file may inflate, and a Parquet file decode, to at
# most max(MIN_INFLATE_LIMIT, MAX_INFLATE_RATIO x its size on disk). Text data compresses 3-10x
# (the HH-RLHF and alpaca-eval files here: 4.4x), so real files of any size pass; a 1 MB file of
# 1 GiB of newlines (1000x) is refused after 100 MB, before a line is split.
MAX_INFLATE_RATIO = 100
MIN_INFLATE_LIMIT = 256 << 20
_PARQUET_BATCH = 64  # rows decoded at a time: one batch costs at most 64 x the largest value


def inflate_limit(stored_bytes: int) -> int:
    """The most bytes a compressed input of `stored_bytes` may decode to (the rule above)."""
    return max(MIN_INFLATE_LIMIT, MAX_INFLATE_RATIO * stored_bytes)


class _Literal(str):
    """NaN / Infinity / -Infinity as parsed: Python's json reads these, JSON does not."""


class _DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for k, _ in pairs:
            if k in seen:
                raise _DuplicateKey(k)
            seen.add(k)
    return obj


# A JSON escape of a UTF-16 surrogate (\ud800-\udfff); a pair of them is one character, a lone
# one is a string no UTF-8 file, tokenizer or output can hold.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _lone_surrogate_at(obj: Any, where: str) -> str | None:
    """The path of the first string (key or value) in `obj` holding a lone surrogate."""
    if isinstance(obj, str):
        try:
            obj.encode("utf-8")
        except UnicodeEncodeError:
            return where
        return None
    if isinstance(obj, dict):
        for k, v in obj.items():
            w = f"{where}.{k}" if where else str(k)
            hit = _lone_surrogate_at(k, w) or _lone_surrogate_at(v, w)
            if hit is not None:
                return hit
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            hit = _lone_surrogate_at(v, f"{where}[{i}]")
            if hit is not None:
                return hit
    return None


def _loads(text: str) -> tuple[Any, bool]:
    """json.loads(text), and whether it met a non-standard literal (left as a _Literal).

    Duplicate keys in an object raise _DuplicateKey (json.loads would keep the last silently).
    """
    seen: list[str] = []
    obj = json.loads(text, parse_constant=lambda c: seen.append(c) or _Literal(c),
                     object_pairs_hook=_no_duplicates)
    return obj, bool(seen)


def _parse_json(text: str, label: str, line: int | None) -> tuple[Any, bool]:
    """_loads(text) with every failure as one DataError naming `label` and `line`."""
    try:
        obj, odd = _loads(text)
    except _DuplicateKey as e:
        raise DataError(f"duplicate key {e.key!r} in one JSON object (JSON readers keep the last "
                        "silently; remove one)", path=label, line=line) from None
    except json.JSONDecodeError as e:
        raise DataError(
            f"malformed JSON: {e.msg} (column {e.colno})", path=label,
            line=e.lineno if line is None else line,
        ) from None
    except RecursionError:
        raise DataError(_TOO_DEEP, path=label, line=line) from None
    if _SURROGATE_ESCAPE.search(text):
        try:
            where = _lone_surrogate_at(obj, "")
        except RecursionError:
            raise DataError(_TOO_DEEP, path=label, line=line) from None
        if where is not None:
            raise DataError("lone UTF-16 surrogate (a \\ud800-\\udfff escape without its "
                            "pair): not text", path=label, line=line, field=where or None)
    return obj, odd


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
    start = 3 if data.startswith(b"\xef\xbb\xbf") else 0
    out = []
    # Split bytes on b"\n" only: JSON escapes newlines inside strings, while str.splitlines() would
    # also break at U+2028 and friends, which may appear raw inside JSON strings. The regex skips
    # runs of blank lines in C, with no list entry per line.
    i, pos = 1, start
    for m in _NON_EMPTY_LINE.finditer(data, start):
        i += data.count(b"\n", pos, m.start())
        pos = m.start()
        raw = m.group()
        if not raw.strip():
            continue
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            msg = f"not valid UTF-8 (byte {e.start + 1} of the line; re-save the file as UTF-8)"
            raise DataError(msg, path=label, line=i) from None
        obj, odd = _parse_json(text, label, i)
        if odd:
            _refuse_literals([(i, obj)], label)
        out.append((i, obj))
    return out


_NON_EMPTY_LINE = re.compile(rb"[^\n]+")


def _json_records(data: bytes, label: str) -> list[tuple[int, Any]]:
    obj, odd = _parse_json(_decode(data, label), label, None)
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
            header = reader.fieldnames or []  # reads the header, so line_num counts it
            dup = next((c for k, c in enumerate(header) if c in header[:k]), None)
            if dup is not None:
                raise DataError(f"duplicate column {dup!r} (CSV readers keep the last silently; "
                                "rename or remove one)", path=label, line=reader.line_num)
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


def _gunzip(data: bytes, label: str) -> bytes:
    """The inflated bytes, at most inflate_limit(len(data)) of them (DataError past it)."""
    limit = inflate_limit(len(data))
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(data)) as f:
            out = f.read(limit + 1)
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"not a valid gzip file ({e})", path=label) from None
    if len(out) > limit:
        raise DataError(
            f"inflates to more than {limit} bytes ({MAX_INFLATE_RATIO} x its compressed size, "
            f"at least {MIN_INFLATE_LIMIT}): a compression bomb? Real data compresses far less; "
            "decompress it yourself if it is real", path=label)
    return out


def _parquet_records(data: bytes, label: str) -> list[tuple[int, Any]]:
    """The rows of a Parquet file, decoded a few at a time so that what they decode to is bounded
    (inflate_limit) before it is materialised: dictionary encoding lets a small file repeat a
    large value a million times."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    limit = inflate_limit(len(data))
    rows: list[Any] = []
    size = 0
    try:
        pf = pq.ParquetFile(io.BytesIO(data))
        for batch in pf.iter_batches(batch_size=_PARQUET_BATCH):
            size += batch.get_total_buffer_size()
            if size > limit:
                raise DataError(
                    f"decodes to more than {limit} bytes ({MAX_INFLATE_RATIO} x its size on disk, "
                    f"at least {MIN_INFLATE_LIMIT}; {len(rows)} of {pf.metadata.num_rows} rows "
                    "read): a dictionary-encoding bomb? Split the file if it is real",
                    path=label)
            rows.extend(batch.to_pylist())
    except (pa.ArrowException, OSError) as e:
        raise DataError(f"not a readable parquet file ({e})", path=label) from None
    return list(enumerate(rows, 1))


def _read_file(p: Path, label: str) -> Source:
    data = p.read_bytes()
    if p.name.lower().endswith(".gz"):
        data = _gunzip(data, label)
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
        records = _parquet_records(data, label)
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
