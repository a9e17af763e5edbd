"""latentrm.data.readers: files of every kind (CSV, gzip, JSON list, Parquet), read errors, the
Hub path (offline); unicode through every file format."""

from __future__ import annotations

import csv
import gzip
import json
import logging
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from latentrm.config import DataConfig
from latentrm.data import load_pairs
from latentrm.data.readers import read_rows, read_sources, records_from_datasets
from latentrm.errors import ConfigError, DataError
from latentrm.testing import HH_RECORD, write_jsonl
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


def test_deeply_nested_json_is_one_data_error_naming_the_line(tmp_path: Path) -> None:
    deep = "[" * 100_000 + "]" * 100_000  # json.loads raises RecursionError past ~1000 levels
    path = tmp_path / "deep.jsonl"
    path.write_text(json.dumps(HH_RECORD) + "\n" + '{"chosen": ' + deep + "}\n")
    with pytest.raises(DataError, match=r"^.*deep\.jsonl:2: JSON nested too deeply"):
        load_pairs(path)
    listed = tmp_path / "deep.json"
    listed.write_text('{"data": [' + deep + "]}")
    with pytest.raises(DataError, match=r"deep\.json: JSON nested too deeply"):
        read_rows(listed)
    cell = tmp_path / "deep.csv"  # a CSV cell that looks like a JSON list of messages
    cell.write_text(f'prompt,chosen,rejected\nq,a,b\n"{deep[:60_000]}{deep[-60_000:]}",a,b\n')
    with pytest.raises(DataError, match=r"deep\.csv:3: JSON nested too deeply .*'prompt'"):
        load_pairs(cell)


def test_huge_csv_cell_is_read_and_cut_like_jsonl(tmp_path: Path) -> None:
    """A 200,000-character response: over the csv module's default 128 KiB cell limit; read,
    then cut to data.max_response_chars like the same record in JSONL."""
    long = "x" * 200_000
    path = tmp_path / "long.csv"
    path.write_text(f'prompt,chosen,rejected\nq,a,b\nq2,"{long}",short\n')
    ds = load_pairs(path, DataConfig(max_response_chars=1000))
    assert ds.ids == ["long:2", "long:3"]
    assert ds[1].chosen == "x" * 1000 and ds.stats["truncated_responses"] == 1
    jsonl = tmp_path / "long.jsonl"
    jsonl.write_text(json.dumps({"prompt": "q2", "chosen": long, "rejected": "short"}) + "\n")
    assert load_pairs(jsonl, DataConfig(max_response_chars=1000))[0].chosen == ds[1].chosen
    assert read_rows(path)[1] == (3, {"prompt": "q2", "chosen": long, "rejected": "short"})


def test_csv_error_names_the_line_its_record_starts_on(tmp_path: Path, monkeypatch) -> None:
    """The record starting on line 5 spans lines 5-7; its error says line 5, not where the csv
    module stopped reading. (A cell limit of 20 characters makes the csv module fail.)"""
    import latentrm.data.decode as readers  # the bytes-to-records half of the reader

    monkeypatch.setattr(readers, "_csv_field_limit", lambda text: 20)
    path = tmp_path / "in.csv"
    path.write_text(
        'prompt,chosen,rejected\nq,a,b\n"two\nlines",c,d\n'
        'q3,"a cell of more\nthan twenty\ncharacters",e\n'
    )
    with pytest.raises(DataError, match=r"in\.csv:5: malformed CSV: field larger than field limit"):
        load_pairs(path)


# --- folders --------------------------------------------------------------------------------------
def _mixed_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "mixed"
    folder.mkdir()
    write_jsonl(
        folder / "a.jsonl",
        [{"prompt": f"q{i}", "chosen": "good", "rejected": "bad"} for i in range(3)],
    )
    (folder / "b.csv").write_text("prompt,chosen,rejected\nq3,yes,no\nq4,fine,awful\n")
    (folder / "README.md").write_text("# my pairs\n")
    (folder / ".gitattributes").write_text("*.csv text\n")
    return folder


def test_folder_reads_every_data_file_each_named_in_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import datasets

    def no_hub(*args, **kwargs):
        raise AssertionError("a local folder was sent to datasets.load_dataset")

    monkeypatch.setattr(datasets, "load_dataset", no_hub)
    folder = _mixed_folder(tmp_path)
    with caplog.at_level(logging.WARNING, logger="latentrm.data"):
        ds = load_pairs(folder)
    assert ds.ids == ["a:1", "a:2", "a:3", "b:2", "b:3"]
    assert [p.chosen for p in ds][3:] == ["yes", "fine"]
    assert ds.source == str(folder) and ds.stats["files"] == 2 and ds.stats["records"] == 5
    assert "ignored 1 entries that are not data files (README.md)" in caplog.text
    (folder / "b.csv").write_text("prompt,chosen,rejected\nq3,yes,no\nq4,fine\n")
    with pytest.raises(DataError, match=rf"^{folder / 'b.csv'}:3: missing 'rejected'"):
        load_pairs(folder)
    (folder / "b.csv").write_text("chosen,rejected\nyes,no\n")  # implicit prompt: another format
    mixed = rf"^{folder / 'b.csv'}:2: mixed formats: this file holds \S+ records but "
    with pytest.raises(DataError, match=mixed + rf"{folder / 'a.jsonl'} holds trl-standard"):
        load_pairs(folder)
    with pytest.raises(DataError, match="a folder of 2 data files .a.jsonl, b.csv.: give one file"):
        read_rows(folder)  # score/bon errors name one file's lines


def test_folder_without_data_files_names_what_it_holds(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"empty: no data files .* \(it is empty\)"):
        load_pairs(tmp_path / "empty")
    (tmp_path / "repo" / "data").mkdir(parents=True)
    (tmp_path / "repo" / "README.md").write_text("x")
    with pytest.raises(DataError, match=r"repo: no data files .*; it holds README\.md, data/"):
        load_pairs(tmp_path / "repo")


def test_save_to_disk_folders_dataset_and_dataset_dict(tmp_path: Path, fixtures_dir: Path) -> None:
    import datasets

    records = [json.loads(line) for line in (fixtures_dir / "trl_standard.jsonl").open()]
    ds = datasets.Dataset.from_list(records)
    ds.save_to_disk(str(tmp_path / "saved"))
    got = load_pairs(tmp_path / "saved")
    want = load_pairs(fixtures_dir / "trl_standard.jsonl")
    assert got.ids == ["saved:1", "saved:2"] and got.source == str(tmp_path / "saved")
    assert [(p.prompt, p.chosen, p.rejected) for p in got] == [
        (p.prompt, p.chosen, p.rejected) for p in want
    ]
    datasets.DatasetDict({"train": ds.select([0]), "test": ds.select([1])}).save_to_disk(
        str(tmp_path / "dict")
    )
    test = load_pairs(tmp_path / "dict", DataConfig(split="test"))
    assert test.ids == ["dict/test:1"] and test.source == f"{tmp_path / 'dict'}[test]"
    assert test[0].chosen == want[1].chosen
    with pytest.raises(
        DataError,
        match=r"dict: no split data\.split='validation'; the saved "
        r"DatasetDict has 'train', 'test'",
    ):
        load_pairs(tmp_path / "dict", DataConfig(split="validation"))
    rows = read_rows(tmp_path / "saved")  # score / bon read the same folders
    assert rows[1] == (2, records[1])


def test_unset_data_path_says_which_key(tmp_path: Path) -> None:
    for path in (None, ""):
        with pytest.raises(ConfigError, match=r"^data\.path is not set: name the preference"):
            read_sources(path, DataConfig())
        with pytest.raises(ConfigError, match=r"data\.path is not set"):
            load_pairs(path)


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


@pytest.mark.parametrize(
    ("name", "text", "where", "literal", "field"),
    [
        (
            "in.jsonl",
            '{"prompt": "q", "response": "a"}\n{"prompt": "q", "response": "b", '
            '"meta": {"score": NaN}}\n',
            "in.jsonl:2",
            "NaN",
            "meta.score",
        ),
        (
            "c.jsonl",
            '{"prompt": "q", "candidates": [{"output": "a", "gold": 1}, '
            '{"output": "b", "gold": Infinity}]}\n',
            "c.jsonl:1",
            "Infinity",
            "candidates[1].gold",
        ),
        (
            "in.json",
            '{"data": [{"prompt": "q", "chosen": "a", "rejected": "b"}, '
            '{"prompt": "q", "chosen": "a", "rejected": "b", "margin": -Infinity}]}',
            "in.json:2",
            "-Infinity",
            "margin",
        ),
    ],
    ids=["jsonl-nested", "jsonl-in-a-list", "json-record"],
)
def test_non_standard_json_literals_are_refused_naming_line_and_field(
    tmp_path: Path, name: str, text: str, where: str, literal: str, field: str
) -> None:
    """Python's json reads NaN/Infinity, which are not JSON: refused when the input is read (a
    score run would otherwise embed every row and then fail writing them back out)."""
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(DataError) as e:
        read_rows(path, DataConfig())
    assert str(e.value) == (
        f"{tmp_path / where}: {literal} is not valid JSON (write null or a "
        f"number) (field '{field}')"
    )


# --- bounded cost of small inputs (issue 23 item 2) ---------------------------------------------
def test_a_gzip_bomb_is_refused_naming_the_file(tmp_path: Path, monkeypatch) -> None:
    """1 GiB of newlines compresses to ~1 MB: the inflated size is bounded by a ratio of the
    compressed size (decode.MAX_INFLATE_RATIO, with a floor), refused before the lines are split.
    The floor (256 MiB) is lowered to 1 MiB here, so a 64 MiB bomb of ~64 kB is refused once
    100 x its size is inflated, and the test never holds 1 GiB."""
    import latentrm.data.decode as readers  # the bytes-to-records half of the reader

    monkeypatch.setattr(readers, "MIN_INFLATE_LIMIT", 1 << 20)
    bomb = tmp_path / "bomb.jsonl.gz"
    bomb.write_bytes(gzip.compress(b"\n" * (64 << 20), compresslevel=9))
    assert bomb.stat().st_size < 100_000  # 64 MiB of newlines in ~64 kB
    with pytest.raises(
        DataError,
        match=r"^\S*bomb\.jsonl\.gz: inflates to more than \d+ bytes "
        r"\(\d+ x its compressed size",
    ):
        read_rows(bomb)
    ok = tmp_path / "ok.jsonl.gz"  # real data compresses 3-10x: far inside the bound
    ok.write_bytes(gzip.compress((json.dumps(HH_RECORD) + "\n").encode() * 2000))
    assert len(read_rows(ok)) == 2000


def test_blank_line_runs_cost_no_memory_per_line(tmp_path: Path) -> None:
    """Blank lines are skipped without a list entry each (10 M of them, then a record: its line
    number is still right)."""
    import tracemalloc

    path = tmp_path / "blank.jsonl"
    path.write_bytes(b"\n" * 10_000_000 + b'{"prompt": "q", "response": "a"}\n')
    tracemalloc.start()
    try:
        rows = read_rows(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert rows == [(10_000_001, {"prompt": "q", "response": "a"})]
    # The file's 10 MB read once (and its copy without a BOM at most), not 8 bytes per line more.
    assert peak < 30_000_000


def test_a_dictionary_encoded_parquet_bomb_is_refused_before_it_is_materialised(
    tmp_path: Path, monkeypatch
) -> None:
    """One 100 kB string repeated 20,000 times: a dictionary-encoded file of ~100 kB that
    decodes to 2 GB. Rows are decoded in small batches and the decoded size is bounded like a
    gzip file's (the floor lowered to 1 MiB here)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    import latentrm.data.decode as readers  # the bytes-to-records half of the reader

    monkeypatch.setattr(readers, "MIN_INFLATE_LIMIT", 1 << 20)
    path = tmp_path / "bomb.parquet"
    big = "x" * 100_000
    table = pa.table(
        {
            "prompt": pa.array([big] * 20_000).dictionary_encode(),
            "response": pa.array(["a"] * 20_000),
        }
    )
    pq.write_table(table, path, use_dictionary=True, compression="zstd")
    assert path.stat().st_size < 500_000
    with pytest.raises(DataError, match=r"bomb\.parquet: decodes to more than \d+ bytes"):
        read_rows(path)
    small = tmp_path / "small.parquet"
    pq.write_table(pa.table({"prompt": ["q1", "q2"], "response": ["a", "b"]}), small)
    assert read_rows(small) == [
        (1, {"prompt": "q1", "response": "a"}),
        (2, {"prompt": "q2", "response": "b"}),
    ]


# --- the same record rules everywhere (issue 23 items 5, 6) ---------------------------------------
def test_duplicate_json_keys_are_refused_not_last_wins(tmp_path: Path) -> None:
    path = tmp_path / "dup.jsonl"
    path.write_text(
        '{"prompt": "q", "response": "a"}\n{"prompt": "q", "response": "a", "response": "b"}\n'
    )
    with pytest.raises(DataError, match=r"dup\.jsonl:2: duplicate key 'response' "):
        read_rows(path)
    listed = tmp_path / "dup.json"
    listed.write_text('[{"prompt": "q", "chosen": {"role": "assistant", "role": "user"}}]')
    with pytest.raises(DataError, match=r"dup\.json: duplicate key 'role' "):
        read_rows(listed)
    cell = tmp_path / "dup.csv"  # a CSV cell holding a JSON message list
    cell.write_text(
        'prompt,response\n"[{""role"": ""user"", ""role"": ""system"", ""content"": ""q""}]",a\n'
    )
    with pytest.raises(DataError, match=r"dup\.csv:2: duplicate key 'role' .*\(field 'prompt'\)$"):
        read_rows(cell)


def test_duplicate_csv_columns_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "dup.csv"
    path.write_text("prompt,chosen,rejected,chosen\nq,a,b,c\n")
    with pytest.raises(DataError, match=r"dup\.csv:1: duplicate column 'chosen'"):
        load_pairs(path)


def test_a_lone_surrogate_is_one_line_naming_line_and_field(tmp_path: Path) -> None:
    """JSON can spell a lone UTF-16 surrogate (\\ud800), which no UTF-8 file, tokenizer or
    output can hold."""
    path = tmp_path / "sur.jsonl"
    path.write_text(
        '{"prompt": "q", "response": "ok \\ud83d\\ude00"}\n'  # a valid pair
        '{"prompt": "q", "response": "bad \\ud800 here"}\n'
    )
    with pytest.raises(DataError, match=r"sur\.jsonl:2: lone UTF-16 surrogate .*'response'"):
        read_rows(path)
    path.write_text('{"prompt": "q", "response": "ok \\ud83d\\ude00"}\n')
    assert read_rows(path)[0][1]["response"] == "ok \U0001f600"
