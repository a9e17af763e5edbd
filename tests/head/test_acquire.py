"""Acquisition functions (latentrm.head.acquire), every value worked out by hand.

The toy pool: 2 members, member 1 reads a pair's margin as u_x, member 2 as u_y, for six pairs
whose margin vectors u = (u_x, u_y) are

    P0 (2, -2)   P1 (0.5, 0.5)   P2 (3, 3)   P3 (1, -1)   P4 (4, 0)   P5 (-1, 3)

sigmoid: s(0.5) = 0.6225, s(1) = 0.7311, s(2) = 0.8808, s(3) = 0.9526, s(4) = 0.9820.
Binary entropy H (nats): H(0.5) = 0.6931, H(0.6225) = 0.6628, H(0.7311) = 0.5822,
H(0.8808) = 0.3653, H(0.9526) = 0.1909, H(0.9820) = 0.0901.

BALD = H(mean p) - mean H(p):
    P0: p = (0.8808, 0.1192), mean 0.5:       0.6931 - 0.3653 = 0.3278
    P1: p = (0.6225, 0.6225):                  0.6628 - 0.6628 = 0
    P2: p = (0.9526, 0.9526):                  0
    P3: p = (0.7311, 0.2689), mean 0.5:        0.6931 - 0.5822 = 0.1109
    P4: p = (0.9820, 0.5), mean 0.7410:        H(0.7410) = 0.5720; (0.0901 + 0.6931)/2 = 0.3916;
                                               0.1804
    P5: p = (0.2689, 0.9526), mean 0.6108:     H(0.6108) = 0.6684; (0.5822 + 0.1909)/2 = 0.3866;
                                               0.2818
    -> ranking P0, P5, P4, P3, then P1 and P2 (0).
Entropy of the mean margin (0, 0.5, 3, 0, 2, 1):
    0.6931, 0.6628, 0.1909, 0.6931, 0.3653, 0.5822 -> P0 and P3 tie (lower index first), P1, P5.
k-center greedy (sign-invariant distance d(u, v) = min(|u - v|, |u + v|)), no centers:
    norms 2.828, 0.707, 4.243, 1.414, 4.000, 3.162 -> first P2 (4.243);
    to P2 (3, 3): P0 |(5, 1)| = 5.099, P1 |(-2.5, -2.5)| = 3.536, P3 |(4, 2)| = 4.472,
                  P4 |(1, -3)| = 3.162, P5 |(-4, 0)| = 4.000 -> P0 (5.099);
    then to P0 (2, -2): P1 |(-1.5, 2.5)| = 2.915, P3 |(-1, 1)| = 1.414, P4 |(2, 2)| = 2.828,
                  P5 |(1, 1)| = 1.414; nearest: P1 2.915, P3 1.414, P4 2.828, P5 1.414 -> P1.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from latentrm.errors import ConfigError
from latentrm.head.acquire import (
    bald,
    binary_entropy,
    kcenter_greedy,
    pair_distances,
    predictive_entropy,
    select,
    top_by_group,
)

U = np.array([[2, -2], [0.5, 0.5], [3, 3], [1, -1], [4, 0], [-1, 3]], np.float64)
MARGINS = U.T.copy()  # (2 members, 6 pairs)


def test_binary_entropy_by_hand() -> None:
    h = binary_entropy(np.array([0.0, 0.5, 1.0, 0.8808]))
    assert h == pytest.approx([0.0, math.log(2), 0.0, 0.3653], abs=1e-4)


def test_bald_and_entropy_by_hand() -> None:
    assert bald(MARGINS) == pytest.approx([0.3278, 0, 0, 0.1109, 0.1804, 0.2818], abs=1e-4)
    assert predictive_entropy(MARGINS) == pytest.approx(
        [0.6931, 0.6628, 0.1909, 0.6931, 0.3653, 0.5822], abs=1e-4
    )


def test_bald_needs_two_members() -> None:
    with pytest.raises(ConfigError, match="ensemble"):
        bald(MARGINS[:1])
    with pytest.raises(ConfigError, match="NaN"):
        bald(np.array([[0.0, np.nan], [1.0, 2.0]]))


def test_pair_distance_ignores_the_order_of_a_pair() -> None:
    """(a, b) and (b, a) are one comparison: u and -u are at distance 0; (3, 3) to (2, -2) is
    min(|(1, 5)|, |(5, 1)|) = sqrt(26)."""
    d = pair_distances(np.array([[3.0, 3.0], [-3.0, -3.0]]), np.array([[3.0, 3.0], [2.0, -2.0]]))
    assert d == pytest.approx(np.array([[0.0, math.sqrt(26)], [0.0, math.sqrt(26)]]), abs=1e-6)


def test_kcenter_greedy_by_hand() -> None:
    idx, dist = kcenter_greedy(U, 4)
    assert idx.tolist() == [2, 0, 1, 4]
    assert dist == pytest.approx(
        [math.sqrt(18), math.sqrt(26), math.sqrt(8.5), math.sqrt(8)], abs=1e-6
    )


def test_kcenter_starts_from_the_labelled_pairs() -> None:
    """A labelled pair at u = (3, 3) is a center: the first pick is P0, farthest from it."""
    idx, dist = kcenter_greedy(U, 1, centers=np.array([[3.0, 3.0]]))
    assert idx.tolist() == [0] and dist == pytest.approx([math.sqrt(26)])


def test_top_by_group_keeps_one_per_group() -> None:
    """Scores 5, 9, 7, 9 in groups a, a, b, b: best of a is index 1 (9), best of b index 3 (9);
    the tie goes to the lower index."""
    assert top_by_group(np.array([5.0, 9, 7, 9]), 2, np.array(["a", "a", "b", "b"])).tolist() == [
        1,
        3,
    ]
    assert top_by_group(np.array([5.0, 9, 7, 9]), 3).tolist() == [1, 3, 2]


@pytest.mark.parametrize(
    ("strategy", "k", "expected"),
    [
        ("bald", 3, [0, 5, 4]),
        ("entropy", 3, [0, 3, 1]),
        ("diversity", 3, [2, 0, 1]),
        # hybrid, top_m 8 >= 6: every pair is a candidate; P0 (most BALD) first, then the farthest
        # from P0: P2 (5.099).
        ("hybrid", 2, [0, 2]),
    ],
)
def test_select_by_hand(strategy: str, k: int, expected: list[int]) -> None:
    acq = select(strategy, MARGINS, k, features=U)
    assert acq.index.tolist() == expected
    assert acq.margin == pytest.approx(U.mean(1))


def test_hybrid_chooses_among_the_most_uncertain() -> None:
    """top_m 3: candidates P0, P5, P4 (BALD); P0 first; to P0: P5 1.414, P4 2.828 -> P4."""
    acq = select("hybrid", MARGINS, 2, features=U, top_m=3)
    assert acq.index.tolist() == [0, 4]
    assert acq.score == pytest.approx([0.3278, 0.1804], abs=1e-4)


def test_hybrid_with_one_head_ranks_by_entropy() -> None:
    """One member (margins u_x = 2, 0.5, 3, 1, 4, -1): entropies 0.3653, 0.6628, 0.1909, 0.5822,
    0.0901, 0.5822; top_m 2: P1, P3 (0.5822 ties P5, lower index); P1 first, then P3."""
    acq = select("hybrid", MARGINS[:1], 2, features=U, top_m=2)
    assert acq.index.tolist() == [1, 3]
    assert np.isnan(acq.disagreement).all()


def test_random_draws_one_pair_per_group_reproducibly() -> None:
    groups = np.array([0, 0, 1, 1, 2, 2])
    a = select("random", MARGINS, 3, groups=groups, seed=4)
    b = select("random", MARGINS, 3, groups=groups, seed=4)
    assert a.index.tolist() == b.index.tolist()
    assert sorted(groups[a.index].tolist()) == [0, 1, 2]  # every group once
    assert np.isnan(a.score).all()
    seen = {tuple(select("random", MARGINS, 2, seed=s).index.tolist()) for s in range(20)}
    assert len(seen) > 1  # the seed matters


def test_select_errors() -> None:
    with pytest.raises(ConfigError, match="strategy must be one of"):
        select("coreset", MARGINS, 2)
    with pytest.raises(ConfigError, match="needs features"):
        select("diversity", MARGINS, 2)
    with pytest.raises(ConfigError, match="ensemble"):
        select("bald", MARGINS[:1], 2)
    with pytest.raises(ConfigError, match="k must be"):
        select("entropy", MARGINS, 0)


def test_fewer_groups_than_k() -> None:
    acq = select("entropy", MARGINS, 5, groups=np.array([0, 0, 0, 1, 1, 1]))
    assert acq.index.tolist() == [0, 3]  # each group's best: P0 (0.6931), P3 (0.6931)
