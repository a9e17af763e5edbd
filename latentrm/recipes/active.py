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
(:func:`latentrm.recipes.active_report.active_markdown`). Rows are written after every (split,
strategy), and a rerun of the same config resumes from them.
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
from latentrm.evaluate import pairwise_accuracy
from latentrm.head.acquire import STRATEGIES, pair_features, response_scale, select
from latentrm.io import atomic_write, atomic_write_text
from latentrm.recipes.active_report import active_markdown
from latentrm.recipes.experiment import results_key
from latentrm.recipes.prepare import PreparedData, Split, prepare_data
from latentrm.runtime import torch_threads

log = logging.getLogger(__name__)

BON_COLUMNS = ("bon_gap_closed", "bon_picked", "bon_floor", "bon_ceiling")


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


def pool_rows(data: PreparedData, split: Split) -> np.ndarray:
    """Rows whose labels may be bought. Pairs data: every pair outside the held-out ones.
    Candidates data: every binarised pair of the split's training instructions (so no pair of a
    held-out instruction, even one that data.n_test left out of split.test)."""
    if data.mode == "candidates":
        return np.flatnonzero(~np.isin(data.groups, split.bon_sets))
    return np.setdiff1d(np.arange(len(data.chosen)), split.test)


def _bon(cfg: RunConfig, data: PreparedData, split: Split, head: Any) -> dict[str, Any]:
    """Best-of-N gold of `head` on the split's held-out candidate sets (`run.bon_metrics`)."""
    from latentrm.recipes.run import bon_metrics

    sets = [data.sets[i] for i in split.bon_sets]
    out = bon_metrics([head.score(data.set_emb[i]) for i in split.bon_sets], sets, cfg)
    return {k: out[k] for k in BON_COLUMNS}


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
    pool = pool_rows(data, split)  # hidden labels
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
        if len(split.bon_sets):  # candidates data: Best-of-N on the held-out instructions
            rec.update(_bon(cfg, data, split, head))
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
__all__ = [
    "check_active",
    "member_margins",
    "pool_rows",
    "run_active",
    "run_strategy",
    "sizes",
]
