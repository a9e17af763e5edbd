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
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from latentrm.config import load_config  # noqa: E402
from latentrm.prepare import prepare_data  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("configs", nargs="+")
    ap.add_argument("--set", nargs="*", default=[], metavar="key=value",
                    help="overrides applied to every config (device, batch size, cache_dir, ...)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    for path in args.configs:
        cfg = load_config(path, ["embed.show_progress=false", *args.set])
        t0 = time.perf_counter()
        prep = prepare_data(cfg, split_seeds=list(cfg.seeds), embed_all=True)
        print(f"{path}: {len(prep.chosen)} pairs, "
              f"{prep.meta.get('candidates_embedded', 2 * len(prep.chosen))} texts embedded or "
              f"read in {time.perf_counter() - t0:.1f}s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
