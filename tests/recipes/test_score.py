"""`latentrm score` / `bon` over rows (latentrm.recipes.score), on a hand-computable model.

`tests.scorers.length_model` scores a response by its length in characters, so every expected score
below is worked out by hand.
"""

from __future__ import annotations

import re

import pytest
import torch

from latentrm.config import EmbedConfig
from latentrm.errors import DataError
from latentrm.head.reward import RewardHead
from latentrm.model import RewardModel
from latentrm.recipes.score import bon_rows, score_rows
from tests.scorers import LengthEmbedder, length_model


def test_score_rows_pairs_formats():
    model = length_model()
    rows = [
        (1, {"prompt": "q", "chosen": "long answer", "rejected": "short"}),  # 11 vs 5
        (
            2,
            {
                "chosen": "\n\nHuman: hi\n\nAssistant: yo",
                "rejected": "\n\nHuman: hi\n\nAssistant: hello",
            },
        ),
        (
            3,
            {
                "chosen": [
                    {"role": "user", "content": "x"},
                    {"role": "assistant", "content": "abc"},
                ],
                "rejected": [
                    {"role": "user", "content": "x"},
                    {"role": "assistant", "content": "ab"},
                ],
            },
        ),
        (4, {"prompt": [{"role": "user", "content": "y"}], "chosen": "same", "rejected": "four"}),
    ]
    out, summary = score_rows(model, rows, path="pairs.jsonl")
    assert [(r["score_chosen"], r["score_rejected"], r["correct"]) for r in out] == [
        (11.0, 5.0, True),
        (2.0, 5.0, False),
        (3.0, 2.0, True),
        (4.0, 4.0, False),
    ]
    assert out[0]["prompt"] == "q"  # the input fields are kept
    # One pairwise accuracy everywhere (latentrm.evaluate): the tie counts half.
    assert summary["accuracy"] == (2 + 0.5) / 4 and summary["ties"] == 1
    assert summary["mean_margin"] == pytest.approx((6 - 3 + 1 + 0) / 4)
    prompts, _ = model.embedder.calls[-1]
    assert prompts[2] == ({"role": "user", "content": "hi"},)  # HH dialogue split at last turn


def test_score_rows_errors_name_file_line_field():
    model = length_model()
    with pytest.raises(DataError, match=r"^in\.jsonl:2: missing response \(field 'response'\)"):
        score_rows(model, [(1, {"prompt": "a", "response": "b"}), (2, {"prompt": "a"})], "in.jsonl")
    with pytest.raises(DataError, match=r"in\.csv:3: .*role.*\(field 'prompt\[0\]\.role'\)"):
        score_rows(
            model, [(3, {"prompt": [{"role": "bot", "content": "x"}], "response": "r"})], "in.csv"
        )
    with pytest.raises(
        DataError, match=r"in\.jsonl:1: missing preference field \(field 'rejected'\)"
    ):
        score_rows(model, [(1, {"prompt": "a", "chosen": "b", "rejected": None})], "in.jsonl")


@pytest.mark.parametrize("column", ["completions", "responses"])
def test_bon_finds_completions_or_responses_columns(column):
    rows = [
        (1, {"prompt": "p", column: ["x", "xyz", "xy"]}),
        (2, {"prompt": "q", column: [[{"role": "assistant", "content": "ab"}], "a"]}),
    ]
    out, summary = bon_rows(length_model(), rows, path="c.jsonl")
    assert [r["best_index"] for r in out] == [1, 0]
    assert [r["best_response"] for r in out] == ["xyz", "ab"]  # messages: the reply's text
    assert summary["candidates"] == 5


def test_bon_without_a_candidates_column_names_the_file_and_line():
    with pytest.raises(
        DataError,
        match=r"^c\.jsonl:3: no candidates column: expected one of "
        r"candidates, completions, responses .*keys: prompt, outs",
    ):
        bon_rows(length_model(), [(3, {"prompt": "p", "outs": ["a"]})], path="c.jsonl")


@pytest.mark.parametrize(
    ("gold", "shown"),
    [
        ("high", "str 'high'"),
        ([0.5], "list [0.5]"),
        (True, "bool True"),
        (float("nan"), "float nan"),
    ],
)
def test_bon_gold_of_the_wrong_type_is_one_line(gold, shown):
    rows = [
        (1, {"prompt": "p", "candidates": [{"output": "a", "gold": 0.1}]}),
        (
            4,
            {
                "prompt": "q",
                "candidates": [{"output": "a", "gold": 0}, {"output": "b", "gold": gold}],
            },
        ),
    ]
    with pytest.raises(
        DataError,
        match=rf"^c\.jsonl:4: gold must be a finite number, got "
        rf"{re.escape(shown)} \(field 'candidates\[1\]\.gold'\)$",
    ):
        bon_rows(length_model(), rows, path="c.jsonl")


def test_deeply_nested_json_in_a_cell_is_one_line():
    deep = "[" * 100_000 + "]" * 100_000
    with pytest.raises(DataError, match=r"^in\.csv:2: JSON nested too deeply \(field 'prompt'\)$"):
        score_rows(length_model(), [(2, {"prompt": deep, "response": "r"})], path="in.csv")
    with pytest.raises(DataError, match=r"^in\.csv:3: JSON nested too deeply \(field 'c'\)$"):
        bon_rows(length_model(), [(3, {"prompt": "p", "c": deep})], "in.csv", "c")


def test_an_ensemble_model_scores_rows_with_their_spread():
    """Members scoring the response length x 1 and x 3: each score is 2 x length and its spread
    (the members' population std) 1 x length, for single responses and for pairs."""
    from latentrm.head.reward import EnsembleHead

    members = []
    for w in (1.0, 3.0):
        head = RewardHead(3, hidden=(), dropout=0.0)
        with torch.no_grad():
            head.mlp[0].weight.copy_(torch.tensor([[w, 0.0, 0.0]]))
            head.mlp[0].bias.zero_()
        members.append(head)
    model = RewardModel(
        EmbedConfig(model="fake"), EnsembleHead(members).eval(), embedder=LengthEmbedder()
    )
    out, summary = score_rows(
        model,
        [(1, {"prompt": "q", "response": "abcd"}), (2, {"prompt": "q", "response": "ab"})],
        batch_size=1,
    )
    assert [(r["score"], r["score_spread"]) for r in out] == [(8.0, 4.0), (4.0, 2.0)]
    assert summary["spread_mean"] == 3.0
    out, _ = score_rows(model, [(1, {"prompt": "q", "chosen": "abc", "rejected": "a"})])
    assert (out[0]["spread_chosen"], out[0]["spread_rejected"]) == (3.0, 1.0)
    plain, _ = score_rows(length_model(), [(1, {"prompt": "q", "response": "abcd"})])
    assert "score_spread" not in plain[0]
    # Best-of-N reports them too: candidates of lengths 1, 3 -> scores 2, 6 and spreads 1, 3
    out, summary = bon_rows(
        model,
        [
            (1, {"prompt": "q", "candidates": ["a", "abc"]}),
            (2, {"prompt": "q", "candidates": ["ab", "a"]}),
        ],
    )
    assert [(r["best_index"], r["best_spread"], r["spreads"]) for r in out] == [
        (1, 3.0, [1.0, 3.0]),
        (0, 2.0, [2.0, 1.0]),
    ]
    assert summary["best_spread_mean"] == 2.5
    plain, plain_summary = bon_rows(length_model(), [(1, {"prompt": "q", "candidates": ["a"]})])
    assert "best_spread" not in plain[0] and "best_spread_mean" not in plain_summary
