"""latentrm.testing: the toy pairs have the accuracy their docstring promises."""

from __future__ import annotations

import math

import numpy as np
import pytest

from latentrm.testing import toy_pairs


def test_toy_pairs_ideal_accuracy():
    c, r, w = toy_pairs(20000, 16, seed=1)
    # P(|q1 - q2| > 0.5 sqrt(2) * |noise| ...) = 1/2 + arctan(signal/noise)/pi = 0.5 + arctan(2)/pi
    assert np.mean((c - r) @ w > 0) == pytest.approx(0.5 + math.atan(2.0) / math.pi, abs=0.01)
    assert np.linalg.norm(w) == pytest.approx(1.0)
