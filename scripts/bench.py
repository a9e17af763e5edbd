"""`make bench`: run the benchmark scripts and rewrite BENCHMARKS.md with the machine and commands.

Each section is the markdown a benchmark script prints (its own figures and targets, met or not);
this script only runs them in sequence (never in parallel: they share the 2 cores), records the
machine, the exact command and the wall time, and writes the file atomically.

    .venv/bin/python scripts/bench.py --out BENCHMARKS.md            # every section
    .venv/bin/python scripts/bench.py --only lens dtype              # rerun two, keep the rest
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable

# name -> (title, argv). Sizes are chosen so the whole suite ends in well under an hour on 2 cores.
SECTIONS: dict[str, tuple[str, list[str]]] = {
    "dtype": (
        "Embedding dtype: float32 vs bfloat16 (embed.dtype: auto) vs int8, and bf16's accuracy",
        [
            PY,
            "scripts/bench_dtype.py",
            "--threads",
            "2",
            "--n-texts",
            "64",
            "--rounds",
            "3",
            "--acc-pairs",
            "500",
            "--n-seed",
            "300",
            "--splits",
            "20",
        ],
    ),
    "lens-threads": (
        "LENS after embeddings at d=576 with 1 and with 2 threads (issue 17: under 5 s at both), "
        "and with torch.optim.AdamW (before issue 17.5)",
        [
            "bash",
            "-c",
            f"for a in '--threads 1' '--threads 2' '--threads 1 --torch-adamw'; do {PY} "
            "scripts/bench_lens.py --runs 1000:576:8 1000:576:8 1000:576:8 $a; echo; done",
        ],
    ),
    "lens": (
        "LENS after embeddings (VAE fit + synthesis + head), and scale to 50k seeds",
        [PY, "scripts/bench_lens.py", "--threads", "2", "--scale", "5000", "20000", "50000"],
    ),
    "embed": (
        "Embedding extraction",
        [PY, "scripts/bench_embed.py", "--threads", "2", "--n-encoder", "256", "--n-decoder", "32"],
    ),
    "text": (
        "Latent vs text synthesis (SmolLM2 generating + judging, measured sample, extrapolated)",
        [
            PY,
            "scripts/bench_text_synthesis.py",
            "--threads",
            "2",
            "--synth-prompts",
            "4",
            "--responses",
            "2",
            "--rm-modes",
            "none",
        ],
    ),
    "startup": (
        "CLI start-up: latentrm --help and latentrm score against import torch (issue 24)",
        [PY, "scripts/bench_startup.py", "--runs", "8"],
    ),
    "profile": (
        "Profile of a LENS run after the embeddings (py-spy, inclusive share of samples)",
        [
            "bash",
            "-c",
            "py=.venv/bin/python; out=$(mktemp); "
            ".venv/bin/py-spy record -r 200 --format raw -o $out -- $py -m latentrm -q run "
            "configs/hh.yaml methods=[lens] ratios=[8] select_gamma=[] select_sigma2=[] "
            "out_dir=$(mktemp -d) > /dev/null 2>&1 && $py scripts/profile_summary.py $out --top 20",
        ],
    ),
}

# Fixes the profiles led to, with the measurements before and after (re-measure with the commands).
FIXES = """\
- **Spinning OpenMP threads.** Under load on this 2-core machine, 2 torch threads with the default
  OMP_WAIT_POLICY took 58 s for the 1k-seed d=576 LENS benchmark instead of 7.3 s with
  `OMP_WAIT_POLICY=PASSIVE` (`scripts/bench_lens.py --runs 1000:576:8 --omp-wait ACTIVE` vs
  `--omp-wait PASSIVE`); the benchmark now sets PASSIVE and the configs train the small VAE/MLP
  with 1 thread (`threads: 1`), embedding with 2.
- **Peak memory at 20k seeds, d=4096.** Standardisation statistics in 32 MB chunks, in-place
  standardisation, head scoring in batches of 1,024 and AdamW `foreach`: peak RSS above the
  interpreter's base went to 1.13x the bytes of the embeddings held (target <= 2x).
- **The first AdamW imported `torch._dynamo`** (about 1.6 s, ~17% of a short LENS run): torch's
  `Optimizer` base class imports it on first use whatever the flags, so
  `latentrm.head.train.AdamW` calls
  torch's public functional kernel (`torch.optim.adamw.adamw`) itself; the weights are
  bit-identical to `torch.optim.AdamW` (tests/head/test_train.py).
- **Threads for small models.** The d=576 VAE (~76k parameters) and head (~37k) now train on one
  torch thread whatever `threads` asks (`runtime.training_threads`, logged); models of 200k
  parameters or more keep the requested count. Their results are the same bits at 1 and 2 threads.
- **GGUF weights** are dequantised once at load into the compute dtype
  (`GgufConfig(dequantize=True)`), so no matmul casts and transformers no longer warns that "the
  kernels compute in float32" (tests/embed/test_models.py loads a tiny Q8_0 GGUF).
"""


def machine() -> str:
    import torch

    from latentrm.runtime import cpu_flags, cpu_name

    cpu = cpu_name()
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    load = os.getloadavg()[0]
    flags = cpu_flags()
    isa = " ".join(
        f
        for f in (
            "avx2",
            "avx512f",
            "avx512_bf16",
            "avx512_vnni",
            "amx_tile",
            "amx_bf16",
            "amx_int8",
        )
        if f in flags
    )
    no_amx = "" if {"amx_bf16", "amx_tile"} & flags else " (no AMX)"
    return (
        f"- machine: {cpu}, {os.cpu_count()} cores, {mem:.0f} GiB RAM, no GPU\n"
        f"- CPU flags for matmuls: {isa or 'none found'}{no_amx}\n"
        f"- software: Python {platform.python_version()}, torch {torch.__version__}\n"
        f"- load average when the run started: {load:.1f}\n"
        f"- date: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC"
    )


def old_sections(old: str) -> dict[str, str]:
    """The sections of a previous BENCHMARKS.md by name (a section: its title, then its command).

    A block runs to the next section's title; blocks under titles no longer in SECTIONS go.
    """
    heads = list(re.finditer(r"(?m)^## (.+)\n\nCommand: `", old))
    ends = [m.start() for m in heads[1:]] + [len(old)]
    names = {title: name for name, (title, _) in SECTIONS.items()}
    return {
        names[m.group(1)]: old[m.start() : end].rstrip() + "\n"
        for m, end in zip(heads, ends, strict=True)
        if m.group(1) in names
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="BENCHMARKS.md")
    ap.add_argument("--only", nargs="*", choices=sorted(SECTIONS), help="run only these sections")
    ap.add_argument(
        "--cache-dir",
        help="embedding cache of the dtype section's accuracy part "
        "(default: the repository's cache/)",
    )
    ap.add_argument(
        "--data",
        help="HH-RLHF harmless-base test file of the dtype section "
        "(default: ../shared/data/hh-rlhf/harmless-base-test.jsonl.gz)",
    )
    args = ap.parse_args()
    if args.cache_dir:
        SECTIONS["dtype"][1].extend(["--cache-dir", args.cache_dir])
    if args.data:
        SECTIONS["dtype"][1].extend(["--data", args.data])
    # The scripts import this checkout's latentrm, whichever checkout the venv was installed from.
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "PYTHONUNBUFFERED": "1",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    parts = [
        "# Benchmarks\n",
        "Written by `make bench` (`scripts/bench.py`); every figure below was measured by the "
        "command shown with it, on this machine:\n",
        machine(),
        "",
        "Timings on a shared 2-core machine vary with its load: compare figures from one run.\n",
    ]
    # The targets summary (met / not met, what limits it) is written from a run's figures by a
    # person; keep it across reruns so it can be checked against the new figures below.
    old = Path(args.out).read_text() if Path(args.out).exists() else ""
    m = re.search(r"<!-- BEGIN SUMMARY -->.*?<!-- END SUMMARY -->", old, re.S)
    if m:
        parts += [m.group(0), ""]
    parts += ["## Profiling: what was fixed\n", FIXES]
    kept = old_sections(old) if args.only else {}
    if args.only:
        parts[2] += (
            f"\n- sections run this time: {', '.join(args.only)}; the others are kept "
            "from the previous file, with their own commands and load averages"
        )
    for name in SECTIONS:
        title, argv = SECTIONS[name]
        if args.only and name not in args.only:
            if name in kept:
                parts += [kept[name]]
            continue
        cmd = (
            argv[-1].replace(PY, ".venv/bin/python")
            if argv[0] == "bash"
            else " ".join(a if a != PY else ".venv/bin/python" for a in argv)
        )
        print(f"[bench] {name}: {cmd}", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        proc = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        body = proc.stdout.strip() or "(no output)"
        if proc.returncode != 0:
            body += f"\n\n**failed** (exit {proc.returncode}):\n```\n{proc.stderr[-3000:]}\n```"
        parts += [f"## {title}\n", f"Command: `{cmd}` ({wall:.0f} s wall)\n", body, ""]
    text = "\n".join(parts) + "\n"
    tmp = Path(args.out).with_suffix(".md.tmp")
    tmp.write_text(text)
    os.replace(tmp, args.out)
    print(f"[bench] wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
