"""Paired differences vs the un-augmented head: per seed, method accuracy minus `none` accuracy.

Each seed is one split with the same seed/held-out pairs for every method, so the paired
difference removes the split-to-split variance. Prints mean +- 95% CI (Student t over seeds)
(`latentrm.recipes.report.paired_markdown`).

    .venv/bin/python scripts/paired_diff.py runs/hh/results.csv [--metric accuracy]
"""

from __future__ import annotations

import argparse

import pandas as pd
from report_tables import paired_markdown  # scripts/report_tables.py, beside this script


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", nargs="+")
    ap.add_argument("--metric", default="accuracy")
    args = ap.parse_args()
    for path in args.results:
        print(f"{path}: {args.metric} minus none's, mean +- 95% CI over seeds\n")
        print(paired_markdown(pd.read_csv(path), args.metric))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
