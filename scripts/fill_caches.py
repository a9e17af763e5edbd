"""Fill the embedding caches of experiment configs (e.g. on a GPU box), without training anything.

The cache key holds no device, batch size or thread count, so caches filled on a GPU are the ones
`latentrm run` / `experiment` / `make reproduce` read on a CPU afterwards (copy the cache folder).

    python scripts/fill_caches.py configs/hh.yaml configs/alpaca.yaml \\
        --set embed.device=cuda embed.batch_size=128 embed.max_batch_tokens=65536

The REPORT's SmolLM2 caches were filled this way on one H100: HH (4,624 texts, max 256 tokens) in
40 s and AlpacaEval (12,880 texts, max 384 tokens) in 54 s, model load included (~440 texts/s,
~105k non-pad tokens/s, 20-25% padding at batch 128).
"""

from __future__ import annotations

import argparse
import logging

from latentrm.recipes.embed import fill_caches


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("configs", nargs="+")
    ap.add_argument(
        "--set",
        nargs="*",
        default=[],
        metavar="key=value",
        help="overrides applied to every config (device, batch size, cache_dir, ...)",
    )
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    for line in fill_caches(args.configs, args.set):
        print(line, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
