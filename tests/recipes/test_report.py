"""latentrm.recipes.report: effective labels read on a monotone learning curve."""

from __future__ import annotations


def test_effective_labels_interpolate_the_learning_curve_in_log_pairs() -> None:
    import math

    import pandas as pd
    import pytest

    from latentrm.recipes.report import effective_labels

    curve = pd.DataFrame({"n_seed": [250, 1000, 2000], "mean": [0.57, 0.61, 0.63]})
    assert effective_labels(curve, 0.61) == (pytest.approx(1000.0), "")
    # half way from 0.61 to 0.63 is half way from log 1000 to log 2000: sqrt(2) * 1000
    n, bound = effective_labels(curve, 0.62)
    assert bound == "" and n == pytest.approx(1000 * math.sqrt(2))
    assert effective_labels(curve, 0.65) == (2000.0, ">")  # beyond the curve: a bound
    assert effective_labels(curve, 0.50) == (250.0, "<")


def test_effective_labels_read_a_monotone_curve_not_its_noise() -> None:
    """A dip in the curve is pooled with its neighbour (weighted by splits) before interpolating:
    0.630 at 500 and 0.626 at 1,000 (10 splits each) become 0.628 at both, so a variant at 0.629
    sits between 1,000 and 1,500, not on a spurious rise after the dip."""
    import math

    import numpy as np
    import pandas as pd
    import pytest

    from latentrm.recipes.report import effective_labels, isotonic_means

    np.testing.assert_allclose(
        isotonic_means(np.array([0.581, 0.630, 0.626, 0.634]), np.array([10, 10, 10, 10])),
        [0.581, 0.628, 0.628, 0.634],
    )
    # weights: 3 splits at 0.60 and 1 at 0.56 pool to (3 * 0.60 + 0.56) / 4 = 0.59
    np.testing.assert_allclose(
        isotonic_means(np.array([0.60, 0.56]), np.array([3, 1])), [0.59, 0.59]
    )
    curve = pd.DataFrame(
        {"n_seed": [250, 500, 1000, 1500], "seeds": [10] * 4, "mean": [0.581, 0.630, 0.626, 0.634]}
    )
    # 0.620: 39/47 of the way from 0.581 (250) to the pooled 0.628 (500)
    n, bound = effective_labels(curve, 0.620)
    assert bound == "" and n == pytest.approx(250 * 2 ** (39 / 47))
    # 0.629: 1/6 of the way from 0.628 (1,000) to 0.634 (1,500) in log pairs
    n, bound = effective_labels(curve, 0.629)
    assert bound == "" and n == pytest.approx(1000 * 1.5 ** (1 / 6))
    assert effective_labels(curve, 0.64) == (1500.0, ">")
    assert math.isnan(effective_labels(curve, float("nan"))[0])
