"""The small-data head, chosen on VALIDATION folds only (issue 21 item 1).

For each seed-set size of configs/small_data_hh.yaml's sweep and each split, the layer is chosen as
`latentrm experiment` chooses it (the plain head's k-fold accuracy on the seed set), then every
method of the config is scored by its mean accuracy over select_folds folds x `--repeats` fold
draws inside the split's seed set. Each fold's head is trained as `latentrm run` would train it on
the other folds: a head that stops early on validation pairs stops on data.val_fraction of them
carved out (as in a run), a cross-fitted or exact-L2 head uses them all; it is scored on the held
fold, which it never saw. (`select.kfold_accuracy` stops the head on the fold it scores, which
flatters early-stopped heads against those that ignore validation pairs.) The held-out pairs are
never touched. Prints, per method and size, the mean over splits, the worst split and its distance
to the mean, the folds whose every head kept its epoch-0 weights, and the winner by the rule
stated in the config's header.

    .venv/bin/python scripts/select_small_head.py [--config configs/small_data_hh.yaml] \\
        [--repeats 1] [key=value ...]
"""

from __future__ import annotations

import argparse
import logging
import time

import numpy as np

from latentrm.config import RunConfig, apply_changes, load_config, method_config
from latentrm.data.splits import carve_validation, group_folds
from latentrm.evaluate import pairwise_accuracy
from latentrm.head.fitter import (
    RewardHeadFitter,
    effective_reward,
    epoch0_heads,
    ignores_validation,
)
from latentrm.pairs import AugmentedPairs
from latentrm.recipes.experiment import sweep_configs
from latentrm.recipes.prepare import PreparedData, prepare_layers
from latentrm.recipes.select import choose_layer
from latentrm.runtime import torch_threads

# The rule (also in the config's header): the highest mean over every (size, split) cell among
# the methods whose worst split at each size is within WORST points of their mean there; a method
# within TIE points of that mean with fewer heads wins.
WORST, TIE = 0.03, 0.002


def deployed_kfold(
    cfg: RunConfig, name: str, data: PreparedData, rows: np.ndarray, seed: int
) -> tuple[float, int]:
    """Mean held-fold accuracy of un-augmented method `name` over select_repeats x select_folds
    folds of `rows`, each head trained on the other folds as a run trains it, and the number of
    folds whose every head kept its epoch-0 weights."""
    rcfg = method_config(cfg, name)[1].reward
    accs, collapsed = [], 0
    for rep in range(cfg.select_repeats):
        folds = group_folds(
            data.groups[rows] if len(data.groups) == len(data.chosen) else rows,
            cfg.select_folds,
            seed + 7919 * rep,
        )
        for f in range(cfg.select_folds):
            tr, held = rows[folds != f], rows[folds == f]
            if ignores_validation(rcfg, len(tr)):
                va = None
            else:
                tr, va = carve_validation(tr, cfg.data.val_fraction, seed + 31 * f + rep)
            n = len(tr) + (0 if va is None else len(va))
            fit = RewardHeadFitter(effective_reward(rcfg, n), seed).fit(
                AugmentedPairs.originals(data.chosen[tr], data.rejected[tr]),
                None if va is None else (data.chosen[va], data.rejected[va]),
            )
            at0, heads = epoch0_heads(fit.history_)
            collapsed += at0 == heads
            accs.append(
                pairwise_accuracy(
                    fit.head_.score(data.chosen[held]), fit.head_.score(data.rejected[held])
                )
            )
    return float(np.mean(accs)), collapsed


def n_heads(cfg, name: str) -> int:
    rc = effective_reward(method_config(cfg, name)[1].reward, cfg.data.n_seed)
    return max(rc.ensemble, rc.cross_fit)


def choose(scores: dict[str, dict[str, list[float]]], heads: dict[str, int]) -> str:
    """The winner by the rule: scores[method][size] = per-split validation accuracies."""
    mean = {m: float(np.mean([a for v in by.values() for a in v])) for m, by in scores.items()}
    steady = [
        m for m, by in scores.items() if all(np.mean(v) - min(v) <= WORST for v in by.values())
    ]
    pool = steady or list(scores)
    best = max(pool, key=lambda m: mean[m])
    near = [m for m in pool if mean[m] >= mean[best] - TIE]
    return min(near, key=lambda m: (heads[m], -mean[m]))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="configs/small_data_hh.yaml")
    ap.add_argument("--repeats", type=int, default=1, help="fold draws per split")
    ap.add_argument("--seeds", type=int, nargs="*", help="split seeds (default: the config's)")
    ap.add_argument("overrides", nargs="*", metavar="key=value")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    cfg = load_config(args.config, args.overrides)
    seeds = args.seeds if args.seeds else list(cfg.seeds)
    methods = list(cfg.methods)
    scores: dict[str, dict[str, list[float]]] = {m: {} for m in methods}
    collapses: dict[str, dict[str, int]] = {m: {} for m in methods}
    heads: dict[str, int] = {}
    t0 = time.perf_counter()
    for value, vcfg in sweep_configs(cfg):
        datas = prepare_layers(vcfg, split_seeds=seeds, embed_all=None)
        for s in seeds:
            scfg = apply_changes(vcfg, {"seed": s, "data.split_seed": s})
            with torch_threads(cfg.threads):
                layer, _ = choose_layer(scfg, datas, s, s)
                data = datas[layer]
                split = data.splits[s]
                rows = np.sort(np.concatenate([split.train, split.val]))
                kcfg = apply_changes(scfg, {"select_repeats": args.repeats, "embed.layer": layer})
                for m in methods:
                    heads[m] = n_heads(kcfg, m)
                    acc, n0 = deployed_kfold(kcfg, m, data, rows, s)
                    scores[m].setdefault(str(value), []).append(acc)
                    collapses[m][str(value)] = collapses[m].get(str(value), 0) + n0
                    print(
                        f"n={value} split={s} layer={layer} {m}: {acc:.4f} epoch-0 folds {n0} "
                        f"({time.perf_counter() - t0:.0f}s)",
                        flush=True,
                    )
    sizes = list(next(iter(scores.values())).keys())
    print(
        f"\nValidation accuracy ({args.repeats} x {cfg.select_folds}-fold inside each seed "
        f"set, splits {seeds}): mean over splits [worst split, mean minus worst; folds whose "
        f"every head kept its epoch-0 weights]\n"
    )
    print("| method | heads | " + " | ".join(f"{n} seed pairs" for n in sizes) + " | mean |")
    print("|---|---|" + "---|" * len(sizes) + "---|")
    for m in methods:
        cells = [
            f"{np.mean(v):.3f} [{min(v):.3f}, {100 * (np.mean(v) - min(v)):.1f} pts; "
            f"{collapses[m][n]}/{len(v) * args.repeats * cfg.select_folds}]"
            for n, v in ((n, scores[m][n]) for n in sizes)
        ]
        allv = [a for n in sizes for a in scores[m][n]]
        print(f"| {m} | {heads[m]} | " + " | ".join(cells) + f" | {np.mean(allv):.4f} |")
    print(f"\nWinner by the rule: {choose(scores, heads)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
