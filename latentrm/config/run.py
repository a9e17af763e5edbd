"""The run config: every stage's section plus what a run or experiment compares and repeats."""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from latentrm.config.active import ActiveConfig
from latentrm.config.bounds import CHOICES, check_bounds, check_name
from latentrm.config.stages import (
    DataConfig,
    EmbedConfig,
    EvalConfig,
    RewardConfig,
    SynthConfig,
    VAEConfig,
    opt,
)
from latentrm.config.text import SelfRewardConfig, TextRewardConfig
from latentrm.errors import ConfigError

# Augmentation methods (latentrm.augment.methods.make_augmenter builds them);
# "none" = originals only. The one list: synth.method's choices.
METHODS = CHOICES["synth.method"]
# What `latentrm run` compares unless told otherwise: the paper's baselines and LENS.
DEFAULT_METHODS = ("none", "direct", "gaussian", "lens")


def check_ratio(ratio: Any, key: str = "ratio") -> int:
    """The one rule for an augmentation ratio (new pairs per seed pair): an integer >= 1.

    Used by the config (`ratios`) and by every augmenter; ConfigError naming `key` otherwise.
    """
    if isinstance(ratio, bool) or not isinstance(ratio, int | np.integer) or ratio < 1:
        raise ConfigError(f"{key} must be an integer >= 1, got {ratio!r}")
    return int(ratio)


@dataclass(frozen=True)
class RunConfig:
    data: DataConfig = field(default_factory=DataConfig)
    embed: EmbedConfig = field(default_factory=EmbedConfig)
    vae: VAEConfig = field(default_factory=VAEConfig)
    synth: SynthConfig = field(default_factory=SynthConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    text: TextRewardConfig = field(default_factory=TextRewardConfig)
    self_rewarding: SelfRewardConfig = field(default_factory=SelfRewardConfig)
    active: ActiveConfig = field(default_factory=ActiveConfig)
    seed: int = opt(0, "Seed of every random choice in the run (VAE, synthesis, head).")
    methods: tuple[str, ...] = opt(
        DEFAULT_METHODS,
        "Methods `latentrm run` / `experiment` train and compare: a method (none, direct, "
        "gaussian, lens, cross-prompt), a name defined in `variants`, or 'recipe' (the candidate "
        "of `recipe_from` chosen on validation folds of the seed set).",
    )
    variants: dict[str, dict[str, Any]] = opt(
        {},
        "Named method variants for `methods`: name (letters, digits, . _ = + -: it names the "
        "heads' folder) -> {method: one of the methods, and dotted "
        "config keys that change for it}, e.g. lens-cross: {method: lens, synth.pairing: cross}.",
    )
    recipe_from: tuple[str, ...] = opt(
        (),
        "Candidates of the 'recipe' method (methods or variants, each at every ratio; none once): "
        "the one with the best mean accuracy on `select_folds` validation folds of the seed set is "
        "trained and reported. Nothing is chosen on held-out pairs.",
    )
    select_folds: int = opt(
        5, "Folds of the seed set for choosing the recipe and the layer (k-fold validation)."
    )
    select_repeats: int = opt(
        1, "Repeats of the k-fold validation with other fold draws (averaged): steadier choices."
    )
    select_layer: tuple[int | str, ...] = opt(
        (),
        "embed.layer candidates (each in embed.layers, or 'mean') chosen per split by the "
        "k-fold validation accuracy of the plain head on the seed set; () = embed.layer.",
    )
    ratios: tuple[int, ...] = opt(
        (4,),
        "Augmentation ratios (new pairs per seed pair, integers >= 1): each augmenting method and "
        "self-rewarding run at each of them; `latentrm synth` takes exactly one.",
    )
    seeds: tuple[int, ...] = opt((0,), "Seeds/splits for `latentrm experiment` (>= 5 for CIs).")
    out_dir: str = opt("runs/default", "Run directory: artifacts, resolved config, metrics.")
    cache_dir: str = opt("cache", "Embedding cache root (keyed subfolders).")
    threads: int | None = opt(None, "torch threads for the whole run (None = torch default).")
    select_gamma: tuple[float, ...] = opt(
        (),
        "LENS: grid of vae.gamma values chosen on the validation split carved from the seed set "
        "(never the test split). () = no selection, use vae.gamma.",
    )
    select_sigma2: tuple[float, ...] = opt(
        (), "LENS: grid of synth.sigma2 values chosen on validation (with select_gamma). () = none."
    )
    select_direct_noise: tuple[float, ...] = opt(
        (), "Direct perturbation: grid of synth.direct_noise chosen on validation. () = none."
    )
    text_baselines: tuple[str, ...] = opt(
        (),
        "Text baselines for `latentrm experiment` (full | lora | self-rewarding) on embed.model; "
        "run only when latentrm.text_baselines is importable.",
    )
    sweep: str | None = opt(
        None, "Ablation: one config key to sweep in `latentrm experiment`, e.g. vae.gamma."
    )
    sweep_values: tuple[str, ...] = opt(
        (), "Ablation: values of `sweep` (each parsed as YAML, e.g. [0, 0.01, 0.1])."
    )

    def __post_init__(self) -> None:
        # Values a type check cannot catch; each error names the key.
        check_bounds(self)
        for r in self.ratios:
            check_ratio(r, "ratios")
        if not isinstance(self.variants, dict):
            raise ConfigError(
                "variants: expected a mapping of names to {method: ..., key: value}"
                f", got {self.variants!r}"
            )
        for name, spec in self.variants.items():
            check_name(name, "variants: ")  # heads/NAME-rRATIO is a folder
            if name in METHODS or name == "recipe":
                raise ConfigError(f"variants: '{name}' is a method's own name; choose another")
            if not isinstance(spec, dict) or spec.get("method") not in METHODS:
                raise ConfigError(f"variants.{name}: needs method: one of {', '.join(METHODS)}")
        known = [*METHODS, *self.variants, "recipe"]
        for m in (*self.methods, *self.recipe_from):
            if m not in known or (m == "recipe" and m in self.recipe_from):
                raise ConfigError(f"methods: unknown method '{m}'{_nearest(m, known)}")
        if "recipe" in self.methods and not self.recipe_from:
            raise ConfigError("methods has 'recipe' but recipe_from names no candidates")
        if self.select_folds < 2 or self.select_repeats < 1:
            raise ConfigError(
                f"select_folds must be >= 2 and select_repeats >= 1, got "
                f"{self.select_folds} and {self.select_repeats}"
            )
        for layer in self.select_layer:
            if not (isinstance(layer, int) or layer == "mean"):
                raise ConfigError(f"select_layer: {layer!r} is not a layer index or 'mean'")
        if not 0 < self.data.val_fraction < 1:
            raise ConfigError(f"data.val_fraction must be in (0, 1), got {self.data.val_fraction}")
        if self.data.n_seed < 2:
            raise ConfigError(f"data.n_seed must be >= 2, got {self.data.n_seed}")


def _nearest(name: str, options: list[str], prefix: str = "") -> str:
    close = difflib.get_close_matches(name, options, n=1, cutoff=0.5)
    if close:
        return f"; did you mean '{prefix}{close[0]}'?"
    return f"; valid keys: {', '.join(prefix + o for o in options)}"
