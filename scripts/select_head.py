"""Reward-head hyperparameters chosen on VALIDATION pairs only (carved from each seed set).

For each head setting, trains the un-augmented head (method "none") on the train part of the seed
set of each split of configs/hh.yaml and reports the mean validation accuracy and BT loss over the
splits (`latentrm.recipes.select.head_grid`). The held-out test pairs are never touched. The
winner became RewardConfig's default.

    .venv/bin/python scripts/select_head.py [--config configs/hh.yaml]
"""

from __future__ import annotations

import argparse

import torch

from latentrm.config import load_config
from latentrm.recipes.select import head_grid

# (hidden widths, lr, weight decay, dropout)
GRID = [
    ((256,), 1e-3, 1e-2, 0.1),
    ((256,), 1e-4, 1e-2, 0.1),
    ((256,), 1e-4, 0.1, 0.3),
    ((), 1e-3, 1e-2, 0.0),
    ((), 1e-4, 1e-2, 0.0),
    ((), 3e-3, 0.1, 0.0),
    ((64,), 3e-4, 0.1, 0.3),
]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="configs/hh.yaml")
    args = ap.parse_args()
    torch.set_num_threads(1)
    settings = [
        {"hidden": h, "lr": lr, "weight_decay": wd, "dropout": dr, "epochs": 200, "patience": 10}
        for h, lr, wd, dr in GRID
    ]
    print("| hidden | lr | weight decay | dropout | val accuracy | val BT loss | best epochs |")
    print("|---|---|---|---|---|---|---|")
    for row in head_grid(load_config(args.config), settings):
        print(
            f"| {list(row['hidden'])} | {row['lr']:g} | {row['weight_decay']:g} | "
            f"{row['dropout']:g} | {row['val_accuracy']:.3f} | {row['val_loss']:.4f} | "
            f"{row['best_epochs']} |",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
