"""latentrm.text.judge: win rate, rewards and lengths on fixed toy scores, worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from latentrm.text.judge import compare


def test_win_rate_counts_ties_half_by_hand():
    # Prompt by prompt: 1 > 0 win, 2 = 2 tie, 3 < 5 loss, 4 > 1 win -> (1 + 0.5 + 0 + 1) / 4.
    a, b = np.array([1.0, 2.0, 3.0, 4.0]), np.array([0.0, 2.0, 5.0, 1.0])
    ans_a = [["ab"], ["abcd"], ["one two three"], [""]]  # 2, 4, 13, 0 chars; 1, 1, 3, 0 words
    ans_b = [["x"], ["xy"], ["xyz"], ["w"]]  # 1, 2, 3, 1 chars; one word each
    r = compare(a, b, ans_a, ans_b, n_bootstrap=500, seed=0)
    assert r["win_rate"] == pytest.approx(0.625)
    assert (r["wins"], r["ties"], r["losses"]) == (2, 1, 1)
    assert r["reward_a"] == pytest.approx(2.5) and r["reward_b"] == pytest.approx(2.0)
    assert r["reward_diff"] == pytest.approx(0.5)
    assert r["chars_a"] == pytest.approx(19 / 4) and r["chars_b"] == pytest.approx(7 / 4)
    assert r["words_a"] == pytest.approx(5 / 4) and r["words_b"] == pytest.approx(1.0)
    # Per-prompt credits are 0, 0.5 or 1: every resampled mean is a multiple of 1/8 in [0, 1].
    assert 0.0 <= r["win_rate_lo"] <= 0.625 <= r["win_rate_hi"] <= 1.0
    assert (r["win_rate_lo"] * 8) == pytest.approx(round(r["win_rate_lo"] * 8))


def test_several_answers_per_prompt_average_within_the_prompt():
    # Prompt 1: answers (1 vs 0) win, (0 vs 1) loss -> 0.5; prompt 2: tie, win -> 0.75.
    a = np.array([[1.0, 0.0], [3.0, 3.0]])
    b = np.array([[0.0, 1.0], [3.0, 2.0]])
    ans = [["a", "b"], ["c", "d"]]
    r = compare(a, b, ans, ans, n_bootstrap=200)
    assert r["win_rate"] == pytest.approx(0.625)
    assert r["answers_per_prompt"] == 2 and r["prompts"] == 2
    # A resample holds prompt 1 and/or prompt 2: its mean is 0.5, 0.625 or 0.75.
    assert {r["win_rate_lo"], r["win_rate_hi"]} <= {0.5, 0.625, 0.75}


def test_a_sweep_has_a_degenerate_interval():
    r = compare(np.ones(5), np.zeros(5), [["a"]] * 5, [["b"]] * 5, n_bootstrap=100)
    assert (r["win_rate"], r["win_rate_lo"], r["win_rate_hi"]) == (1.0, 1.0, 1.0)


def test_mismatched_shapes_are_refused():
    with pytest.raises(ValueError, match="same"):
        compare(np.ones(3), np.ones(4), [["a"]] * 3, [["a"]] * 4)
    with pytest.raises(ValueError, match="answers of B"):
        compare(np.ones(2), np.ones(2), [["a"]] * 2, [["a"]])
