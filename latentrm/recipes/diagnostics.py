"""Warnings about what small data does to a run: a validation split too small to choose on, and
reward heads whose early stopping says they learned little (best epoch 0) or were cut short
(the epoch cap). Each log line names the head or split it is about."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from latentrm.config import RewardConfig

log = logging.getLogger(__name__)

# Below this many validation pairs, one pair moves validation accuracy by more than 2 points:
# early stopping and every choice made on validation (selection grids, recipe, layer) are noisy.
MIN_VALIDATION_PAIRS = 50


def warn_small_validation(n_val: int, where: str) -> bool:
    """Warn (naming `where`) when the validation split has fewer than MIN_VALIDATION_PAIRS."""
    if n_val >= MIN_VALIDATION_PAIRS:
        return False
    log.warning(
        "%s: the validation split has %d pairs (< %d): early stopping and the choices made on "
        "validation are noisy; raise data.n_seed or data.val_fraction",
        where,
        n_val,
        MIN_VALIDATION_PAIRS,
    )
    return True


def warn_head_history(history: Mapping[str, Any], name: str, cfg: RewardConfig) -> list[str]:
    """Warn about a reward head's early stopping (naming head `name`); returns the warnings.

    - best epoch 0: the validation loss was lowest after the first epoch, so the head kept is
      nearly its initialisation: the training pairs did not teach what the validation pairs
      reward (too few pairs, a too high reward.lr, or noisy synthetic pairs);
    - the epoch cap: training ran all reward.epochs without early stopping ending it, so the
      validation loss was still improving when it was cut.
    Neither applies to reward.early_stopping=false, which trains every epoch by design.
    """
    if not cfg.early_stopping:
        return []
    said = []
    if int(history.get("best_epoch", -1)) == 0:
        said.append(
            f"{name}: best validation loss at epoch 0 of "
            f"{int(history.get('epochs_run', 0))}: the head kept is nearly untrained "
            "(too few or too noisy training pairs, or reward.lr too high)"
        )
    run, best = int(history.get("epochs_run", 0)), int(history.get("best_epoch", -1))
    # fit_loop stops at epoch best + patience; ending at the cap before that means it was cut.
    if run >= cfg.epochs and run - 1 - best < cfg.patience:
        said.append(
            f"{name}: hit its epoch cap reward.epochs={cfg.epochs} before early stopping "
            f"ended it (best epoch {best}): the validation loss was still improving; "
            "raise reward.epochs"
        )
    for line in said:
        log.warning("%s", line)
    return said
