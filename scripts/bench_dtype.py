"""float32 vs bfloat16 (vs int8) SmolLM2 embedding on this CPU, and what bf16 does to accuracy.

Prints a markdown section (`make bench` puts it in BENCHMARKS.md):

(a) speed, all variants on the same HH texts in one process, in interleaved rounds (f32, bf16,
    int8, f32, ...; the median round counts): texts/s and non-pad tokens/s; useful GFLOP/s
    (2 x non-embedding params per token + causal attention) against a bf16 and a float32 matmul
    of the model's MLP shape timed in the same rounds; cosine of each variant's embeddings
    against float32's. `bfloat16` is what `embed.dtype: auto` resolves to here (it says so);
    `int8` is torch.ao dynamic quantisation (per-channel weights) of the float32 model's Linear
    layers, measured only: it is not an embed.dtype.
(b) accuracy, on the first --acc-pairs pairs of HH-RLHF harmless-base test: --splits splits of
    --n-seed seed pairs (the rest held out), the plain head (`none`) and LENS (ratio 4, default
    hyperparameters) trained on a float32 and on a bfloat16 cache of the same texts; the paired
    per-split difference in held-out accuracy (bf16 - f32), its mean over the first 5 splits
    (the issue's check) and over all of them (splits cost training only: the texts are the same).

    .venv/bin/python scripts/bench_dtype.py                        # both parts (~15 min, 2 cores)
    .venv/bin/python scripts/bench_dtype.py --parts speed --n-texts 32 --rounds 1   # a quick look

Targets (issue 17): >= 3x float32 throughput by default on a CPU with AMX; >= 60% of the bf16
matmul peak; bf16 caches within +-0.5 accuracy points of float32 caches.
"""

from __future__ import annotations

import argparse
import gzip
import logging
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
ROOT = Path(__file__).resolve().parent.parent
FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_tile", "amx_bf16", "amx_int8")


def cpu_line() -> str:
    from latentrm.runtime import cpu_flags, cpu_has_bf16, cpu_name, resolve_dtype

    name = cpu_name()
    flags = cpu_flags()
    have = ", ".join(f"{f} {'yes' if f in flags else 'NO'}" for f in FLAGS)
    return (
        f"CPU: {name} ({platform.machine()}), {os.cpu_count()} cores; flags: {have}; torch "
        f"{torch.__version__} kernels: {torch.backends.cpu.get_cpu_capability()}; native bf16 "
        f"detected: {cpu_has_bf16()}, so `embed.dtype: auto` -> "
        f"**{resolve_dtype('auto', 'cpu')}**."
    )


def hh_pairs(path: str, n: int) -> list[dict[str, str]]:
    import json

    out = []
    with gzip.open(path, "rt") as f:
        for line in f:
            if len(out) == n:
                break
            out.append(json.loads(line))
    return out


def matmul_gflops(
    dtype: torch.dtype, m: int, k: int, n: int, min_s: float = 0.3
) -> tuple[float, float]:
    """Best of 3 timings of F.linear((m, k), (n, k)) in `dtype`, the layout of nn.Linear.

    Returns (GFLOP/s of wall time, GFLOP/s of process CPU time x threads): the second discounts
    the time other jobs held the cores.
    """
    a, w = torch.randn(m, k).to(dtype), torch.randn(n, k).to(dtype)
    torch.nn.functional.linear(a, w)  # oneDNN primitive creation
    reps, best, best_cpu = 1, 0.0, 0.0
    while True:
        t = time.perf_counter()
        for _ in range(reps):
            torch.nn.functional.linear(a, w)
        dt = time.perf_counter() - t
        if dt >= min_s / 3:
            break
        reps *= 2
    for _ in range(3):
        t, c = time.perf_counter(), time.process_time()
        for _ in range(reps):
            torch.nn.functional.linear(a, w)
        t, c = time.perf_counter() - t, time.process_time() - c
        best = max(best, 2 * m * k * n * reps / t / 1e9)
        best_cpu = max(best_cpu, 2 * m * k * n * reps / (c / torch.get_num_threads()) / 1e9)
    return best, best_cpu


def int8_copy(model: torch.nn.Module) -> torch.nn.Module:
    """torch.ao dynamic int8 quantisation (per-channel weights) of every nn.Linear of a copy."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

        if "x86" in torch.backends.quantized.supported_engines:
            torch.backends.quantized.engine = "x86"
        return quantize_dynamic(
            model, {torch.nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8, inplace=False
        )


def speed(args: argparse.Namespace, lines: list[str]) -> dict[str, Any]:
    import copy

    from latentrm.config import EmbedConfig
    from latentrm.data import parse_hh
    from latentrm.embed import Embedder
    from latentrm.embed.models import not_dense_weights
    from latentrm.runtime import torch_threads

    pairs = hh_pairs(args.data, 10_000)
    pick = np.linspace(0, len(pairs) - 1, args.n_texts).astype(int)  # the file's length mix
    prompts, responses = zip(*(parse_hh(pairs[i]["chosen"]) for i in pick), strict=True)
    variants: dict[str, Any] = {}
    loads: dict[str, float] = {}
    for name, dtype in (("float32", "float32"), ("bfloat16 (auto)", "auto")):
        cfg = EmbedConfig(
            model=args.model,
            max_length=args.max_length,
            dtype=dtype,
            threads=args.threads,
            show_progress=False,
        )
        t = time.perf_counter()
        variants[name] = Embedder(cfg)
        loads[name] = time.perf_counter() - t
    f32, b16 = variants["float32"], variants["bfloat16 (auto)"]
    if args.int8:
        t = time.perf_counter()
        q = copy.copy(f32)
        q.model = int8_copy(f32.model)
        loads["int8 (torch.ao dynamic)"] = loads["float32"] + time.perf_counter() - t
        variants["int8 (torch.ao dynamic)"] = q
    ids = f32.tokenize(list(prompts), list(responses))
    assert ids == b16.tokenize(list(prompts), list(responses))
    tokens = sum(len(x) for x in ids)
    c = f32.model.config
    params = sum(p.numel() for n, p in f32.model.named_parameters() if "embed_tokens" not in n)
    d_attn = c.num_attention_heads * getattr(c, "head_dim", c.hidden_size // c.num_attention_heads)
    flops = sum(2 * params * len(x) + 2 * c.num_hidden_layers * d_attn * len(x) ** 2 for x in ids)
    shape = (2048, c.hidden_size, c.intermediate_size)
    secs: dict[str, list[float]] = {k: [] for k in variants}
    cpus: dict[str, list[float]] = {k: [] for k in variants}
    peaks: dict[str, list[float]] = {"float32": [], "bfloat16": []}
    cpu_peaks: dict[str, list[float]] = {"float32": [], "bfloat16": []}
    vecs: dict[str, np.ndarray] = {}
    loadavg = [os.getloadavg()[0]]
    for r in range(args.rounds):
        for name, emb in variants.items():
            if r == 0:  # warm-up pass (oneDNN primitives), not timed
                emb.embed_ids(ids[: args.threads * 8])
            c = time.process_time()
            vecs[name] = emb.embed_ids(ids)[:, -1]
            cpus[name].append((time.process_time() - c) / args.threads)
            secs[name].append(emb.last_stats["seconds"])
        with torch.inference_mode(), torch_threads(args.threads):
            for dt in peaks:
                wall_gf, cpu_gf = matmul_gflops(getattr(torch, dt), *shape)
                peaks[dt].append(wall_gf)
                cpu_peaks[dt].append(cpu_gf)
        loadavg.append(os.getloadavg()[0])
        print(
            f"round {r}: "
            + ", ".join(f"{k} {v[-1]:.1f}s" for k, v in secs.items())
            + f"; peaks {', '.join(f'{k} {v[-1]:.0f}' for k, v in peaks.items())} GFLOP/s; "
            f"load {loadavg[-1]:.2f}",
            file=sys.stderr,
        )
    peak = {k: statistics.median(v) for k, v in peaks.items()}
    cpu_peak = {k: statistics.median(v) for k, v in cpu_peaks.items()}
    ref = vecs["float32"]

    def cos(a: np.ndarray) -> np.ndarray:
        return (a * ref).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(ref, axis=1)

    n = len(ids)
    dense = not_dense_weights(b16.model, torch.bfloat16)
    lines += [
        cpu_line(),
        "",
        f"SmolLM2 ({args.model}, {params / 1e6:.1f}M non-embedding parameters), {n} HH texts "
        f"spread over the file ({tokens} tokens, mean {tokens / n:.0f}, max_length "
        f"{args.max_length}), batches of 16 sorted by length, {args.threads} torch threads, "
        f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}; median of {args.rounds} "
        f"interleaved rounds after a warm-up. 1-minute load average during the rounds: "
        f"{min(loadavg):.2f}-{max(loadavg):.2f}.",
        "",
        f"bf16 weights after load: {'all dense bfloat16 tensors in plain nn.Linear' if not dense else 'NOT dense: ' + ', '.join(dense[:3])}"  # noqa: E501
        f" ({sum(1 for _ in b16.model.parameters())} tensors); model load (GGUF parse + "
        f"dequantise): " + ", ".join(f"{k} {v:.1f} s" for k, v in loads.items()) + ".",
        "",
        f"Matmul peak, F.linear {shape[0]}x{shape[1]} @ {shape[1]}x{shape[2]}, {args.threads} "
        f"threads, median over the rounds of the best of 3: float32 {peak['float32']:.0f} GFLOP/s, "
        f"bfloat16 {peak['bfloat16']:.0f} GFLOP/s ({peak['bfloat16'] / peak['float32']:.2f}x).",
        "",
        f"Per CPU-second (process CPU time / threads, which discounts the time other jobs held "
        f"the cores): float32 {cpu_peak['float32']:.0f}, bfloat16 {cpu_peak['bfloat16']:.0f} "
        "GFLOP/s.",
        "",
        "| variant | texts/s median (min-max) | non-pad tokens/s | speed vs float32 | useful "
        "GFLOP/s | % of its dtype's matmul peak | % of the bf16 peak | same, per CPU-second | "
        "cosine vs float32 mean (min) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    t32 = statistics.median(secs["float32"])
    out = {"peak": peak, "loadavg": (min(loadavg), max(loadavg))}
    for name, s in secs.items():
        t = statistics.median(s)
        gf = flops / t / 1e9
        own = peak["bfloat16" if name.startswith("bfloat16") else "float32"]
        cs = cos(vecs[name])
        own_s = f"{100 * gf / own:.0f}%" if not name.startswith("int8") else "-"
        gf_cpu = flops / statistics.median(cpus[name]) / 1e9
        lines.append(
            f"| {name} | {n / t:.2f} ({n / max(s):.2f}-{n / min(s):.2f}) | {tokens / t:.0f} | "
            f"{t32 / t:.2f}x | {gf:.1f} | {own_s} | {100 * gf / peak['bfloat16']:.0f}% | "
            f"{100 * gf_cpu / cpu_peak['bfloat16']:.0f}% | {cs.mean():.5f} ({cs.min():.5f}) |"
        )
        out[name] = {
            "speedup": t32 / t,
            "of_bf16_peak": gf / peak["bfloat16"],
            "of_bf16_peak_cpu": gf_cpu / cpu_peak["bfloat16"],
            "cos_mean": float(cs.mean()),
            "cos_min": float(cs.min()),
            "texts_s": n / t,
        }
    lines.append("")
    return out


def accuracy(args: argparse.Namespace, lines: list[str]) -> dict[str, Any]:
    from latentrm.config import apply_changes, load_config
    from latentrm.evaluate import mean_ci_over_seeds
    from latentrm.recipes.prepare import prepare_data
    from latentrm.recipes.run import evaluate_split
    from latentrm.runtime import torch_threads

    seeds = list(range(args.splits))
    acc: dict[str, dict[tuple[str, int], float]] = {}
    embed_s: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        # The first --acc-pairs lines of the data file, outside the repository.
        sub = Path(tmp) / "hh-subset.jsonl"
        src = gzip.open(args.data, "rt")
        with src, sub.open("w") as f:
            for i, line in enumerate(src):
                if i == args.acc_pairs:
                    break
                f.write(line)
        for dtype in ("float32", "bfloat16"):
            cfg = load_config(
                ROOT / "configs/hh.yaml",
                [
                    f"data.path={sub}",
                    f"data.n_seed={args.n_seed}",
                    "data.n_test=null",
                    f"embed.dtype={dtype}",
                    f"embed.max_length={args.max_length}",
                    f"embed.layers={args.layers}",
                    f"embed.threads={args.threads}",
                    "embed.show_progress=false",
                    "methods=[none,lens]",
                    "ratios=[4]",
                    "select_gamma=[]",
                    "select_sigma2=[]",
                    f"cache_dir={args.cache_dir}",
                    "threads=1",
                ],
            )
            t = time.perf_counter()
            data = prepare_data(cfg, seeds)
            embed_s[dtype] = time.perf_counter() - t
            hit = data.meta.get("embed", {}).get("cache", {}).get("hit")
            print(
                f"{dtype}: embeddings in {embed_s[dtype]:.0f}s (cache hit: {hit})", file=sys.stderr
            )
            acc[dtype] = {}
            with torch_threads(cfg.threads):
                for s in seeds:
                    scfg = apply_changes(cfg, {"seed": s, "data.split_seed": s})
                    for row in evaluate_split(scfg, data, data.splits[s]):
                        acc[dtype][(row["method"], s)] = row["accuracy"]
    n_test = args.acc_pairs - args.n_seed
    lines += [
        f"Accuracy: the first {args.acc_pairs} pairs of {Path(args.data).name}, {args.splits} "
        f"splits (split and training seed 0-{args.splits - 1}) of {args.n_seed} seed pairs "
        f"(10% of them validation) and {n_test} held-out pairs, embedding layer -1 (layers "
        f"{args.layers} cached in one pass), configs/hh.yaml heads, LENS at ratio 4 with default "
        f"gamma/sigma2. Embedding these {2 * args.acc_pairs} texts took "
        + ", ".join(f"{k} {v:.0f} s" for k, v in embed_s.items())
        + f" (with model load; 0 s = cache hit) in cache_dir={args.cache_dir}. Held-out "
        "accuracy in %:",
        "",
        "| split | plain head f32 | bf16 | bf16 - f32 | LENS f32 | bf16 | bf16 - f32 |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    diff = {
        m: [100 * (acc["bfloat16"][(m, s)] - acc["float32"][(m, s)]) for s in seeds]
        for m in ("none", "lens")
    }
    for i, s in enumerate(seeds):
        cells = [
            f"{100 * acc[dt][(m, s)]:.1f}"
            for m in ("none", "lens")
            for dt in ("float32", "bfloat16")
        ]
        lines.append(
            f"| {s} | {cells[0]} | {cells[1]} | {diff['none'][i]:+.1f} | {cells[2]} | "
            f"{cells[3]} | {diff['lens'][i]:+.1f} |"
        )
    out: dict[str, Any] = {}
    groups = [(f"splits 0-{min(5, args.splits) - 1}", 5)] if args.splits > 5 else []
    for label, k in groups + [(f"all {args.splits} splits", args.splits)]:
        cis = {m: mean_ci_over_seeds(diff[m][:k]) for m in diff}
        out[label] = cis
        lines.append(
            f"| mean, {label} (95% CI) | | | {cis['none'][0]:+.2f} "
            f"(+-{cis['none'][1]:.2f}) | | | {cis['lens'][0]:+.2f} "
            f"(+-{cis['lens'][1]:.2f}) |"
        )
    lines.append("")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", default="../shared/data/hh-rlhf/harmless-base-test.jsonl.gz")
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--parts", default="speed,accuracy")
    ap.add_argument("--n-texts", type=int, default=64, help="(a) texts per pass")
    ap.add_argument("--rounds", type=int, default=3, help="(a) interleaved timed rounds")
    ap.add_argument("--no-int8", dest="int8", action="store_false", help="(a) skip int8")
    ap.add_argument("--threads", type=int, default=2, help="torch threads for the LLM")
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--acc-pairs", type=int, default=600, help="(b) pairs embedded twice")
    ap.add_argument("--n-seed", type=int, default=400, help="(b) seed pairs per split")
    ap.add_argument(
        "--splits",
        type=int,
        default=20,
        help="(b) the first 5 are the issue's check, reported apart",
    )
    ap.add_argument(
        "--layers",
        default="[15,20,22,-1]",
        help="(b) cached hidden states (the store the quality configs use)",
    )
    ap.add_argument("--cache-dir", default="cache")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    lines: list[str] = []
    parts = args.parts.split(",")
    res: dict[str, Any] = {}
    if "speed" in parts:
        res["speed"] = speed(args, lines)
    if "accuracy" in parts:
        res["accuracy"] = accuracy(args, lines)
    lines += targets(res)
    print("\n".join(lines))


def targets(res: dict[str, Any]) -> list[str]:
    """The issue's targets, met or not, from this run's figures."""
    from latentrm.runtime import cpu_flags

    out = ["Targets (issue 17), from this run:", ""]
    sp = res.get("speed")
    if sp:
        b = sp["bfloat16 (auto)"]
        ratio = sp["peak"]["bfloat16"] / sp["peak"]["float32"]
        amx = bool(cpu_flags() & {"amx_bf16", "amx_tile"})
        out.append(
            f"- >= 3x float32 throughput by default on a CPU with AMX: **{b['speedup']:.2f}x** "
            "here. "
            + (
                "**met**"
                if amx and b["speedup"] >= 3
                else "**not met**"
                if amx
                else f"**not applicable: this CPU has no AMX**; its bf16 units (AVX512-BF16) "
                f"run the bf16 matmul at {ratio:.2f}x float32's speed in this run, so "
                "about 2x, not 3x, is what bf16 can give here"
            )
        )
        out.append(
            f"- >= 60% of the bf16 matmul peak: **{100 * b['of_bf16_peak']:.0f}%** of wall "
            f"time ({100 * b['of_bf16_peak_cpu']:.0f}% per CPU-second) "
            + ("**met**" if b["of_bf16_peak"] >= 0.6 else "**not met**")
        )
        if "int8 (torch.ao dynamic)" in sp:
            q = sp["int8 (torch.ao dynamic)"]
            out.append(
                f"- int8 kept only if faster at equal quality: {q['speedup']:.2f}x float32 "
                f"({q['speedup'] / b['speedup']:.2f}x bf16) but cosine vs float32 "
                f"{q['cos_mean']:.3f} mean, {q['cos_min']:.3f} min (bf16: {b['cos_mean']:.5f}, "
                f"{b['cos_min']:.5f}): "
                + (
                    "**kept as an option**"
                    if q["cos_min"] >= b["cos_min"]
                    else "**rejected** (not equal quality)"
                )
            )
    acc = res.get("accuracy")
    if acc:
        for label, cis in acc.items():
            ok = all(abs(m) <= 0.5 for m, _ in cis.values())
            out.append(
                f"- bf16 vs float32 caches within +-0.5 accuracy points (mean paired "
                f"difference), {label}: plain head {cis['none'][0]:+.2f} "
                f"(+-{cis['none'][1]:.2f}), LENS {cis['lens'][0]:+.2f} "
                f"(+-{cis['lens'][1]:.2f}): " + ("**met**" if ok else "**not met**")
            )
    return out + [""]


if __name__ == "__main__":
    main()
