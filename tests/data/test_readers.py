"""latentrm.data.readers: files of every kind (CSV, gzip, JSON list, Parquet), read errors, the
Hub path (offline); unicode through every file format."""

from __future__ import annotations

import csv
import gzip
import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from latentrm.config import DataConfig
from latentrm.data import load_pairs
from latentrm.data.readers import read_rows, records_from_datasets
from latentrm.errors import DataError
from latentrm.testing import HH_RECORD
from latentrm.testing import user_message as u
from tests.data.strategies import text


# --- file kinds -----------------------------------------------------------------------------------
def test_csv_conversational_json_cells_match_jsonl(fixtures_dir: Path) -> None:
    from_csv = load_pairs(fixtures_dir / "trl_conversational.csv")
    from_jsonl = load_pairs(fixtures_dir / "trl_conversational.jsonl")
    assert [(p.prompt, p.chosen, p.rejected) for p in from_csv] == [
        (p.prompt, p.chosen, p.rejected) for p in from_jsonl
    ]
    # CSV ids use the file line of the record's start (header = line 1).
    assert from_csv.ids == ["trl_conversational:2", "trl_conversational:3"]


def test_csv_standard_with_multiline_cell(fixtures_dir: Path) -> None:
    ds = load_pairs(fixtures_dir / "trl_standard.csv")
    assert ds.ids == ["c1", "c2"]
    assert ds[0].prompt == (u("Write a haiku\nabout rain"),)
    assert (ds[1].prompt, ds[1].chosen, ds[1].rejected) == ((u("The sky is"),), "blue", "green")


def test_gz_json_list_and_parquet_give_the_same_pairs(tmp_path: Path, fixtures_dir: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    records = [json.loads(line) for line in (fixtures_dir / "trl_conversational.jsonl").open()]
    gz = tmp_path / "conv.jsonl.gz"
    gz.write_bytes(gzip.compress((fixtures_dir / "trl_conversational.jsonl").read_bytes()))
    listed = tmp_path / "conv.json"
    listed.write_text(json.dumps(records))
    parquet = tmp_path / "conv.parquet"
    pq.write_table(pa.Table.from_pylist(records), parquet)
    reference = load_pairs(fixtures_dir / "trl_conversational.jsonl")
    for path in (gz, listed, parquet):
        ds = load_pairs(path)
        assert ds.ids == ["conv:1", "conv:2"], path
        assert [(p.prompt, p.chosen, p.rejected) for p in ds] == [
            (p.prompt, p.chosen, p.rejected) for p in reference
        ], path


# --- read errors ----------------------------------------------------------------------------------
def test_malformed_json_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(HH_RECORD) + "\n" + '{"chosen": "x", "rejected": \n')
    with pytest.raises(
        DataError, match=r"bad\.jsonl:2: malformed JSON: Expecting value \(column 29\)"
    ):
        load_pairs(path)


def test_non_utf8_bytes_name_the_line(tmp_path: Path) -> None:
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(
        json.dumps(HH_RECORD).encode()
        + b"\n"
        + '{"prompt": "caf\u00e9", "chosen": "a", "rejected": "b"}'.encode("latin-1")
    )
    with pytest.raises(DataError, match=r"latin1\.jsonl:2: not valid UTF-8"):
        load_pairs(path)
    csv_path = tmp_path / "latin1.csv"
    csv_path.write_bytes(b"prompt,chosen,rejected\nq,a,b\nq,caf\xe9,b\n")
    with pytest.raises(DataError, match=r"latin1\.csv:3: not valid UTF-8"):
        load_pairs(csv_path)


def test_read_rows_errors(tmp_path):
    p = tmp_path / "bad.jsonl"
    p.write_text('{"prompt": "a", "response": "b"}\n\n{"prompt": oops}\n')
    with pytest.raises(DataError, match=r"bad\.jsonl:3: malformed JSON"):
        read_rows(p)
    with pytest.raises(DataError, match="file not found"):
        read_rows(tmp_path / "missing.jsonl")


# --- the Hub path, offline ------------------------------------------------------------------------
def test_records_from_datasets_match_the_file_reader(fixtures_dir: Path) -> None:
    import datasets

    ds = datasets.load_dataset("json", data_files=str(fixtures_dir / "tldr.jsonl"), split="train")
    records = records_from_datasets(ds)
    assert [line for line, _ in records] == [1, 2]
    assert records[0][1]["choice"] == 1
    assert records[0][1]["info"]["subreddit"] == "cats"
    with pytest.raises(DataError, match="expected one split"):
        records_from_datasets(datasets.DatasetDict({"train": ds}))


def test_hub_id_goes_through_datasets_load_dataset(
    monkeypatch: pytest.MonkeyPatch, fixtures_dir: Path
) -> None:
    import datasets

    real = datasets.load_dataset
    calls = []

    def fake(name, config=None, split=None):  # stands in for the Hub: serves a local file
        calls.append((name, config, split))
        return real("json", data_files=str(fixtures_dir / "tldr.jsonl"), split="train")

    monkeypatch.setattr(datasets, "load_dataset", fake)
    cfg = DataConfig(hub_config="comparisons", split="validation")
    ds = load_pairs("openai/summarize_from_feedback", cfg)
    assert calls == [("openai/summarize_from_feedback", "comparisons", "validation")]
    assert ds.source == "openai/summarize_from_feedback[validation]"
    assert ds.ids == [
        "openai/summarize_from_feedback/validation:1",
        "openai/summarize_from_feedback/validation:2",
    ]
    local = load_pairs(fixtures_dir / "tldr.jsonl")
    assert [(p.prompt, p.chosen, p.rejected) for p in ds] == [
        (p.prompt, p.chosen, p.rejected) for p in local
    ]


def test_hub_failure_is_one_data_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets

    def fail(*args, **kwargs):
        raise ConnectionError("offline")

    monkeypatch.setattr(datasets, "load_dataset", fail)
    with pytest.raises(DataError, match=r"^nobody/nothing: could not load Hub dataset .*offline"):
        load_pairs("nobody/nothing")


def test_missing_local_file_is_not_sent_to_the_hub(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"nope\.jsonl: file not found"):
        load_pairs(str(tmp_path / "nope.jsonl"))


# --- properties -----------------------------------------------------------------------------------
def _write(fmt: str, path: Path, rows: list[dict[str, str]]) -> None:
    if fmt == "jsonl":
        lines = [json.dumps(r, ensure_ascii=False) for r in rows]
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    elif fmt == "csv":
        with path.open("w", encoding="utf-8", newline="") as f:
            w = csv.DictWriter(f, fieldnames=["prompt", "chosen", "rejected"])
            w.writeheader()
            w.writerows(rows)
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(rows), path)


row = st.fixed_dictionaries({"prompt": text, "chosen": text, "rejected": text}).filter(
    lambda r: r["chosen"] != r["rejected"] and not r["prompt"].lstrip().startswith("Human:")
)


@settings(max_examples=40, deadline=None)
@given(st.lists(row, min_size=1, max_size=4), st.sampled_from(["jsonl", "csv", "parquet"]))
def test_unicode_survives_every_file_format(rows: list[dict[str, str]], fmt: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"u.{fmt}"
        _write(fmt, path, rows)
        ds = load_pairs(path)
    got = [(p.prompt, p.chosen, p.rejected) for p in ds]
    want = [(({"role": "user", "content": r["prompt"]},), r["chosen"], r["rejected"]) for r in rows]
    assert got == want
