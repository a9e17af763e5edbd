"""Start-up time of the CLI against `python -c 'import torch'` (BENCHMARKS.md, issue 24 item 8).

    python scripts/bench_startup.py [--runs 10] [--before PATH_OF_ANOTHER_CHECKOUT]

Times with hyperfine (apt-get install hyperfine) when it is installed, else with a loop of
subprocesses (median of --runs): `python -c 'import torch'`, `python -m latentrm --help` and
`python -m latentrm score` on one row with a reward model on a tiny random Llama (written to a
temporary folder), so the score command's time is its start-up, not an LLM's load. `--before`
runs the same commands against another checkout (PYTHONPATH) in the same session, for a
before/after comparison on one machine. Prints a markdown table and the CPU model.
"""

from __future__ import annotations

import argparse
import json
import os
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
        "latentrm --help": f"{py} -m latentrm --help",
        "latentrm score (1 row, tiny model)": (
            f"{py} -m latentrm -q score --model {model} --data {rows} --out {out}"),
    }


def time_loop(cmd: str, env: dict[str, str], runs: int) -> tuple[float, float, float]:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(cmd, shell=True, env=env, check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), min(times), max(times)


def time_hyperfine(cmd: str, env: dict[str, str], runs: int, tmp: Path) -> tuple[float, ...]:
    report = tmp / "hf.json"
    subprocess.run(["hyperfine", "--warmup", "1", "--runs", str(runs), "--export-json",
                    str(report), "--style", "none", cmd], env=env, check=True,
                   stdout=subprocess.DEVNULL)
    r = json.loads(report.read_text())["results"][0]
    return r["median"], r["min"], r["max"]


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        return next(line.split(":", 1)[1].strip() for line in out.splitlines()
                    if line.startswith("Model name"))
    except (OSError, subprocess.CalledProcessError, StopIteration):
        return "unknown"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--before", default=None, help="another checkout to time the same way")
    args = ap.parse_args()
    tool = "hyperfine" if shutil.which("hyperfine") else "subprocess loop"
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        model = tiny_model(tmp)
        rows = tmp / "rows.jsonl"
        rows.write_text(json.dumps({"prompt": "the quick brown fox",
                                    "response": "jumps over the lazy dog"}) + "\n")
        checkouts = {"this checkout": str(REPO)}
        if args.before:
            checkouts = {"before": str(Path(args.before).resolve()), **checkouts}
        print(f"CPU: {cpu_model()}; {os.cpu_count()} cores; load average "
              f"{os.getloadavg()[0]:.1f}; {tool}, {args.runs} runs each (median, min-max)\n")
        print("| command | " + " | ".join(checkouts) + " |")
        print("|---|" + "---|" * len(checkouts))
        for name, cmd in commands(sys.executable, model, rows, tmp / "out.jsonl").items():
            cells = []
            for root in checkouts.values():
                env = {**os.environ, "PYTHONPATH": root, "HF_HUB_OFFLINE": "1"}
                t = (time_hyperfine(cmd, env, args.runs, tmp) if tool == "hyperfine"
                     else time_loop(cmd, env, args.runs))
                cells.append(f"{t[0]:.2f} s ({t[1]:.2f}-{t[2]:.2f})")
            print(f"| `{name}` | " + " | ".join(cells) + " |")
        print(f"\nload average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
