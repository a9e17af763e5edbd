"""`latentrm synth` and `latentrm train` on a pair cache: augment the seed pairs, train a head.

Both draw the seed set that `latentrm run` would draw from the same data (data.n_seed,
data.n_test, data.split_seed) and carve data.val_fraction of it as validation, so a head trained
step by step equals one trained by `latentrm run` on the same split.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from latentrm.augment.fit import augment, fit_augmenter, fit_head
from latentrm.config import EmbedConfig, RunConfig, from_dict, to_dict
from latentrm.data.splits import carve_validation, split_indices
from latentrm.embed.views import PairEmbeddings, load_pair_cache
from latentrm.errors import ConfigError, LatentrmError
from latentrm.evaluate import pairwise_accuracy
from latentrm.model import RewardModel
from latentrm.pairs import AugmentedPairs, load_augmented, save_augmented
from latentrm.recipes.diagnostics import warn_head_history, warn_small_validation


def seed_split(pairs: PairEmbeddings, cfg: RunConfig) -> tuple[np.ndarray, np.ndarray]:
    """(train, validation) rows of a pair cache: the seed set `latentrm run` would draw from it,
    then data.val_fraction of it as validation."""
    seed_idx, _ = split_indices(
        len(pairs.ids), cfg.data.n_seed, cfg.data.n_test, cfg.data.split_seed
    )
    train, val = carve_validation(seed_idx, cfg.data.val_fraction, cfg.data.split_seed)
    if len(val) == 0:
        raise LatentrmError("empty validation split: raise data.val_fraction or data.n_seed")
    warn_small_validation(len(val), "seed set")
    return train, val


def synth_from_cache(cache: str | Path, cfg: RunConfig, out: str | Path) -> dict[str, Any]:
    """Augment the seed pairs of a cache with synth.method at the one ratio of `ratios`; save.

    Returns the saved set's stats plus sizes and seconds (fit + synthesis).
    """
    if len(cfg.ratios) != 1:
        raise ConfigError(
            f"latentrm synth makes one set: give one ratio, e.g. ratios=[4] "
            f"(got ratios={list(cfg.ratios)})"
        )
    pairs = load_pair_cache(cache)  # the embedder comes from the cache, not from cfg.embed
    embed_cfg: EmbedConfig = pairs.meta["embed"]
    train, val = seed_split(pairs, cfg)
    c, r = pairs.chosen[train], pairs.rejected[train]
    t0 = time.perf_counter()
    augmenter, _ = fit_augmenter(cfg.synth.method, cfg, (c, r), cfg.seed)
    aug = augment(augmenter, (c, r), cfg.ratios[0], cfg.seed)
    seconds = time.perf_counter() - t0
    meta = {
        "cache": str(cache),
        "embed": to_dict(embed_cfg),
        "config": to_dict(cfg),
        "val_ids": [pairs.ids[i] for i in val],
        "seconds": seconds,
    }
    save_augmented(
        out,
        aug,
        val=(pairs.chosen[val], pairs.rejected[val]),
        ids=[pairs.ids[i] for i in train],
        meta=meta,
    )
    return {
        **aug.stats,
        "method": aug.method,
        "ratio": aug.ratio,
        "n_train": len(train),
        "n_val": len(val),
        "d": c.shape[1],
        "pairs": len(aug),
        "seconds": seconds,
    }


def train_head(source: str | Path, cfg: RunConfig, out: str | Path) -> dict[str, Any]:
    """Train a reward head on a `latentrm synth` folder (or the seed pairs of a pair cache).

    Saves a RewardModel (head + the embedder it needs) to `out`; returns what was trained and
    the validation BT loss and accuracy.
    """
    if (Path(source) / "augmented.json").exists():
        aug, val, header = load_augmented(source)
        embed_cfg = from_dict(EmbedConfig, header["meta"]["embed"], prefix="embed.")
        if val is None:
            raise LatentrmError(f"{source}: the augmented set holds no validation pairs")
        warn_small_validation(len(val[0]), str(source))
    else:
        pairs = load_pair_cache(source)
        train, va = seed_split(pairs, cfg)
        aug = AugmentedPairs.originals(pairs.chosen[train], pairs.rejected[train])
        val, embed_cfg = (pairs.chosen[va], pairs.rejected[va]), pairs.meta["embed"]
    fitter = fit_head(cfg, aug, val, cfg.seed)  # the pairs were augmented by `latentrm synth`
    head, history = fitter.head_, fitter.history_
    warn_head_history(history, f"{aug.method} ratio {aug.ratio} head", cfg.reward)
    RewardModel(
        embed_cfg, head, history=history, max_response_chars=cfg.data.max_response_chars
    ).save(out)
    return {
        "pairs": len(aug),
        "method": aug.method,
        "ratio": aug.ratio,
        "d": aug.pool.shape[1],
        "history": history,
        "n_val": len(val[0]),
        "val_accuracy": pairwise_accuracy(head.score(val[0]), head.score(val[1])),
    }
