"""Augmentation methods by name: the one place that maps a config's method to an Augmenter.

It sits above the stage modules (LENS in :mod:`latentrm.augment.synth`, the baselines in
:mod:`latentrm.augment.baselines`, the teacher in :mod:`latentrm.augment.teacher`), which know
nothing of each
other or of the run config.
"""

from __future__ import annotations

from latentrm.augment.baselines import (
    CrossPromptPairs,
    DirectPerturbation,
    GaussianSampling,
    NoAugmenter,
)
from latentrm.augment.synth import LensAugmenter
from latentrm.augment.teacher import TeacherLabels
from latentrm.config import METHODS, RunConfig
from latentrm.errors import ConfigError
from latentrm.pairs import Augmenter


def make_augmenter(method: str, run_cfg: RunConfig, seed: int) -> Augmenter:
    """The augmenter for `method` (one of METHODS), configured from `run_cfg`.

    With synth.teacher (filter | relabel) an augmenting method's new pairs are judged by
    out-of-fold teacher heads (:class:`latentrm.augment.teacher.TeacherLabels`).
    """
    synth = run_cfg.synth
    if method == "none":
        return NoAugmenter()
    if method == "lens":
        inner: Augmenter = LensAugmenter(run_cfg.vae, synth, seed, run_cfg.data.val_fraction)
    elif method == "direct":
        inner = DirectPerturbation(synth.direct_noise, synth.chunk_size)
    elif method == "gaussian":
        inner = GaussianSampling(synth.gaussian_cov, synth.chunk_size)
    elif method == "cross-prompt":
        inner = CrossPromptPairs()
    else:
        raise ConfigError(f"unknown augmentation method {method!r}; choose one of {METHODS}")
    if synth.teacher == "none":
        return inner
    return TeacherLabels(
        inner, run_cfg.reward, synth.teacher, synth.teacher_heads, synth.teacher_tau, seed
    )
