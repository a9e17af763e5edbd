"""How much the real data files inflate when gunzipped, against latentrm's limit.

    python scripts/inflate_ratio.py ../shared/data/hh-rlhf/harmless-base-test.jsonl.gz \
        ../shared/data/alpaca-eval/candidates.jsonl.gz

The limit (latentrm.data.decode.MAX_INFLATE_RATIO, with a floor of MIN_INFLATE_LIMIT bytes) must
sit well above what real files do, and far below what a gzip bomb does.
"""

from __future__ import annotations

import argparse
import gzip
from pathlib import Path

from latentrm.data.decode import MAX_INFLATE_RATIO


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("files", nargs="+", type=Path)
    for f in p.parse_args().files:
        stored = f.stat().st_size
        inflated = len(gzip.decompress(f.read_bytes()))
        print(
            f"{f}: {stored:,} -> {inflated:,} bytes, {inflated / stored:.1f}x "
            f"(limit {MAX_INFLATE_RATIO}x)"
        )


if __name__ == "__main__":
    main()
