"""latentrm.data.writers: rows written in every file kind read back unchanged."""

from __future__ import annotations

import pytest

from latentrm.data.readers import read_rows
from latentrm.data.writers import write_rows


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".parquet", ".json", ".jsonl.gz"])
def test_rows_round_trip(tmp_path, suffix):
    rows = [
        {"id": "a", "prompt": [{"role": "user", "content": "hi"}], "response": "x", "score": 1.5},
        {
            "id": "b",
            "prompt": [{"role": "user", "content": "[not json"}],
            "response": "y",
            "score": -2.0,
        },
    ]
    write_rows(rows, tmp_path / f"r{suffix}")
    back = [r for _, r in read_rows(tmp_path / f"r{suffix}")]
    if suffix == ".csv":
        for r in back:
            r["score"] = float(r["score"])
    assert back == rows


def test_output_path_is_checked_before_work(tmp_path):
    from latentrm.data.writers import check_output_path
    from latentrm.errors import LatentrmError

    assert check_output_path(tmp_path / "new" / "s.jsonl.gz") == ".jsonl"
    (tmp_path / "scores.jsonl").mkdir()
    (tmp_path / "afile").write_text("x")
    cases = {
        tmp_path / "scores.jsonl": "is a folder; give the output file's name",
        tmp_path / "afile" / "o.jsonl": f"cannot create the output file: {tmp_path / 'afile'} is "
        "a file, not a folder",
        tmp_path / "o.xlsx": "unknown output type (use .jsonl, .ndjson, .json, .csv, .tsv or "
        ".parquet, optionally .gz)",
    }
    for path, msg in cases.items():
        with pytest.raises(LatentrmError) as e:
            check_output_path(path)
        assert str(e.value) == f"{path}: {msg}"
    for name in ("aug.csv", "aug.parquet.gz"):  # `latentrm export` writes Parquet only
        with pytest.raises(LatentrmError, match=r"unknown output type \(use \.parquet\)$"):
            check_output_path(tmp_path / name, (".parquet",))


@pytest.mark.parametrize("suffix", [".jsonl", ".json"])
def test_json_output_is_strict_and_names_the_row(tmp_path, suffix):
    from latentrm.errors import DataError

    out = tmp_path / f"o{suffix}"
    rows = [{"id": "a", "score": 1.0}, {"id": "b", "score": float("nan")}]
    with pytest.raises(
        DataError,
        match=rf"o\{suffix}: row 2 cannot be written as JSON .*; "
        r"nothing was written \(field 'score'\)$",
    ):
        write_rows(rows, out)
    with pytest.raises(DataError, match=r"row 1 cannot be written as JSON .*bytes.* \(field 'b'\)"):
        write_rows([{"a": "x", "b": b"\x00"}], out)
    assert not out.exists()
