"""latentrm.config.run: the one ratio rule."""

from __future__ import annotations

import pytest

from latentrm.config import check_ratio
from latentrm.errors import ConfigError


@pytest.mark.parametrize("bad", [0, -1, 2.5, "4", True, None])
def test_ratio_must_be_a_positive_int(bad):
    with pytest.raises(ConfigError, match=f"ratio must be an integer >= 1, got {bad!r}"):
        check_ratio(bad)
