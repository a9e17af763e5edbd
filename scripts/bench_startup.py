"""Start-up time of the CLI against `python -c 'import torch'` (BENCHMARKS.md, issue 24 item 8).

    python scripts/bench_startup.py [--runs 10] [--before PATH_OF_ANOTHER_CHECKOUT]

Commands: `python -c 'import torch'`, `python -m latentrm --help` and `python -m latentrm score`
on one row with a reward model on a tiny random Llama (written to a temporary folder), so the
score command's time is its start-up, not an LLM's load. `--before` runs the same commands
against another checkout (PYTHONPATH) in the same session, for a before/after comparison on one
machine.

Timing: by default a loop of subprocesses that interleaves the checkouts run by run (a change in
the machine's load hits both alike) and also reports CPU seconds (user + sys of the child, which
other jobs inflate far less than wall time); `--tool hyperfine` uses hyperfine instead
(apt-get install hyperfine). Prints a markdown table, the CPU model and the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def tiny_model(folder: Path) -> Path:
    """A reward model folder on a random 2-layer Llama (what `latentrm run` writes per head)."""
    import torch

    from latentrm.head.reward import RewardHead
    from latentrm.model import RewardModel
    from latentrm.testing import build_tokenizer, cfg_for, save_tiny_llama

    llama = save_tiny_llama(folder / "llama", build_tokenizer())
    torch.manual_seed(0)
    RewardModel(cfg_for(llama), RewardHead(32, (), 0.0).eval()).save(folder / "rm")
    return folder / "rm"


def commands(py: str, model: Path, rows: Path, out: Path) -> dict[str, str]:
    return {
        "python -c 'import torch'": f"{py} -c 'import torch'",
        # the floor of any command that loads a model: torch + transformers' Llama classes
        "python -c 'import torch, transformers (Llama)'": (
            f"{py} -c 'import torch; from transformers import AutoModel, AutoTokenizer; "
            "import transformers.models.llama.modeling_llama'"
        ),
        "latentrm --help": f"{py} -m latentrm --help",
        "latentrm score (1 row, tiny model)": (
            f"{py} -m latentrm -q score --model {model} --data {rows} --out {out}"
        ),
    }


def run_once(cmd: str, env: dict[str, str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the child and its children) of one run of `cmd`."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(
        cmd, shell=True, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def time_interleaved(cmd: str, envs: list[dict[str, str]], runs: int) -> list[str]:
    """One cell per checkout: median wall (min-max) and median CPU seconds, runs interleaved."""
    walls: list[list[float]] = [[] for _ in envs]
    cpus: list[list[float]] = [[] for _ in envs]
    for env in envs:
        run_once(cmd, env)  # warm-up: file caches
    for _ in range(runs):
        for k, env in enumerate(envs):
            w, c = run_once(cmd, env)
            walls[k].append(w)
            cpus[k].append(c)
    return [
        f"{statistics.median(w):.2f} s ({min(w):.2f}-{max(w):.2f}), CPU "
        f"{statistics.median(c):.2f} s"
        for w, c in zip(walls, cpus, strict=True)
    ]


def time_hyperfine(cmd: str, env: dict[str, str], runs: int, tmp: Path) -> tuple[float, ...]:
    report = tmp / "hf.json"
    subprocess.run(
        [
            "hyperfine",
            "--warmup",
            "1",
            "--runs",
            str(runs),
            "--export-json",
            str(report),
            "--style",
            "none",
            cmd,
        ],
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    r = json.loads(report.read_text())["results"][0]
    return r["median"], r["min"], r["max"]


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        return next(
            line.split(":", 1)[1].strip()
            for line in out.splitlines()
            if line.startswith("Model name")
        )
    except (OSError, subprocess.CalledProcessError, StopIteration):
        return "unknown"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--before", default=None, help="another checkout to time the same way")
    ap.add_argument("--tool", choices=("loop", "hyperfine"), default="loop")
    args = ap.parse_args()
    tool = args.tool
    if tool == "hyperfine" and not shutil.which("hyperfine"):
        raise SystemExit("hyperfine not found: apt-get install hyperfine, or --tool loop")
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        model = tiny_model(tmp)
        rows = tmp / "rows.jsonl"
        rows.write_text(
            json.dumps({"prompt": "the quick brown fox", "response": "jumps over the lazy dog"})
            + "\n"
        )
        checkouts = {"this checkout": str(REPO)}
        if args.before:
            checkouts = {"before": str(Path(args.before).resolve()), **checkouts}
        print(
            f"CPU: {cpu_model()}; {os.cpu_count()} cores; load average "
            f"{os.getloadavg()[0]:.1f}; {tool}, {args.runs} runs each (median, min-max)\n",
            flush=True,
        )
        print("| command | " + " | ".join(checkouts) + " |")
        print("|---|" + "---|" * len(checkouts))
        envs = [
            {**os.environ, "PYTHONPATH": root, "HF_HUB_OFFLINE": "1"} for root in checkouts.values()
        ]
        for name, cmd in commands(sys.executable, model, rows, tmp / "out.jsonl").items():
            if tool == "hyperfine":
                cells = []
                for env in envs:
                    t = time_hyperfine(cmd, env, args.runs, tmp)
                    cells.append(f"{t[0]:.2f} s ({t[1]:.2f}-{t[2]:.2f})")
            else:
                cells = time_interleaved(cmd, envs, args.runs)
            print(f"| `{name}` | " + " | ".join(cells) + " |", flush=True)
        print(f"\nload average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
