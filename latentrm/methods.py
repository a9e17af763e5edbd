"""Augmentation methods by name: the one place that maps a config's method to an Augmenter.

It sits above the stage modules (LENS in :mod:`latentrm.synth`, the baselines in
:mod:`latentrm.baselines`), which know nothing of each other or of the run config.
"""

from __future__ import annotations

from latentrm.baselines import DirectPerturbation, GaussianSampling, NoAugmenter
from latentrm.config import METHODS, RunConfig
from latentrm.errors import ConfigError
from latentrm.pairs import Augmenter
from latentrm.synth import LensAugmenter


def make_augmenter(method: str, run_cfg: RunConfig, seed: int) -> Augmenter:
    """The augmenter for `method` (none | lens | direct | gaussian), configured from `run_cfg`."""

    if method == "lens":
        return LensAugmenter(run_cfg.vae, run_cfg.synth, seed, run_cfg.data.val_fraction)
    if method == "none":
        return NoAugmenter()
    if method == "direct":
        return DirectPerturbation(run_cfg.synth.direct_noise, run_cfg.synth.chunk_size)
    if method == "gaussian":
        return GaussianSampling(run_cfg.synth.gaussian_cov, run_cfg.synth.chunk_size)
    raise ConfigError(f"unknown augmentation method {method!r}; choose one of {METHODS}")
