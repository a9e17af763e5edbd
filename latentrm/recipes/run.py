"""`latentrm run`: prepared data -> augment -> reward head -> evaluation -> artifacts.

`prepare.prepare_data` does the data stage (load, split, embed through the cache);
`evaluate_split(cfg, data, split)` trains and evaluates every method x ratio on one split (also
used by `latentrm experiment`); `run_pipeline(cfg)` does one split and writes the artifacts.

Augmenters see the training part of the seed set only; reward heads stop early on its validation
part; hyperparameter grids are decided on validation; held-out pairs serve the final numbers only.
Best-of-N draws (see `evaluate.bon_draws`) depend on `eval.bon_seed` and the set id only.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from latentrm.augment.fit import Trained, augment_then_fit, fit_augmenter
from latentrm.augment.vae import n_parameters
from latentrm.config import RunConfig, apply_changes, method_config, save_config, to_dict
from latentrm.evaluate import (
    ScoreFn,
    bon_gold,
    bootstrap_ci,
    pair_correctness,
    pairwise_accuracy,
    spearman_with_gold,
)
from latentrm.head.estimator import FitMemo
from latentrm.head.fitter import (
    RewardHeadFitter,
    effective_reward,
    epoch0_heads,
    ignores_validation,
)
from latentrm.io import atomic_write_json, atomic_write_text
from latentrm.model import RewardModel
from latentrm.pairs import AugmentedPairs
from latentrm.recipes.diagnostics import warn_head_history, warn_small_validation
from latentrm.recipes.fit import training_record, validation_metrics
from latentrm.recipes.outdir import child_dir, staged_run_dir
from latentrm.recipes.prepare import PreparedData, Split, prepare_layers
from latentrm.recipes.reference import FoldedReference, fit_reference
from latentrm.recipes.report import json_safe, metrics_table
from latentrm.recipes.select import choose_layer, choose_recipe, selection_grid
from latentrm.runtime import torch_threads

log = logging.getLogger(__name__)


# --- training and evaluation of one split -------------------------------------------------------
def bon_metrics(scores: list[np.ndarray], sets: list[Any], cfg: RunConfig) -> dict[str, Any]:
    """Best-of-N gold metrics (`evaluate.bon_gold` at cfg.eval's settings) and the Spearman
    correlation with gold of a model's `scores` of candidate `sets` (one array per set)."""
    ev = cfg.eval
    out = bon_gold(
        scores, sets, ev.best_of_n, ev.bon_draws, ev.bon_seed, ev.skip_short, ev.n_bootstrap
    )
    out.update(spearman_with_gold(scores, [np.asarray(s.gold) for s in sets]))
    return out


def _score_metrics(
    score_fn: ScoreFn, data: PreparedData, split: Split, cfg: RunConfig, seed: int
) -> dict[str, Any]:
    """Held-out accuracy with bootstrap CI, validation accuracy, Best-of-N and Spearman."""
    rc, rr = score_fn(data.chosen[split.test]), score_fn(data.rejected[split.test])
    correct = pair_correctness(rc, rr)
    lo, hi = bootstrap_ci(correct, cfg.eval.n_bootstrap, seed)
    vc = pair_correctness(score_fn(data.chosen[split.val]), score_fn(data.rejected[split.val]))
    out: dict[str, Any] = {
        "accuracy": float(correct.mean()) if len(correct) else float("nan"),
        "accuracy_lo": lo,
        "accuracy_hi": hi,
        "val_accuracy": float(vc.mean()),
    }
    if len(split.bon_sets):
        sets = [data.sets[i] for i in split.bon_sets]
        scores = [score_fn(data.set_emb[i]) for i in split.bon_sets]
        out.update(bon_metrics(scores, sets, cfg))
    return out


@dataclass
class Fitted:
    """One trained configuration of a method on a split: what the row reports."""

    trained: Trained  # head, pairs, augmenter, seconds
    info: dict[str, Any]
    cfg: RunConfig  # the config it was trained with (the method's, at the chosen grid point)
    rows: np.ndarray  # the data rows of aug's seed pairs (split.train, or train + val)

    @property
    def fitter(self) -> RewardHeadFitter:
        return self.trained.fitter

    @property
    def aug(self) -> AugmentedPairs:
        return self.trained.aug


def fit_method(
    cfg: RunConfig, name: str, data: PreparedData, split: Split, memo: FitMemo | None = None
) -> tuple[dict[int, Fitted], int]:
    """Train method `name` (a method or variant) on `split` at each of its ratios.

    Augmenters are fitted on the split's training pairs only; heads stop early on its validation
    pairs; the method's hyperparameter grid (`selection_grid`) is decided by validation accuracy
    (ties: the lower validation Bradley-Terry loss, then grid order), never by held-out pairs.
    Below reward.small_data labelled pairs the plain head is the small-data head
    (`effective_reward`); a head that stops on folds of its own pairs (cross-fitted, or an exact
    L2 fit) trains on the whole seed set and reports its out-of-fold validation accuracy.
    `memo` shares fits between grid points and variants that differ only in what fit() ignores
    (LENS variants with other pairing, decoding or teachers train one VAE per split).
    Returns {ratio: Fitted} and the grid size.
    """
    memo = memo if memo is not None else FitMemo()
    base, bcfg = method_config(cfg, name)
    rows = split.train
    val = (data.chosen[split.val], data.rejected[split.val])
    fit_val: tuple[np.ndarray, np.ndarray] | None = val
    n_labelled = len(split.train) + len(split.val)
    if ignores_validation(bcfg.reward, n_labelled):
        rows, fit_val = np.sort(np.concatenate([split.train, split.val])), None
    train = (data.chosen[rows], data.rejected[rows])
    margins = data.margins  # TRL's margin column (None without one): it enters the loss
    margins = None if margins is None else margins[rows]
    data_key = f"split {split.split_seed} {'seed set' if fit_val is None else 'train'}"
    ratios = (0,) if base == "none" else cfg.ratios
    keys, grid = selection_grid(bcfg, base)
    best: dict[int, tuple[tuple[float, float], Fitted]] = {}
    for point in grid:
        mcfg = apply_changes(bcfg, dict(zip(keys, point, strict=True)))
        hcfg = replace(mcfg, reward=effective_reward(mcfg.reward, n_labelled))
        augmenter, t_fit = fit_augmenter(base, mcfg, train, cfg.seed, memo, data_key)
        for ratio in ratios:
            t = augment_then_fit(
                base,
                hcfg,
                train,
                fit_val,
                ratio=ratio,
                seed=cfg.seed,
                augmenter=augmenter,
                margins=margins,
            )
            head = t.fitter.head_
            val_acc = (
                pairwise_accuracy(head.score(val[0]), head.score(val[1]))
                if fit_val is not None
                else t.fitter.history_.get("oof_accuracy", math.nan)
            )
            info = {
                "time_fit_s": t_fit if base != "none" else 0.0,
                "time_synth_s": t.seconds.synth,
                "time_head_s": t.seconds.head,
                "params_augmenter": t.augmenter_params,
                "params_head": n_parameters(head),
                "n_pairs_trained": len(t.aug),
                "n_synthetic": int(np.sum(t.aug.synthetic)),
                **{k.split(".")[-1]: v for k, v in zip(keys, point, strict=True)},
            }
            if "teacher_agreement" in t.aug.stats:
                info["teacher_agreement"] = t.aug.stats["teacher_agreement"]
            if len(grid) > 1:
                log.info(
                    "%s ratio %d %s: validation accuracy %.4f",
                    name,
                    ratio,
                    dict(zip(keys, point, strict=True)),
                    val_acc,
                )
            # Validation accuracy moves in steps of 1/n_val, so ties are common: the lower
            # validation BT loss breaks them, then the grid order (strict '>').
            score = (val_acc, -float(t.fitter.history_["best_val"]))
            if ratio not in best or score > best[ratio][0]:
                best[ratio] = (score, Fitted(t, info, hcfg, rows))
    return {ratio: f for ratio, (_, f) in best.items()}, len(grid)


# What a saved head's card reports of its held-out evaluation (renamed from the row's keys).
HELDOUT_METRICS = {
    "accuracy": "heldout_accuracy",
    "accuracy_lo": "heldout_accuracy_lo",
    "accuracy_hi": "heldout_accuracy_hi",
    "bon_picked": "bon_picked",
    "bon_gap_closed": "bon_gap_closed",
}


def _training(
    cfg: RunConfig,
    method: str,
    ratio: int,
    fit: Fitted,
    data: PreparedData,
    split: Split,
    row: dict[str, Any],
    **extra: Any,
) -> dict[str, Any]:
    """The training record of a run's head (`fit.training_record`, as `latentrm.fit` writes
    it) with the held-out numbers of its result `row`."""
    val = (data.chosen[split.val], data.rejected[split.val])
    metrics = validation_metrics(fit.fitter, val)
    metrics.update(
        {
            new: round(float(row[k]), 4) if np.isfinite(row[k]) else None
            for k, new in HELDOUT_METRICS.items()
            if k in row
        }
    )
    extra.update(n_test=len(split.test), split_seed=split.split_seed)
    if len(split.bon_sets):
        extra["bon_prompts"] = len(split.bon_sets)
    return training_record(
        data=cfg.data.path,
        n_pairs=len(split.train) + len(split.val),
        n_val=len(split.val) if len(fit.rows) == len(split.train) else 0,  # 0: trained on all
        method=method,
        ratio=ratio,
        aug=fit.aug,
        margin=fit.aug.margin is not None,
        cfg=fit.cfg,
        metrics=metrics,
        **extra,
    )


def evaluate_split(
    cfg: RunConfig,
    data: PreparedData,
    split: Split,
    reference: FoldedReference | None = None,
    heads_dir: Path | None = None,
) -> list[dict[str, Any]]:
    """Train and evaluate every method (x ratio) of `cfg` on `split`; one result row each.

    A method is a method's name, a variant's (`variants`), or 'recipe': the candidate of
    `recipe_from` with the best k-fold accuracy on the seed set (`select.choose_recipe`), trained
    like the others and reported as 'recipe' with the choice in the `chosen` column. Fidelity is
    measured by the out-of-fold `reference`. Heads are saved under `heads_dir`.
    """
    rows: list[dict[str, Any]] = []
    memo = FitMemo()  # one VAE per split for every LENS variant that shares its settings
    common: dict[str, Any] = {
        "seed": cfg.seed,
        "split_seed": split.split_seed,
        "n_train": len(split.train),
        "n_val": len(split.val),
        "n_test": len(split.test),
        "layer": str(cfg.embed.layer),
    }
    warn_small_validation(len(split.val), f"split {split.split_seed}")
    if reference is not None:
        common["ref_seed_accuracy"] = reference.agreement(
            data, np.concatenate([split.train, split.val])
        )
        common["ref_heldout_accuracy"] = reference.agreement(data, split.test)
    for name in cfg.methods:
        t_select = time.perf_counter()
        extra: dict[str, Any] = {}
        if name == "recipe":
            chosen, ratio, scores = choose_recipe(cfg, data, split, cfg.seed)
            fits, grid = fit_method(
                apply_changes(cfg, {"ratios": [max(ratio, 1)]}), chosen, data, split, memo
            )
            extra = {
                "chosen": chosen if ratio == 0 else f"{chosen}-r{ratio}",
                "recipe_scores": json.dumps(scores, sort_keys=True),
            }
        else:
            fits, grid = fit_method(cfg, name, data, split, memo)
        t_select = time.perf_counter() - t_select
        method = chosen if name == "recipe" else name  # what the heads were trained with
        by_recipe = {"chosen_by": "recipe"} if name == "recipe" else {}
        trained = method_config(cfg, method)[1].reward
        for ratio, fit in fits.items():
            warn_head_history(
                fit.fitter.history_, f"{name} ratio {ratio} (split {split.split_seed})", trained
            )
            # The recipe's rows form one group whatever it chose (the choice is a column).
            row: dict[str, Any] = {
                "method": name,
                "ratio": 0 if name == "recipe" else ratio,
                **common,
                **fit.info,
                **extra,
            }
            if grid > 1 or name == "recipe":
                row["select_seconds"] = t_select
                row["select_grid"] = grid
            row.update(_score_metrics(fit.fitter.head_.score, data, split, cfg, cfg.seed))
            row["epochs"] = int(fit.fitter.history_["epochs_run"])
            row["heads_at_epoch0"], row["heads"] = epoch0_heads(fit.fitter.history_)
            if "oof_accuracy" in fit.fitter.history_:  # split.val was trained on
                row["val_accuracy"] = fit.fitter.history_["oof_accuracy"]
            if reference is not None:
                row["fidelity"] = reference.fidelity(fit.aug, replace(split, train=fit.rows))
            if heads_dir is not None:
                # A whole RewardModel (head + embed config): `RewardModel.load(d)` scores text.
                d = child_dir(heads_dir, f"{name}-r{ratio}")  # a name cannot climb out
                RewardModel(
                    cfg.embed,
                    fit.fitter.head_,
                    history=fit.fitter.history_,
                    max_response_chars=cfg.data.max_response_chars,
                    training=_training(cfg, method, ratio, fit, data, split, row, **by_recipe),
                ).save(d)
                row["head_dir"] = str(d)
            rows.append(row)
            log.info(
                "%s ratio %d: held-out accuracy %.4f [%.4f, %.4f]",
                name,
                ratio,
                row["accuracy"],
                row["accuracy_lo"],
                row["accuracy_hi"],
            )
    return rows


def evaluate_seed(
    cfg: RunConfig,
    datas: dict[Any, PreparedData],
    references: dict[Any, FoldedReference | None],
    split_seed: int,
    heads_dir: Path | None = None,
) -> tuple[list[dict[str, Any]], RunConfig]:
    """Every method on the split of `split_seed`, at the layer chosen for it.

    `datas` holds the prepared data at each embed.layer candidate; with more than one, the layer
    whose plain head has the best k-fold accuracy on this split's seed set is used by every
    method (`select.choose_layer`), recorded in the rows. Returns the rows and the config used.
    """
    layer = next(iter(datas))
    extra: dict[str, Any] = {}
    if len(datas) > 1:
        layer, scores = choose_layer(cfg, datas, split_seed, cfg.seed)
        extra = {"layer_scores": json.dumps(scores, sort_keys=True)}
    scfg = apply_changes(cfg, {"embed.layer": layer})
    data = datas[layer]
    rows = evaluate_split(scfg, data, data.splits[split_seed], references.get(layer), heads_dir)
    for r in rows:
        r.update(extra)
    return rows, scfg


def run_pipeline(cfg: RunConfig, embedder: Any | None = None) -> dict[str, Any]:
    """`latentrm run`: one split, every method x ratio; artifacts and metrics in cfg.out_dir.

    Writes config.yaml (resolved config), heads/<method>-r<ratio>/ (RewardModel.save: head +
    embed config), metrics.json and results.md (the table) into a temporary folder that replaces
    cfg.out_dir when all is written (`outdir.staged_run_dir`: a failed run leaves out_dir as it
    was). Returns the metrics dict (its 'table' key holds the markdown table).
    """
    out = Path(cfg.out_dir)
    with staged_run_dir(out, keep=[cfg.cache_dir]) as tmp:
        save_config(cfg, tmp / "config.yaml")
        with torch_threads(cfg.threads):
            t0 = time.perf_counter()
            datas = prepare_layers(cfg, embedder=embedder)
            t_ref = time.perf_counter()
            references = {
                layer: fit_reference(d, cfg, cfg.seed) if cfg.eval.fidelity else None
                for layer, d in datas.items()
            }
            t_ref = time.perf_counter() - t_ref
            rows, used = evaluate_seed(cfg, datas, references, cfg.data.split_seed, tmp / "heads")
            data = datas[used.embed.layer]
            split = data.splits[cfg.data.split_seed]
        for r in rows:  # where the heads will be once the folder is swapped in
            if "head_dir" in r:
                r["head_dir"] = str(out / Path(r["head_dir"]).relative_to(tmp))
        table = metrics_table(rows)
        metrics = {
            "config": to_dict(cfg),
            "mode": data.mode,
            "data": data.meta,
            "split": {
                "split_seed": split.split_seed,
                "n_train": len(split.train),
                "n_val": len(split.val),
                "n_test": len(split.test),
                "bon_prompts": len(split.bon_sets),
            },
            "reference_seconds": t_ref if cfg.eval.fidelity else None,
            "total_seconds": time.perf_counter() - t0,
            "results": rows,
            "table": table,
        }
        atomic_write_json(tmp / "metrics.json", json_safe(metrics))
        atomic_write_text(tmp / "results.md", table)
    log.info("wrote %s", out / "metrics.json")
    return metrics
