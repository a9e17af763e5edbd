"""Label-safe synthesis: out-of-fold teachers filter or relabel new pairs."""

from __future__ import annotations

import numpy as np
import pytest

from latentrm.augment.baselines import CrossPromptPairs
from latentrm.augment.teacher import TeacherLabels
from latentrm.config import RewardConfig
from latentrm.errors import ConfigError
from latentrm.testing import toy_pairs

pytestmark = pytest.mark.usefixtures("one_thread")
FAST = RewardConfig(epochs=20, patience=3, batch_size=64, hidden=(16,))


@pytest.fixture(scope="module")
def data():
    c, r, w = toy_pairs(120, 16, seed=1, noise=1.0)
    return c, r, w


def test_filter_keeps_originals_and_the_pairs_the_out_of_fold_teacher_agrees_with(data):
    c, r, _ = data
    t = TeacherLabels(CrossPromptPairs(), FAST, "filter", heads=4, tau=0.5, seed=0).fit(c, r)
    raw = t.inner.augment(c, r, 3, seed=0)
    prob = t.teacher_probability(raw)
    out = t.augment(c, r, 3, seed=0)
    assert (prob[:120] == 1.0).all()  # originals are not judged
    assert out.n_seed == 120 and int(out.synthetic.sum()) == int((prob[120:] > 0.5).sum())
    kept = set(zip(out.chosen_idx[120:].tolist(), out.rejected_idx[120:].tolist(), strict=True))
    want = {
        (a, b)
        for a, b, p in zip(
            raw.chosen_idx[120:].tolist(), raw.rejected_idx[120:].tolist(), prob[120:], strict=True
        )
        if p > 0.5
    }
    assert kept == want
    assert 0 < out.stats["teacher_agreement"] < 1


def test_each_pair_is_judged_by_the_head_that_never_saw_its_seed(data):
    c, r, _ = data
    t = TeacherLabels(CrossPromptPairs(), FAST, "relabel", heads=3, tau=0.5, seed=0).fit(c, r)
    raw = t.inner.augment(c, r, 2, seed=0)
    prob = t.teacher_probability(raw)
    for p in np.flatnonzero(raw.synthetic)[:20]:
        head = t.teachers_[t.folds_[raw.seed_idx[p]]]
        delta = (
            head.score(raw.pool[[raw.chosen_idx[p]]]) - head.score(raw.pool[[raw.rejected_idx[p]]])
        )[0]
        assert prob[p] == pytest.approx(1 / (1 + np.exp(-delta)), rel=1e-6)
    out = t.augment(c, r, 2, seed=0)
    assert len(out) == len(raw) and np.allclose(out.target, np.where(raw.synthetic, prob, 1.0))


def test_teacher_options_are_checked(data):
    c, r, _ = data
    with pytest.raises(ConfigError, match="synth.teacher must be"):
        TeacherLabels(CrossPromptPairs(), FAST, "vote", 3, 0.5, 0).fit(c, r)
    with pytest.raises(ConfigError, match="teacher_tau"):
        TeacherLabels(CrossPromptPairs(), FAST, "filter", 3, 1.5, 0).fit(c, r)
