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

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from latentrm.config import DataConfig
from latentrm.data.decode import SUFFIXES, decode_file, file_kind, gunzip
from latentrm.errors import ConfigError, DataError

log = logging.getLogger(__name__)


@dataclass
class Source:
    label: str  # names the input in errors and PreferenceDataset.source
    stem: str  # prefix of generated ids
    records: list[tuple[int, Any]]  # (line or record number, record)


def records_from_datasets(ds: Any) -> list[tuple[int, Any]]:
    """Rows of a `datasets.Dataset` as (1-based row number, dict); used for Hub ids and in tests."""
    if not hasattr(ds, "column_names") or isinstance(ds.column_names, dict):
        raise DataError(f"expected one split of a dataset, got {type(ds).__name__}; set data.split")
    return [(i, dict(row)) for i, row in enumerate(ds, 1)]


def _looks_local(path: str) -> bool:
    return path.endswith((*SUFFIXES, ".gz")) or path.startswith(("/", ".", "~"))


def _read_file(p: Path, label: str) -> Source:
    data = p.read_bytes()
    if p.name.lower().endswith(".gz"):
        data = gunzip(data, label)
    kind = file_kind(p)
    if kind is None:
        raise DataError(f"unknown file type; use one of {', '.join(SUFFIXES)}", path=label)
    name = p.name[:-3] if p.name.lower().endswith(".gz") else p.name
    stem = name[: -len(kind)]
    return Source(label, stem, decode_file(data, kind, label))


def _is_saved_dataset(p: Path) -> bool:
    """A folder written by `Dataset.save_to_disk` / `DatasetDict.save_to_disk`."""
    return (p / "dataset_dict.json").is_file() or (
        (p / "state.json").is_file() and (p / "dataset_info.json").is_file()
    )


def _read_saved_dataset(path: str, p: Path, cfg: DataConfig) -> Source:
    import datasets

    try:
        ds = datasets.load_from_disk(str(p))
    except Exception as e:  # noqa: BLE001 - any failure to read the folder is one user-facing line
        raise DataError(f"not a readable datasets folder (load_from_disk: {e})", path=path) from e
    if isinstance(ds, datasets.DatasetDict):
        if cfg.split not in ds:
            raise DataError(
                f"no split data.split={cfg.split!r}; the saved DatasetDict has "
                f"{', '.join(map(repr, ds))}",
                path=path,
            )
        return Source(
            f"{path}[{cfg.split}]", f"{p.name}/{cfg.split}", records_from_datasets(ds[cfg.split])
        )
    return Source(path, p.name, records_from_datasets(ds))


def _read_folder(path: str, p: Path) -> list[Source]:
    """Every data file directly in folder `p`, in name order, each with its own label."""
    entries = sorted(e for e in p.iterdir() if not e.name.startswith("."))
    files = [e for e in entries if e.is_file() and file_kind(e) is not None]
    others = [e.name + ("/" if e.is_dir() else "") for e in entries if e not in files]
    if not files:
        hint = f"; it holds {', '.join(others[:5])}" if others else " (it is empty)"
        raise DataError(
            f"no data files ({', '.join(SUFFIXES)}, optionally .gz) in this folder{hint}", path=path
        )
    if others:
        shown = ", ".join(others[:5]) + (", ..." if len(others) > 5 else "")
        log.warning(
            "%s: read %d data files; ignored %d entries that are not data files (%s)",
            path,
            len(files),
            len(others),
            shown,
        )
    return [_read_file(f, str(Path(path) / f.name)) for f in files]


def read_sources(path: str | Path | None, cfg: DataConfig) -> list[Source]:
    """The sources `path` names: one per data file (several for a folder of files), or the one
    saved datasets folder or Hub dataset."""
    if path is None or str(path).strip() == "":
        raise ConfigError(
            "data.path is not set: name the preference data, e.g. data.path=pairs.jsonl (a "
            ".jsonl/.json/.csv/.tsv/.parquet file, a folder of them, a Dataset.save_to_disk "
            "folder or a Hugging Face Hub id)"
        )
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
        raise DataError(
            f"a folder of {len(sources)} data files ({names}{more}): give one file", path=str(path)
        )
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
