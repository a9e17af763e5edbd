"""`latentrm experiment`: methods x ratios x seeds (x one swept config key) -> table and plots.

Each seed is a different split *and* a different training seed (data.split_seed = seed = s).
Embeddings are computed once per dataset and embedder (`prepare.prepare_data(embed_all=None)`:
the whole dataset unless the splits use under a quarter of it; cached on disk) and reused by every
seed and every swept value.

Outputs in cfg.out_dir:
- results.csv: one row per (sweep value, method, ratio, seed) with accuracy (+ bootstrap CI on
  the held-out pairs), Best-of-N gold, Spearman, fidelity, selected hyperparameters, times,
  parameter counts and the key of the config that computed it (`config_key`). Rewritten
  (atomically) after every seed into ``.NAME.partial/`` next to out_dir, which replaces out_dir
  when the experiment finishes; rerunning the same config resumes: finished (sweep value, seed)
  runs of that config are kept, not recomputed.
- results.md: mean +- 95% Student-t half width across seeds for every (sweep, method, ratio), and
  the hyperparameters selected on validation per seed.
- plots/*.png: metrics vs ratio per method with CI bands; with a sweep, metrics vs swept value.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from latentrm.config import (
    RunConfig,
    apply_changes,
    deep_merge,
    from_dict,
    load_config,
    parse_overrides,
    save_config,
    to_dict,
)
from latentrm.errors import ConfigError
from latentrm.evaluate import (
    bootstrap_ci,
    pair_correctness,
)
from latentrm.io import atomic_write, atomic_write_text, current_umask, sha256_json
from latentrm.recipes.outdir import check_run_dir, partial_dir, remove_leftovers, swap_in
from latentrm.recipes.plots import write_plots
from latentrm.recipes.prepare import PreparedData, Split, prepare_layers
from latentrm.recipes.reference import fit_reference
from latentrm.recipes.report import summary_markdown
from latentrm.recipes.run import bon_metrics, evaluate_seed
from latentrm.runtime import torch_threads
from latentrm.text.lm import text_baselines_available

log = logging.getLogger(__name__)


def sweep_configs(cfg: RunConfig) -> list[tuple[str | None, RunConfig]]:
    """(value label, config) per value of cfg.sweep; [(None, cfg)] without a sweep.

    Each value is applied as the override `{sweep}={value}` (parsed as YAML), so it is checked and
    typed like any command-line override.
    """
    if cfg.sweep is None:
        if cfg.sweep_values:
            raise ConfigError("sweep_values is set but sweep (the key to sweep) is not")
        return [(None, cfg)]
    if not cfg.sweep_values:
        raise ConfigError(f"sweep={cfg.sweep} needs sweep_values, e.g. sweep_values=[0,0.1,1]")
    out = []
    base = to_dict(cfg)
    for v in cfg.sweep_values:
        merged = deep_merge(base, parse_overrides([f"{cfg.sweep}={v}"]))
        try:
            out.append((str(v), from_dict(RunConfig, merged)))
        except ConfigError as e:
            raise ConfigError(f"sweep {cfg.sweep}={v}: {e}") from None
    return out


def _text_baseline_rows(cfg: RunConfig, data: PreparedData, split: Split) -> list[dict[str, Any]]:
    """Rows for the text baselines (TRL reward models on the text of the same split), if enabled.

    `text.reward_model.text_reward_model` fits full / lora on the split's training pairs (early
    stopping data: its validation pairs); self-rewarding first synthesises, at each ratio of
    `ratios` (the ones LENS uses), that many judged pairs per seed pair. They are scored on the
    same held-out pairs and Best-of-N candidates as LENS.
    The caller runs it with embed.threads torch threads (LLM passes, like embedding).
    """
    modes = list(cfg.text_baselines)
    if not modes:
        return []
    from latentrm.text import reward_model as tb

    unknown = sorted(set(modes) - set(tb.TEXT_METHODS))
    if unknown:
        raise ConfigError(f"unknown text_baselines {unknown}; choose from {tb.TEXT_METHODS}")
    if not text_baselines_available():
        log.warning("text_baselines=%s skipped: install the extra latentrm[text]", modes)
        return []
    ds = data.ds
    train, val, test = ds.subset(split.train), ds.subset(split.val), ds.subset(split.test)
    rows = []
    runs = [(m, r) for m in modes for r in (cfg.ratios if m == "self-rewarding" else (None,))]
    for mode, ratio in runs:
        t0 = time.perf_counter()
        model = tb.text_reward_model(cfg, mode, train, val, cfg.seed, ratio)
        t_total = time.perf_counter() - t0
        synthesis = getattr(model, "synthesis_", None)
        t_synth = (
            (
                float(synthesis.stats.get("generate_seconds", 0.0))
                + float(synthesis.stats.get("judge_seconds", 0.0))
            )
            if synthesis
            else 0.0
        )
        rc = np.asarray(model.score(test.prompts, test.chosen), np.float64)
        rr = np.asarray(model.score(test.prompts, test.rejected), np.float64)
        correct = pair_correctness(rc, rr)
        lo, hi = bootstrap_ci(correct, cfg.eval.n_bootstrap, cfg.seed)
        row: dict[str, Any] = {
            "method": f"text-{mode}",
            "ratio": int(getattr(model, "ratio_", 0)),
            "seed": cfg.seed,
            "split_seed": split.split_seed,
            "n_train": len(split.train),
            "n_val": len(split.val),
            "n_test": len(split.test),
            "accuracy": float(correct.mean()),
            "accuracy_lo": lo,
            "accuracy_hi": hi,
            "time_fit_s": 0.0,
            "time_synth_s": t_synth,
            "time_head_s": float(getattr(model, "train_seconds_", t_total - t_synth)),
            "params_augmenter": 0,
            "params_head": int(getattr(model, "n_trainable_", 0)),
            "n_synthetic": len(synthesis.pairs) if synthesis else 0,
        }
        if len(split.bon_sets):
            sets = [data.sets[i] for i in split.bon_sets]
            scores = [
                np.asarray(
                    model.score([s.prompt] * len(s.responses), list(s.responses)), np.float64
                )
                for s in sets
            ]
            row.update(bon_metrics(scores, sets, cfg))
        rows.append(row)
        del model  # free the fine-tuned LLM before the next one
    return rows


def results_key(cfg: RunConfig) -> str:
    """What a result row was computed under: a hash of the config without where things are
    written or shown (out_dir, cache_dir, progress bars). Stored in each row (`config_key`), so
    an experiment resumes only rows of its own config, whatever a folder's config.yaml says."""
    d = to_dict(cfg)
    for k in ("out_dir", "cache_dir"):
        d.pop(k)
    d["embed"].pop("show_progress")
    d["text"].pop("show_progress")
    return sha256_json(d)[:16]


def results_current(cfg: RunConfig, done: str = "results.md") -> bool:
    """Whether cfg.out_dir holds finished results (its file `done`) of a config that computes
    the same results as `cfg` (`results_key`: where things are written or shown does not count,
    so a run made with `-q` or another out_dir spelling is still current)."""
    out = Path(cfg.out_dir)
    if not (out / done).exists() or not (out / "config.yaml").exists():
        return False
    try:
        saved = load_config(out / "config.yaml")
    except ConfigError:
        return False
    return results_key(saved) == results_key(cfg)


def run_experiment(
    cfg: RunConfig, embedder: Any | None = None, keep_heads: bool = False
) -> pd.DataFrame:
    """Every (sweep value,) method, ratio and seed of `cfg`; writes results.csv/md and plots.

    LENS's gamma/sigma2 (select_gamma, select_sigma2) and direct's noise (select_direct_noise) are
    chosen per seed and ratio on the validation split carved from that seed's seed set; the chosen
    values are columns of results.csv. Returns the results as a DataFrame.

    Finished (sweep value, seed) runs are kept in ``.NAME.partial/results.csv`` next to out_dir
    (`outdir.partial_dir`) while the experiment runs; at the end config.yaml, results.csv/md and
    plots/ are written there and the folder replaces out_dir (`outdir.swap_in`). Rerunning the
    same config resumes from the rows of that folder or of out_dir whose `config_key` matches.

    keep_heads: also save every head as a reward model folder,
    ``heads/[<sweep>=<value>/]seed-<seed>/<method>-r<ratio>`` (what `latentrm run` writes per
    head; `latentrm export` turns one into a Hub folder); kilobytes each.
    """
    if len(cfg.seeds) < 5:
        log.warning(
            "%d seeds: the 95%% intervals across seeds will be wide (use >= 5)", len(cfg.seeds)
        )
    out = check_run_dir(cfg.out_dir, keep=[cfg.cache_dir])
    remove_leftovers(out)
    key = results_key(cfg)
    stage = partial_dir(out)
    rows = _finished_rows(key, stage, out)
    if keep_heads and (out / "heads").is_dir() and not (stage / "heads").exists():
        shutil.copytree(out / "heads", stage / "heads")  # the heads of resumed seeds
    done = {(r.get("sweep_value"), int(r["seed"])) for r in rows}
    memo: tuple[str, dict[Any, PreparedData], dict[Any, Any]] | None = None
    t0 = time.perf_counter()
    try:
        with torch_threads(cfg.threads):
            for value, vcfg in sweep_configs(cfg):
                todo = [s for s in vcfg.seeds if (value, s) not in done]
                if not todo:
                    continue
                mkey = json.dumps(
                    [
                        to_dict(vcfg.data),
                        to_dict(vcfg.embed),
                        to_dict(vcfg.eval),
                        vcfg.cache_dir,
                        list(vcfg.seeds),
                        list(vcfg.select_layer),
                        to_dict(vcfg.reward),
                    ],
                    sort_keys=True,
                )
                if memo is None or memo[0] != mkey:
                    datas = prepare_layers(vcfg, vcfg.seeds, embed_all=None, embedder=embedder)
                    refs = {
                        layer: fit_reference(d, vcfg, vcfg.seed) if vcfg.eval.fidelity else None
                        for layer, d in datas.items()
                    }
                    memo = (mkey, datas, refs)
                datas, refs = memo[1], memo[2]
                for s in todo:
                    heads = None
                    if keep_heads:
                        heads = (
                            stage
                            / "heads"
                            / (f"{cfg.sweep}={value}" if cfg.sweep is not None else "")
                            / f"seed-{s}"
                        )
                    new, scfg = evaluate_seed(
                        apply_changes(vcfg, {"seed": s, "data.split_seed": s}),
                        datas,
                        refs,
                        s,
                        heads,
                    )
                    data, split = datas[scfg.embed.layer], datas[scfg.embed.layer].splits[s]
                    with torch_threads(scfg.embed.threads):  # LLM passes, like embedding
                        new += _text_baseline_rows(scfg, data, split)
                    for r in new:
                        if cfg.sweep is not None:
                            r["sweep"], r["sweep_value"] = cfg.sweep, value
                        r["config_key"] = key
                    rows.extend(new)
                    _write_csv(rows, stage / "results.csv")
                    log.info(
                        "seed %d%s done (%d rows, %.0fs so far)",
                        s,
                        f" ({cfg.sweep}={value})" if value is not None else "",
                        len(rows),
                        time.perf_counter() - t0,
                    )
        df = pd.DataFrame(rows)
        _write_csv(rows, stage / "results.csv")
        save_config(cfg, stage / "config.yaml")
        atomic_write_text(stage / "results.md", summary_markdown(df, cfg))
        shutil.rmtree(stage / "plots", ignore_errors=True)
        # A swept dataset or embedder is named by the sweep values instead.
        write_plots(
            df,
            stage / "plots",
            None if cfg.sweep == "data.path" else cfg.data.path,
            None if cfg.sweep == "embed.model" else cfg.embed.model,
        )
    except BaseException:
        if not (stage / "results.csv").exists():
            shutil.rmtree(stage, ignore_errors=True)  # nothing finished: nothing to resume
        else:
            log.warning("%s keeps the finished runs: rerun the same config to resume", stage)
        raise
    swap_in(stage, out)
    return df


def _read_rows(csv: Path, key: str) -> list[dict[str, Any]] | None:
    """Rows of `csv` computed under `key` (None if the file is absent or holds none of them)."""
    if not csv.exists():
        return None
    df = pd.read_csv(
        csv,
        dtype={"sweep_value": str, "sweep": str, "layer": str, "chosen": str, "config_key": str},
    )
    if "config_key" not in df.columns or not (df["config_key"] == key).any():
        return None
    df = df[df["config_key"] == key]
    return [
        {k: v for k, v in r.items() if not (isinstance(v, float) and np.isnan(v))}
        for r in df.to_dict("records")
    ]


def _finished_rows(key: str, stage: Path, out: Path) -> list[dict[str, Any]]:
    """Rows of this very config (`config_key` == `key`) to resume from: those of an unfinished
    run in `stage`, else those of a finished run in `out`; [] if neither holds any.

    A `stage` left by another config is cleared; everything but its results.csv is rewritten at
    the end anyway."""
    rows = _read_rows(stage / "results.csv", key)
    if rows is None and stage.exists():
        log.info("%s holds no runs of this config: cleared", stage)
        shutil.rmtree(stage)
    if rows is None:
        rows = _read_rows(out / "results.csv", key)
        if rows is None and (out / "results.csv").exists():
            log.info(
                "%s holds results of another config: they are replaced when this "
                "experiment finishes",
                out / "results.csv",
            )
    stage.mkdir(parents=True, exist_ok=True)
    os.chmod(stage, 0o777 & ~current_umask())
    rows = rows or []
    if rows:
        log.info(
            "resuming: %d rows of %d (sweep value, seed) runs already done",
            len(rows),
            len({(r.get("sweep_value"), r["seed"]) for r in rows}),
        )
    return rows


def _write_csv(rows: list[dict[str, Any]], path: Path) -> None:
    df = pd.DataFrame(rows)
    atomic_write(path, lambda p: df.to_csv(p, index=False))
