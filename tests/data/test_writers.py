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
