"""`latentrm.fit`: preference data in, a RewardModel out, in one call (the Python-first API).

    rm = latentrm.fit(dataset, embedder="minilm")        # a datasets.Dataset in TRL's formats
    rm.score(["How do I boil an egg?"], ["Simmer it for 8 minutes."])
    rm.save_pretrained("my-rm")      # also loads as an AutoModelForSequenceClassification

The data go through the same parsers as `latentrm run` (HH-RLHF, TRL standard / conversational /
implicit prompt, TL;DR, candidate sets), are embedded through the on-disk cache, augmented by one
method at one ratio if asked (the default is none) and a Bradley-Terry head is trained on them,
stopping early on `data.val_fraction` of the pairs (the small-data head: on folds of its own).
There is no held-out test split: evaluate the returned model on data of your own (or use
`latentrm run` / `experiment`, which do). The embedding model is loaded
only when a pair is not in the cache yet (else on the returned model's first `score`).

A ``margin`` column (TRL's RewardTrainer convention: chosen should win by that much) enters the
loss as ``-log sigmoid(r+ - r- - margin)``; synthetic pairs inherit the margin of their seed pair.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from latentrm.augment.fit import augment_then_fit, fit_augmenter
from latentrm.config import (
    RunConfig,
    apply_changes,
    deep_merge,
    from_dict,
    load_config,
    method_config,
    parse_overrides,
    to_dict,
)
from latentrm.data.load import pairs_from_source
from latentrm.data.readers import Source, read_source, records_from_datasets
from latentrm.data.splits import carve_validation
from latentrm.data.types import PreferenceDataset
from latentrm.embed import local as emb_mod
from latentrm.embed.embedder import Embedder
from latentrm.embed.store import pair_rows, plan_cache
from latentrm.errors import ConfigError, DataError
from latentrm.evaluate import pairwise_accuracy
from latentrm.head.fitter import RewardHeadFitter, effective_reward, ignores_validation
from latentrm.head.reward import bradley_terry_loss
from latentrm.model import RewardModel
from latentrm.pairs import AugmentedPairs

log = logging.getLogger(__name__)


def _config(
    config: RunConfig | str | Path | None,
    overrides: Sequence[str] | Mapping[str, Any] | None,
    changes: dict[str, Any],
) -> RunConfig:
    """The run config: `config` (a RunConfig or a YAML path), `overrides`, then fit's keywords."""
    if isinstance(overrides, str):  # a str is a Sequence: it would be split into characters
        raise ConfigError(
            "overrides must be a list of 'key=value' strings or a dict, got one "
            f"string {overrides!r:.80} (write [{overrides!r:.80}])"
        )
    cfg = config if isinstance(config, RunConfig) else load_config(config)
    if isinstance(overrides, Mapping):
        cfg = apply_changes(cfg, dict(overrides))
    elif overrides:
        cfg = from_dict(RunConfig, deep_merge(to_dict(cfg), parse_overrides(list(overrides))))
    return apply_changes(cfg, {k: v for k, v in changes.items() if v is not None})


def _source(data: Any, cfg: RunConfig) -> Source | PreferenceDataset:
    """Records of `data` with their numbers (or an already parsed PreferenceDataset)."""
    if isinstance(data, PreferenceDataset):
        return data
    if isinstance(data, (str, Path)):
        return read_source(str(data), cfg.data)
    if hasattr(data, "column_names"):  # datasets.Dataset (a DatasetDict is refused there)
        name = getattr(getattr(data, "info", None), "dataset_name", None) or "Dataset"
        return Source(f"<{name}>", name, records_from_datasets(data))
    if hasattr(data, "to_dict") and hasattr(data, "columns"):  # pandas.DataFrame
        return Source("<DataFrame>", "row", list(enumerate(data.to_dict("records"), 1)))
    if isinstance(data, Sequence) and all(isinstance(r, Mapping) for r in data):
        return Source("<records>", "record", [(i, dict(r)) for i, r in enumerate(data, 1)])
    raise DataError(
        f"cannot read {type(data).__name__} as preference data: pass a datasets.Dataset, a list "
        "of dicts, a pandas DataFrame, a file path or a Hub dataset id"
    )


def fit(
    data: Any,
    *,
    embedder: str | Embedder | None = None,
    method: str | None = None,
    ratio: int | None = None,
    config: RunConfig | str | Path | None = None,
    overrides: Sequence[str] | Mapping[str, Any] | None = None,
    seed: int | None = None,
    cache_dir: str | Path | None = None,
) -> RewardModel:
    """Train a reward model on preference `data` and return it, ready to score and save.

    data: a `datasets.Dataset` in one of TRL's preference formats (standard or conversational,
        explicit or implicit prompt), a list of dicts or a pandas DataFrame of such records (HH
        dialogues, TL;DR, candidate sets work too), a file path or a Hub dataset id (read like
        `data.path`), or a PreferenceDataset. An optional ``margin`` column enters the loss.
    embedder: `embed.model` (alias, Hub id or path), or a loaded Embedder to reuse.
    method: augmentation (none | direct | gaussian | lens | cross-prompt | a variant of the
        config); default "none", the plain head (below reward.small_data pairs the cross-fitted
        small-data head): in our studies no augmentation beat it (REPORT.md). ratio: new pairs
        per seed pair (default: the first of `ratios`).
    config: a RunConfig or a YAML file; `overrides`: ["reward.epochs=50", ...] or
        {"reward.epochs": 50}; `seed`, `cache_dir`: the config keys of the same names.
    """
    emb_obj = embedder if isinstance(embedder, Embedder) else None
    cfg = _config(
        config,
        overrides,
        {
            "embed.model": embedder if isinstance(embedder, str) else None,
            "seed": seed,
            "cache_dir": str(cache_dir) if cache_dir is not None else None,
            "ratios": [ratio] if ratio is not None else None,
        },
    )
    if emb_obj is not None:
        cfg = from_dict(RunConfig, {**to_dict(cfg), "embed": to_dict(emb_obj.cfg)})
    name = method or "none"
    base, mcfg = method_config(cfg, name)
    src = _source(data, cfg)
    if isinstance(src, PreferenceDataset):
        ds, label = src, src.source or "<PreferenceDataset>"
    else:
        ds, label = pairs_from_source(src, cfg.data), src.label
    margins = ds.margins  # TRL's margin column (data.load parses it), None without one
    train, val = carve_validation(np.arange(len(ds)), cfg.data.val_fraction, cfg.data.split_seed)
    if len(val) == 0 or len(train) < 2:
        raise ConfigError(
            f"{label}: {len(ds)} pairs are too few to train and validate on; "
            "raise data.val_fraction or give more pairs"
        )
    emb = emb_obj
    if emb is None and plan_cache(pair_rows(ds), cfg.embed, cfg.cache_dir).missing:
        emb = Embedder(cfg.embed)  # something must be embedded: load once, keep it for scoring
    # With every embedding cached no model is loaded; the RewardModel loads it on first use.
    pe = emb_mod.embed_pairs(ds, cfg.embed, cfg.cache_dir, embedder=emb)
    chosen, rejected = np.asarray(pe.chosen, np.float32), np.asarray(pe.rejected, np.float32)
    fit_val: tuple[np.ndarray, np.ndarray] | None = (chosen[val], rejected[val])
    if ignores_validation(mcfg.reward, len(ds)):  # cross-fitted/exact L2: the whole seed set
        train, fit_val = np.arange(len(ds)), None
    pairs = (chosen[train], rejected[train])
    # The augmenter (and a teacher's heads) as configured; the head at reward.small_data's rule.
    augmenter, _ = fit_augmenter(base, mcfg, pairs, cfg.seed)
    mcfg = dataclasses.replace(mcfg, reward=effective_reward(mcfg.reward, len(ds)))
    ratio = 0 if base == "none" else int(mcfg.ratios[0])
    trained = augment_then_fit(
        base,
        mcfg,
        pairs,
        fit_val,
        ratio=ratio,
        seed=cfg.seed,
        augmenter=augmenter,
        margins=None if margins is None else margins[train],
    )
    fitter, aug = trained.fitter, trained.aug
    training = training_record(
        data=label,
        n_pairs=len(ds),
        n_val=0 if fit_val is None else len(val),
        method=name,
        ratio=ratio,
        aug=aug,
        margin=margins is not None,
        cfg=mcfg,
        metrics=validation_metrics(fitter, (chosen[val], rejected[val])),
    )
    log.info(
        "fit %s on %s: %d pairs (%d synthetic), validation accuracy %.4f on %d pairs",
        name,
        label,
        len(aug),
        training["n_synthetic"],
        training["metrics"]["val_accuracy"],
        len(val),
    )
    return RewardModel(
        cfg.embed,
        fitter.head_,
        embedder=emb,
        history=fitter.history_,
        max_response_chars=cfg.data.max_response_chars,
        training=training,
    )


def validation_metrics(
    fitter: RewardHeadFitter, val: tuple[np.ndarray, np.ndarray]
) -> dict[str, float | int | None]:
    """The head's validation accuracy and Bradley-Terry loss on `val` (chosen (V, d), rejected
    (V, d)), rounded to 4 digits, and the epoch early stopping kept. A head that trained on `val`
    too (cross-fitted, ``reward.cross_fit``) reports its out-of-fold figures on every seed pair."""
    hist = fitter.history_
    if "oof_accuracy" in hist and "oof_bt_loss" in hist:
        acc, loss = float(hist["oof_accuracy"]), float(hist["oof_bt_loss"])
    else:
        sc, sr = fitter.head_.score(val[0]), fitter.head_.score(val[1])
        acc = pairwise_accuracy(sc, sr)
        loss = float(bradley_terry_loss(torch.from_numpy(sc), torch.from_numpy(sr)))
    return {
        "val_accuracy": _rounded(acc),
        "val_bt_loss": _rounded(loss),
        "best_epoch": int(hist["best_epoch"]),
    }


def _rounded(x: float) -> float | None:
    return round(float(x), 4) if math.isfinite(x) else None  # strict JSON: no NaN


def training_record(
    *,
    data: str,
    n_pairs: int,
    n_val: int,
    method: str,
    ratio: int,
    aug: AugmentedPairs,
    margin: bool,
    cfg: RunConfig,
    metrics: dict[str, Any],
    **extra: Any,
) -> dict[str, Any]:
    """What a reward model records about its training (latentrm.json's "training", the card).

    data: where the pairs came from; n_pairs: the labelled pairs used (n_val of them for early
    stopping only); method, ratio: the augmentation (ratio 0: none); `aug`: the pairs trained on
    (pairs_trained, n_synthetic); margin: whether a margin column entered the loss; cfg: the
    config the head was trained with (recorded whole); metrics: {name: number}; `extra`: more
    fields (`latentrm run` adds n_test and split_seed).
    """
    config = to_dict(cfg)
    if ratio:
        config["ratios"] = [int(ratio)]  # the ratio of this head, not every ratio of a run
    return {
        "data": data,
        "n_pairs": int(n_pairs),
        "n_val": int(n_val),
        "method": method,
        "ratio": int(ratio),
        "pairs_trained": len(aug),
        "n_synthetic": int(np.sum(aug.synthetic)),
        "margin": bool(margin),
        "seed": cfg.seed,
        **extra,
        "metrics": metrics,
        "config": config,
    }
