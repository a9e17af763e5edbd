"""Scale-out with shards: shard processes write the ordinary cache, bit for bit.

`embed_setup` (conftest.py) is a tiny model, a 10-pair HH file and its single-process cache:
20 rows in 7 chunks of 3, which every shard run must reproduce exactly.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from latentrm.cli import main
from latentrm.config import EmbedConfig
from latentrm.embed.local import embed_candidates
from latentrm.embed.scale import (
    Shard,
    chunk_owner,
    embed_rows_shard,
    parse_shard,
    shard_config,
    shard_from_env,
)
from latentrm.embed.store import candidate_rows, pair_rows, plan_cache
from latentrm.embed.views import load_pair_cache
from latentrm.errors import CacheError, ConfigError


def test_shards_from_flags_and_launcher_env() -> None:
    assert parse_shard("1/3") == Shard(1, 3)
    for bad in ("3/3", "-1/2", "a/b", "1"):
        with pytest.raises(ConfigError):
            parse_shard(bad)
    assert shard_from_env({}) is None
    assert shard_from_env({"WORLD_SIZE": "1", "RANK": "0"}) is None
    env = {"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2"}
    assert shard_from_env(env) == Shard(3, 4, 1, 2)
    with pytest.raises(ConfigError):
        shard_from_env({"RANK": "4", "WORLD_SIZE": "4"})
    assert chunk_owner(range(7), Shard(0, 2)) == [0, 2, 4, 6]
    assert chunk_owner([1, 4, 6], Shard(1, 2)) == [1]
    # two CPU shards on one machine split its cores; an explicit thread count is kept
    cfg = EmbedConfig(device="cpu")
    cpus = len(os.sched_getaffinity(0))
    assert shard_config(cfg, Shard(1, 2, 1, 2)).threads == max(1, cpus // 2)
    assert shard_config(dataclasses.replace(cfg, threads=3), Shard(1, 2, 1, 2)).threads == 3
    assert shard_config(cfg, Shard(0, 2)).threads is None


def test_candidate_shards_fill_the_cache_embed_candidates_reads(embed_setup: dict, tmp_path: Path):
    """Candidate sets (3, 1 and 4 responses = 8 rows, chunks of 3): the two shards' chunks are
    read back by embed_candidates as a hit, bit-equal to a single-process run."""
    from latentrm.data import CandidateSet

    sets = [
        CandidateSet(
            f"s{i}",
            ({"role": "user", "content": q},),
            tuple(f"reply {j} " * (j + 1) for j in range(k)),
            tuple(0.0 for _ in range(k)),
        )
        for i, (q, k) in enumerate(zip(embed_setup["questions"], (3, 1, 4), strict=False))
    ]
    ref = embed_candidates(sets, embed_setup["cfg"], tmp_path / "one")
    rows = candidate_rows(sets)
    assert rows.ids_doc == {"ids": ["s0", "s1", "s2"], "counts": [3, 1, 4]}
    assert rows.responses[3] == "reply 0 " and rows.prompts[3] == sets[1].prompt
    for r in (1, 0):
        st = embed_rows_shard(rows, embed_setup["cfg"], tmp_path / "two", Shard(r, 2))
        assert st["chunks_computed"] == (2 if r == 0 else 1)  # chunks 0, 2 | 1
    assert plan_cache(rows, embed_setup["cfg"], tmp_path / "two").missing == []
    got = embed_candidates(sets, embed_setup["cfg"], tmp_path / "two")
    assert [g.shape for g in got] == [(3, 32), (1, 32), (4, 32)]
    assert all(np.array_equal(g, e) for g, e in zip(got, ref, strict=True))


def test_two_shard_processes_equal_one_process(
    embed_setup: dict,
    embed_argv,
    repo_root: Path,
    tmp_path: Path,
    capsys,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Shard 1 in a subprocess, shard 0 in this process at the same time (RANK/WORLD_SIZE as
    torchrun sets them, no MASTER_ADDR so no barrier): they race on meta.json/ids.json."""
    root = tmp_path / "shards"
    env = {**os.environ, "WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "1", "HF_HUB_OFFLINE": "1"}
    env.pop("MASTER_ADDR", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "latentrm", "-q", "embed", *embed_argv(root)],
        env=env,
        cwd=repo_root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    for k, v in {"WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0"}.items():
        monkeypatch.setenv(k, v)
    try:
        assert main(["-q", "embed", *embed_argv(root)]) == 0
    finally:
        out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "shard 0/2: computed 4 of its 4 chunks (7 in all)" in capsys.readouterr().out
    assert "shard 1/2: computed 3 of its 3 chunks (7 in all)" in out
    d = root / embed_setup["ref_dir"].name  # same key as the single-process cache
    got = load_pair_cache(d)  # the ordinary reader merges them
    assert got.ids == embed_setup["ref"].ids
    assert np.array_equal(got.chosen, embed_setup["ref"].chosen)
    assert np.array_equal(got.rejected, embed_setup["ref"].rejected)
    meta = json.loads((d / "store.json").read_text())
    assert meta["request"] == embed_setup["ref"].meta["request"]
    monkeypatch.delenv("WORLD_SIZE")
    assert main(["embed", *embed_argv(root), "--verify"]) == 0
    assert "verified: 7 chunks, 20 rows x 1 layers x 32, checksums, float32, finite" in (
        capsys.readouterr().out
    )


def test_a_shard_refuses_a_cache_made_differently(embed_setup: dict, tmp_path: Path) -> None:
    d = tmp_path / embed_setup["ref_dir"].name
    shutil.copytree(embed_setup["ref_dir"], d)
    meta = json.loads((d / "store.json").read_text())
    meta["embedder"]["pooling"] = "last"
    (d / "store.json").write_text(json.dumps(meta))
    plan = plan_cache(pair_rows(embed_setup["ds"]), embed_setup["cfg"], tmp_path)
    (d / "chunks" / f"{plan.chunk_id(1)}.json").unlink()
    with pytest.raises(CacheError, match="pooling='last', this embedder has pooling='mean'"):
        embed_rows_shard(pair_rows(embed_setup["ds"]), embed_setup["cfg"], tmp_path, Shard(1, 2))
    # shard 0 owns no missing chunk: nothing to compute, no model loaded, no error
    st = embed_rows_shard(pair_rows(embed_setup["ds"]), embed_setup["cfg"], tmp_path, Shard(0, 2))
    assert (st["chunks_mine"], st["chunks_computed"], st["rows_computed"]) == (4, 0, 0)


@pytest.mark.slow
@pytest.mark.skipif(
    shutil.which("torchrun", path=str(Path(sys.executable).parent)) is None,
    reason="torchrun not installed next to this python",
)
def test_torchrun_shards_wait_for_each_other_then_rank0_verifies(
    embed_setup: dict, embed_argv, repo_root: Path, tmp_path: Path
):
    """The real launcher: MASTER_ADDR/PORT set, so shards meet at a gloo barrier and rank 0 checks
    the merged cache."""
    torchrun = str(Path(sys.executable).parent / "torchrun")
    res = subprocess.run(
        [torchrun, "--nproc_per_node", "2", "-m", "latentrm", "-q", "embed", *embed_argv(tmp_path)],
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        cwd=repo_root,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr
    assert "merged and verified: 7 chunks, 20 rows x 32" in res.stdout
    assert res.stdout.count("merged and verified") == 1  # rank 0 only
    got = load_pair_cache(tmp_path / embed_setup["ref_dir"].name)
    assert np.array_equal(got.chosen, embed_setup["ref"].chosen)
