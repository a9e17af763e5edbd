"""latentrm.recipes.prepare: candidate pools, and the one candidates file per run."""

from __future__ import annotations

from pathlib import Path

import pytest

from latentrm.config import load_config
from latentrm.recipes.prepare import pool_candidates, prepare_data
from latentrm.testing import small_overrides


def test_pool_candidates_fixed_subsets() -> None:
    from latentrm.data import CandidateSet

    sets = [
        CandidateSet(
            f"s{i}",
            ({"role": "user", "content": "q"},),
            tuple(f"r{j}" for j in range(9)),
            tuple(float(j) for j in range(9)),
        )
        for i in range(10)
    ]
    a = pool_candidates(sets, pool=4, max_prompts=6, seed=1)
    b = pool_candidates(sets, pool=4, max_prompts=6, seed=1)
    assert a == b and len(a) == 6 and all(len(s.responses) == 4 for s in a)
    for s in a:  # gold stays aligned with its response
        assert [float(r[1:]) for r in s.responses] == list(s.gold)
    assert pool_candidates(sets, None, None, 0) == sets


def test_candidates_data_with_another_bon_file_is_refused(
    cand_file: Path, tmp_path: Path, fake_embed: dict
) -> None:
    from latentrm.errors import ConfigError

    args = small_overrides(cand_file, tmp_path / "x", "eval.candidates=other.jsonl")
    cfg = load_config(None, args)
    with pytest.raises(ConfigError, match="must be null or the same file"):
        prepare_data(cfg)
