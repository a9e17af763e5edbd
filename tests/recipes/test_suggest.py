"""`latentrm suggest`: pool files of each kind in, a labelling file out, and the labelled file
back in as training data (the label-suggest-label loop).

Choices are those worked out in tests/test_suggest.py (the same toy model and pools); the end to
end test trains real heads on a tiny BERT through the CLI.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

import latentrm
from latentrm.cli import main
from latentrm.data.load import load_pairs
from latentrm.errors import DataError
from latentrm.recipes.suggest import COLUMNS, prompt_text, read_pool, run_suggest
from latentrm.testing import write_jsonl
from tests.scorers import vector_model

FIXTURES = Path(__file__).parents[1] / "fixtures"
PAIR_ROWS = [
    {"id": f"p{i}", "prompt": "Which is better?", "response_a": a, "response_b": b}
    for i, (a, b) in enumerate(
        [
            ("2 0", "0 2"),
            ("1 1", "0.5 0.5"),
            ("3 3", "0 0"),
            ("1 0", "0 1"),
            ("4 0", "0 0"),
            ("0 4", "1 1"),
        ]
    )
]
SET_ROWS = [
    {"id": "s0", "prompt": "q", "candidates": ["2 0", "0 2", "1 1"]},
    {
        "id": "s1",
        "prompt": "q",
        "candidates": [{"output": "4 0", "gold": 1}, {"output": "0 0"}, {"text": "0 4"}],
    },
    {"id": "s2", "instruction": "q", "candidates": ["3 3", "3 3", "0 0"]},
]


def test_read_pool_kinds(tmp_path: Path) -> None:
    kind, pool = read_pool(write_jsonl(tmp_path / "ab.jsonl", PAIR_ROWS))
    assert kind == "ab" and [(p.chosen, p.rejected) for p in pool][:2] == [
        ("2 0", "0 2"),
        ("1 1", "0.5 0.5"),
    ]
    kind, sets = read_pool(write_jsonl(tmp_path / "sets.jsonl", SET_ROWS))
    assert kind == "candidates" and [s.responses for s in sets][1] == ("4 0", "0 0", "0 4")
    assert [s.id for s in sets] == ["s0", "s1", "s2"]
    kind, pairs = read_pool(FIXTURES / "hh.jsonl")
    assert kind == "pairs" and pairs == list(load_pairs(FIXTURES / "hh.jsonl"))


def test_read_pool_errors_name_line_and_field(tmp_path: Path) -> None:
    rows = [PAIR_ROWS[0], {"id": "x", "response_a": "1 1", "response_b": "0 0"}]
    with pytest.raises(DataError, match=r"ab\.jsonl:2: missing prompt \(field 'prompt'\)"):
        read_pool(write_jsonl(tmp_path / "ab.jsonl", rows))
    bad = [{"prompt": "q", "candidates": []}]
    with pytest.raises(DataError, match="non-empty list of candidates"):
        read_pool(write_jsonl(tmp_path / "sets.jsonl", bad))


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_suggest_file_labelled_back_is_training_data(tmp_path: Path, suffix: str) -> None:
    """bald on the pair pool picks p0, p5, p4 (tests/test_suggest.py); an annotator prefers b,
    a, a: the labelled file reads as pairs with those winners as chosen."""
    out = tmp_path / f"todo{suffix}"
    summary = run_suggest(
        vector_model(), write_jsonl(tmp_path / "pool.jsonl", PAIR_ROWS), 3, out, strategy="bald"
    )
    assert summary == {
        "pool": "ab",
        "pool_size": 6,
        "suggested": 3,
        "strategy": "bald",
        "acquisition_mean": pytest.approx((0.3278 + 0.2818 + 0.1804) / 3, abs=1e-4),
    }
    if suffix == ".csv":
        with out.open(newline="") as f:
            rows = list(csv.DictReader(f))
        assert list(rows[0]) == list(COLUMNS)
    else:
        rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in rows] == ["p0", "p5", "p4"]
    assert [r["label"] for r in rows] == ["", "", ""]
    assert (rows[1]["response_a"], rows[1]["response_b"]) == ("0 4", "1 1")  # a/b kept
    for r, lab in zip(rows, ["b", "A", "a"], strict=True):
        r["label"] = lab
    labelled = tmp_path / f"done{suffix}"
    if suffix == ".csv":
        with labelled.open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
    else:
        write_jsonl(labelled, rows)
    ds = load_pairs(labelled)
    assert ds.stats["format"] == "labelled"
    assert [(p.id, p.chosen, p.rejected) for p in ds] == [
        ("p0", "0 2", "2 0"),
        ("p5", "0 4", "1 1"),
        ("p4", "4 0", "0 0"),
    ]
    assert ds[0].prompt == ({"role": "user", "content": "Which is better?"},)


def test_candidate_pool_file(tmp_path: Path) -> None:
    """Diversity on the three sets: s1:0-2, s2:0-2, s0:0-2 (tests/test_suggest.py)."""
    out = tmp_path / "todo.jsonl"
    run_suggest(
        vector_model(), write_jsonl(tmp_path / "sets.jsonl", SET_ROWS), 3, out, strategy="diversity"
    )
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["id"], r["set_id"], r["index_a"], r["index_b"]) for r in rows] == [
        ("s1:0-2", "s1", 0, 2),
        ("s2:0-2", "s2", 0, 2),
        ("s0:0-2", "s0", 0, 2),
    ]
    assert (rows[0]["response_a"], rows[0]["response_b"], rows[0]["label"]) == ("4 0", "0 4", "")
    assert rows[0]["disagreement"] == pytest.approx(0.6030, abs=1e-4)
    assert rows[0]["predicted_margin"] == pytest.approx(0.0)


def test_output_checked_before_the_pool_is_read(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="unknown output type"):
        run_suggest(vector_model(), tmp_path / "missing.jsonl", 3, tmp_path / "o.xlsx")


def test_labelled_format_errors(tmp_path: Path) -> None:
    rows = [
        {"prompt": "q", "response_a": "x", "response_b": "y", "label": "a"},
        {"prompt": "q", "response_a": "x", "response_b": "y", "label": "tie"},
    ]
    with pytest.raises(DataError, match=r"l\.jsonl:2: label must be a or b .*field 'label'"):
        load_pairs(write_jsonl(tmp_path / "l.jsonl", rows))
    with pytest.raises(DataError, match="missing 'label' .*field 'label'"):
        load_pairs(
            write_jsonl(
                tmp_path / "n.jsonl", [{"prompt": "q", "response_a": "x", "response_b": "y"}]
            )
        )


def test_multi_turn_prompt_round_trips() -> None:
    turns = (
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
        {"role": "user", "content": "a joke?"},
    )
    text = prompt_text(turns)
    assert text == "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: a joke?\n\nAssistant:"
    assert prompt_text(turns[:1]) == "hi"


@pytest.mark.usefixtures("one_thread")
def test_label_suggest_label_loop_end_to_end(
    tmp_path: Path, tiny_bert: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """fit (an ensemble of 2) -> save -> `latentrm suggest` -> label -> fit on seed + labelled."""
    from latentrm.embed.embedder import Embedder
    from latentrm.testing import cfg_for

    emb = Embedder(cfg_for(tiny_bert, max_length=32))
    small = {
        "reward.epochs": 3,
        "reward.hidden": [8],
        "reward.batch_size": 16,
        "data.val_fraction": 0.2,
        "reward.ensemble": 2,
    }
    seed = [
        {
            "prompt": f"question {i}?",
            "chosen": f"a helpful answer {i}",
            "rejected": f"a rude reply {i % 7}",
        }
        for i in range(20)
    ]
    rm = latentrm.fit(
        seed, embedder=emb, method="none", overrides=small, cache_dir=tmp_path / "cache"
    )
    rm.save(tmp_path / "rm")
    pool = write_jsonl(
        tmp_path / "pool.jsonl",
        [
            {"prompt": f"new question {i}?", "candidates": [f"answer {i}", f"reply {i}", "no"]}
            for i in range(6)
        ],
    )
    out = tmp_path / "todo.csv"
    assert (
        main(
            [
                "suggest",
                "--pool",
                str(pool),
                "--model",
                str(tmp_path / "rm"),
                "--k",
                "4",
                "--out",
                str(out),
                "--strategy",
                "bald",
            ]
        )
        == 0
    )
    assert "wrote 4 pairs" in capsys.readouterr().out
    with out.open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4 and len({r["set_id"] for r in rows}) == 4  # one pair per prompt
    assert [int(r["rank"]) for r in rows] == [1, 2, 3, 4]
    bald = [float(r["acquisition"]) for r in rows]
    assert bald == sorted(bald, reverse=True)
    for r in rows:
        r["label"] = "a"
    with (tmp_path / "done.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    more = seed + [
        {"prompt": r["prompt"], "chosen": r["response_a"], "rejected": r["response_b"]}
        for r in rows
    ]
    assert [(p.chosen, p.rejected) for p in load_pairs(tmp_path / "done.csv")] == [
        (m["chosen"], m["rejected"]) for m in more[20:]
    ]
    rm2 = latentrm.fit(
        tmp_path / "done.csv",
        embedder=emb,
        method="none",
        overrides={**small, "reward.ensemble": 1},
        cache_dir=tmp_path / "cache",
    )
    assert rm2.training["n_pairs"] == 4
