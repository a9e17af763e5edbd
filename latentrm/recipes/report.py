"""Reporting: run tables, mean +- 95% CI across seeds, effective labels.

Pure functions of result rows (dicts or a DataFrame of results.csv): :func:`metrics_table` (one
run), :func:`summary_markdown` (an experiment), :func:`effective_labels` (a gain in labels, read
on a monotone learning curve). The tables only REPORT.md shows (paired differences, the quality
and goal tables, writing REPORT.md's sections) are `scripts/report_tables.py`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from latentrm.config import RunConfig
from latentrm.evaluate import mean_ci_over_seeds


# --- reporting ----------------------------------------------------------------------------------
def json_safe(obj: Any) -> Any:
    """Plain JSON types: numpy scalars -> Python, NaN/Inf -> None (strict JSON has no NaN)."""
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    return obj


def fmt_number(v: Any, spec: str = ".3f") -> str:
    """`v` formatted with `spec`; '-' for missing or non-finite values."""
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "-"
    return format(v, spec)


def metrics_table(rows: Sequence[dict[str, Any]]) -> str:
    """Markdown table of one run's rows: accuracy [95% bootstrap CI], BoN, fidelity, times."""
    bon = any("bon_picked" in r for r in rows)
    head = ["method", "ratio", "accuracy [95% CI]", "val acc"]
    if bon:
        head += ["BoN gold (floor/ceil)", "gap closed", "Spearman"]
    head += ["fidelity", "fit s", "synth s", "head s", "params (aug/head)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    f = fmt_number
    for r in rows:
        cells = [
            r["method"],
            str(r["ratio"]),
            f"{f(r['accuracy'])} [{f(r['accuracy_lo'])}, {f(r['accuracy_hi'])}]",
            f(r.get("val_accuracy")),
        ]
        if bon:
            cells += [
                f"{f(r.get('bon_picked'))} ({f(r.get('bon_floor'))}/{f(r.get('bon_ceiling'))})",
                f(r.get("bon_gap_closed")),
                f(r.get("spearman_prompt")),
            ]
        cells += [
            f(r.get("fidelity")),
            f(r["time_fit_s"], ".1f"),
            f(r["time_synth_s"], ".1f"),
            f(r["time_head_s"], ".1f"),
            f"{r['params_augmenter']:,}/{r['params_head']:,}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


# Metrics summarised across seeds (those present in the results), in table order.
# fidelity is printed next to the out-of-fold reference's own agreement with the human labels of
# the seed pairs and of the held-out pairs: a synthetic pair's label is judged against that bar.
SUMMARY_METRICS = (
    "accuracy",
    "bon_picked",
    "bon_gap_closed",
    "spearman_prompt",
    "fidelity",
    "ref_seed_accuracy",
    "ref_heldout_accuracy",
    "time_fit_s",
    "time_synth_s",
    "time_head_s",
)


def group_columns(df: pd.DataFrame) -> list[str]:
    return (["sweep_value"] if "sweep_value" in df.columns else []) + ["method", "ratio"]


def summarize(df: pd.DataFrame) -> pd.DataFrame:
    """Mean and 95% Student-t half width across seeds per (sweep value,) method and ratio."""
    metrics = [m for m in SUMMARY_METRICS if m in df.columns]
    out = []
    cols = group_columns(df)
    for keys, g in df.groupby(cols, sort=False):
        rec = dict(zip(cols, keys if isinstance(keys, tuple) else (keys,), strict=True))
        rec["seeds"] = int(g["seed"].nunique())
        for m in metrics:
            rec[m], rec[f"{m}_ci"] = mean_ci_over_seeds(g[m].to_numpy(dtype=np.float64))
        out.append(rec)
    return pd.DataFrame(out)


def plus_minus(mean: float, hw: float, spec: str) -> str:
    if not np.isfinite(mean):
        return "-"
    return format(mean, spec) + (f" ± {format(hw, spec)}" if np.isfinite(hw) else "")


def summary_markdown(df: pd.DataFrame, cfg: RunConfig | None = None) -> str:
    """results.md: mean ± 95% CI (Student t across seeds) table + selected hyperparameters."""
    summ = summarize(df)
    metrics = [m for m in SUMMARY_METRICS if m in summ.columns]
    head = [*group_columns(df), "seeds", *metrics]
    lines = []
    if cfg is not None:
        lines.append(
            f"Data: `{cfg.data.path}`, embedder `{cfg.embed.model}`, seeds "
            f"{list(cfg.seeds)}; mean ± 95% CI (Student t across seeds).\n"
        )
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for _, r in summ.iterrows():
        cells = [str(r[g]) for g in group_columns(df)] + [str(r["seeds"])]
        # times: the mean only (their spread is the machine's, not the method's)
        cells += [
            fmt_number(r[m], ".1f")
            if m.startswith("time")
            else plus_minus(r[m], r[f"{m}_ci"], ".3f")
            for m in metrics
        ]
        lines.append("| " + " | ".join(cells) + " |")
    chosen = [c for c in ("gamma", "sigma2", "direct_noise") if c in df.columns]
    if chosen and "select_grid" in df.columns:
        sel = df[df["select_grid"].fillna(0) > 1]
        if len(sel):
            lines += ["", "Hyperparameters selected on the validation split, per seed:", ""]
            for keys, g in sel.groupby(group_columns(df), sort=False):
                vals = "; ".join(
                    f"seed {int(r['seed'])}: "
                    + ", ".join(f"{c}={r[c]:g}" for c in chosen if pd.notna(r.get(c)))
                    for _, r in g.iterrows()
                )
                label = " ".join(map(str, keys if isinstance(keys, tuple) else (keys,)))
                lines.append(f"- {label}: {vals}")
    return "\n".join(lines) + "\n"


def effective_labels(curve: pd.DataFrame, value: float) -> tuple[float, str]:
    """How many real labelled pairs the plain head needs to reach `value` (its mean metric).

    The curve's means are first made non-decreasing (pool-adjacent-violators, weighted by the
    splits behind each mean when the curve has a `seeds` column): more real labels do not make a
    head worse, and a dip is split noise; interpolating across a dip would turn noise into
    hundreds of "effective" labels. Then linear interpolation in log(n_seed), which is how such
    curves grow; outside the measured range the answer is a bound: ("<", n_min) or (">", n_max).
    On a plateau the first size that reaches it counts. Returns (pairs, "" | "<" | ">").
    """
    n = curve["n_seed"].to_numpy(dtype=np.float64)
    weights = (
        curve["seeds"].to_numpy(dtype=np.float64) if "seeds" in curve.columns else np.ones(len(n))
    )
    m = isotonic_means(curve["mean"].to_numpy(dtype=np.float64), weights)
    if len(n) == 0 or not np.isfinite(value):
        return float("nan"), ""
    if value <= m[0]:
        return float(n[0]), "<" if value < m[0] else ""
    for i in range(1, len(n)):
        if m[i - 1] < value <= m[i]:
            t = (value - m[i - 1]) / (m[i] - m[i - 1])
            return float(np.exp(np.log(n[i - 1]) + t * (np.log(n[i]) - np.log(n[i - 1])))), ""
    return float(n[-1]), ">"


def isotonic_means(means: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The weighted least-squares non-decreasing fit to `means` (pool-adjacent-violators):
    each run of means that decreases is replaced by its weighted average."""
    blocks: list[list[float]] = []  # [weighted mean, total weight, count]
    for x, w in zip(means, weights, strict=True):
        blocks.append([float(x), float(w), 1])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            (m1, w1, c1), (m2, w2, c2) = blocks[-2], blocks.pop()
            blocks[-1] = [(m1 * w1 + m2 * w2) / (w1 + w2), w1 + w2, c1 + c2]
    return np.array([b[0] for b in blocks for _ in range(b[2])], dtype=np.float64)


def points(mean: float, half: float) -> str:
    """A difference in points, with its 95% half width when there is one (>= 2 splits)."""
    return f"{100 * mean:+.1f}" + (f" ± {100 * half:.1f}" if np.isfinite(half) else "") + " pts"
