"""REPORT.md's tables beyond an experiment's own summary: paired differences, the learning
curve, the quality study's table (effective labels), the goal table (n seeds against the plain
head at 2n), the small-data robustness table, and writing the marked sections of REPORT.md.

They serve `scripts/reproduce.py` and `scripts/paired_diff.py` only, so they live here, not in
the library; the library's own tables (one run, one experiment) are `latentrm.recipes.report`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from latentrm.evaluate import mean_ci_over_seeds
from latentrm.io import atomic_write_text
from latentrm.recipes.report import (
    effective_labels,
    plus_minus,
    points,
)


def paired_differences(
    df: pd.DataFrame, metric: str = "accuracy", baseline: str = "none"
) -> pd.DataFrame:
    """Per split, each method's `metric` minus the `baseline` method's, summarised across splits.

    Each seed of an experiment is one split with the same seed and held-out pairs for every method,
    so the paired difference removes the split-to-split variance. One row per (sweep value,)
    method and ratio: seeds, mean difference, 95% Student-t half width, and wins (splits where the
    method is strictly better).
    """
    keys = ["seed"] + (["sweep_value"] if "sweep_value" in df.columns else [])
    base = df[df.method == baseline].set_index(keys)[metric]
    group = keys[1:] + ["method", "ratio"]
    rows = []
    for names, g in df[df.method != baseline].groupby(group, sort=False):
        d = (g.set_index(keys)[metric] - base).dropna()
        mean, half = mean_ci_over_seeds(d.to_numpy(dtype=np.float64))
        rec = dict(zip(group, names if isinstance(names, tuple) else (names,), strict=True))
        rec.update(seeds=len(d), diff=mean, diff_ci=half, wins=int((d > 0).sum()))
        rows.append(rec)
    return pd.DataFrame(rows)


def paired_markdown(df: pd.DataFrame, metric: str = "accuracy", baseline: str = "none") -> str:
    """:func:`paired_differences` as a markdown table (differences in points of `metric`)."""
    pdiff = paired_differences(df, metric, baseline)
    group = [c for c in ("sweep_value", "method", "ratio") if c in pdiff.columns]
    lines = [
        f"| {' | '.join(group)} | seeds | {metric} minus {baseline}'s | wins/seeds |",
        "|" + "---|" * (len(group) + 3),
    ]
    for _, r in pdiff.iterrows():
        cells = " | ".join(str(r[g]) for g in group)
        diff = plus_minus(r["diff"], r["diff_ci"], "+.4f")
        lines.append(f"| {cells} | {r['seeds']} | {diff} | {r['wins']}/{r['seeds']} |")
    return "\n".join(lines) + "\n"


def update_report(report: Path, sections: dict[str, str]) -> None:
    """Replace each marked table section of `report`; append sections that have no markers.

    A section is the text between ``<!-- BEGIN TABLE name -->`` and ``<!-- END TABLE name -->``;
    everything else (the prose) is left alone. The file is replaced atomically.
    """
    text = report.read_text() if report.exists() else "# latentrm results\n"
    for name, body in sections.items():
        begin, end = f"<!-- BEGIN TABLE {name} -->", f"<!-- END TABLE {name} -->"
        block = f"{begin}\n{body.rstrip()}\n{end}"
        pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.DOTALL)
        if pattern.search(text):
            text = pattern.sub(lambda _m, b=block: b, text, count=1)
        else:
            text = text.rstrip() + f"\n\n## {name}\n\n{block}\n"
    atomic_write_text(report, text.rstrip() + "\n")


def learning_curve_markdown(curve: pd.DataFrame, metric: str = "accuracy") -> str:
    """The learning curve as a table: seed pairs, splits, mean ± 95% CI of `metric`."""
    lines = [f"| seed pairs | splits | plain head {metric} |", "|---|---|---|"]
    for _, r in curve.iterrows():
        cell = plus_minus(r["mean"], r["ci"], ".3f")
        lines.append(f"| {int(r['n_seed']):,} | {int(r['seeds'])} | {cell} |")
    return "\n".join(lines) + "\n"


def learning_curve(df: pd.DataFrame, metric: str = "accuracy") -> pd.DataFrame:
    """Mean `metric` of the plain head ('none') per number of seed pairs, from an experiment that
    sweeps data.n_seed: columns n_seed, seeds, mean, ci (95% Student t across splits)."""
    plain = df[df.method == "none"]
    rows = []
    for value, g in plain.groupby("sweep_value", sort=False):
        mean, ci = mean_ci_over_seeds(g[metric].to_numpy(dtype=np.float64))
        rows.append(
            {"n_seed": int(float(value)), "seeds": int(g["seed"].nunique()), "mean": mean, "ci": ci}
        )
    return pd.DataFrame(rows).sort_values("n_seed").reset_index(drop=True)


def quality_markdown(
    df: pd.DataFrame,
    curve: pd.DataFrame | None = None,
    metrics: Sequence[str] = ("accuracy",),
    baseline: str = "none",
    curve_metric: str = "accuracy",
) -> str:
    """Every method's mean and paired difference to the plain head per seed-set size.

    One row per (n_seed,) method: mean ± 95% CI across splits of each metric, the paired
    difference to `baseline` on the same splits (± 95% CI, and wins/splits), and, given the plain
    head's learning `curve` of `curve_metric` on the same held-out pairs, the method's
    `curve_metric` in effective labels.
    """
    has_sweep = "sweep_value" in df.columns
    head = (["seed pairs"] if has_sweep else []) + ["method", "ratio", "splits"]
    for m in metrics:
        head += [m, f"{m} minus {baseline}'s", "wins"]
    if curve is not None:
        head += [f"effective labels ({curve_metric})"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    groups = (["sweep_value"] if has_sweep else []) + ["method", "ratio"]
    diffs = {m: paired_differences(df, m, baseline) for m in metrics}
    for names, g in df.groupby(groups, sort=False):
        names = names if isinstance(names, tuple) else (names,)
        rec = dict(zip(groups, names, strict=True))
        cells = ([str(rec["sweep_value"])] if has_sweep else []) + [
            str(rec["method"]),
            str(rec["ratio"]),
            str(g["seed"].nunique()),
        ]
        for m in metrics:
            mean, ci = mean_ci_over_seeds(g[m].to_numpy(dtype=np.float64))
            cells.append(plus_minus(mean, ci, ".3f"))
            if rec["method"] == baseline:
                cells += ["-", "-"]
                continue
            d = diffs[m]
            sel = (d["method"] == rec["method"]) & (d["ratio"] == rec["ratio"])
            if has_sweep:
                sel &= d["sweep_value"] == rec["sweep_value"]
            if sel.any():
                r = d[sel].iloc[0]
                half = f" ± {100 * r['diff_ci']:.1f}" if np.isfinite(r["diff_ci"]) else ""
                cells += [f"{100 * r['diff']:+.1f}{half} pts", f"{r['wins']}/{r['seeds']}"]
            else:
                cells += ["-", "-"]
        if curve is not None and rec["method"] == baseline and has_sweep:
            cells.append(f"{int(float(rec['sweep_value'])):,} (itself)")
        elif curve is not None:
            value = float(np.nanmean(g[curve_metric].to_numpy(dtype=np.float64)))
            n_eff, bound = effective_labels(curve, value)
            cells.append(f"{bound}{n_eff:,.0f}" if np.isfinite(n_eff) else "-")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def goal_markdown(
    df: pd.DataFrame,
    curve_runs: pd.DataFrame,
    metric: str = "accuracy",
    factor: int = 2,
    baseline: str = "none",
) -> str:
    """The effective-labels goal, tested: each method at n seed pairs against the plain head at
    `factor` x n real pairs, paired by split (the learning curve's runs `curve_runs` use the same
    split seeds and held-out pairs), next to its paired difference to the plain head on the same
    n seeds. A method meets the goal at n when it is not below the plain head at factor x n on
    average and its 95% CI against the plain head at n excludes 0.
    """
    key = ["seed", "sweep_value"]
    cur = (
        curve_runs[curve_runs.method == baseline]
        .assign(n=lambda x: x["sweep_value"].astype(float).astype(int))
        .set_index(["seed", "n"])[metric]
    )
    same = df[df.method == baseline].set_index(key)[metric]
    head = [
        "seed pairs",
        "method",
        "splits",
        f"minus plain at the same n ({metric})",
        f"minus plain at {factor}x n",
        f"wins vs {factor}x n",
        "goal",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for (value, method), g in df[df.method != baseline].groupby(
        ["sweep_value", "method"], sort=False
    ):
        n = int(float(value))
        idx = [(s, factor * n) for s in g["seed"]]
        if not all(i in cur.index for i in idx):
            continue  # the curve does not reach factor x n on these splits
        vals = g[metric].to_numpy(dtype=np.float64)
        vs_more = vals - cur.loc[idx].to_numpy(dtype=np.float64)
        vs_same = vals - same.loc[[(s, value) for s in g["seed"]]].to_numpy(dtype=np.float64)
        m_more, h_more = mean_ci_over_seeds(vs_more)
        m_same, h_same = mean_ci_over_seeds(vs_same)
        met = m_more >= 0 and np.isfinite(h_same) and m_same - h_same > 0
        lines.append(
            f"| {n:,} | {method} | {len(vals)} | {points(m_same, h_same)} | "
            f"{points(m_more, h_more)} | {int((vs_more > 0).sum())}/{len(vals)} | "
            f"{'met' if met else 'not met'} |"
        )
    return "\n".join(lines) + "\n"


# A split "collapsed" when every head of the model kept its epoch-0 weights (the early stopping of
# small validation sets) or its held-out accuracy is within chance (below 0.5 + 1.96 sqrt(0.25 /
# 312) = 0.555 on the quality studies' 312 held-out pairs).
CHANCE_ACCURACY = 0.555


def robustness_markdown(
    df: pd.DataFrame,
    baselines: Sequence[str] = ("none", "ensemble"),
    metric: str = "accuracy",
    worst_within: float = 0.03,
) -> str:
    """Per (seed-set size,) method: mean ± 95% CI across splits, the worst split and its distance
    to the mean, the collapsed splits (:data:`CHANCE_ACCURACY`; ``heads_at_epoch0`` ==
    ``heads``), and the paired difference to each of `baselines` (± 95% CI, wins). The last
    column says whether the method meets the small-data goal: worst split within `worst_within`
    of its mean, and a mean not below the last baseline's."""
    has_sweep = "sweep_value" in df.columns
    keys = ["seed"] + (["sweep_value"] if has_sweep else [])
    head = (["seed pairs"] if has_sweep else []) + [
        "method",
        "splits",
        metric,
        "worst split",
        "mean minus worst",
        "collapsed",
    ]
    head += [f"minus {b}'s" for b in baselines] + ["goal"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    groups = (["sweep_value"] if has_sweep else []) + ["method"]
    for names, g in df.groupby(groups, sort=False):
        names = names if isinstance(names, tuple) else (names,)
        rec = dict(zip(groups, names, strict=True))
        vals = g[metric].to_numpy(dtype=np.float64)
        mean, ci = mean_ci_over_seeds(vals)
        collapsed = vals < CHANCE_ACCURACY
        if "heads_at_epoch0" in g.columns and "heads" in g.columns:
            collapsed |= (g["heads_at_epoch0"] == g["heads"]).to_numpy()
        cells = ([str(rec["sweep_value"])] if has_sweep else []) + [
            str(rec["method"]),
            str(len(vals)),
            plus_minus(mean, ci, ".3f"),
            f"{vals.min():.3f}",
            f"{100 * (mean - vals.min()):.1f} pts",
            f"{int(collapsed.sum())}/{len(vals)}",
        ]
        last_base_mean = np.nan
        for b in baselines:
            sel = df.method == b
            if has_sweep:
                sel &= df.sweep_value == rec["sweep_value"]
            base = df[sel].set_index(keys)[metric]
            last_base_mean = float(base.mean()) if len(base) else np.nan
            if rec["method"] == b or not len(base):
                cells.append("-")
                continue
            d = (g.set_index(keys)[metric] - base).dropna().to_numpy(dtype=np.float64)
            m, h = mean_ci_over_seeds(d)
            cells.append(f"{points(m, h)} ({int((d > 0).sum())}/{len(d)})")
        met = mean - vals.min() <= worst_within and mean >= last_base_mean
        cells.append("met" if met else "not met")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
