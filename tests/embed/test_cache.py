"""The on-disk cache format: planning, verification, mismatching and corrupt caches.

`embed_setup` (conftest.py) is a tiny model, a 10-pair HH file and its single-process cache:
20 rows in 7 chunks of 3.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import latentrm.embed.cached as E
from latentrm.embed.cache import load_pair_cache, pair_rows, plan_cache, verify_cache
from latentrm.errors import CacheError
from latentrm.testing import cfg_for


def test_plan_finds_the_local_cache_without_loading_a_model(embed_setup: dict) -> None:
    rows = pair_rows(embed_setup["ds"])
    plan = plan_cache(rows, embed_setup["cfg"], embed_setup["tmp"] / "local")
    assert plan.dir == embed_setup["ref_dir"]
    assert (plan.n_rows, plan.chunk_size, plan.n_chunks, plan.missing) == (20, 3, 7, [])
    assert plan.bounds(6) == (18, 20)


def test_verify_lists_every_missing_or_bad_chunk(embed_setup: dict, tmp_path: Path) -> None:
    d = tmp_path / embed_setup["ref_dir"].name
    shutil.copytree(embed_setup["ref_dir"], d)
    info = verify_cache(d)
    assert (info["kind"], info["rows"], info["dim"], info["chunks"]) == ("pairs", 20, 32, 7)
    (d / "chunk-00002.npy").unlink()
    bad = np.load(d / "chunk-00003.npy")
    bad[1, 5] = np.nan
    np.save(d / "chunk-00003.npy", bad)
    np.save(d / "chunk-00006.npy", np.zeros((3, 32), np.float32))  # the last chunk holds 2 rows
    with pytest.raises(CacheError) as e:
        verify_cache(d)
    msg = str(e.value)
    assert "chunk-00002.npy missing" in msg
    assert "chunk-00003.npy: chunk holds NaN/Inf" in msg
    assert "chunk-00006.npy: expected float32 (2, 32), found float32 (3, 32)" in msg
    assert "chunk-00000" not in msg and "chunk-00005" not in msg


def test_mismatching_cache_names_the_field(tmp_path, tiny_bert, five_pairs):
    cfg = cfg_for(tiny_bert, chunk_size=4)
    d = Path(E.embed_pairs(five_pairs, cfg, tmp_path).meta["cache"]["dir"])
    with pytest.raises(CacheError, match=r"made with layer=-1, asked layer=-2"):
        load_pair_cache(d, expect=dataclasses.replace(cfg, layer=-2))
    with pytest.raises(CacheError, match=r"made with max_length=512, asked max_length=64"):
        load_pair_cache(d, expect=dataclasses.replace(cfg, max_length=64))
    # a cache folder whose meta.json says something else than its key (edited, copied by hand)
    meta = json.loads((d / "meta.json").read_text())
    meta["request"]["pooling"] = "last"
    (d / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(CacheError, match=rf"cache at {d} was made with pooling='last', asked"):
        E.embed_pairs(five_pairs, cfg, tmp_path)


def test_corrupt_chunks_are_cache_errors(tmp_path, tiny_bert, five_pairs):
    cfg = cfg_for(tiny_bert, chunk_size=4)
    d = Path(E.embed_pairs(five_pairs, cfg, tmp_path).meta["cache"]["dir"])
    rows = np.load(d / "chunk-00001.npy")
    rows[2, 5] = np.nan
    np.save(d / "chunk-00001.npy", rows)
    with pytest.raises(CacheError, match=r"chunk-00001\.npy: chunk holds NaN/Inf"):
        E.embed_pairs(five_pairs, cfg, tmp_path)
    np.save(d / "chunk-00001.npy", rows[:3])
    with pytest.raises(CacheError, match=r"chunk-00001\.npy: expected float32 \(4, 32\)"):
        load_pair_cache(d)
