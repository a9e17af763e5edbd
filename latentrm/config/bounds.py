"""Value bounds of config keys: one table, checked when a config is built (`latentrm config` and
every command fail on a bad value before any work, with one line naming the key).

Types are checked by :mod:`latentrm.config.loading` (``_coerce``, which also refuses NaN and
Inf); relations between keys (val_fraction in (0, 1), variants, ...) by
``RunConfig.__post_init__``. A tuple key's bound applies to each of its elements; ``None`` (an
optional key left unset) is always allowed.
"""

from __future__ import annotations

import dataclasses
import math
import operator
import typing
from typing import Any

from latentrm.errors import ConfigError

# Seeds reach numpy's legacy RandomState (transformers.set_seed), which takes [0, 2^32).
SEED_MAX = 2**32

# key -> ((comparison, bound), ...); every float must also be finite.
_GT0, _GE0, _GE1 = ((">", 0),), ((">=", 0),), ((">=", 1),)
_SEED = ((">=", 0), ("<", SEED_MAX))
_PROB = ((">=", 0), ("<", 1))
BOUNDS: dict[str, tuple[tuple[str, float], ...]] = {
    "seed": _SEED, "seeds": _SEED, "threads": _GE1, "select_gamma": _GE0,
    "select_sigma2": _GT0, "select_direct_noise": _GE0,
    "data.n_test": _GE1, "data.split_seed": _SEED, "data.min_gold_gap": _GE0,
    "data.pairs_per_prompt": _GE1, "data.max_response_chars": _GE1,
    "embed.max_length": _GE1, "embed.batch_size": _GE1, "embed.max_batch_tokens": _GE1,
    "embed.chunk_size": _GE1, "embed.threads": _GE1,
    "vae.hidden": _GE1, "vae.beta": _GT0, "vae.gamma": _GE0, "vae.epochs": _GE1,
    "vae.lr": _GT0, "vae.weight_decay": _GE0, "vae.batch_size": _GE1, "vae.patience": _GE0,
    "synth.n_candidates": _GE1, "synth.top_k": _GE1, "synth.teacher_heads": ((">=", 2),),
    "synth.teacher_tau": ((">=", 0), ("<=", 1)), "synth.direct_noise": _GE0,
    "synth.chunk_size": _GE1,
    "reward.hidden": _GE1, "reward.dropout": _PROB, "reward.lr": _GT0,
    "reward.weight_decay": _GE0, "reward.epochs": _GE1, "reward.batch_size": _GE1,
    "reward.patience": _GE0, "reward.synthetic_weight": _GE0, "reward.ensemble": _GE1,
    "reward.cross_fit": _GE0, "reward.min_epochs": _GE0, "reward.l2": _GE0,
    "reward.small_data": _GE0,
    "eval.best_of_n": _GE1, "eval.bon_draws": _GE1, "eval.n_bootstrap": _GE1,
    "eval.bon_seed": _SEED, "eval.candidate_pool": _GE1, "eval.max_prompts": _GE1,
    "eval.heldout_prompts": ((">", 0), ("<", 1)),
    "text.epochs": _GE1, "text.max_length": _GE1, "text.batch_size": _GE1, "text.lr": _GT0,
    "text.weight_decay": _GE0, "text.lora_r": _GE1, "text.lora_alpha": _GT0,
    "text.lora_dropout": _PROB, "text.gradient_accumulation": _GE1, "text.max_train_pairs": _GE1,
    "text.seed": _SEED,
    "self_rewarding.max_new_tokens": _GE1, "self_rewarding.temperature": _GT0,
    "self_rewarding.top_p": ((">", 0), ("<=", 1)), "self_rewarding.max_prompt_tokens": _GE1,
    "self_rewarding.max_judge_tokens": _GE1, "self_rewarding.batch_size": _GE1,
    "self_rewarding.max_rounds": _GE1,
}
_OPS = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le}


def _values(value: Any) -> list[Any]:
    return list(value) if isinstance(value, tuple) else [value]


def check_bounds(cfg: Any, prefix: str = "") -> None:
    """ConfigError naming the first key of dataclass `cfg` (at dotted `prefix`) out of bounds.

    Nested config dataclasses are checked too; a float anywhere must be finite.
    """
    for f in dataclasses.fields(cfg):
        key, value = f"{prefix}{f.name}", getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            check_bounds(value, f"{key}.")
            continue
        for v in _values(value):
            if isinstance(v, float) and not math.isfinite(v):
                raise ConfigError(f"{key}: must be a finite number, got {v}")
            if v is None or isinstance(v, bool) or not isinstance(v, int | float):
                continue
            for op, bound in BOUNDS.get(key, ()):
                if not _OPS[op](v, bound):
                    shown = "2^32" if bound == SEED_MAX else f"{bound:g}"
                    got = f" in {list(value)}" if isinstance(value, tuple) else ""
                    raise ConfigError(f"{key} must be {op} {shown}, got {v}{got}")


def bounded_keys(cls: type, prefix: str = "") -> list[str]:
    """Every dotted key of `cls` (for checking that BOUNDS names only real keys)."""
    out = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            out += bounded_keys(hints[f.name], f"{prefix}{f.name}.")
        else:
            out.append(f"{prefix}{f.name}")
    return out
