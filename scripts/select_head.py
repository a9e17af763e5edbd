"""Reward-head hyperparameters chosen on VALIDATION pairs only (carved from each seed set).

For each head setting, trains the un-augmented head (method "none") on the train part of the seed
set of each split of configs/hh.yaml and reports the mean validation accuracy and BT loss over the
splits. The held-out test pairs are never touched. The winner became RewardConfig's default.

    .venv/bin/python scripts/select_head.py [--config configs/hh.yaml]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from latentrm.config import load_config  # noqa: E402
from latentrm.evaluate import pairwise_accuracy  # noqa: E402
from latentrm.pairs import AugmentedPairs  # noqa: E402
from latentrm.prepare import prepare_data  # noqa: E402
from latentrm.reward import RewardHeadFitter  # noqa: E402

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
    cfg = load_config(args.config)
    prep = prepare_data(cfg, split_seeds=list(cfg.seeds), embed_all=True)
    c, r = prep.chosen, prep.rejected
    print("| hidden | lr | weight decay | dropout | val accuracy | val BT loss | best epochs |")
    print("|---|---|---|---|---|---|---|")
    for hidden, lr, wd, dropout in GRID:
        rc = dataclasses.replace(cfg.reward, hidden=hidden, lr=lr, weight_decay=wd,
                                 dropout=dropout, epochs=200, patience=10)
        accs, losses, epochs = [], [], []
        for s, sp in prep.splits.items():
            aug = AugmentedPairs.originals(c[sp.train], r[sp.train])
            fitter = RewardHeadFitter(rc, seed=s).fit(aug, (c[sp.val], r[sp.val]))
            head = fitter.head_
            accs.append(pairwise_accuracy(head.score(c[sp.val]), head.score(r[sp.val])))
            losses.append(fitter.history_["best_val"])
            epochs.append(fitter.history_["best_epoch"])
        print(f"| {list(hidden)} | {lr:g} | {wd:g} | {dropout:g} | {np.mean(accs):.3f} | "
              f"{np.mean(losses):.4f} | {epochs} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
