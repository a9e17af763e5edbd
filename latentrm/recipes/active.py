"""`latentrm active`: the active-selection study (which pairs to buy labels for), glue only.

Per split (``seeds``; the split of `latentrm experiment`: ``data.fixed_test`` keeps the same
held-out pairs for every split), the *pool* is every pair outside the held-out ones, its labels
hidden until bought. Each strategy of ``active.strategies`` starts from the same ``active.start``
random labels, then alternates: fit the head (``reward``, an ensemble when ``reward.ensemble`` >
1) on the labels bought so far, stopping early on a validation part carved from them
(``data.val_fraction``); measure its accuracy on the held-out pairs; buy ``active.step`` more
labels chosen by the strategy (:func:`latentrm.head.acquire.select`) from the members' margins on
the unlabelled pool, up to ``active.budget``. Nothing is chosen on held-out pairs: they only
measure.

What the strategies see of a pool pair is its (chosen, rejected) embeddings in file order; every
acquisition is symmetric in the two sides (entropy, BALD, the sign-invariant k-center distance), so
the hidden label does not leak. Diversity features: the pair's embedding difference, each
dimension standardised over the pool's responses.

With ``active.methods``, each of those methods or variants is also trained (`run.fit_method`:
the same validation part, hyperparameters chosen on it) on each strategy's labels at
``active.methods_at`` labels (default: the budget):
do LENS or other heads add anything to actively chosen labels?

Outputs in out_dir: results.csv (one row per split, strategy and label count: accuracy, the
acquisition values of the batch bought next, head epochs, seconds; `head` is "round" for the
round's head, else the method of an ``active.methods`` row), config.yaml and results.md
(:func:`active_markdown`). Rows are written after every (split, strategy), and a rerun of the same
config resumes from them.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from latentrm.augment.fit import augment_then_fit
from latentrm.config import METHODS, RunConfig, apply_changes, save_config
from latentrm.data.splits import carve_validation
from latentrm.errors import ConfigError
from latentrm.evaluate import bootstrap_ci, mean_ci_over_seeds, pairwise_accuracy
from latentrm.head.acquire import STRATEGIES, pair_features, response_scale, select
from latentrm.io import atomic_write, atomic_write_text
from latentrm.recipes.experiment import results_key
from latentrm.recipes.prepare import PreparedData, Split, prepare_data
from latentrm.recipes.report import effective_labels, points
from latentrm.runtime import torch_threads

log = logging.getLogger(__name__)


def sizes(cfg: RunConfig) -> list[int]:
    """Label counts at which heads are fitted and measured: start, start + step, ..., budget."""
    a = cfg.active
    if a.start < 2 or a.step < 1 or a.budget < a.start:
        raise ConfigError(
            f"active: need start >= 2, step >= 1, budget >= start; got start="
            f"{a.start}, step={a.step}, budget={a.budget}"
        )
    return list(range(a.start, a.budget + 1, a.step))


def check_active(cfg: RunConfig) -> None:
    """ConfigError for a study that cannot run (before any data is read)."""
    bad = [s for s in cfg.active.strategies if s not in STRATEGIES]
    if bad or not cfg.active.strategies:
        raise ConfigError(
            f"active.strategies: {bad or 'none'}; choose from {', '.join(STRATEGIES)}"
        )
    if "random" not in cfg.active.strategies:
        raise ConfigError("active.strategies must include random (the baseline)")
    known = [*METHODS, *cfg.variants]
    bad = [m for m in cfg.active.methods if m not in known]
    if bad:
        raise ConfigError(f"active.methods: {bad} are not methods or variants ({known})")
    if {"bald"} & set(cfg.active.strategies) and cfg.reward.ensemble < 2:
        raise ConfigError(
            "active.strategies has bald: set reward.ensemble >= 2 (its members' "
            "disagreement is the acquisition)"
        )
    steps = sizes(cfg)
    if cfg.active.methods and (cfg.active.methods_at or steps[-1]) not in steps:
        raise ConfigError(f"active.methods_at must be one of the label counts {steps}")


def member_margins(head: Any, chosen: np.ndarray, rejected: np.ndarray) -> np.ndarray:
    """(K, N) margins r_k(a) - r_k(b) of each member (K = 1 for a single head)."""
    members = head.members
    return np.stack([m.score(chosen) - m.score(rejected) for m in members]).astype(np.float64)


def _fit(
    cfg: RunConfig, data: PreparedData, labelled: np.ndarray, split_seed: int, fit_seed: int
) -> Any:
    train, val = carve_validation(labelled, cfg.data.val_fraction, split_seed)
    val_emb = (data.chosen[val], data.rejected[val]) if len(val) else None
    return augment_then_fit(
        "none", cfg, (data.chosen[train], data.rejected[train]), val_emb, ratio=0, seed=fit_seed
    ).fitter


def run_strategy(
    cfg: RunConfig, data: PreparedData, split_seed: int, strategy: str
) -> list[dict[str, Any]]:
    """The rounds of one strategy on one split: one row per label count."""
    split = data.splits[split_seed]
    pool = np.setdiff1d(np.arange(len(data.chosen)), split.test)  # hidden labels
    rng = np.random.default_rng([split_seed, 7])
    labelled = np.sort(rng.permutation(pool)[: cfg.active.start])  # same for every strategy
    scale = response_scale(np.concatenate([data.chosen[pool], data.rejected[pool]]))

    def feats(rows: np.ndarray) -> np.ndarray:
        return pair_features(data.chosen[rows], data.rejected[rows], scale)

    rows: list[dict[str, Any]] = []
    extra: list[dict[str, Any]] = []
    steps = sizes(cfg)
    for r, n in enumerate(steps):
        t0 = time.perf_counter()
        labelled_now = labelled
        fitter = _fit(cfg, data, labelled, split_seed, cfg.seed + 1000 * split_seed + r)
        head = fitter.head_
        acc = pairwise_accuracy(
            head.score(data.chosen[split.test]), head.score(data.rejected[split.test])
        )
        rec: dict[str, Any] = {
            "seed": split_seed,
            "strategy": strategy,
            "n_labels": n,
            "head": "round",
            "accuracy": acc,
            "epochs": fitter.history_["epochs_run"],
        }
        if r + 1 < len(steps):
            free = np.setdiff1d(pool, labelled)
            margins = member_margins(head, data.chosen[free], data.rejected[free])
            need = strategy in ("diversity", "hybrid")
            acq = select(
                strategy,
                margins,
                steps[r + 1] - n,
                features=feats(free) if need else None,
                labelled=feats(labelled) if need else None,
                seed=int(rng.integers(2**31)),
                top_m=cfg.active.top_m,
            )
            labelled = np.sort(np.concatenate([labelled, free[acq.index]]))
            rec.update(
                next_score=float(np.nanmean(acq.score)) if strategy != "random" else None,
                next_bald=float(np.nanmean(acq.disagreement[acq.index])),
                pool_bald=float(np.nanmean(acq.disagreement)),
                next_abs_margin=float(np.mean(np.abs(acq.margin[acq.index]))),
            )
        rec["seconds"] = time.perf_counter() - t0
        rows.append(rec)
        if n == (cfg.active.methods_at or steps[-1]):
            extra += _methods_rows(cfg, data, labelled_now, split_seed, strategy)
    return rows + extra


def _methods_rows(
    cfg: RunConfig, data: PreparedData, labelled: np.ndarray, split_seed: int, strategy: str
) -> list[dict[str, Any]]:
    """Each of active.methods trained on `labelled` (the labels at methods_at); a row a ratio."""
    from latentrm.recipes.run import fit_method

    if not cfg.active.methods:
        return []
    test = data.splits[split_seed].test
    train, val = carve_validation(labelled, cfg.data.val_fraction, split_seed)
    split = Split(split_seed, train, val, test, np.zeros(0, np.int64))
    mcfg = apply_changes(cfg, {"seed": cfg.seed + 1000 * split_seed})
    rows = []
    for name in cfg.active.methods:
        t0 = time.perf_counter()
        fitted, _ = fit_method(mcfg, name, data, split)
        for ratio, f in fitted.items():
            head = f.fitter.head_
            rows.append(
                {
                    "seed": split_seed,
                    "strategy": strategy,
                    "n_labels": len(labelled),
                    "head": name,
                    "ratio": ratio,
                    "accuracy": pairwise_accuracy(
                        head.score(data.chosen[test]), head.score(data.rejected[test])
                    ),
                    "seconds": time.perf_counter() - t0,
                }
            )
    return rows


def run_active(cfg: RunConfig, embedder: Any | None = None) -> pd.DataFrame:
    """Every strategy on every split of `cfg`; writes out_dir/results.csv, results.md, config.yaml.

    Resumes: rows of this very config (`config_key`) already in out_dir/results.csv are kept and
    their (split, strategy) runs skipped.
    """
    check_active(cfg)
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    key = results_key(cfg)
    csv = out / "results.csv"
    rows: list[dict[str, Any]] = []
    if csv.exists():
        old = pd.read_csv(csv, dtype={"config_key": str})
        if "config_key" in old.columns:
            rows = old[old.config_key == key].to_dict("records")
    done = {(int(r["seed"]), r["strategy"]) for r in rows}
    data = prepare_data(cfg, cfg.seeds, embed_all=True, embedder=embedder)
    t0 = time.perf_counter()
    with torch_threads(cfg.threads):
        for s in cfg.seeds:
            for strategy in cfg.active.strategies:
                if (s, strategy) in done:
                    continue
                new = run_strategy(cfg, data, s, strategy)
                rows += [{**r, "config_key": key} for r in new]
                df = pd.DataFrame(rows)
                atomic_write(csv, lambda p, df=df: df.to_csv(p, index=False))
                last = [r for r in new if r["head"] == "round"][-1]
                log.info(
                    "split %d %s: accuracy %.3f at %d labels (%.0fs so far)",
                    s,
                    strategy,
                    last["accuracy"],
                    last["n_labels"],
                    time.perf_counter() - t0,
                )
    df = pd.DataFrame(rows)
    save_config(cfg, out / "config.yaml")
    atomic_write_text(out / "results.md", active_markdown(df))
    return df


# --- the report -----------------------------------------------------------------------------------
def _curve(df: pd.DataFrame, strategy: str) -> pd.DataFrame:
    g = df[df.strategy == strategy].groupby("n_labels")["accuracy"]
    return pd.DataFrame(
        {
            "n_seed": g.mean().index.astype(int),
            "mean": g.mean().to_numpy(),
            "seeds": g.count().to_numpy(),
        }
    )


def active_markdown(df: pd.DataFrame, factor: int = 2) -> str:
    """The study's tables: learning curves with paired differences to random, the factor-x goal,
    labels to match random at the budget, effective labels.

    Paired: each split has the same start labels, pool and held-out pairs for every strategy, so
    a strategy's accuracy minus random's on the same split removes the split's variance; 95%
    Student-t intervals across splits.
    """
    extra = df[df["head"] != "round"] if "head" in df.columns else df.iloc[:0]
    df = df[df["head"] == "round"] if "head" in df.columns else df
    acc = df.pivot_table(index=["seed", "n_labels"], columns="strategy", values="accuracy")
    strategies = [s for s in STRATEGIES if s in acc.columns]
    ns = sorted(int(n) for n in acc.index.get_level_values(1).unique())
    n_splits = df.seed.nunique()
    lines = [
        f"Accuracy on the held-out pairs (mean ± 95% CI over {n_splits} splits) and each "
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
    if "next_abs_margin" in df.columns:
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
    random_curve = _curve(df, "random")
    top = ns[-1]
    target = float(random_curve.set_index("n_seed").loc[top, "mean"])
    lines += [
        "",
        f"Effective labels: the random labels that give a strategy's mean accuracy "
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


__all__ = [
    "active_markdown",
    "check_active",
    "labels_to_match",
    "member_margins",
    "methods_markdown",
    "run_active",
    "run_strategy",
    "sizes",
]
