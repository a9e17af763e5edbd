"""The active-selection study's tables (`latentrm active`'s results.md and REPORT.md's section):
each strategy's learning curve against random's, paired by split, effective labels, the 2x goal,
labels needed to match random at the budget, and the other heads trained on each strategy's
labels. Pure functions of the study's results.csv rows (:mod:`latentrm.recipes.active`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from latentrm.evaluate import bootstrap_ci, mean_ci_over_seeds
from latentrm.head.acquire import STRATEGIES
from latentrm.recipes.report import effective_labels, points

# The measures a study's rows may hold: column -> (what the tables call it, its short name).
METRICS = {
    "accuracy": ("Accuracy on the held-out pairs", "accuracy"),
    "bon_gap_closed": (
        "Best-of-N gold gap closed on the held-out instructions",
        "gap closed",
    ),
}


def _curve(df: pd.DataFrame, strategy: str, metric: str = "accuracy") -> pd.DataFrame:
    g = df[df.strategy == strategy].groupby("n_labels")[metric]
    return pd.DataFrame(
        {
            "n_seed": g.mean().index.astype(int),
            "mean": g.mean().to_numpy(),
            "seeds": g.count().to_numpy(),
        }
    )


def active_markdown(df: pd.DataFrame, factor: int = 2) -> str:
    """The study's tables: learning curves with paired differences to random, the factor-x goal,
    labels to match random at the budget, effective labels; for candidates data (rows with
    Best-of-N) first those of the gold gap closed, then those of the accuracy.

    Paired: each split has the same start labels, pool and held-out pairs for every strategy, so
    a strategy's accuracy minus random's on the same split removes the split's variance; 95%
    Student-t intervals across splits.
    """
    extra = df[df["head"] != "round"] if "head" in df.columns else df.iloc[:0]
    df = df[df["head"] == "round"] if "head" in df.columns else df
    if "bon_gap_closed" not in df.columns or df.bon_gap_closed.isna().all():
        return _metric_markdown(df, extra, "accuracy", factor, bought=True)
    return (
        _metric_markdown(df, extra.iloc[:0], "bon_gap_closed", factor, bought=True)
        + "\n"
        + _metric_markdown(df, extra, "accuracy", factor, bought=False)
    )


def _metric_markdown(
    df: pd.DataFrame, extra: pd.DataFrame, metric: str, factor: int, bought: bool
) -> str:
    """active_markdown's tables of one measure (a column of METRICS) of the round heads' rows."""
    title, word = METRICS[metric]
    acc = df.pivot_table(index=["seed", "n_labels"], columns="strategy", values=metric)
    strategies = [s for s in STRATEGIES if s in acc.columns]
    ns = sorted(int(n) for n in acc.index.get_level_values(1).unique())
    n_splits = df.seed.nunique()
    lines = [
        f"{title} (mean ± 95% CI over {n_splits} splits) and each "
        "strategy minus random on the same split:\n",
        "| labels | "
        + " | ".join(strategies)
        + " | "
        + " | ".join(f"{s} − random" for s in strategies if s != "random")
        + " |",
        "|" + "---|" * (1 + 2 * len(strategies) - 1),
    ]
    for n in ns:
        sub = acc.xs(n, level="n_labels")
        cells = []
        for s in strategies:
            m, h = mean_ci_over_seeds(sub[s].to_numpy(np.float64))
            cells.append(f"{m:.3f} ± {h:.3f}" if np.isfinite(h) else f"{m:.3f}")
        for s in strategies:
            if s != "random":
                m, h = mean_ci_over_seeds((sub[s] - sub["random"]).to_numpy(np.float64))
                cells.append(points(m, h))
        lines.append(f"| {n:,} | " + " | ".join(cells) + " |")
    if len(ns) > 1:  # each split's mean over the bought sizes, then mean ± CI over splits
        after = [n for n in ns if n > ns[0]]
        cells = []
        for s in strategies:
            per_split = acc[s].unstack("n_labels")[after].mean(axis=1)
            cells.append("{:.3f} ± {:.3f}".format(*mean_ci_over_seeds(per_split.to_numpy())))
        for s in strategies:
            if s != "random":
                d = (acc[s] - acc["random"]).unstack("n_labels")[after].mean(axis=1)
                cells.append(points(*mean_ci_over_seeds(d.to_numpy(np.float64))))
        lines.append(f"| mean {after[0]:,}-{after[-1]:,} | " + " | ".join(cells) + " |")
    if bought and "next_abs_margin" in df.columns:
        lines += [
            "",
            "What each strategy bought (means over rounds and splits, at purchase "
            "time): the batch's mean BALD against the unlabelled pool's, and the batch's "
            "mean |margin| (the round head's mean r(a) - r(b); small = the head is "
            "unsure which side wins):\n",
            "| strategy | batch BALD | pool BALD | batch mean abs margin |",
            "|---|---|---|---|",
        ]
        bought = df.dropna(subset=["next_abs_margin"]).groupby("strategy")
        for s in strategies:
            if s in bought.groups:
                g = bought.get_group(s)
                lines.append(
                    f"| {s} | {g.next_bald.mean():.4f} | {g.pool_bald.mean():.4f} | "
                    f"{g.next_abs_margin.mean():.3f} |"
                )
    random_curve = _curve(df, "random", metric)
    top = ns[-1]
    target = float(random_curve.set_index("n_seed").loc[top, "mean"])
    lines += [
        "",
        f"Effective labels: the random labels that give a strategy's mean {word} "
        f"(random's mean curve made non-decreasing, interpolated in log labels; '>' = "
        f"beyond the curve's {top:,}), and the {factor}x goal: a strategy at n labels minus "
        f"random at {factor}n, paired by split (met when its 95% CI excludes 0 above). "
        "Random's own rows calibrate both: its effective labels show how far a flat, "
        f"noisy curve moves the measure, and its minus random at {factor}n is what "
        f"{factor}x the labels buys:\n",
        "| labels n | strategy | effective labels | ratio | minus random at "
        f"{factor}n | wins | goal |",
        "|---|---|---|---|---|---|---|",
    ]
    for s in strategies:
        for n in ns:
            m_acc = float(acc.xs(n, level="n_labels")[s].mean())
            eff, bound = effective_labels(random_curve, m_acc)
            ratio = f"{bound}{eff / n:.2f}x"
            more = factor * n
            if more in ns:
                d = acc.xs(n, level="n_labels")[s] - acc.xs(more, level="n_labels")["random"]
                m, h = mean_ci_over_seeds(d.to_numpy(np.float64))
                vs, wins = points(m, h), f"{int((d > 0).sum())}/{len(d)}"
                goal = (
                    "-" if s == "random" else "met" if np.isfinite(h) and m - h > 0 else "not met"
                )
            else:
                vs, wins, goal = "-", "-", "-"
            lines.append(f"| {n:,} | {s} | {bound}{eff:,.0f} | {ratio} | {vs} | {wins} | {goal} |")
    lines += [
        "",
        f"Labels each strategy needs to match random at {top:,} (random's mean "
        f"{target:.3f}; the strategy's own mean curve made non-decreasing, interpolated "
        "in log labels; 95% interval: the same computed on 1,000 resamples of the splits, "
        "with replacement, '>' where a resample's curve never gets there):\n",
        "| strategy | labels | 95% interval | saving |",
        "|---|---|---|---|",
    ]
    for s in strategies:
        if s == "random":
            continue
        need, bound = labels_to_match(acc, s, top)
        # Never reached counts as a huge finite number, so the quantiles stay defined.
        lo, hi = bootstrap_ci(
            np.arange(n_splits),
            stat=lambda i, s=s: min(labels_to_match(acc, s, top, np.asarray(i))[0], 1e12),
        )
        interval = " to ".join(f">{top:,}" if x > top else f"{x:,.0f}" for x in (lo, hi))
        saving = f"{100 * (1 - need / top):.0f}%" if bound != ">" else "none"
        lines.append(f"| {s} | {bound}{need:,.0f} | {interval} | {saving} |")
    if len(extra):
        lines += ["", methods_markdown(df, extra)]
    return "\n".join(lines) + "\n"


def methods_markdown(rounds: pd.DataFrame, extra: pd.DataFrame) -> str:
    """active.methods on each strategy's labels at the budget: accuracy, minus the round's head
    on the same labels, and minus the same method on random's labels (paired by split)."""
    top = int(extra.n_labels.iloc[0])
    base = rounds[rounds.n_labels == top].set_index(["seed", "strategy"])["accuracy"]
    extra = extra.assign(ratio=extra["ratio"].fillna(0).astype(int))
    by = extra.set_index(["seed", "strategy", "head", "ratio"])["accuracy"]
    lines = [
        f"Other heads on the same {top:,} labels (`active.methods`; paired differences, "
        "95% CI over splits):\n",
        "| strategy | method | ratio | accuracy | minus the round's head | minus the same "
        "method on random's labels |",
        "|---|---|---|---|---|---|",
    ]
    for (strategy, head, ratio), g in extra.groupby(["strategy", "head", "ratio"], sort=False):
        seeds = g.seed.to_numpy()
        vals = g.accuracy.to_numpy(np.float64)
        m, h = mean_ci_over_seeds(vals)
        d_round = vals - base.loc[[(s, strategy) for s in seeds]].to_numpy(np.float64)
        cells = [f"{m:.3f} ± {h:.3f}", points(*mean_ci_over_seeds(d_round))]
        key = [(s, "random", head, ratio) for s in seeds]
        if strategy != "random" and all(k in by.index for k in key):
            cells.append(points(*mean_ci_over_seeds(vals - by.loc[key].to_numpy(np.float64))))
        else:
            cells.append("-")
        lines.append(f"| {strategy} | {head} | {ratio} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def labels_to_match(
    acc: pd.DataFrame, strategy: str, top: int, splits: np.ndarray | None = None
) -> tuple[float, str]:
    """Labels `strategy` needs to reach random's mean accuracy at `top` labels, from the mean
    curves over `splits` (positions among the splits, repeats allowed; None = every split):
    (labels, "" | "<" | ">"); inf for ">" when `splits` is given (a bootstrap resample)."""
    table = acc[strategy].unstack("n_labels")  # (splits, label counts)
    rows = slice(None) if splits is None else np.asarray(splits).astype(np.int64)
    curve = pd.DataFrame(
        {
            "n_seed": table.columns.astype(int),
            "mean": table.to_numpy(np.float64)[rows].mean(0),
            "seeds": len(table.to_numpy()[rows]),
        }
    )
    target = float(acc["random"].unstack("n_labels")[top].to_numpy(np.float64)[rows].mean())
    need, bound = effective_labels(curve, target)
    return (np.inf if bound == ">" and splits is not None else need), bound


__all__ = ["active_markdown", "labels_to_match", "methods_markdown"]
