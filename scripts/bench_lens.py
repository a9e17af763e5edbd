"""Benchmark the LENS core on synthetic embeddings: VAE fit + synthesis + reward head training.

Each configuration runs in a fresh subprocess (so peak RSS is its own) on `toy_pairs` data with a
planted preference direction, using the library defaults (VAEConfig, SynthConfig, RewardConfig)
unless overridden. Prints a markdown table: wall seconds per stage, total wall and process CPU
seconds (on a shared, loaded machine CPU time with --threads 1 is the steadier figure), held-out
accuracy of the head (and of the planted direction, the ceiling), peak RSS, and the bytes of all
embeddings the process holds (seed and held-out arrays + the augmented pool).

    .venv/bin/python scripts/bench_lens.py                      # 1k seeds, d=576 and d=4096, 8x
    .venv/bin/python scripts/bench_lens.py --scale 5000 20000   # + scale rows at d=4096
    .venv/bin/python scripts/bench_lens.py --runs 1000:576:8 --set reward.epochs=5

Targets (issue 5): 1k seeds 8x under 5 s at d=576 and under 30 s at d=4096 on 2 cores;
50k/5k wall time <= 11x; peak RSS <= 2x the bytes of embeddings held (inputs + pool).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time


def rss_mb() -> float:
    """Current resident set size (MB), from /proc (Linux)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def one_run(
    n: int, d: int, ratio: int, threads: int, overrides: list[str], method: str = "lens"
) -> dict:
    """Toy data -> augmenter fit + augment -> head; timings, accuracy, memory. Runs in a child."""
    import numpy as np
    import torch

    from latentrm.augment.methods import make_augmenter
    from latentrm.config import load_config
    from latentrm.evaluate import pairwise_accuracy
    from latentrm.head.fitter import RewardHeadFitter
    from latentrm.testing import toy_pairs

    torch.set_num_threads(threads)
    cfg = load_config(None, overrides)
    n_val, n_test = max(1, n // 10), 2000
    base_mb = rss_mb()
    c, r, w = toy_pairs(n + n_test, d, seed=0)
    test = (c[n:], r[n:])
    c, r = c[:n], r[:n]
    train, val = (c[n_val:], r[n_val:]), (c[:n_val], r[:n_val])
    t0, cpu0 = time.perf_counter(), time.process_time()
    lens = make_augmenter(method, cfg, seed=0).fit(*train)
    t1 = time.perf_counter()
    aug = lens.augment(*train, ratio, seed=0)
    t2 = time.perf_counter()
    fitter = RewardHeadFitter(cfg.reward, seed=0).fit(aug, val)
    head = fitter.head_
    t3, cpu = time.perf_counter(), time.process_time() - cpu0
    held = c.nbytes + r.nbytes + aug.pool.nbytes + test[0].nbytes + test[1].nbytes
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    return {
        "n": n,
        "d": d,
        "ratio": ratio,
        "pairs": len(aug),
        "vae_s": t1 - t0,
        "synth_s": t2 - t1,
        "head_s": t3 - t2,
        "total_s": t3 - t0,
        "cpu_s": cpu,
        "method": method,
        "head_epochs": fitter.history_["epochs_run"],
        "vae_epochs": lens.vae_.history_["epochs_run"] if hasattr(lens, "vae_") else 0,
        "acc": pairwise_accuracy(head.score(test[0]), head.score(test[1])),
        "acc_ideal": float(np.mean((test[0] - test[1]) @ w > 0)),
        "peak_rss_mb": peak_mb,
        "base_rss_mb": base_mb,
        "held_mb": held / 2**20,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--runs",
        nargs="*",
        default=["1000:576:8", "1000:4096:8"],
        help="N:d:ratio per row (default: the two 1k-seed speed targets)",
    )
    ap.add_argument(
        "--scale",
        nargs="*",
        type=int,
        default=[],
        help="extra seed counts at d=4096, ratio 8 (e.g. 5000 20000 50000)",
    )
    ap.add_argument("--threads", type=int, default=2, help="torch threads (target: 2)")
    ap.add_argument(
        "--set",
        nargs="*",
        default=[],
        metavar="key=value",
        help="config overrides, e.g. vae.epochs=30 reward.patience=5",
    )
    ap.add_argument("--method", default="lens", help="lens | none | direct | gaussian")
    ap.add_argument(
        "--torch-adamw",
        action="store_true",
        help="train with torch.optim.AdamW instead of latentrm.head.train.AdamW (same "
        "weights; its first use imports torch._dynamo): the before of issue 17.5",
    )
    ap.add_argument(
        "--omp-wait",
        default="PASSIVE",
        choices=("PASSIVE", "ACTIVE", "inherit"),
        help="OMP_WAIT_POLICY for the runs. PASSIVE (default): idle OpenMP threads sleep instead "
        "of spinning; on a shared, loaded 2-core box spinning made 2-thread runs ~6x slower",
    )
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        n, d, ratio = (int(x) for x in args.child.split(":"))
        if args.torch_adamw:
            import torch

            import latentrm.head.train

            def torch_adamw(params, lr: float, weight_decay: float, foreach: bool):
                return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, foreach=foreach)

            latentrm.head.train.AdamW = torch_adamw  # type: ignore[assignment,misc]
        print(json.dumps(one_run(n, d, ratio, args.threads, args.set, args.method)))
        return
    runs = list(args.runs) + [f"{n}:4096:8" for n in args.scale]
    env = dict(os.environ)
    if args.omp_wait != "inherit":
        env["OMP_WAIT_POLICY"] = args.omp_wait
    rows = []
    for spec in runs:
        cmd = [
            sys.executable,
            __file__,
            "--child",
            spec,
            "--threads",
            str(args.threads),
            "--method",
            args.method,
        ] + (["--torch-adamw"] if args.torch_adamw else [])
        if args.set:
            cmd += ["--set", *args.set]
        load = os.getloadavg()[0]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
        rows.append({**json.loads(out.strip().splitlines()[-1]), "load": load})
        print(f"done {spec}: {rows[-1]['total_s']:.1f}s", file=sys.stderr)
    from latentrm.runtime import SMALL_MODEL_PARAMS

    print(
        f"method {args.method}; torch threads {args.threads} (the VAE and head train on 1 when "
        f"under {SMALL_MODEL_PARAMS:,} parameters: runtime.training_threads); "
        f"OMP_WAIT_POLICY={env.get('OMP_WAIT_POLICY', 'unset')}; "
        f"optimizer: {'torch.optim.AdamW' if args.torch_adamw else 'latentrm.head.train.AdamW'}; "
        f"overrides: {' '.join(args.set) or 'none'}\n"
    )
    print(
        "| seeds | d | ratio | pairs | VAE s (epochs) | synth s | head s (epochs) | total s | "
        "CPU s | acc (ideal) | peak RSS MB (base) | embeddings held MB | load avg |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['n']} | {r['d']} | {r['ratio']} | {r['pairs']} | {r['vae_s']:.1f} "
            f"({r['vae_epochs']}) | {r['synth_s']:.2f} | {r['head_s']:.1f} ({r['head_epochs']}) "
            f"| **{r['total_s']:.1f}** | {r['cpu_s']:.1f} | "
            f"{r['acc']:.3f} ({r['acc_ideal']:.3f}) | "
            f"{r['peak_rss_mb']:.0f} ({r['base_rss_mb']:.0f}) | {r['held_mb']:.0f} | "
            f"{r['load']:.1f} |"
        )
    scale = {r["n"]: r for r in rows if r["d"] == 4096 and r["ratio"] == 8}
    ns = sorted(scale)
    for lo_n, hi_n in zip(ns[:-1], ns[1:], strict=True):
        lo, hi = scale[lo_n], scale[hi_n]
        print(
            f"\nwall time {hi_n}/{lo_n} seeds: {hi['total_s'] / lo['total_s']:.2f}x for "
            f"{hi_n / lo_n:.0f}x data; peak RSS above base / embeddings held at {hi_n}: "
            f"{(hi['peak_rss_mb'] - hi['base_rss_mb']) / hi['held_mb']:.2f}x"
        )


if __name__ == "__main__":
    main()
