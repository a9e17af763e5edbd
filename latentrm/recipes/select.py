"""Choosing on VALIDATION pairs only, never on held-out pairs.

- :func:`choose_recipe`: the 'recipe' method's candidate (method, variant and ratio) with the best
  k-fold accuracy on the seed set (select_folds folds, select_repeats times): ~100 validation
  pairs alone are too noisy to choose with (a split's validation accuracy moves in steps of 1%
  and its standard error is ~5 points).
- :func:`choose_layer`: the embedding layer the plain head reads best, by the same k-fold score.
- :func:`head_grid`: the un-augmented head for each reward-head setting on each split's training
  part, scored on its validation part; it chose RewardConfig's defaults (`scripts/select_head.py`).
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from latentrm.augment.fit import augment_then_fit
from latentrm.config import RewardConfig, RunConfig, method_config
from latentrm.data.splits import group_folds
from latentrm.evaluate import pairwise_accuracy
from latentrm.head.estimator import FitMemo
from latentrm.recipes.prepare import PreparedData, Split, prepare_data

log = logging.getLogger(__name__)


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
            fitter = augment_then_fit(
                "none",
                dataclasses.replace(cfg, reward=rc),
                (c[sp.train], r[sp.train]),
                (c[sp.val], r[sp.val]),
                ratio=0,
                seed=s,
            ).fitter
            accs.append(
                pairwise_accuracy(fitter.head_.score(c[sp.val]), fitter.head_.score(r[sp.val]))
            )
            losses.append(fitter.history_["best_val"])
            epochs.append(fitter.history_["best_epoch"])
        out.append(
            {
                **changes,
                "val_accuracy": float(np.mean(accs)),
                "val_loss": float(np.mean(losses)),
                "best_epochs": epochs,
            }
        )
    return out


def _base(cfg: RunConfig, name: str) -> str:
    return method_config(cfg, name)[0]


def kfold_accuracy(
    cfg: RunConfig,
    name: str,
    ratio: int,
    data: PreparedData,
    rows: np.ndarray,
    seed: int,
    memo: FitMemo | None = None,
) -> float:
    """Mean accuracy of method `name` at `ratio` over select_repeats x select_folds folds of `rows`.

    `rows` are labelled seed pairs (rows of `data`); for each fold, the method's augmenter and
    head see the other folds only, the head stops early on the held fold and is scored on it.
    Folds keep groups together (pairs sharing a prompt's candidates).
    """
    memo = memo if memo is not None else FitMemo()
    base, mcfg = method_config(cfg, name)
    groups = data.groups[rows] if len(data.groups) == len(data.chosen) else rows
    margins = data.margins  # TRL's margin column enters the loss here too
    accs = []
    for rep in range(cfg.select_repeats):
        folds = group_folds(groups, cfg.select_folds, seed + 7919 * rep)
        for f in range(cfg.select_folds):
            tr, va = rows[folds != f], rows[folds == f]
            head = augment_then_fit(
                base,
                mcfg,
                (data.chosen[tr], data.rejected[tr]),
                (data.chosen[va], data.rejected[va]),
                ratio=ratio,
                seed=seed,
                memo=memo,
                data_key=f"rows {hash(rows.tobytes())} repeat {rep} fold {f}",
                margins=None if margins is None else margins[tr],
            ).fitter.head_
            accs.append(
                pairwise_accuracy(head.score(data.chosen[va]), head.score(data.rejected[va]))
            )
    return float(np.mean(accs))


def choose_recipe(
    cfg: RunConfig, data: PreparedData, split: Split, seed: int
) -> tuple[str, int, dict[str, float]]:
    """The candidate of `recipe_from` (at each ratio; 'none'-based ones once) with the best k-fold
    accuracy on the split's seed set (train + validation), and every candidate's score.

    Ties go to the earlier candidate, so list the simpler ones first.
    """
    rows = np.sort(np.concatenate([split.train, split.val]))
    scores: dict[str, float] = {}
    best: tuple[float, str, int] | None = None
    memo = FitMemo()  # each fold's VAE is trained once for all candidates that share it
    for name in cfg.recipe_from:
        for ratio in (0,) if _base(cfg, name) == "none" else cfg.ratios:
            label = name if ratio == 0 else f"{name}-r{ratio}"
            acc = kfold_accuracy(cfg, name, ratio, data, rows, seed, memo)
            scores[label] = acc
            log.info("recipe candidate %s: k-fold accuracy %.4f", label, acc)
            if best is None or acc > best[0]:
                best = (acc, name, ratio)
    assert best is not None  # recipe_from is never empty (RunConfig checks)
    return best[1], best[2], scores


def choose_layer(
    cfg: RunConfig, datas: dict[Any, PreparedData], split_seed: int, seed: int
) -> tuple[Any, dict[str, float]]:
    """The embed.layer (a key of `datas`) whose plain head has the best k-fold accuracy on the
    split's seed set; ties go to the earlier layer. Returns it and every layer's score."""
    scores: dict[str, float] = {}
    best: tuple[float, Any] | None = None
    for layer, data in datas.items():
        split = data.splits[split_seed]
        rows = np.sort(np.concatenate([split.train, split.val]))
        acc = kfold_accuracy(cfg, "none", 0, data, rows, seed)
        scores[str(layer)] = acc
        log.info("layer %s: k-fold accuracy of the plain head %.4f", layer, acc)
        if best is None or acc > best[0]:
            best = (acc, layer)
    assert best is not None
    return best[1], scores


def selection_grid(cfg: RunConfig, method: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Hyperparameters chosen on validation for `method`: (dotted keys, value tuples).

    The first key is the one the augmenter's fit depends on (refit per value); the others only
    change synthesis. One grid point = no selection.
    """
    if method == "lens":
        keys = ["vae.gamma", "synth.sigma2"]
        vals = [cfg.select_gamma or (cfg.vae.gamma,), cfg.select_sigma2 or (cfg.synth.sigma2,)]
    elif method == "direct":
        keys, vals = ["synth.direct_noise"], [cfg.select_direct_noise or (cfg.synth.direct_noise,)]
    else:
        return [], [()]
    return keys, list(itertools.product(*vals))
