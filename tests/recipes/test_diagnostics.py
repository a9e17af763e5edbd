"""latentrm.recipes.diagnostics: the small-data warnings, each naming its head or split."""

from __future__ import annotations

import logging

import pytest

from latentrm.config import RewardConfig
from latentrm.recipes.diagnostics import warn_head_history, warn_small_validation

CFG = RewardConfig(epochs=25, patience=5)


def test_small_validation_split(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        assert warn_small_validation(49, "split 3") and not warn_small_validation(50, "split 4")
    assert caplog.messages == [
        "split 3: the validation split has 49 pairs (< 50): early stopping and the choices made "
        "on validation are noisy; raise data.n_seed or data.val_fraction"
    ]


@pytest.mark.parametrize(
    ("best", "run", "expect"),
    [
        (0, 6, ["lens ratio 4: best validation loss at epoch 0 of 6"]),  # stopped at 0 + patience
        (12, 18, []),  # stopped by patience at epoch 17
        (19, 25, []),  # stopped by patience at epoch 24, which is also the last one
        (
            20,
            25,
            [
                "lens ratio 4: hit its epoch cap reward.epochs=25 before early stopping ended it "
                "(best epoch 20)"
            ],
        ),
        (24, 25, ["lens ratio 4: hit its epoch cap"]),
    ],
)
def test_head_history(
    caplog: pytest.LogCaptureFixture, best: int, run: int, expect: list[str]
) -> None:
    with caplog.at_level(logging.WARNING):
        said = warn_head_history({"best_epoch": best, "epochs_run": run}, "lens ratio 4", CFG)
    assert len(said) == len(expect) and caplog.messages == said
    for line, start in zip(said, expect, strict=True):
        assert line.startswith(start)


def test_no_early_stopping_trains_every_epoch_by_design() -> None:
    cfg = RewardConfig(epochs=25, patience=5, early_stopping=False)
    assert warn_head_history({"best_epoch": 24, "epochs_run": 25}, "none", cfg) == []
