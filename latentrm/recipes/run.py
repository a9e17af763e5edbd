"""`latentrm run`: prepared data -> augment -> reward head -> evaluation -> artifacts.

`prepare.prepare_data` does the data stage (load, split, embed through the cache);
`evaluate_split(cfg, data, split)` trains and evaluates every method x ratio on one split (also
used by `latentrm experiment`); `run_pipeline(cfg)` does one split and writes the artifacts.

Augmenters see the training part of the seed set only; reward heads stop early on its validation
part; hyperparameter grids are decided on validation; held-out pairs serve the final numbers only.
Best-of-N draws (see `evaluate.bon_draws`) depend on `eval.bon_seed` and the set id only.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from latentrm.config import RunConfig, save_config, to_dict
from latentrm.data.splits import carve_validation
from latentrm.evaluate import (
    ScoreFn,
    bon_gold,
    bootstrap_ci,
    pair_correctness,
    pairwise_accuracy,
    spearman_with_gold,
    synthetic_fidelity,
)
from latentrm.io import atomic_write_json, atomic_write_text
from latentrm.methods import make_augmenter
from latentrm.model import RewardModel
from latentrm.pairs import AugmentedPairs
from latentrm.recipes.prepare import PreparedData, Split, prepare_data
from latentrm.recipes.report import json_safe, metrics_table
from latentrm.reward import RewardHeadFitter
from latentrm.runtime import torch_threads
from latentrm.vae import n_parameters

log = logging.getLogger(__name__)


# --- training and evaluation of one split -------------------------------------------------------
def _augmenter_params(aug: Any) -> int:
    """Parameters of an augmenter's generative model (the VAE for LENS; 0 for the baselines)."""
    model = getattr(getattr(aug, "vae_", None), "model_", None)
    return n_parameters(model) if model is not None else 0


def with_changes(cfg: RunConfig, **changes: Any) -> RunConfig:
    """cfg with dotted-key changes, e.g. with_changes(cfg, **{'vae.gamma': 0.5})."""
    for key, value in changes.items():
        head, _, rest = key.partition(".")
        if rest:
            cfg = dataclasses.replace(
                cfg, **{head: dataclasses.replace(getattr(cfg, head), **{rest: value})}
            )
        else:
            cfg = dataclasses.replace(cfg, **{head: value})
    return cfg


def selection_grid(cfg: RunConfig, method: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Hyperparameters chosen on validation for `method`: (dotted keys, value tuples).

    The first key is the one the augmenter's fit depends on (refit per value); the others only
    change synthesis. One grid point = no selection.
    """
    if method == "lens":
        keys = ["vae.gamma", "synth.sigma2"]
        vals = [cfg.select_gamma or (cfg.vae.gamma,), cfg.select_sigma2 or (cfg.synth.sigma2,)]
    elif method == "direct":
        keys, vals = ["synth.direct_noise"], [cfg.select_direct_noise or (cfg.synth.direct_noise,)]
    else:
        return [], [()]
    return keys, list(itertools.product(*vals))


def fit_reference_head(data: PreparedData, cfg: RunConfig, seed: int) -> ScoreFn:
    """A reward head trained on every labelled pair of `data` (seed + held-out of all splits).

    For candidates data those pairs are binarised from the gold scores of every instruction, so
    the reference is the gold preference as far as the embedding space can express it. Used only
    to measure synthetic-pair fidelity; data.val_fraction of the pairs serve its early stopping.
    """
    tr, va = carve_validation(np.arange(len(data.chosen)), cfg.data.val_fraction, seed)
    aug = AugmentedPairs.originals(data.chosen[tr], data.rejected[tr])
    fitter = RewardHeadFitter(cfg.reward, seed).fit(aug, (data.chosen[va], data.rejected[va]))
    return fitter.head_.score


def _score_metrics(
    score_fn: ScoreFn, data: PreparedData, split: Split, cfg: RunConfig, seed: int
) -> dict[str, Any]:
    """Held-out accuracy with bootstrap CI, validation accuracy, Best-of-N and Spearman."""
    rc, rr = score_fn(data.chosen[split.test]), score_fn(data.rejected[split.test])
    correct = pair_correctness(rc, rr)
    lo, hi = bootstrap_ci(correct, cfg.eval.n_bootstrap, seed)
    vc = pair_correctness(score_fn(data.chosen[split.val]), score_fn(data.rejected[split.val]))
    out: dict[str, Any] = {"accuracy": float(correct.mean()), "accuracy_lo": lo,
                           "accuracy_hi": hi, "val_accuracy": float(vc.mean())}
    if len(split.bon_sets):
        sets = [data.sets[i] for i in split.bon_sets]
        scores = [score_fn(data.set_emb[i]) for i in split.bon_sets]
        out.update(bon_gold(scores, sets, cfg.eval.best_of_n, cfg.eval.bon_draws,
                             cfg.eval.bon_seed, cfg.eval.skip_short, cfg.eval.n_bootstrap))
        out.update(spearman_with_gold(scores, [np.asarray(s.gold) for s in sets]))
    return out


def evaluate_split(
    cfg: RunConfig, data: PreparedData, split: Split, reference: ScoreFn | None = None,
    heads_dir: Path | None = None,
) -> list[dict[str, Any]]:
    """Train and evaluate every method x ratio of `cfg` on `split`; one result row each.

    Augmenters are fitted on the split's training pairs only; heads stop early on its validation
    pairs; hyperparameter grids (`selection_grid`) are decided by validation accuracy (ties: the
    lower validation Bradley-Terry loss), never by the held-out pairs. Method 'none' runs once
    (ratio 0). Heads are saved under `heads_dir`.
    """
    tc, tr = data.chosen[split.train], data.rejected[split.train]
    val = (data.chosen[split.val], data.rejected[split.val])
    rows: list[dict[str, Any]] = []
    for method in cfg.methods:
        ratios = (0,) if method == "none" else cfg.ratios
        keys, grid = selection_grid(cfg, method)
        best: dict[int, tuple[tuple[float, float], dict[str, Any], Any, Any]] = {}
        fitted: dict[Any, tuple[Any, float]] = {}
        t_select = time.perf_counter()
        for point in grid:
            mcfg = with_changes(cfg, **dict(zip(keys, point, strict=True)))
            fit_key = point[:1]  # the first key is the only one the fit depends on
            if method != "none" and fit_key not in fitted:
                t0 = time.perf_counter()
                augmenter = make_augmenter(method, mcfg, cfg.seed).fit(tc, tr)
                fitted[fit_key] = (augmenter, time.perf_counter() - t0)
            augmenter, t_fit = fitted.get(fit_key, (None, 0.0))  # 'none' fits nothing
            if augmenter is not None and len(point) > 1:
                # The other keys only change synthesis: the fitted state stays valid.
                fresh = make_augmenter(method, mcfg, cfg.seed).get_params()
                augmenter = copy.copy(augmenter).set_params(**fresh)
            for ratio in ratios:
                t0 = time.perf_counter()
                aug = (AugmentedPairs.originals(tc, tr) if augmenter is None
                       else augmenter.augment(tc, tr, ratio, cfg.seed))
                t_syn = time.perf_counter() - t0
                t0 = time.perf_counter()
                fitter = RewardHeadFitter(cfg.reward, cfg.seed).fit(aug, val)
                t_head = time.perf_counter() - t0
                head = fitter.head_
                val_acc = pairwise_accuracy(head.score(val[0]), head.score(val[1]))
                info = {
                    "time_fit_s": t_fit, "time_synth_s": t_syn, "time_head_s": t_head,
                    "params_augmenter": _augmenter_params(augmenter),
                    "params_head": n_parameters(fitter.head_),
                    "n_pairs_trained": len(aug), "n_synthetic": int(np.sum(aug.synthetic)),
                    **{k.split(".")[-1]: v for k, v in zip(keys, point, strict=True)},
                }
                if len(grid) > 1:
                    log.info("%s ratio %d %s: validation accuracy %.4f", method, ratio,
                             dict(zip(keys, point, strict=True)), val_acc)
                # Validation accuracy moves in steps of 1/n_val, so ties are common: the lower
                # validation BT loss breaks them, then the grid order (strict '>').
                score = (val_acc, -float(fitter.history_["best_val"]))
                if ratio not in best or score > best[ratio][0]:
                    best[ratio] = (score, info, fitter, aug)
        t_select = time.perf_counter() - t_select
        for ratio in ratios:
            _, info, fitter, aug = best[ratio]
            row: dict[str, Any] = {"method": method, "ratio": ratio, "seed": cfg.seed,
                                   "split_seed": split.split_seed, "n_train": len(split.train),
                                   "n_val": len(split.val), "n_test": len(split.test), **info}
            if len(grid) > 1:
                row["select_seconds"] = t_select
                row["select_grid"] = len(grid)
            row.update(_score_metrics(fitter.head_.score, data, split, cfg, cfg.seed))
            row["epochs"] = int(fitter.history_["epochs_run"])
            if reference is not None:
                row["fidelity"] = synthetic_fidelity(aug, reference)
            if heads_dir is not None:
                # A whole RewardModel (head + embed config): `RewardModel.load(d)` scores text.
                d = heads_dir / f"{method}-r{ratio}"
                RewardModel(cfg.embed, fitter.head_, history=fitter.history_).save(d)
                row["head_dir"] = str(d)
            rows.append(row)
            log.info("%s ratio %d: held-out accuracy %.4f [%.4f, %.4f]", method, ratio,
                     row["accuracy"], row["accuracy_lo"], row["accuracy_hi"])
    return rows


def run_pipeline(cfg: RunConfig, embedder: Any | None = None) -> dict[str, Any]:
    """`latentrm run`: one split, every method x ratio; artifacts and metrics in cfg.out_dir.

    Writes config.yaml (resolved config), heads/<method>-r<ratio>/ (RewardModel.save: head +
    embed config), metrics.json (atomic) and results.md (the table). Returns the metrics dict
    (its 'table' key holds the markdown table).
    """
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out / "config.yaml")
    with torch_threads(cfg.threads):
        t0 = time.perf_counter()
        data = prepare_data(cfg, embedder=embedder)
        split = data.splits[cfg.data.split_seed]
        t_ref = time.perf_counter()
        reference = fit_reference_head(data, cfg, cfg.seed) if cfg.eval.fidelity else None
        t_ref = time.perf_counter() - t_ref
        rows = evaluate_split(cfg, data, split, reference, heads_dir=out / "heads")
    table = metrics_table(rows)
    metrics = {
        "config": to_dict(cfg), "mode": data.mode, "data": data.meta,
        "split": {"split_seed": split.split_seed, "n_train": len(split.train),
                  "n_val": len(split.val), "n_test": len(split.test),
                  "bon_prompts": len(split.bon_sets)},
        "reference_seconds": t_ref if reference is not None else None,
        "total_seconds": time.perf_counter() - t0,
        "results": rows, "table": table,
    }
    atomic_write_json(out / "metrics.json", json_safe(metrics))
    atomic_write_text(out / "results.md", table)
    log.info("wrote %s", out / "metrics.json")
    return metrics
