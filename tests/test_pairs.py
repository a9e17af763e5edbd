"""latentrm.pairs: an augmented set's layout, and its save/load round trip."""

from __future__ import annotations

import numpy as np
import pytest

from latentrm.errors import ConfigError
from latentrm.pairs import AugmentedPairs, load_augmented, save_augmented

N = 40  # the `lens_data` fixture's

pytestmark = pytest.mark.usefixtures("one_thread")


def test_pair_embeddings_and_originals(lens_data):
    c, r = lens_data
    aug = AugmentedPairs.originals(c, r)
    ce, re_ = aug.pair_embeddings(np.array([3, 0]))
    assert np.array_equal(ce, c[[3, 0]]) and np.array_equal(re_, r[[3, 0]])
    assert aug.method == "none" and aug.ratio == 0 and len(aug) == N


def test_save_load_round_trip(tmp_path, lens_data, lens):
    aug = lens.augment(*lens_data, 2, seed=0)
    val = (lens_data[0][:5], lens_data[1][:5])
    save_augmented(tmp_path, aug, val=val, ids=[str(i) for i in range(N)])
    back, val_back, head = load_augmented(tmp_path)
    for name in ("pool", "chosen_idx", "rejected_idx", "seed_idx", "synthetic"):
        assert np.array_equal(getattr(back, name), getattr(aug, name))
    assert back.method == "lens" and back.ratio == 2 and head["ids"][1] == "1"
    assert back.stats["pairs_made"] == 2 * N
    assert np.array_equal(val_back[0], val[0])
    with pytest.raises(ConfigError, match="not an augmented set"):
        load_augmented(tmp_path / "nope")
