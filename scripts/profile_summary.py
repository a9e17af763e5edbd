"""Summarise a `py-spy record --format raw` profile: inclusive share of samples per function.

    py-spy record -r 200 --format raw -o prof.txt -- .venv/bin/python -m latentrm -q run \\
        configs/hh.yaml methods=[lens] ratios=[8] select_gamma=[] select_sigma2=[] out_dir=/tmp/p
    .venv/bin/python scripts/profile_summary.py prof.txt --top 25
"""

from __future__ import annotations

import argparse
from collections import Counter


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("profile")
    ap.add_argument("--top", type=int, default=25)
    args = ap.parse_args()
    inclusive: Counter[str] = Counter()
    total = 0
    with open(args.profile) as f:
        for line in f:
            line = line.rstrip()
            if not line:
                continue
            stack, n_str = line.rsplit(" ", 1)
            n = int(n_str)
            total += n
            seen = set()
            for frame in stack.split(";"):
                name, _, where = frame.partition(" (")
                key = f"{name} {where.split(':')[0]}"
                if key not in seen:  # recursion counts once per sample
                    seen.add(key)
                    inclusive[key] += n
    print(f"{total} samples")
    print("| inclusive share | function |")
    print("|---|---|")
    for key, n in inclusive.most_common(args.top):
        print(f"| {100 * n / total:.1f}% | `{key}` |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
