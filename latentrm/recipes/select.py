"""Choosing hyperparameters on VALIDATION pairs only (carved from each split's seed set).

:func:`head_grid` trains the un-augmented head (method "none") for each reward-head setting on
the training part of each split's seed set and reports mean validation accuracy and BT loss over
the splits; the held-out pairs are never touched. It chose RewardConfig's defaults
(`scripts/select_head.py`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

from latentrm.config import RewardConfig, RunConfig
from latentrm.evaluate import pairwise_accuracy
from latentrm.pairs import AugmentedPairs
from latentrm.recipes.prepare import prepare_data
from latentrm.reward import RewardHeadFitter


def head_grid(cfg: RunConfig, settings: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per reward-head setting (RewardConfig fields to change): mean validation accuracy and BT
    loss over cfg.seeds' splits, and the best epoch of each split."""
    prep = prepare_data(cfg, split_seeds=list(cfg.seeds), embed_all=True)
    c, r = prep.chosen, prep.rejected
    out = []
    for changes in settings:
        rc: RewardConfig = dataclasses.replace(cfg.reward, **changes)
        accs, losses, epochs = [], [], []
        for s, sp in prep.splits.items():
            aug = AugmentedPairs.originals(c[sp.train], r[sp.train])
            fitter = RewardHeadFitter(rc, seed=s).fit(aug, (c[sp.val], r[sp.val]))
            accs.append(pairwise_accuracy(fitter.head_.score(c[sp.val]),
                                          fitter.head_.score(r[sp.val])))
            losses.append(fitter.history_["best_val"])
            epochs.append(fitter.history_["best_epoch"])
        out.append({**changes, "val_accuracy": float(np.mean(accs)),
                    "val_loss": float(np.mean(losses)), "best_epochs": epochs})
    return out
