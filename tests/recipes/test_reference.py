"""The out-of-fold reference: each new pair is judged by the head that never saw its seed pair."""

from __future__ import annotations

import numpy as np
import pytest

from latentrm.pairs import AugmentedPairs
from latentrm.recipes.prepare import PreparedData, Split
from latentrm.recipes.reference import FoldedReference


class Coord:
    """A stand-in head scoring each row by one coordinate (times a sign)."""

    def __init__(self, dim: int, sign: float = 1.0) -> None:
        self.dim, self.sign = dim, sign

    def score(self, e: np.ndarray) -> np.ndarray:
        return self.sign * e[:, self.dim]


def test_fidelity_uses_the_fold_of_each_pairs_seed_and_counts_only_new_pairs() -> None:
    # Four labelled pairs (rows of the data); the split trains on rows 2 and 3 (seeds 0 and 1).
    split = Split(0, np.array([2, 3]), np.array([0]), np.array([1]), np.zeros(0, np.int64))
    ref = FoldedReference(folds=np.array([0, 1, 0, 1]), heads=[Coord(0), Coord(0, -1.0)])
    pool = np.array([[0.0], [5.0], [3.0], [1.0], [3.0], [-2.0]], dtype=np.float32)
    aug = AugmentedPairs(
        pool=pool,
        chosen_idx=np.array([0, 2, 1, 3, 4]),
        rejected_idx=np.array([1, 3, 5, 1, 2]),
        seed_idx=np.array([0, 0, 0, 1, 1]),
        synthetic=np.array([False, True, True, True, True]),
        method="x",
        ratio=2,
    )
    # seed 0 -> row 2 -> fold 0 (score +x): 3>1 agree, 5>-2 agree
    # seed 1 -> row 3 -> fold 1 (score -x): -1 vs -5 agree, -3 vs -3 tie -> (1+1+1+0.5)/4
    assert ref.fidelity(aug, split) == pytest.approx(0.875)
    aug.synthetic[:] = False
    assert np.isnan(ref.fidelity(aug, split))


def test_agreement_scores_each_labelled_pair_out_of_fold() -> None:
    c = np.array([[1.0], [2.0], [0.0]], np.float32)
    r = np.array([[0.0], [3.0], [0.0]], np.float32)
    data = PreparedData("pairs", None, c, r, [], [], {})  # type: ignore[arg-type]
    ref = FoldedReference(folds=np.array([0, 1, 1]), heads=[Coord(0), Coord(0, -1.0)])
    # row 0 by +x: 1>0 right; row 1 by -x: -2>-3 right; row 2: tie
    assert ref.agreement(data, np.array([0, 1, 2])) == pytest.approx(2.5 / 3)
