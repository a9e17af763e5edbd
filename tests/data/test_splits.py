"""latentrm.data.splits: seed/test splits and validation carving, deterministic per seed."""

from __future__ import annotations

import numpy as np
import pytest

from latentrm.data import carve_validation, split_indices
from latentrm.errors import ConfigError


def test_split_indices_deterministic_disjoint_nested() -> None:
    s1, t1 = split_indices(100, 30, 50, seed=3)
    s2, t2 = split_indices(100, 30, 50, seed=3)
    np.testing.assert_array_equal(s1, s2)
    np.testing.assert_array_equal(t1, t2)
    assert (len(s1), len(t1), s1.dtype) == (30, 50, np.int64)
    assert not set(s1) & set(t1)
    assert not np.array_equal(split_indices(100, 30, 50, seed=4)[0], s1)
    seed_all, rest = split_indices(100, 30, None, seed=3)
    assert sorted([*seed_all, *rest]) == list(range(100))
    small, _ = split_indices(100, 10, None, seed=3)
    assert set(small) <= set(s1)  # a smaller seed set is inside a larger one for the same seed


def test_split_indices_errors() -> None:
    with pytest.raises(
        ConfigError, match="asked for 1000 seed pairs .* but the data has 800 pairs"
    ):
        split_indices(800, 1000, None, 0)
    with pytest.raises(ConfigError, match="asked for 600 seed \\+ 300 test pairs"):
        split_indices(800, 600, 300, 0)
    with pytest.raises(ConfigError):
        split_indices(800, 0, None, 0)


def test_carve_validation() -> None:
    idx = np.arange(100, 200)
    train, val = carve_validation(idx, 0.1, seed=0)
    assert (len(train), len(val)) == (90, 10)
    assert sorted([*train, *val]) == list(range(100, 200))
    np.testing.assert_array_equal(carve_validation(idx, 0.1, seed=0)[1], val)
    assert len(carve_validation(np.arange(5), 0.01, 0)[1]) == 1  # at least one validation pair
    train0, val0 = carve_validation(idx, 0.0, 0)
    assert (len(train0), len(val0)) == (100, 0)
    with pytest.raises(ConfigError, match="val_fraction"):
        carve_validation(idx, 1.0, 0)
