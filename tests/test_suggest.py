"""RewardModel.suggest on toy pools of both kinds, the expected choices worked out by hand.

The model (tests.scorers.vector_model): a fake embedder reads a response "x y" as the vector
(x, y); an ensemble of two linear heads, member 1 scoring x and member 2 scoring y. A pair
(a, b) then has member margins u = e(a) - e(b), and every value below follows from u as in
tests/head/test_acquire.py (BALD, entropy, sign-invariant k-center distances). The pools'
responses are symmetric under swapping x and y, so both dimensions have one std s and the
standardised diversity features are u / s: the k-center choices are those on u.

Pair pool (ids p0..p5), u = (2, -2), (0.5, 0.5), (3, 3), (1, -1), (4, 0), (-1, 3):
    BALD 0.3278, 0, 0, 0.1109, 0.1804, 0.2818; entropy 0.6931, 0.6628, 0.1909, 0.6931, 0.3653,
    0.5822; k-center: p2 (norm 4.243), p0 (5.099), p1 (2.915).
    s: the 12 responses' x values 2, 0, 1, .5, 3, 0, 4, 0, 1, 0, 0, 1 (mean 1.0417,
    E[x^2] = 2.6875) -> s = sqrt(2.6875 - 1.0851) = 1.2659.
Candidate pool, three sets:
    s0 "2 0", "0 2", "1 1": pairs 0-1 u (2, -2) BALD 0.3278; 0-2 (1, -1) 0.1109; 1-2 (-1, 1) 0.1109
    s1 "4 0", "0 0", "0 4": 0-1 (4, 0) 0.1804; 0-2 (4, -4): p = (0.9820, 0.0180), mean 0.5,
       0.6931 - 0.0901 = 0.6030; 1-2 (0, -4) 0.1804
    s2 "3 3", "3 3", "0 0": 0-1 identical texts, never a candidate; 0-2 and 1-2 (3, 3), BALD 0
    BALD, one pair per set: s1:0-2 (0.6030), s0:0-1 (0.3278), s2:0-2 (0).
    Entropy (mean margins s0: 0, 0, 0; s1: 2, 0, -2; s2: 3, 3): s0:0-1 and s1:0-2 tie at 0.6931
    (pool order: s0 first).
    k-center: norms s0 2.83, 1.41, 1.41; s1 4, 5.66, 4; s2 4.24, 4.24 -> s1:0-2 (4, -4);
    then (other sets) to (4, -4): s0:0-1 2.828, s0:0-2 |(-3, 3)| = 4.243, s0:1-2 4.243,
    s2:0-2 |(-1, 7)| = 7.071 -> s2:0-2; then s0's to (3, 3): 0-1 5.099, 0-2 4.472, 1-2 4.472,
    nearest 2.828, 4.243, 4.243 -> s0:0-2 (the tie to the lower index).
"""

from __future__ import annotations

import math

import pytest

from latentrm.data.types import CandidateSet, PreferencePair
from latentrm.errors import ConfigError, DataError
from tests.scorers import vector_model as toy_model

PROMPT = ({"role": "user", "content": "Which is better?"},)
PAIRS = [
    PreferencePair(f"p{i}", PROMPT, a, b)
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
SETS = [
    CandidateSet("s0", PROMPT, ("2 0", "0 2", "1 1"), ()),
    CandidateSet("s1", PROMPT, ("4 0", "0 0", "0 4"), ()),
    CandidateSet("s2", PROMPT, ("3 3", "3 3", "0 0"), ()),
]
S = math.sqrt(2.6875 - (12.5 / 12) ** 2)


@pytest.mark.parametrize(
    ("strategy", "k", "expected"),
    [
        ("bald", 3, ["p0", "p5", "p4"]),
        ("entropy", 3, ["p0", "p3", "p1"]),
        ("diversity", 3, ["p2", "p0", "p1"]),
        ("hybrid", 2, ["p0", "p2"]),
    ],
)
def test_pair_pool_by_hand(strategy: str, k: int, expected: list[str]) -> None:
    got = toy_model().suggest(PAIRS, k, strategy=strategy, shuffle_sides=False)
    assert [s.id for s in got] == expected
    assert [s.rank for s in got] == list(range(1, k + 1))


def test_pair_pool_reasons_by_hand() -> None:
    got = toy_model().suggest(PAIRS, 2, strategy="bald", shuffle_sides=False)
    p0 = got[0]
    assert (p0.response_a, p0.response_b, p0.prompt) == ("2 0", "0 2", PROMPT)
    assert p0.score == pytest.approx(0.3278, abs=1e-4)
    assert p0.disagreement == pytest.approx(0.3278, abs=1e-4)
    assert p0.margin == pytest.approx(0.0) and p0.p_a == pytest.approx(0.5)
    assert p0.entropy == pytest.approx(math.log(2))
    p5 = got[1]  # u = (-1, 3): mean margin 1, p_a = s(1) = 0.7311
    assert p5.margin == pytest.approx(1.0) and p5.p_a == pytest.approx(0.7311, abs=1e-4)
    div = toy_model().suggest(PAIRS, 3, strategy="diversity", shuffle_sides=False)
    assert [d.score for d in div] == pytest.approx(
        [math.sqrt(18) / S, math.sqrt(26) / S, math.sqrt(8.5) / S], rel=1e-4
    )


def test_shuffled_sides_change_the_order_not_the_choice() -> None:
    """Every acquisition is symmetric in a and b: the picks are those of the unshuffled pool, and
    a swapped pair's margin changes sign."""
    for strategy in ("bald", "entropy", "diversity", "hybrid"):
        plain = toy_model().suggest(PAIRS, 3, strategy=strategy, shuffle_sides=False)
        mixed = toy_model().suggest(PAIRS, 3, strategy=strategy, seed=3)
        assert [s.id for s in mixed] == [s.id for s in plain]
        for p, m in zip(plain, mixed, strict=True):
            swapped = m.response_a != p.response_a
            assert m.margin == pytest.approx(-p.margin if swapped else p.margin)
    by_id = {p.id: p for p in PAIRS}
    out = toy_model().suggest(PAIRS, 6, strategy="entropy", seed=3)
    kept = [s.response_a == by_id[s.id].chosen for s in out]
    assert any(kept) and not all(kept)  # some pairs went out as (rejected, chosen)


def test_labelled_pairs_are_centers() -> None:
    """A labelled pair ("3 3" vs "0 0", u = (3, 3)) is a center (p2, the same u, is left out of
    the pool): diversity starts at p0, the pair farthest from it (5.099; p1 3.536, p3 4.472,
    p4 3.162, p5 4.0); then the nearest of (3, 3) and (2, -2): p1 min(3.536, 2.915), p3
    min(4.472, 1.414), p4 min(3.162, 2.828), p5 min(4.0, 1.414) -> p1 (2.915)."""
    labelled = [PreferencePair("l0", PROMPT, "3 3", "0 0")]
    got = toy_model().suggest(
        PAIRS[:2] + PAIRS[3:], 2, strategy="diversity", labelled=labelled, shuffle_sides=False
    )
    assert [s.id for s in got] == ["p0", "p1"]


@pytest.mark.parametrize(
    ("strategy", "k", "expected"),
    [
        ("bald", 3, ["s1:0-2", "s0:0-1", "s2:0-2"]),
        ("entropy", 2, ["s0:0-1", "s1:0-2"]),
        ("diversity", 3, ["s1:0-2", "s2:0-2", "s0:0-2"]),
        # hybrid: candidates s1:0-2, s0:0-1, s2:0-2 (one per set, top_m 8); s1:0-2 first, then the
        # farthest from (4, -4): s2:0-2 (7.071) over s0:0-1 (2.828).
        ("hybrid", 2, ["s1:0-2", "s2:0-2"]),
    ],
)
def test_candidate_pool_by_hand(strategy: str, k: int, expected: list[str]) -> None:
    got = toy_model().suggest(SETS, k, strategy=strategy)
    assert [s.id for s in got] == expected
    first = got[0]
    assert first.set_id == expected[0].split(":")[0]
    ia, ib = (int(x) for x in expected[0].split(":")[1].split("-"))
    assert (first.index_a, first.index_b) == (ia, ib)
    cands = {s.id: s for s in SETS}[first.set_id].responses
    assert (first.response_a, first.response_b) == (cands[ia], cands[ib])


def test_candidate_pool_bald_value_by_hand() -> None:
    got = toy_model().suggest(SETS, 1, strategy="bald")
    assert got[0].score == pytest.approx(0.6030, abs=1e-4)
    assert got[0].margin == pytest.approx(0.0)


def test_random_candidate_pool_one_pair_per_set() -> None:
    got = toy_model().suggest(SETS, 5, strategy="random", seed=1)
    assert sorted(s.set_id for s in got) == ["s0", "s1", "s2"]  # 3 sets: 3 pairs, not 5
    assert all(s.score is None for s in got)
    assert [s.id for s in toy_model().suggest(SETS, 5, strategy="random", seed=1)] == [
        s.id for s in got
    ]


def test_single_head() -> None:
    """bald refuses a single head; entropy works (member 1: margins u_x); disagreement is None."""
    with pytest.raises(ConfigError, match="ensemble"):
        toy_model(ensemble=False).suggest(PAIRS, 2, strategy="bald")
    got = toy_model(ensemble=False).suggest(PAIRS, 2, strategy="entropy", shuffle_sides=False)
    # u_x = 2, .5, 3, 1, 4, -1: entropies .3653, .6628, .1909, .5822, .0901, .5822 -> p1, then
    # p3 (ties p5: the lower index)
    assert [s.id for s in got] == ["p1", "p3"]
    assert got[0].disagreement is None


def test_bad_pools() -> None:
    with pytest.raises(DataError, match="empty"):
        toy_model().suggest([], 2)
    with pytest.raises(DataError, match="no pair"):
        toy_model().suggest([CandidateSet("x", PROMPT, ("1 1", "1 1"), ())], 2)
    with pytest.raises(ConfigError, match="not mixed"):
        toy_model().suggest([PAIRS[0], SETS[0]], 2)
