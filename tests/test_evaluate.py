"""Evaluation metrics on hand-made numbers (expected values worked out by hand in the comments)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from latentrm.errors import DataError
from latentrm.evaluate import (
    bon_draws,
    bon_gold,
    bootstrap_ci,
    mean_ci_over_seeds,
    pair_correctness,
    pairwise_accuracy,
    spearman_with_gold,
)


@dataclass(frozen=True)
class Cands:  # the fields of data.CandidateSet that Best-of-N reads
    id: str
    responses: tuple[str, ...]
    gold: tuple[float, ...]


def test_pairwise_accuracy_counts_ties_half() -> None:
    rc = np.array([1.0, 0.0, 2.0, 5.0])
    rr = np.array([0.0, 1.0, 2.0, -1.0])
    np.testing.assert_array_equal(pair_correctness(rc, rr), [1.0, 0.0, 0.5, 1.0])
    assert pairwise_accuracy(rc, rr) == pytest.approx(2.5 / 4)
    # a constant reward model is at chance, not at 0 or 1
    assert pairwise_accuracy(np.zeros(7), np.zeros(7)) == 0.5


def test_pairwise_accuracy_rejects_mismatch_and_nan() -> None:
    with pytest.raises(ValueError, match="has 3"):
        pairwise_accuracy(np.zeros(2), np.zeros(3))
    with pytest.raises(ValueError, match="NaN"):
        pairwise_accuracy(np.array([np.nan]), np.array([0.0]))


def test_bootstrap_ci_bernoulli_matches_normal_approximation() -> None:
    v = np.r_[np.ones(700), np.zeros(300)]
    lo, hi = bootstrap_ci(v, n_bootstrap=4000, seed=1)
    half = 1.96 * np.sqrt(0.7 * 0.3 / 1000)  # 0.0284
    assert lo == pytest.approx(0.7 - half, abs=0.004)
    assert hi == pytest.approx(0.7 + half, abs=0.004)
    assert bootstrap_ci(v, 500, seed=3) == bootstrap_ci(v, 500, seed=3)
    assert bootstrap_ci(np.full(5, 0.25), 100, 0) == (0.25, 0.25)
    # a stat without an axis argument still works (one resample at a time)
    lo_m, hi_m = bootstrap_ci(np.full(5, 2.0), 50, 0, stat=lambda x: float(np.median(x)))
    assert (lo_m, hi_m) == (2.0, 2.0)


def test_mean_ci_over_seeds_student_t() -> None:
    mean, hw = mean_ci_over_seeds([1, 2, 3, 4, 5])
    # s = sqrt(2.5), sem = s/sqrt(5) = 0.707107, t_{0.975,4} = 2.776445
    assert mean == 3.0
    assert hw == pytest.approx(2.776445 * 0.7071068, rel=1e-6)
    assert np.isnan(mean_ci_over_seeds([0.7])[1])
    assert mean_ci_over_seeds([0.5, np.nan, 0.5]) == (0.5, 0.0)


# Three prompts x four candidates; with N = 4 every draw holds all four, so picks are fixed:
#   A: pick idx 2 (score .9) -> gold .6;  floor .45, ceiling 1.0
#   B: pick idx 0 (score 2)  -> gold .1;  floor .20, ceiling .4
#   C: scores tie at idx 0,1 -> gold mean(.5, 0) = .25; floor .20, ceiling .5
SETS = [
    Cands("A", ("a0", "a1", "a2", "a3"), (0.0, 0.2, 0.6, 1.0)),
    Cands("B", ("b0", "b1", "b2", "b3"), (0.1, 0.1, 0.4, 0.2)),
    Cands("C", ("c0", "c1", "c2", "c3"), (0.5, 0.0, 0.0, 0.3)),
]
SCORES = [
    np.array([0.1, 0.5, 0.9, 0.3]),
    np.array([2.0, 1.0, 0.0, -1.0]),
    np.array([1.0, 1.0, 0.0, 0.0]),
]


def test_best_of_n_hand_computed() -> None:
    out = bon_gold(SCORES, SETS, n=4, draws=2, seed=0, n_bootstrap=200)
    assert out["bon_picked"] == pytest.approx(0.95 / 3)
    assert out["bon_floor"] == pytest.approx(0.85 / 3)
    assert out["bon_ceiling"] == pytest.approx(1.9 / 3)
    assert out["bon_gap_closed"] == pytest.approx(0.1 / 1.05)  # (0.95-0.85)/(1.9-0.85)
    assert out["bon_prompts"] == 3 and out["bon_skipped"] == 0
    assert 0.1 - 1e-9 <= out["bon_picked_lo"] <= out["bon_picked"] <= out["bon_picked_hi"] <= 0.6


def test_best_of_n_short_set_errors_or_skips() -> None:
    short = [*SETS, Cands("tiny", ("t0", "t1"), (0.0, 1.0))]
    scores = [*SCORES, np.array([0.0, 1.0])]
    with pytest.raises(DataError, match="'tiny' has 2 candidates, fewer than N=4"):
        bon_gold(scores, short, n=4)
    out = bon_gold(scores, short, n=4, skip_short=True, n_bootstrap=50)
    assert out["bon_skipped"] == 1 and out["bon_prompts"] == 3
    assert out["bon_picked"] == pytest.approx(0.95 / 3)


def test_bon_draws_depend_only_on_seed_and_set_id() -> None:
    d1 = bon_draws(SETS, n=2, draws=5, seed=7)
    d2 = bon_draws(SETS[::-1], n=2, draws=5, seed=7)
    for a, b in zip(d1, d2[::-1], strict=True):
        np.testing.assert_array_equal(a, b)
    assert all(d.shape == (5, 2) and len(set(d[0])) == 2 for d in d1)
    assert any(
        not np.array_equal(a, b)
        for a, b in zip(d1, bon_draws(SETS, n=2, draws=5, seed=8), strict=True)
    )
    # two reward models see the same draws: floor and ceiling coincide, picks differ
    m1 = bon_gold(SCORES, SETS, n=2, draws=5, seed=7, n_bootstrap=10)
    m2 = bon_gold([-s for s in SCORES], SETS, n=2, draws=5, seed=7, n_bootstrap=10)
    assert (m1["bon_floor"], m1["bon_ceiling"]) == (m2["bon_floor"], m2["bon_ceiling"])
    floor = np.mean([np.asarray(s.gold)[d].mean(axis=1) for s, d in zip(SETS, d1, strict=True)])
    assert m1["bon_floor"] == pytest.approx(floor)


def test_spearman_with_gold_hand_computed() -> None:
    out = spearman_with_gold(SCORES, [np.asarray(s.gold) for s in SETS])
    # A: rank diffs (0,1,1,-2) -> 1 - 6*6/(4*15) = 0.4
    # B: ranks (4,3,2,1) vs (1.5,1.5,4,3) -> -3.5/sqrt(5*4.5) = -0.737865
    # C: ranks (3.5,3.5,1.5,1.5) vs (4,1.5,1.5,3) -> 1/sqrt(4*4.5) = 0.235702
    assert out["spearman_prompt"] == pytest.approx((0.4 - 0.737865 + 0.235702) / 3, abs=1e-6)
    assert out["spearman_prompts"] == 3
    assert -1.0 <= out["spearman_pooled"] <= 1.0
    # NaN scores (unscored candidates) are left out; a constant prompt is skipped
    out2 = spearman_with_gold(
        [np.array([np.nan, 1.0, 2.0]), np.array([1.0, 1.0])],
        [np.array([9.0, 0.0, 1.0]), np.array([0.0, 1.0])],
    )
    assert out2["spearman_prompt"] == pytest.approx(1.0) and out2["spearman_prompts"] == 1
