"""Augment the training pairs, then fit the reward head: the one path every recipe trains by.

`latentrm run` / `experiment` (every method x ratio x grid point), the k-fold choices of
`recipes.select`, `latentrm.fit` and `latentrm synth` / `train` all call
:func:`augment_then_fit` (or its two halves, :func:`fit_augmenter` and :func:`augment`), so a
head trained by one of them equals a head trained by another on the same pairs and settings.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from latentrm.augment.methods import make_augmenter
from latentrm.augment.vae import n_parameters
from latentrm.config import RunConfig
from latentrm.head.estimator import FitMemo
from latentrm.head.fitter import RewardHeadFitter
from latentrm.pairs import AugmentedPairs, Augmenter

Pairs = tuple[np.ndarray, np.ndarray]  # chosen (N, d), rejected (N, d)


@dataclass(frozen=True)
class Timings:
    """Seconds spent on each step of one trained head."""

    fit: float  # the augmenter's fit (its VAE, teacher heads); 0 for "none", shared via a memo
    synth: float  # drawing the synthetic pairs at the head's ratio
    head: float  # training the reward head


@dataclass
class Trained:
    """One reward head trained on augmented pairs: what the recipes report and save."""

    fitter: RewardHeadFitter  # head_ (RewardHead or EnsembleHead) and history_
    aug: AugmentedPairs  # the pairs it was trained on (originals + synthetic)
    augmenter: Augmenter  # the fitted augmenter (NoAugmenter for "none")
    seconds: Timings

    @property
    def augmenter_params(self) -> int:
        """Parameters of the augmenter's generative model (the VAE for LENS; 0 otherwise)."""
        model = getattr(getattr(self.augmenter, "vae_", None), "model_", None)
        return n_parameters(model) if model is not None else 0


def fit_augmenter(
    method: str,
    cfg: RunConfig,
    train: Pairs,
    seed: int,
    memo: FitMemo | None = None,
    data_key: str | None = None,
) -> tuple[Augmenter, float]:
    """`method`'s augmenter (configured from `cfg`) fitted on the `train` pairs, and the seconds
    the fit took. With a `memo` and a `data_key` naming the rows, an equal fit on the same rows
    is done once (LENS variants that differ only in synthesis share one VAE)."""
    est = make_augmenter(method, cfg, seed)
    if memo is None or data_key is None:
        t0 = time.perf_counter()
        return est.fit(*train), time.perf_counter() - t0
    fitted = memo.fit(est, data_key, *train)
    return fitted, memo.seconds


def augment(
    augmenter: Augmenter, train: Pairs, ratio: int, seed: int, margins: np.ndarray | None = None
) -> AugmentedPairs:
    """The training pairs plus `ratio` synthetic pairs per seed pair (originals only for
    "none"); a synthetic pair inherits its seed pair's margin (`margins`: (N,) or None)."""
    aug = augmenter.augment(*train, max(int(ratio), 1), seed)
    if margins is not None:
        aug.margin = np.asarray(margins, np.float32)[aug.seed_idx]
    return aug


def fit_head(cfg: RunConfig, aug: AugmentedPairs, val: Pairs | None, seed: int) -> RewardHeadFitter:
    """`cfg.reward`'s head trained on `aug`, stopping early on `val` (None: on the training
    loss): the second half of :func:`augment_then_fit`, for pairs augmented elsewhere."""
    return RewardHeadFitter(cfg.reward, seed).fit(aug, val)


def augment_then_fit(
    method: str,
    cfg: RunConfig,
    train: Pairs,
    val: Pairs | None,
    *,
    ratio: int,
    seed: int,
    memo: FitMemo | None = None,
    data_key: str | None = None,
    margins: np.ndarray | None = None,
    augmenter: Augmenter | None = None,
) -> Trained:
    """Fit `method`'s augmenter on `train` (unless a fitted `augmenter` is given), draw `ratio`
    synthetic pairs per seed pair and train `cfg.reward`'s head on the lot, stopping early on
    `val` (None: on the training loss).

    method: a base method (none | direct | gaussian | lens | cross-prompt), configured by `cfg`
    (resolve a variant with `config.method_config` first). `seed` seeds the augmenter, the draw
    and the head, as every recipe did before this function existed.
    """
    t_fit = 0.0
    if augmenter is None:
        augmenter, t_fit = fit_augmenter(method, cfg, train, seed, memo, data_key)
    t0 = time.perf_counter()
    aug = augment(augmenter, train, ratio, seed, margins)
    t_syn = time.perf_counter() - t0
    t0 = time.perf_counter()
    fitter = fit_head(cfg, aug, val, seed)
    return Trained(fitter, aug, augmenter, Timings(t_fit, t_syn, time.perf_counter() - t0))
