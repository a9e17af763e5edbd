"""Label-safe synthesis: out-of-fold teacher heads judge every new pair before a head learns it.

A synthetic pair inherits its label from the seed pair it was made from, and a good share of those
labels is wrong (a reference head disputes 37% of LENS's pairs on HH). :class:`TeacherLabels`
wraps any augmenter: K heads are trained on the seed pairs, head k on every seed outside fold k,
and each new pair is judged by the head that never saw its seed (so a teacher does not simply
recall the pair it was trained on). ``mode="filter"`` keeps the new pairs whose teacher
probability for the inherited label exceeds ``tau``; ``mode="relabel"`` keeps them all with the
teacher's probability as a soft label (:func:`latentrm.head.reward.bradley_terry_loss`).
"""

from __future__ import annotations

import copy
import logging
import time
from typing import Any

import numpy as np

from latentrm.config import RewardConfig
from latentrm.config.bounds import CHOICES, check_value
from latentrm.data.splits import seed_folds
from latentrm.errors import ConfigError, LatentrmError
from latentrm.head.estimator import Estimator
from latentrm.head.fitter import RewardHeadFitter
from latentrm.head.reward import RewardHead
from latentrm.pairs import AugmentedPairs, Augmenter

log = logging.getLogger(__name__)

TEACHER_MODES = CHOICES["synth.teacher"][1:]  # the config's one table, less "none"


class TeacherLabels(Estimator):
    """`inner`'s pairs, with each new pair filtered or relabelled by an out-of-fold teacher.

    Learned state: ``folds_`` (fold of each seed pair), ``teachers_`` (one RewardHead per fold),
    and `inner`'s own.
    """

    # what fit() learns from; mode and tau only change what is kept
    fit_params = ("inner", "reward_cfg", "heads", "seed")

    def __init__(
        self,
        inner: Augmenter,
        reward_cfg: RewardConfig,
        mode: str,
        heads: int,
        tau: float,
        seed: int,
    ) -> None:
        self.inner, self.reward_cfg, self.mode = inner, reward_cfg, mode
        self.heads, self.tau, self.seed = heads, tau, seed

    def set_params(self, **params: Any) -> TeacherLabels:
        """As Estimator.set_params; a new `inner` of the same kind only passes on its
        hyperparameters, so the fitted inner augmenter (and these teachers) stay valid."""
        inner = params.pop("inner", None)
        super().set_params(**params)
        if inner is not None:
            if type(inner) is type(self.inner) and hasattr(inner, "get_params"):
                self.inner = copy.copy(self.inner).set_params(**inner.get_params())
            else:
                self.inner = inner
        return self

    @property
    def method(self) -> str:
        return str(getattr(self.inner, "method", "augmenter"))

    def fit(self, chosen: np.ndarray, rejected: np.ndarray) -> TeacherLabels:
        if self.mode not in TEACHER_MODES:
            raise ConfigError(
                f"synth.teacher must be none or one of {TEACHER_MODES}, got {self.mode!r}"
            )
        check_value("synth.teacher_tau", self.tau)
        self.inner.fit(chosen, rejected)
        n = len(chosen)
        self.folds_ = seed_folds(n, self.heads, self.seed)
        originals = AugmentedPairs.originals(chosen, rejected)
        self.teachers_: list[RewardHead] = []
        for k in range(self.heads):
            held = self.folds_ == k
            fit = RewardHeadFitter(self.reward_cfg, self.seed + 100 + k).fit(
                originals.select(~held), (chosen[held], rejected[held])
            )
            self.teachers_.append(fit.head_)
        return self

    def teacher_probability(self, aug: AugmentedPairs) -> np.ndarray:
        """(P,) probability the out-of-fold teacher gives the label each pair carries."""
        if not hasattr(self, "teachers_"):
            raise LatentrmError("TeacherLabels used before fit()")
        prob = np.ones(len(aug), np.float64)
        fold = self.folds_[aug.seed_idx]
        for k, head in enumerate(self.teachers_):
            sel = np.flatnonzero((fold == k) & aug.synthetic)
            if len(sel):
                delta = (
                    head.score(aug.pool[aug.chosen_idx[sel]])
                    - head.score(aug.pool[aug.rejected_idx[sel]])
                ).astype(np.float64)
                prob[sel] = 1.0 / (1.0 + np.exp(-delta))
        return prob

    def augment(
        self, chosen: np.ndarray, rejected: np.ndarray, ratio: int, seed: int
    ) -> AugmentedPairs:
        t0 = time.perf_counter()
        aug = self.inner.augment(chosen, rejected, ratio, seed)
        prob = self.teacher_probability(aug)
        syn = aug.synthetic
        agree = float(np.mean(prob[syn] > 0.5)) if syn.any() else float("nan")
        if self.mode == "filter":
            out = aug.select(~syn | (prob > self.tau))
        else:
            out = aug.select(np.ones(len(aug), bool))
            out.target = np.where(syn, prob, 1.0).astype(np.float32)
        out.stats.update(
            {
                "teacher": self.mode,
                "teacher_heads": self.heads,
                "teacher_tau": self.tau,
                "teacher_agreement": agree,
                "new_pairs_before_teacher": int(syn.sum()),
                "teacher_seconds": time.perf_counter() - t0,
            }
        )
        log.info(
            "teacher (%s): %d of %d new pairs kept; teacher agrees with %.1f%% of them",
            self.mode,
            int(out.synthetic.sum()),
            int(syn.sum()),
            100 * agree,
        )
        return out
