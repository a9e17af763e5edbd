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


def test_split_indices_errors_and_the_more_seeds_than_data_warning(caplog) -> None:
    # more seed pairs than the data holds (beside the held-out ones): a warning, all of them used
    seed, test = split_indices(800, 1000, None, 0)
    assert len(seed) == 800 and len(test) == 0
    seed, test = split_indices(800, 600, 300, 0)
    assert (len(seed), len(test)) == (500, 300) and not set(seed) & set(test)
    assert "data.n_seed=600 but the data has 800 pairs beside 300 held out" in caplog.text
    with pytest.raises(ConfigError, match="data.n_test=800 leaves no seed pairs"):
        split_indices(800, 10, 800, 0)
    with pytest.raises(ConfigError):
        split_indices(800, 0, None, 0)
    with pytest.raises(ConfigError, match="fixed_test needs data.n_test"):
        split_indices(800, 10, None, 0, fixed_test=True)


def test_fixed_test_does_not_depend_on_the_seed_set_size() -> None:
    tests = [split_indices(100, n, 20, 5, fixed_test=True)[1] for n in (10, 40, 80)]
    assert all(np.array_equal(t, tests[0]) for t in tests) and len(tests[0]) == 20
    small, _ = split_indices(100, 10, 20, 5, fixed_test=True)
    big, _ = split_indices(100, 80, 20, 5, fixed_test=True)
    assert set(small) <= set(big) and not set(big) & set(tests[0])


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
