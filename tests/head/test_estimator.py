"""The estimator contract: get/set_params, fit_key, and fits shared through FitMemo."""

from __future__ import annotations

import numpy as np
import pytest

from latentrm.augment.synth import LensAugmenter
from latentrm.augment.teacher import TeacherLabels
from latentrm.config import RewardConfig, SynthConfig, VAEConfig
from latentrm.errors import ConfigError
from latentrm.head.estimator import FitMemo
from latentrm.testing import toy_pairs

pytestmark = pytest.mark.usefixtures("one_thread")


def test_params_round_trip_and_unknown_names_are_refused():
    lens = LensAugmenter(VAEConfig(), SynthConfig(), seed=3, val_fraction=0.1)
    assert lens.get_params() == {
        "vae_cfg": VAEConfig(),
        "synth_cfg": SynthConfig(),
        "seed": 3,
        "val_fraction": 0.1,
    }
    assert lens.set_params(seed=4) is lens and lens.seed == 4
    with pytest.raises(ConfigError, match="has no hyperparameter 'sigma2'"):
        lens.set_params(sigma2=0.1)


def test_fit_key_ignores_what_fit_does_not_use():
    a = LensAugmenter(VAEConfig(), SynthConfig(), 0, 0.1)
    b = LensAugmenter(VAEConfig(), SynthConfig(pairing="cross", decode="residual"), 0, 0.1)
    c = LensAugmenter(VAEConfig(gamma=0.5), SynthConfig(), 0, 0.1)
    assert a.fit_key() == b.fit_key() != c.fit_key()
    ta = TeacherLabels(a, RewardConfig(), "filter", 5, 0.5, 0)
    tb = TeacherLabels(b, RewardConfig(), "relabel", 5, 0.9, 0)
    assert ta.fit_key() == tb.fit_key()  # mode and tau only change what is kept


def test_fit_memo_trains_once_and_hands_out_copies_with_the_new_settings():
    c, r, _ = toy_pairs(60, 8, seed=0)
    memo = FitMemo()
    vae = VAEConfig(epochs=2)
    first = memo.fit(LensAugmenter(vae, SynthConfig(), 0, 0.1), "train", c, r)
    other = memo.fit(LensAugmenter(vae, SynthConfig(decode="residual"), 0, 0.1), "train", c, r)
    assert other.vae_ is first.vae_ and other is not first  # one VAE, two augmenters
    assert other.synth_cfg.decode == "residual" and first.synth_cfg.decode == "plain"
    refit = memo.fit(LensAugmenter(vae, SynthConfig(), 0, 0.1), "fold 1", c[:30], r[:30])
    assert refit.vae_ is not first.vae_  # other data: a fit of its own
    out = other.augment(c, r, 2, seed=0)
    assert np.isfinite(out.pool).all()
