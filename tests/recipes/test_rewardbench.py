"""latentrm.recipes.rewardbench and `latentrm rewardbench`: RewardBench's accuracy per subset and
its section weighting, on a local file, with a scorer whose scores are worked out by hand (a
response scores its length in characters, tests.scorers.length_model)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from latentrm.cli import main
from latentrm.errors import DataError
from latentrm.recipes.rewardbench import EXAMPLE_COUNTS, rewardbench_rows, section_scores
from tests.scorers import length_model


def test_section_scores_worked_by_hand():
    """Chat: alpacaeval-easy (100 pairs) at 1.0 and mt-bench-easy (28) at 0.5 ->
    100 x (100 + 14) / 128 = 89.0625; Safety: donotanswer alone at 0.25 -> 25; Score: their
    mean 57.03125 (sections without subsets are left out)."""
    got = section_scores(
        {"alpacaeval-easy": 1.0, "mt-bench-easy": 0.5, "donotanswer": 0.25, "my-own": 0.0}
    )
    assert got == {
        "Chat": pytest.approx(89.0625),
        "Safety": pytest.approx(25.0),
        "Score": pytest.approx(57.03125),
    }
    assert (
        sum(EXAMPLE_COUNTS.values())
        == 100
        + 95
        + 95
        + 28
        + 40
        + 37
        + 984
        + 100
        + 100
        + 100
        + 134
        + 92
        + 47
        + 46
        + 250
        + 154
        + 136
        + 6 * 164
    )
    assert section_scores({"my-own": 1.0}) == {}


ROWS = [
    # core-set layout: longer answer wins under length_model
    {"id": 1, "prompt": "q", "chosen": "abcd", "rejected": "ab", "subset": "alpacaeval-easy"},
    {"id": 2, "prompt": "q", "chosen": "abc", "rejected": "abc", "subset": "alpacaeval-easy"},
    {"id": 3, "prompt": "q", "chosen": "a", "rejected": "abc", "subset": "mt-bench-easy"},
    # --load_json layout: whole conversations
    {
        "id": 4,
        "subset": "mt-bench-easy",
        "chosen": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "long one"}],
        "rejected": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "short"}],
    },
]


def test_accuracy_per_subset_counts_ties_as_wrong():
    out, summary = rewardbench_rows(length_model(), list(enumerate(ROWS, 1)), path="rb.jsonl")
    assert [r["correct"] for r in out] == [True, False, False, True]  # row 2 ties: wrong
    assert (out[0]["score_chosen"], out[0]["score_rejected"]) == (4.0, 2.0)
    assert summary["accuracy"] == 0.5 and summary["pairs"] == 4
    assert summary["subsets"] == {"alpacaeval-easy": 0.5, "mt-bench-easy": 0.5}
    assert summary["subset_pairs"] == {"alpacaeval-easy": 2, "mt-bench-easy": 2}
    assert summary["sections"] == {"Chat": pytest.approx(50.0), "Score": pytest.approx(50.0)}


def test_multi_turn_prompts_alternate_roles_like_rewardbench():
    model = length_model()
    prompt = [
        {"role": "system", "content": "s"},
        {"role": "assistant", "content": "x"},
        {"role": "user", "content": "q"},
    ]
    rewardbench_rows(model, [(1, {"prompt": prompt, "chosen": "a", "rejected": "b"})])
    seen = model.embedder.calls[0][0][0]
    assert [m["role"] for m in seen] == ["user", "assistant", "user"]


def test_bad_rows_name_the_line_and_field():
    with pytest.raises(DataError, match=r"^rb\.jsonl:2: missing 'rejected'"):
        rewardbench_rows(length_model(), [(2, {"prompt": "q", "chosen": "a"})], path="rb.jsonl")
    conv = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]
    other = [{"role": "user", "content": "other"}, {"role": "assistant", "content": "b"}]
    with pytest.raises(
        DataError,
        match=r"^rb\.jsonl:3: chosen and rejected conversations "
        r"differ before the last answer",
    ):
        rewardbench_rows(
            length_model(), [(3, {"chosen": conv, "rejected": other})], path="rb.jsonl"
        )


def test_cli_rewardbench_prints_subsets_and_sections(tmp_path: Path, capsys, monkeypatch):
    import latentrm.serve

    monkeypatch.setattr(latentrm.serve, "as_scorer", lambda *a, **k: length_model())
    data = tmp_path / "rb.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    out = tmp_path / "scored.jsonl"
    assert main(["rewardbench", "--model", "m", "--data", str(data), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "accuracy: 0.5000 on 4 pairs" in printed and "  mt-bench-easy: 0.5000 (2 pairs)" in (
        printed
    )
    assert "Chat: 50.00" in printed and "Score: 50.00" in printed
    assert [json.loads(x)["correct"] for x in out.read_text().splitlines()] == [
        True,
        False,
        False,
        True,
    ]
