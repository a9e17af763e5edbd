"""Choosing on validation folds of the seed set only."""

from __future__ import annotations

import numpy as np
import pytest

from latentrm.config import load_config
from latentrm.data.splits import group_folds, seed_folds
from latentrm.recipes.prepare import PreparedData, Split
from latentrm.recipes.select import choose_layer, choose_recipe, kfold_accuracy
from latentrm.testing import toy_pairs

pytestmark = pytest.mark.usefixtures("one_thread")


def _data(noise: float, n: int = 160, seed: int = 0) -> PreparedData:
    c, r, _ = toy_pairs(n, 12, seed=seed, noise=noise)
    split = Split(
        0, np.arange(0, 100), np.arange(100, 120), np.arange(120, n), np.zeros(0, np.int64)
    )
    return PreparedData(
        "pairs",
        None,
        c,
        r,
        [],
        [],
        {0: split},  # type: ignore[arg-type]
        groups=np.arange(n),
    )


def test_folds_are_balanced_and_keep_groups_together() -> None:
    f = seed_folds(10, 3, 0)
    assert sorted(np.bincount(f).tolist()) == [3, 3, 4]
    groups = np.array([0, 0, 1, 1, 1, 2, 3, 3, 4, 5])
    g = group_folds(groups, 3, 0)
    for grp in np.unique(groups):
        assert len(set(g[groups == grp])) == 1


def test_kfold_accuracy_never_looks_at_held_out_pairs() -> None:
    cfg = load_config(None, ["reward.hidden=[8]", "reward.epochs=10", "select_folds=3"])
    data = _data(0.5)
    rows = np.arange(0, 120)
    before = kfold_accuracy(cfg, "none", 0, data, rows, seed=0)
    data.chosen[120:] = np.nan  # poison the held-out pairs: nothing may read them
    data.rejected[120:] = np.nan
    assert kfold_accuracy(cfg, "none", 0, data, rows, seed=0) == before
    assert 0.6 < before <= 1.0


def test_the_recipe_and_the_layer_are_the_best_by_k_fold_accuracy() -> None:
    cfg = load_config(
        None,
        [
            "reward.hidden=[8]",
            "reward.epochs=10",
            "select_folds=3",
            "variants={ens: {method: none, reward.ensemble: 3}}",
            "methods=[recipe]",
            "recipe_from=[none, ens, cross-prompt]",
            "ratios=[2]",
        ],
    )
    data = _data(0.5)
    name, ratio, scores = choose_recipe(cfg, data, data.splits[0], seed=0)
    assert set(scores) == {"none", "ens", "cross-prompt-r2"}
    best = max(scores, key=lambda k: scores[k])
    assert (name if ratio == 0 else f"{name}-r{ratio}") == best
    # a layer whose pairs carry the signal beats one of pure noise
    good, noisy = _data(0.3), _data(50.0, seed=1)
    layer, layer_scores = choose_layer(cfg, {"noisy": noisy, "good": good}, 0, seed=0)
    assert layer == "good" and layer_scores["good"] > layer_scores["noisy"]
