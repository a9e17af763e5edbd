"""latentrm.data.types: the dataset object (content hash, subsets, slices)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from latentrm.data import PreferenceDataset, PreferencePair, load_pairs


def test_content_hash_is_pinned_and_content_sensitive(fixtures_dir: Path) -> None:
    ds = load_pairs(fixtures_dir / "hh.jsonl")
    # Pinned: a change here invalidates every embedding cache, so it must be deliberate.
    assert ds.content_hash() == "d94c33a683ec28b0a085c992b56b3328c199fdfbbbaea0b2308479c7612fce00"
    assert load_pairs(fixtures_dir / "hh.jsonl").content_hash() == ds.content_hash()
    changed = PreferenceDataset(
        [ds[0], ds[1], PreferencePair("hh:4", ds[2].prompt, "Sure!", ds[2].rejected)]
    )
    assert changed.content_hash() != ds.content_hash()
    assert ds.subset([1, 0]).content_hash() != ds.subset([0, 1]).content_hash()
    assert ds.subset(np.array([2])).pairs == [ds[2]]
    assert ds[1:].ids == ["hh-multi", "hh:4"]
