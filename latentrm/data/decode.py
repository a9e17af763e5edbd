"""The bytes of one data file -> numbered raw records: JSON Lines, JSON, CSV/TSV and Parquet,
each maybe gzip-compressed, with the checks every reader needs.

Strict JSON (no NaN/Infinity literals, no duplicate keys, no lone surrogates), CSV cells that may
hold JSON, and bounds on what a small compressed file may cost to decode (:func:`inflate_limit`).
Each record carries its number: the file line for .jsonl/.csv/.tsv (the line a CSV record starts
on), the 1-based record number for .json and .parquet. Unreadable input raises ``DataError``
naming the file (and line). Where a file comes from (a path, a folder, a Hub id) is
:mod:`latentrm.data.readers`.
"""

from __future__ import annotations

import contextlib
import csv
import gzip
import io
import json
import re
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from latentrm.errors import DataError

SUFFIXES = (".jsonl", ".ndjson", ".json", ".csv", ".tsv", ".parquet")
# What json.loads raises past ~1000 nesting levels is RecursionError, not a JSONDecodeError.
_TOO_DEEP = "JSON nested too deeply (over ~1000 levels of lists/objects)"

# What one compressed input may cost: a .gz file may inflate, and a Parquet file decode, to at
# most max(MIN_INFLATE_LIMIT, MAX_INFLATE_RATIO x its size on disk): far above what real data
# files do (scripts/inflate_ratio.py, README), far below a bomb: a 1 MB file of 1 GiB of newlines
# (1000x) is refused once 256 MiB are inflated, before a line is split.
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
    obj = json.loads(
        text,
        parse_constant=lambda c: seen.append(c) or _Literal(c),
        object_pairs_hook=_no_duplicates,
    )
    return obj, bool(seen)


def _parse_json(text: str, label: str, line: int | None) -> tuple[Any, bool]:
    """_loads(text) with every failure as one DataError naming `label` and `line`."""
    try:
        obj, odd = _loads(text)
    except _DuplicateKey as e:
        raise DataError(
            f"duplicate key {e.key!r} in one JSON object (JSON readers keep the last "
            "silently; remove one)",
            path=label,
            line=line,
        ) from None
    except json.JSONDecodeError as e:
        raise DataError(
            f"malformed JSON: {e.msg} (column {e.colno})",
            path=label,
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
            raise DataError(
                "lone UTF-16 surrogate (a \\ud800-\\udfff escape without its pair): not text",
                path=label,
                line=line,
                field=where or None,
            )
    return obj, odd


def _literal_at(obj: Any, where: str) -> tuple[_Literal, str] | None:
    """The first NaN/Infinity literal in `obj` and its path ('candidates[0].gold')."""
    if isinstance(obj, _Literal):
        return obj, where
    if isinstance(obj, dict):
        items: Iterable[tuple[str, Any]] = (
            (f"{where}.{k}" if where else str(k), v) for k, v in obj.items()
        )
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
            raise DataError(
                f"{hit[0]} is not valid JSON (write null or a number)",
                path=label,
                line=line,
                field=hit[1] or None,
            )


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
        obj = json.loads(value, object_pairs_hook=_no_duplicates)
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
                raise DataError(
                    f"duplicate column {dup!r} (CSV readers keep the last silently; "
                    "rename or remove one)",
                    path=label,
                    line=reader.line_num,
                )
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
                    except _DuplicateKey as e:
                        raise DataError(
                            f"duplicate key {e.key!r} in one JSON object (JSON "
                            "readers keep the last silently; remove one)",
                            path=label,
                            line=start,
                            field=k,
                        ) from None
                if isinstance(rec.get("choice"), str) and rec["choice"].strip().isdigit():
                    rec["choice"] = int(rec["choice"])
                out.append((start, rec))
                start = reader.line_num + 1
        except csv.Error as e:
            # The line the failing record starts on: reader.line_num is where the csv module
            # gave up, past every line of a multi-line cell.
            raise DataError(f"malformed CSV: {e}", path=label, line=start) from None
    return out


def file_kind(path: str | Path) -> str | None:
    """The data suffix of `path` ('.jsonl', '.csv', ...) before any '.gz'; None if unknown."""
    name = Path(path).name.lower()
    name = name[:-3] if name.endswith(".gz") else name
    return next((s for s in SUFFIXES if name.endswith(s)), None)


def gunzip(data: bytes, label: str) -> bytes:
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
            "decompress it yourself if it is real",
            path=label,
        )
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
                    path=label,
                )
            rows.extend(batch.to_pylist())
    except (pa.ArrowException, OSError) as e:
        raise DataError(f"not a readable parquet file ({e})", path=label) from None
    return list(enumerate(rows, 1))


def decode_file(data: bytes, kind: str, label: str) -> list[tuple[int, Any]]:
    """Numbered records of a file's (already gunzipped) bytes, by its kind (a SUFFIXES entry)."""
    if kind in (".jsonl", ".ndjson"):
        return _jsonl_records(data, label)
    if kind == ".json":
        return _json_records(data, label)
    if kind in (".csv", ".tsv"):
        return _csv_records(data, label, "\t" if kind == ".tsv" else ",")
    return _parquet_records(data, label)
