"""What a config value may be: the bounds table, the table of choices beside it, the rules
between keys of one section, and the names that become folders. Checked when a config is built
(each section's ``__post_init__``, `from_dict`), so `latentrm config` and every command fail on a
bad value before any work, with one line naming the key.

Types are checked by :mod:`latentrm.config.loading` (``_coerce``, which also refuses NaN and
Inf); relations between sections (variants, sweeps, LENS's ratios) by ``RunConfig.__post_init__``
and the loader. A tuple key's bound or choice applies to each of its elements; ``None`` (an
optional key left unset) is always allowed. The methods read their choices from :data:`CHOICES`
and their bounds through :func:`check_value`, so no bound is written twice.
"""

from __future__ import annotations

import dataclasses
import math
import operator
import re
import typing
from typing import Any

from latentrm.errors import ConfigError

# Seeds reach numpy's legacy RandomState (transformers.set_seed), which takes [0, 2^32).
SEED_MAX = 2**32

# Upper bounds keep a small config from costing a lot before anything can check the data.
# Threads: torch.set_num_threads(100000) crashed the process (each OpenMP thread reserves its
# stack); 1024 is above the hardware threads of any single machine we know of.
MAX_THREADS = 1024
MAX_WIDTH = 16384  # an MLP layer: 16384 x d floats is 256 MiB at d = 4096
MAX_LAYERS = 16  # hidden layers of the VAE and of the reward head
# key -> most elements, for the tuple keys that are layer widths
MAX_LENGTH = {"vae.hidden": MAX_LAYERS, "reward.hidden": MAX_LAYERS}

# key -> ((comparison, bound), ...); every float must also be finite.
_GT0, _GE0, _GE1 = ((">", 0),), ((">=", 0),), ((">=", 1),)
_SEED = ((">=", 0), ("<", SEED_MAX))
_PROB = ((">=", 0), ("<", 1))
_THREADS = ((">=", 1), ("<=", MAX_THREADS))
_WIDTH = ((">=", 1), ("<=", MAX_WIDTH))
_LAYER = ((">=", -1024), ("<=", 1024))  # hidden-state indices (-1 = last); models have < 200


def _count(most: int) -> tuple[tuple[str, float], ...]:
    return ((">=", 1), ("<=", most))


_BATCH, _EPOCHS, _TOKENS = _count(1 << 20), _count(100_000), _count(131_072)
BOUNDS: dict[str, tuple[tuple[str, float], ...]] = {
    "seed": _SEED,
    "seeds": _SEED,
    "threads": _THREADS,
    "select_gamma": _GE0,
    "select_sigma2": _GT0,
    "select_direct_noise": _GE0,
    "ratios": (("<=", 1024),),
    "select_folds": (("<=", 100),),
    "select_repeats": (("<=", 100),),
    "data.n_test": _GE1,
    "data.split_seed": _SEED,
    "data.min_gold_gap": _GE0,
    "data.pairs_per_prompt": _count(100_000),
    "data.max_response_chars": _count(1 << 26),
    "embed.max_length": ((">=", 2), ("<=", 131_072)),
    "embed.batch_size": _BATCH,
    "embed.max_batch_tokens": _count(1 << 26),
    "embed.chunk_size": _BATCH,
    "embed.threads": _THREADS,
    "embed.layer": _LAYER,
    "embed.layers": _LAYER,
    "select_layer": _LAYER,
    "vae.latent_dim": _count(4096),
    "vae.hidden": _WIDTH,
    "vae.beta": _GT0,
    "vae.gamma": _GE0,
    "vae.epochs": _EPOCHS,
    "vae.lr": _GT0,
    "vae.weight_decay": _GE0,
    "vae.batch_size": _BATCH,
    "vae.patience": _GE0,
    "synth.sigma2": _GT0,
    "synth.n_candidates": _count(4096),
    "synth.top_k": _GE1,
    "synth.teacher_heads": ((">=", 2), ("<=", 64)),
    "synth.teacher_tau": _PROB,
    "synth.direct_noise": _GE0,
    "synth.chunk_size": _BATCH,
    "reward.hidden": _WIDTH,
    "reward.dropout": _PROB,
    "reward.lr": _GT0,
    "reward.weight_decay": _GE0,
    "reward.epochs": _EPOCHS,
    "reward.batch_size": _BATCH,
    "reward.patience": _GE0,
    "reward.synthetic_weight": _GE0,
    "reward.ensemble": _count(64),
    "reward.cross_fit": ((">=", 0), ("<=", 64)),
    "reward.min_epochs": ((">=", 0), ("<=", 100_000)),
    "reward.l2": _GE0,
    "reward.small_data": _GE0,
    "eval.best_of_n": _count(4096),
    "eval.bon_draws": _count(1000),
    "eval.n_bootstrap": _count(100_000),
    "eval.bon_seed": _SEED,
    "eval.candidate_pool": _GE1,
    "eval.max_prompts": _GE1,
    "eval.heldout_prompts": ((">", 0), ("<", 1)),
    "text.epochs": _count(1000),
    "text.max_length": _TOKENS,
    "text.batch_size": _BATCH,
    "text.lr": _GT0,
    "text.weight_decay": _GE0,
    "text.lora_r": _count(4096),
    "text.lora_alpha": _GT0,
    "text.lora_dropout": _PROB,
    "text.gradient_accumulation": _BATCH,
    "text.max_train_pairs": _GE1,
    "text.seed": _SEED,
    "self_rewarding.max_new_tokens": _TOKENS,
    "self_rewarding.temperature": _GT0,
    "self_rewarding.top_p": ((">", 0), ("<=", 1)),
    "self_rewarding.max_prompt_tokens": _TOKENS,
    "self_rewarding.max_judge_tokens": _TOKENS,
    "self_rewarding.batch_size": _BATCH,
    "self_rewarding.max_rounds": _count(100),
}

# key -> the values it may take (the one list: the methods read theirs from here).
_TEXT_FORMATS = ("auto", "chat", "plain")
CHOICES: dict[str, tuple[str, ...]] = {
    "data.format": ("auto", "hh", "trl", "tldr", "candidates", "labelled"),
    "embed.pooling": ("auto", "last", "mean"),
    "embed.text_format": _TEXT_FORMATS,
    "embed.dtype": ("auto", "float32", "bfloat16", "float16"),
    "vae.recon": ("mse", "cosine"),
    "vae.recon_reduction": ("sum", "mean"),
    "vae.divergence": ("w2", "w2_squared"),
    "synth.method": ("none", "direct", "gaussian", "lens", "cross-prompt"),
    "synth.likelihood": ("prior", "posterior", "recon"),
    "synth.pairing": ("within_seed", "cross"),
    "synth.noise_on": ("mean", "sample"),
    "synth.decode": ("plain", "residual"),
    "synth.teacher": ("none", "filter", "relabel"),
    "synth.gaussian_cov": ("diag", "full"),
    "text.text_format": _TEXT_FORMATS,
    "self_rewarding.train_mode": ("full", "lora"),
    "self_rewarding.text_format": _TEXT_FORMATS,
    "text_baselines": ("full", "lora", "self-rewarding"),
}
# Devices are not a closed list (cuda:N); the form is checked here, availability when used.
DEVICE_KEYS = ("embed.device", "text.device", "self_rewarding.device")
_DEVICE = re.compile(r"auto|cpu|mps|cuda(:[0-9]{1,4})?")

# A name that becomes a folder or file name (variants: heads/NAME-rRATIO): one path component
# that cannot climb out ('..'), be absolute, hide ('.x'), read as an option ('-x') or need quoting.
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._=+-]{0,63}")


def check_name(name: Any, where: str = "") -> str:
    """`name` if it is safe as one folder name (:data:`SAFE_NAME`, no '..'); else ConfigError
    ``{where}{name!r} cannot name a folder: ...``."""
    if not isinstance(name, str) or not SAFE_NAME.fullmatch(name) or ".." in name:
        raise ConfigError(
            f"{where}{name!r} cannot name a folder: use letters, digits and "
            ". _ = + - (starting with a letter or digit, at most 64, no '..')"
        )
    return name


_OPS = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le}


def _values(value: Any) -> list[Any]:
    return list(value) if isinstance(value, tuple) else [value]


def check_value(key: str, value: Any, whole: Any = None) -> None:
    """ConfigError unless `value` of dotted `key` is finite and within :data:`BOUNDS` and
    :data:`CHOICES` (`whole`: the tuple it is an element of, named in the message)."""
    got = f" in {list(whole)}" if isinstance(whole, tuple) else ""
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{key}: must be a finite number, got {value}")
    if key in CHOICES and value is not None and value not in CHOICES[key]:
        raise ConfigError(f"{key} must be one of {' | '.join(CHOICES[key])}, got {value!r}{got}")
    if key in DEVICE_KEYS and isinstance(value, str) and not _DEVICE.fullmatch(value):
        raise ConfigError(f"{key} must be auto, cpu, mps, cuda or cuda:N, got {value!r}")
    if value is None or isinstance(value, bool) or not isinstance(value, int | float):
        return
    for op, bound in BOUNDS.get(key, ()):
        if not _OPS[op](value, bound):
            shown = "2^32" if bound == SEED_MAX else f"{bound:g}"
            raise ConfigError(f"{key} must be {op} {shown}, got {value}{got}")


def check_bounds(cfg: Any, prefix: str = "") -> None:
    """ConfigError naming the first key of dataclass `cfg` (at dotted `prefix`) that is out of
    bounds, not one of its choices, or breaks a rule of its section (:data:`RULES`).

    Nested config dataclasses are checked too; a float anywhere must be finite.
    """
    for f in dataclasses.fields(cfg):
        key, value = f"{prefix}{f.name}", getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            check_bounds(value, f"{key}.")
            continue
        if key in MAX_LENGTH and len(value) > MAX_LENGTH[key]:
            raise ConfigError(f"{key}: at most {MAX_LENGTH[key]} layers, got {len(value)}")
        for v in _values(value):
            check_value(key, v, value)
    rule = RULES.get(prefix)
    if rule is not None:
        rule(cfg)


def check_divergence(divergence: str, beta: float, gamma: float) -> None:
    """ConfigError unless ``recon + beta*KL - gamma*D`` is bounded below for this choice of D.

    - ``w2``: W2 grows linearly in the distance of the posteriors and the KLs quadratically, so any
      beta > 0 bounds the loss (by -gamma^2/beta, see :mod:`latentrm.augment.vae`).
    - ``w2_squared``: quadratic against quadratic. With mu+ = a, mu- = -a the KLs add
      ``beta*|a|^2`` and the divergence subtracts ``gamma*|2a|^2 = 4*gamma*|a|^2``: bounded only
      when ``gamma < beta/4`` (the standard-deviation terms need only gamma < beta/2).
    """
    check_value("vae.divergence", divergence)
    if gamma > 0 and beta <= 0:
        raise ConfigError(
            f"vae.gamma={gamma} needs vae.beta > 0 (got {beta}): without the KL anchor the "
            "-gamma*W2 term is unbounded below"
        )
    if divergence == "w2_squared" and gamma > 0 and not gamma < beta / 4:
        raise ConfigError(
            f"vae.divergence=w2_squared needs vae.gamma < vae.beta/4 (got gamma={gamma}, "
            f"beta={beta}): beyond it -gamma*W2^2 outgrows the KL terms and the loss is unbounded "
            "below"
        )


def _vae_rules(cfg: Any) -> None:
    if not cfg.logvar_min < cfg.logvar_max:
        raise ConfigError(
            f"vae.logvar_min ({cfg.logvar_min}) must be < vae.logvar_max ({cfg.logvar_max})"
        )
    check_divergence(cfg.divergence, cfg.beta, cfg.gamma)


def _synth_rules(cfg: Any) -> None:
    if cfg.top_k is not None and cfg.top_k > cfg.n_candidates:
        raise ConfigError(
            f"synth.top_k={cfg.top_k} must be <= synth.n_candidates="
            f"{cfg.n_candidates} (it keeps top_k of the n_candidates samples)"
        )


def _embed_rules(cfg: Any) -> None:
    if not (isinstance(cfg.layer, int) and not isinstance(cfg.layer, bool)) and cfg.layer != "mean":
        raise ConfigError(f"embed.layer must be a hidden-state index or 'mean', got {cfg.layer!r}")


def _reward_rules(cfg: Any) -> None:
    if cfg.cross_fit >= 2 and cfg.ensemble > 1:
        raise ConfigError("reward.cross_fit and reward.ensemble > 1 are two ensembles: set one")
    if cfg.cross_fit == 1:
        raise ConfigError("reward.cross_fit must be 0 (off) or >= 2 folds, got 1")
    if cfg.l2 != 0 and cfg.hidden:
        raise ConfigError(
            f"reward.l2={cfg.l2} fits a linear head: set reward.hidden=[] "
            f"(got {list(cfg.hidden)}), or use reward.weight_decay for an MLP"
        )


# Rules between the keys of one section, by the section's prefix.
RULES = {
    "vae.": _vae_rules,
    "synth.": _synth_rules,
    "embed.": _embed_rules,
    "reward.": _reward_rules,
}


def default_top_k(ratio: int) -> int:
    """Smallest k >= 1 with (1+k)^2 - 1 >= ratio: 1->1, 2->1, 3->1, 4->2, 8->2, 16->4."""
    side = math.isqrt(ratio + 1)  # integer sqrt, so no float rounding at perfect squares
    if side * side < ratio + 1:
        side += 1
    return max(1, side - 1)


def check_lens_ratio(synth: Any, ratio: int) -> None:
    """ConfigError unless LENS (config section `synth`) can make `ratio` new pairs per seed pair:
    the samples it keeps per seed embedding (synth.top_k, or the smallest k with
    (1+k)^2 - 1 >= ratio) must be among the n_candidates drawn, and within_seed pairing has only
    (1+k)^2 - 1 pairs per seed to give."""
    if synth.top_k is None:
        k = default_top_k(ratio)
        if k > synth.n_candidates:
            raise ConfigError(
                f"ratios={ratio} with lens keeps synth.top_k={k} samples per seed embedding (the "
                f"smallest k with (1+k)^2 - 1 >= {ratio}), more than synth.n_candidates="
                f"{synth.n_candidates}: raise synth.n_candidates"
            )
    elif synth.pairing == "within_seed" and (1 + synth.top_k) ** 2 - 1 < ratio:
        raise ConfigError(
            f"ratios={ratio} with lens needs (1+synth.top_k)^2 - 1 >= {ratio}, but synth.top_k="
            f"{synth.top_k} gives {(1 + synth.top_k) ** 2 - 1} pairs per seed: raise synth.top_k "
            "or leave it unset"
        )


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
