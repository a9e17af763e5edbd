"""`latentrm embed`: embed a data file into the cache, then hit it."""

from __future__ import annotations

import json

import pytest

from latentrm.cli import main


def test_cli_embed_miss_then_hit(tmp_path, tiny_bert, fixtures_dir, capsys):
    data = fixtures_dir / "hh.jsonl"
    if not data.exists():
        pytest.skip("tests/fixtures/hh.jsonl missing")
    argv = [
        "embed",
        "--data",
        str(data),
        "--embedder",
        str(tiny_bert),
        "--out",
        str(tmp_path),
        "--limit",
        "3",
        "--chunk-size",
        "2",
        "--layer",
        "-2",
        "--no-show-progress",
    ]
    assert main(argv) == 0
    first = capsys.readouterr().out
    assert "miss" in first and "chosen (3, 32)" in first
    (d,) = tmp_path.glob("*/store.json")
    meta = json.loads(d.read_text())
    assert meta["request"]["layers"] == [-2] and meta["embedder"]["layers"] == [-2]
    (view,) = d.parent.glob("views/*.json")
    assert f"cache: {view}" in first  # what `latentrm synth` / `train` take
    assert main(argv) == 0
    second = capsys.readouterr().out
    assert "hit" in second and f"cache: {view}" in second
    assert main([*argv[:-1], "--pooling", "max"]) == 2  # a ConfigError is one line, exit 2
    assert "embed.pooling must be" in capsys.readouterr().err
