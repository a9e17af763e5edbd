"""Paired differences vs the un-augmented head: per seed, method accuracy minus `none` accuracy.

Each seed is one split with the same seed/held-out pairs for every method, so the paired
difference removes the split-to-split variance. Prints mean +- 95% CI (Student t over seeds).

    .venv/bin/python scripts/paired_diff.py runs/hh/results.csv [--metric accuracy]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from latentrm.evaluate import mean_ci_over_seeds  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", nargs="+")
    ap.add_argument("--metric", default="accuracy")
    args = ap.parse_args()
    for path in args.results:
        df = pd.read_csv(path)
        keys = ["seed"] + (["sweep_value"] if "sweep_value" in df.columns else [])
        base = df[df.method == "none"].set_index(keys)[args.metric]
        print(f"{path}: {args.metric} minus none's, mean +- 95% CI over seeds\n")
        group = keys[1:] + ["method", "ratio"]  # sweep value (ablations) first
        print("| " + " | ".join(group) + " | seeds | difference | wins/seeds |")
        print("|" + "---|" * (len(group) + 3))
        for names, g in df[df.method != "none"].groupby(group):
            d = (g.set_index(keys)[args.metric] - base).dropna()
            mean, half = mean_ci_over_seeds(d.to_numpy())
            cells = " | ".join(str(v) for v in (names if isinstance(names, tuple) else (names,)))
            print(f"| {cells} | {len(d)} | {mean:+.4f} +- {half:.4f} | "
                  f"{int((d > 0).sum())}/{len(d)} |")
        print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
