"""Experiment plots: metric vs ratio per method, and ablation curves (metric vs swept value).

Matplotlib's Agg canvas without pyplot state, mean +- 95% CI across seeds from
:func:`latentrm.recipes.report.summarize`. File names are made safe from any swept value.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from latentrm.io import atomic_write
from latentrm.recipes.report import summarize


def _file_name(stem: str) -> str:
    """`stem`.png with every character outside [A-Za-z0-9._=+-] replaced by '_' (a swept value may
    hold '/', '..' or spaces: the plot must stay inside plots/ and not overwrite another)."""
    safe = re.sub(r"[^A-Za-z0-9._=+-]", "_", stem).replace("..", "__")
    return f"{safe}.png"


def _numeric(values: Sequence[Any]) -> np.ndarray | None:
    try:
        return np.array([float(v) for v in values])
    except (TypeError, ValueError):
        return None


def context_line(df: pd.DataFrame, data: str | None, embedder: str | None) -> str:
    """The plots' second title line: dataset, embedder and number of splits (seeds), so a plot
    copied out of its folder still says what it shows."""
    n = df["split_seed"].nunique() if "split_seed" in df.columns else df["seed"].nunique()
    parts = []
    if data:  # a local file by its name, a Hub id as it is
        parts.append(f"data {Path(data).name if Path(data).expanduser().exists() else data}")
    if embedder:
        parts.append(f"embedder {embedder}")
    return ", ".join([*parts, f"{n} split{'s' if n != 1 else ''}"])


def write_plots(
    df: pd.DataFrame, out_dir: Path, data: str | None = None, embedder: str | None = None
) -> list[Path]:
    """PNG plots (matplotlib's Agg canvas, no pyplot state), mean ± 95% CI across seeds.

    Without a sweep: metric vs ratio per method (CI bands; 'none' as a dashed reference), or with
    a single ratio one point per method. With a sweep: metric vs swept value per method/ratio
    (the ablation curve), plus metric vs ratio per swept value when there are several ratios.
    Every title's second line names `data`, `embedder` and the number of splits.
    """
    context = context_line(df, data, embedder)
    summ = summarize(df)
    metrics = [
        m
        for m in ("accuracy", "bon_gap_closed", "bon_picked", "fidelity")
        if m in summ.columns and summ[m].notna().any()
    ]
    sweep = df["sweep"].iloc[0] if "sweep" in df.columns else None
    several = summ["ratio"][summ["ratio"] > 0].nunique() > 1
    written: list[Path] = []
    for metric in metrics:
        if sweep is None:
            written.append(
                _ratio_plot(
                    summ, metric, f"{metric}\n{context}", out_dir / f"{metric}_vs_ratio.png"
                )
            )
            continue
        written.append(_sweep_plot(summ, sweep, metric, out_dir, context))
        if several:
            for sv, part in summ.groupby("sweep_value", sort=False):
                written.append(
                    _ratio_plot(
                        part,
                        metric,
                        f"{metric}, {sweep}={sv}\n{context}",
                        out_dir / _file_name(f"{metric}_vs_ratio_{sweep}={sv}"),
                    )
                )
    return written


def _figure() -> tuple[Any, Any]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.5, 4))
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot()


def _ratio_plot(summ: pd.DataFrame, metric: str, title: str, path: Path) -> Path:
    fig, ax = _figure()
    ratios = sorted(r for r in summ["ratio"].unique() if r > 0)
    if len(ratios) < 2:  # one point per method
        x = np.arange(len(summ))
        ax.errorbar(
            x,
            summ[metric].to_numpy(float),
            yerr=np.nan_to_num(summ[f"{metric}_ci"].to_numpy(float)),
            fmt="o",
            capsize=4,
        )
        ax.set_xticks(
            x,
            [
                f"{m}" + (f" r{r}" if r else "")
                for m, r in zip(summ["method"], summ["ratio"], strict=True)
            ],
        )
        ax.set_xlabel("method (augmentation ratio)")
    else:
        for method, g in summ.groupby("method", sort=False):
            g = g.sort_values("ratio")
            m, hw = g[metric].to_numpy(float), np.nan_to_num(g[f"{metric}_ci"].to_numpy(float))
            if (g["ratio"] == 0).all():  # un-augmented: a flat reference line
                x = np.array([ratios[0], ratios[-1]], float)
                m, hw = np.repeat(m[:1], 2), np.repeat(hw[:1], 2)
                line = ax.plot(x, m, "--", label=method)[0]
            else:
                x = g["ratio"].to_numpy(float)
                line = ax.plot(x, m, "o-", label=method)[0]
            ax.fill_between(x, m - hw, m + hw, color=line.get_color(), alpha=0.15)
        ax.set_xscale("log", base=2)
        ax.set_xticks(ratios, [str(r) for r in ratios])
        ax.set_xlabel("augmentation ratio (new pairs per seed pair)")
        ax.legend(fontsize=8)
    ax.set_ylabel(f"{metric} (mean ± 95% CI over seeds)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def _sweep_plot(
    summ: pd.DataFrame, sweep: str, metric: str, out_dir: Path, context: str = ""
) -> Path:
    """Ablation curve: metric vs the swept value, one line per method (and ratio)."""
    fig, ax = _figure()
    values = list(dict.fromkeys(summ["sweep_value"]))
    num = _numeric(values)
    for (method, ratio), g in summ.groupby(["method", "ratio"], sort=False):
        pos = [values.index(v) for v in g["sweep_value"]]
        x = num[pos] if num is not None else np.array(pos, float)
        order = np.argsort(x)
        m = g[metric].to_numpy(float)[order]
        hw = np.nan_to_num(g[f"{metric}_ci"].to_numpy(float))[order]
        line = ax.plot(x[order], m, "o-", label=f"{method} r{ratio}" if ratio else method)[0]
        ax.fill_between(x[order], m - hw, m + hw, color=line.get_color(), alpha=0.2)
    if num is None:
        ax.set_xticks(range(len(values)), values)
    elif (num > 0).all() and num.max() / num.min() >= 10:
        ax.set_xscale("log")
    ax.set_xlabel(sweep)
    ax.set_ylabel(metric + " (mean ± 95% CI over seeds)")
    ax.set_title(f"ablation: {sweep}\n{context}" if context else f"ablation: {sweep}", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _save(fig, out_dir / _file_name(f"{metric}_vs_{sweep}"))


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    atomic_write(path, lambda p: fig.savefig(p, format="png", dpi=120))
    return path
