"""`make reproduce`: run every config, collect tables/plots in reports/, refresh REPORT.md's tables.

Each config runs in-process (`latentrm run` for demo.yaml, `latentrm active` for active_*.yaml,
`latentrm experiment` for the others) into its own out_dir; embeddings come from the shared
on-disk cache (cache_dir), so a second reproduce embeds nothing. With --skip-existing a config
whose out_dir already holds results for the same resolved config is not rerun, only collected.

REPORT.md: the text between `<!-- BEGIN TABLE name -->` and `<!-- END TABLE name -->` is replaced
by reports/<name>/results.md plus links to its plots; everything else (the prose) is left alone.
A config without markers gets a new marked section appended at the end of the file.

    python scripts/reproduce.py                      # everything, in the order below
    python scripts/reproduce.py --only demo hh       # some configs
    python scripts/reproduce.py --skip-existing      # only regenerate tables from finished runs
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import time
from pathlib import Path

from report_tables import update_report  # scripts/report_tables.py, beside this script

from latentrm.config import RunConfig, load_config
from latentrm.recipes.experiment import results_current

ROOT = Path(__file__).resolve().parents[1]

log = logging.getLogger("reproduce")

# (name, kind): the quality study first (its learning curves before the variants they read), then
# the earlier tables; new embedders and text baselines (slowest) last.
CONFIGS = (
    ("learning_curve_hh", "experiment"),
    ("quality_hh", "experiment"),
    ("quality_hh_1000", "experiment"),
    ("small_data_hh", "experiment"),
    ("active_hh", "active"),  # active selection: `latentrm active`, ~15 min of 2-core CPU
    ("active_alpaca", "active"),  # the same on AlpacaEval candidates (embeds 6,331 texts first)
    ("learning_curve_alpaca", "experiment"),
    ("quality_alpaca", "experiment"),
    ("learning_curve_alpaca_smollm2", "experiment"),
    ("quality_alpaca_smollm2", "experiment"),
    ("demo", "run"),
    ("hh", "experiment"),
    ("ablate_gamma", "experiment"),
    ("ablate_sigma2", "experiment"),
    ("ablate_latent", "experiment"),
    ("ablate_seed_size", "experiment"),
    ("alpaca", "experiment"),
    ("ablate_embedder", "experiment"),
    ("text_baselines", "experiment"),  # LLM fine-tuning: ~23 min of 2-core CPU per split
)


def finished(cfg: RunConfig, kind: str) -> bool:
    """Whether cfg.out_dir holds complete results of this very config (`results_current`)."""
    done = "metrics.json" if kind == "run" else "results.md"
    return results_current(cfg, done)


def run_one(name: str, kind: str, overrides: list[str], skip_existing: bool) -> RunConfig:
    from latentrm.recipes.active import run_active
    from latentrm.recipes.experiment import run_experiment
    from latentrm.recipes.run import run_pipeline

    cfg = load_config(ROOT / "configs" / f"{name}.yaml", overrides)
    if skip_existing and finished(cfg, kind):
        log.info("%s: results in %s are current, not rerun", name, cfg.out_dir)
        return cfg
    t0 = time.perf_counter()
    log.info("%s: latentrm %s configs/%s.yaml", name, kind, name)
    if kind == "run":
        run_pipeline(cfg)
    elif kind == "active":
        run_active(cfg)
    else:
        run_experiment(cfg)
    log.info("%s: done in %.0fs", name, time.perf_counter() - t0)
    return cfg


# results.csv columns read as text (sweep values, layer names such as "mean", recipe choices).
READ_AS_TEXT = {"sweep_value": str, "sweep": str, "layer": str, "chosen": str}

# Quality tables: variants config -> (its learning curve, metrics, the metric read in labels, more
# variants configs whose rows join the table: the same study at other sizes).
QUALITY = {
    "quality_hh": ("learning_curve_hh", ["accuracy"], "accuracy", ["quality_hh_1000"]),
    "quality_alpaca": (
        "learning_curve_alpaca",
        ["accuracy", "bon_gap_closed"],
        "bon_gap_closed",
        [],
    ),
    "quality_alpaca_smollm2": (
        "learning_curve_alpaca_smollm2",
        ["accuracy", "bon_gap_closed"],
        "bon_gap_closed",
        [],
    ),
}


def quality_section(name: str, reports: Path) -> str | None:
    """The learning curve and every variant's paired difference, in effective labels."""
    import pandas as pd
    from report_tables import (
        goal_markdown,
        learning_curve,
        learning_curve_markdown,
        quality_markdown,
    )

    curve_name, metrics, curve_metric, more = QUALITY[name]
    runs, curve_runs = reports / name / "results.csv", reports / curve_name / "results.csv"
    if not (runs.exists() and curve_runs.exists()):
        return None
    read = READ_AS_TEXT
    curve_df = pd.read_csv(curve_runs, dtype=read)
    curve = learning_curve(curve_df, curve_metric)
    parts = [
        f"Learning curve of the plain head (`configs/{curve_name}.yaml`):\n\n",
        learning_curve_markdown(curve, curve_metric),
    ]
    if curve_metric != "accuracy":
        acc = learning_curve(curve_df, "accuracy")
        parts += ["\n", learning_curve_markdown(acc, "accuracy")]
    df = pd.concat(
        [
            pd.read_csv(f, dtype=read)
            for f in [runs, *(reports / m / "results.csv" for m in more)]
            if f.exists()
        ],
        ignore_index=True,
    )
    used = ", ".join(f"`configs/{n}.yaml`" for n in [name, *more])
    parts += [
        f"\nEvery variant against the plain head on the same splits "
        f"({used}; paired differences in points, 95% CI across splits):\n\n",
        quality_markdown(df, curve, metrics, curve_metric=curve_metric),
    ]
    parts += [
        f"\nThe goal in effective labels: each method at n seed pairs against the plain head "
        f"trained on twice as many real pairs, split by split on the same held-out pairs "
        f"({curve_metric}; met = not below the plain head at 2n on average, and the 95% CI "
        f"against the plain head at n excludes 0):\n\n",
        goal_markdown(df, curve_df, curve_metric),
    ]
    if "chosen" in df.columns:
        chosen = (
            df[df.method == "recipe"]
            .groupby(df.sweep_value.astype(int))["chosen"]
            .agg(lambda x: ", ".join(f"{k} x{v}" for k, v in x.value_counts().items()))
        )
        parts += ["\nThe recipe's choice per split (k-fold validation on the seed set):\n\n"]
        parts += [f"- {n:,} seed pairs: {c}\n" for n, c in chosen.items()]
    if "layer" in df.columns:
        layers = (
            df[df.method == "none"]
            .groupby(df.sweep_value.astype(int))["layer"]
            .agg(lambda x: ", ".join(f"{k} x{v}" for k, v in x.value_counts().items()))
        )
        parts += ["\nThe layer chosen per split (the plain head's k-fold validation accuracy):\n\n"]
        parts += [f"- {n:,} seed pairs: {c}\n" for n, c in layers.items()]
    return "".join(parts)


def small_data_section(reports: Path) -> str | None:
    """The small-data head study: every head's mean, worst split, collapses and paired
    differences to the plain head and to the 5-head ensemble (`configs/small_data_hh.yaml`)."""
    import pandas as pd
    from report_tables import CHANCE_ACCURACY, robustness_markdown

    runs = reports / "small_data_hh" / "results.csv"
    if not runs.exists():
        return None
    df = pd.read_csv(runs, dtype=READ_AS_TEXT)
    return (
        f"Config: `configs/small_data_hh.yaml`; accuracy on the 312 fixed held-out pairs, mean "
        f"± 95% CI across splits; paired differences in points (± 95% CI, wins/splits). A "
        f"split collapsed when every head of the model kept its epoch-0 weights or its "
        f"accuracy is below {CHANCE_ACCURACY} (chance at 95% on 312 pairs). Goal: the worst "
        f"split within 3 points of the mean and a mean not below the 5-head ensemble's.\n\n"
        + robustness_markdown(df, ("none", "ensemble"))
    )


def collect(name: str, cfg: RunConfig, reports: Path, kind: str = "experiment") -> str:
    """Copy results.md/csv, metrics.json and plots into reports/<name>/; return the md section."""
    src, dst = Path(cfg.out_dir), reports / name
    dst.mkdir(parents=True, exist_ok=True)
    for f in ("results.md", "results.csv", "metrics.json", "config.yaml"):
        if (src / f).exists():
            shutil.copy2(src / f, dst / f)
    if (dst / "results.csv").exists() and not (dst / "metrics.json").exists():
        # An experiment's table is re-rendered from its rows, so it has today's columns.
        import pandas as pd

        from latentrm.recipes.active_report import active_markdown
        from latentrm.recipes.report import summary_markdown

        df = pd.read_csv(dst / "results.csv", dtype=READ_AS_TEXT)
        (dst / "results.md").write_text(
            active_markdown(df) if kind == "active" else summary_markdown(df, cfg)
        )
    plots = sorted((src / "plots").glob("*.png")) if (src / "plots").is_dir() else []
    if plots:
        (dst / "plots").mkdir(exist_ok=True)
        for p in plots:
            shutil.copy2(p, dst / "plots" / p.name)
    table = (dst / "results.md").read_text() if (dst / "results.md").exists() else "(no results)\n"
    rel = dst.relative_to(ROOT) if dst.is_relative_to(ROOT) else dst
    links = "".join(f"![{p.stem}]({rel}/plots/{p.name})\n" for p in plots)
    return f"Config: `configs/{name}.yaml`; full results: `{rel}/`.\n\n{table}" + (
        f"\n{links}" if links else ""
    )


# The efficiency table's measurements: LENS after embeddings at 1k seeds x 8 (d=576, the configs'
# one thread) and SmolLM2 self-rewarding text synthesis on a sample of prompts (extrapolated).
EFFICIENCY = (
    ["scripts/bench_lens.py", "--runs", "1000:576:8", "1000:4096:8", "--threads", "1"],
    [
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
)


def efficiency_section(reports: Path) -> str:
    """Run the two efficiency measurements; their markdown, saved to reports/efficiency.md."""
    import subprocess

    out = []
    for argv in EFFICIENCY:
        proc = subprocess.run(
            [sys.executable, *argv],
            cwd=ROOT,
            capture_output=True,
            text=True,
            env={**os.environ, "HF_HUB_OFFLINE": "1"},
            check=True,
        )
        body = proc.stdout.strip().replace("\n## ", "\n#### ").replace("\n### ", "\n#### ")
        body = body[3:] if body.startswith("## ") else body
        out += [f"Command: `.venv/bin/python {' '.join(argv)}`\n", body, ""]
    text = "\n".join(out)
    reports.mkdir(parents=True, exist_ok=True)
    (reports / "efficiency.md").write_text(text + "\n")
    return text


# The rejection-sampling fine-tuning study (policies, not reward heads): its own script and config,
# at TRL's LoRA learning rate and at 10x that (name -> overrides).
RS_SFT = ["scripts/rs_sft_study.py", "configs/studies/rs_sft_hh.yaml"]
RS_SFT_RUNS = {
    "rs_sft_hh": [],
    "rs_sft_hh_lr1e-3": [
        "sft.lr=0.001",
        "out_dir=runs/rs_sft_hh_lr1e-3",
        "report_name=rs_sft_hh_lr1e-3",
    ],
}


def rs_sft_sections(reports: Path, collect_only: bool) -> dict[str, str]:
    """Run the RS-SFT study (resumable: finished policies and judgements are kept); its tables."""
    import subprocess

    out = {}
    for name, overrides in RS_SFT_RUNS.items():
        if not collect_only:
            subprocess.run(
                [sys.executable, *RS_SFT, *overrides],
                cwd=ROOT,
                check=True,
                env={**os.environ, "HF_HUB_OFFLINE": "1"},
            )
        table = reports / name / "results.md"
        if table.exists():
            cmd = " ".join([*RS_SFT, *overrides])
            out[name] = (
                f"Command: `.venv/bin/python {cmd}`; full results: `reports/{name}/`."
                f"\n\n{table.read_text()}"
            )
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    names = [n for n, _ in CONFIGS]
    p.add_argument(
        "--only",
        nargs="+",
        choices=[*names, "efficiency", "rs_sft_hh"],
        help="run/collect only these configs (efficiency: the timing measurements; "
        "rs_sft_hh: the rejection-sampling fine-tuning study)",
    )
    p.add_argument(
        "--skip-existing",
        action="store_true",
        help="do not rerun a config whose out_dir holds results of the same config",
    )
    p.add_argument(
        "--collect-only",
        action="store_true",
        help="run nothing; only collect finished runs and refresh REPORT.md",
    )
    p.add_argument("--reports", default=str(ROOT / "reports"), help="tables/plots folder")
    p.add_argument("--report", default=str(ROOT / "REPORT.md"), help="report to refresh")
    p.add_argument(
        "overrides",
        nargs="*",
        metavar="key=value",
        help="overrides applied to every config (e.g. threads=2)",
    )
    args = p.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S"
    )
    sections = {}
    for name, kind in CONFIGS:
        if args.only and name not in args.only:
            continue
        if args.collect_only:
            cfg = load_config(ROOT / "configs" / f"{name}.yaml", args.overrides)
            if not finished(cfg, kind):
                log.warning("%s: no finished results in %s, skipped", name, cfg.out_dir)
                continue
        else:
            cfg = run_one(name, kind, args.overrides, args.skip_existing)
        sections[name] = collect(name, cfg, Path(args.reports), kind)
    for name in QUALITY:
        if args.only and name not in args.only:
            continue
        table = quality_section(name, Path(args.reports))
        if table is not None:
            sections[f"{name}_effective"] = table
    if not args.only or "small_data_hh" in args.only:
        table = small_data_section(Path(args.reports))
        if table is not None:
            sections["small_data_hh_robustness"] = table
    if not args.only or "efficiency" in args.only:
        eff = Path(args.reports) / "efficiency.md"
        if not args.collect_only:
            sections["efficiency"] = efficiency_section(Path(args.reports))
        elif eff.exists():
            sections["efficiency"] = eff.read_text()
    if not args.only or "rs_sft_hh" in args.only:
        sections.update(rs_sft_sections(Path(args.reports), args.collect_only))
    update_report(Path(args.report), sections)
    log.info("refreshed %d table sections of %s", len(sections), args.report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
