"""A fair judge of synthetic pairs: reference heads trained out-of-fold on every labelled pair.

Fidelity asks how often a synthetic pair's inherited label agrees with the best proxy of the true
preference: a head trained on every labelled pair (seed + held-out). A head that was trained on a
seed pair, though, would also recall that pair's label for its near-copies, so the judge here is
out-of-fold: the labelled pairs are cut into K folds (by group, so pairs sharing a prompt's
candidates stay together), head k is trained on the other folds, and every synthetic pair is
judged by the head that never saw the seed pair it was made from. Its own agreement with the
labelled pairs, each judged out-of-fold, is reported next to every fidelity, so a fidelity of 0.63
can be read against a judge that gets, say, 0.62 of real pairs right.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from latentrm.augment.fit import augment_then_fit
from latentrm.config import RunConfig
from latentrm.data.splits import carve_validation, group_folds
from latentrm.evaluate import pairwise_accuracy
from latentrm.head.reward import RewardHead
from latentrm.pairs import AugmentedPairs
from latentrm.recipes.prepare import PreparedData, Split


@dataclass
class FoldedReference:
    """K reference heads; ``folds[i]`` is the fold of labelled pair i (a row of the data)."""

    folds: np.ndarray
    heads: list[RewardHead]

    def agreement(self, data: PreparedData, rows: np.ndarray) -> float:
        """Accuracy on labelled pairs `rows`, each judged by the head that never saw it."""
        if len(rows) == 0:
            return float("nan")
        rc, rr = np.empty(len(rows)), np.empty(len(rows))
        for k, head in enumerate(self.heads):
            sel = self.folds[rows] == k
            rc[sel] = head.score(data.chosen[rows[sel]])
            rr[sel] = head.score(data.rejected[rows[sel]])
        return pairwise_accuracy(rc, rr)

    def fidelity(self, aug: AugmentedPairs, split: Split) -> float:
        """Share of `aug`'s new pairs whose label the out-of-fold judge agrees with (ties 0.5).

        A new pair is judged by the head whose fold holds its seed pair (``split.train[seed]``).
        NaN when no pair is new.
        """
        syn = np.flatnonzero(aug.synthetic)
        if len(syn) == 0:
            return float("nan")
        fold = self.folds[split.train[aug.seed_idx[syn]]]
        rc, rr = np.empty(len(syn)), np.empty(len(syn))
        for k, head in enumerate(self.heads):
            sel = fold == k
            rc[sel] = head.score(aug.pool[aug.chosen_idx[syn[sel]]])
            rr[sel] = head.score(aug.pool[aug.rejected_idx[syn[sel]]])
        return pairwise_accuracy(rc, rr)


def fit_reference(data: PreparedData, cfg: RunConfig, seed: int, k: int = 5) -> FoldedReference:
    """K out-of-fold reference heads on every labelled pair of `data` (seed + held-out).

    For candidates data those pairs are binarised from the gold scores of every instruction, so
    the reference is the gold preference as far as the embedding space can express it; folds
    follow instructions. Each head stops early on data.val_fraction of its own training pairs.
    """
    n = len(data.chosen)
    groups = data.groups if len(data.groups) == n else np.arange(n)
    folds = group_folds(groups, k, seed)
    heads = []
    for f in range(k):
        tr, va = carve_validation(np.flatnonzero(folds != f), cfg.data.val_fraction, seed + f)
        fit = augment_then_fit(
            "none",
            cfg,
            (data.chosen[tr], data.rejected[tr]),
            (data.chosen[va], data.rejected[va]),
            ratio=0,
            seed=seed + f,
        )
        heads.append(fit.fitter.head_)
    return FoldedReference(folds, heads)
