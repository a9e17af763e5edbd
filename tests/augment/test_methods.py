"""latentrm.augment.methods: an augmenter per method name."""

from __future__ import annotations

import dataclasses

import pytest

from latentrm.augment.baselines import DirectPerturbation, GaussianSampling, NoAugmenter
from latentrm.augment.methods import make_augmenter
from latentrm.augment.synth import LensAugmenter
from latentrm.config import RunConfig, SynthConfig
from latentrm.errors import ConfigError


def test_make_augmenter():
    cfg = RunConfig(synth=dataclasses.replace(SynthConfig(), direct_noise=0.3, gaussian_cov="full"))
    assert isinstance(make_augmenter("lens", cfg, 0), LensAugmenter)
    assert isinstance(make_augmenter("none", cfg, 0), NoAugmenter)
    assert make_augmenter("direct", cfg, 0).noise == 0.3
    g = make_augmenter("gaussian", cfg, 0)
    assert isinstance(g, GaussianSampling) and g.cov == "full"
    assert isinstance(make_augmenter("direct", cfg, 0), DirectPerturbation)
    with pytest.raises(ConfigError, match="unknown augmentation method 'len'"):
        make_augmenter("len", cfg, 0)
