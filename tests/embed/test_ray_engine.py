"""The Ray engine: actor sizing, and a run that writes the ordinary cache, bit for bit."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from latentrm.cli import main
from latentrm.embed.ray_engine import embed_pairs_ray, threads_per_actor
from latentrm.embed.scale import ScaleConfig
from latentrm.embed.store import pair_rows, plan_cache
from latentrm.embed.views import load_pair_cache, verify_cache
from latentrm.errors import ConfigError

needs_ray = pytest.mark.skipif(
    importlib.util.find_spec("ray") is None,
    reason="ray[data] is not installed (pip install 'latentrm[ray]')",
)


def test_threads_per_actor_by_hand() -> None:
    # 2 CPUs: 2 actors x 1 thread, or 1 actor x 2 threads
    assert threads_per_actor([{"CPU": 2}], 2) == 1
    assert threads_per_actor([{"CPU": 2}], 1) == 2
    # 3 actors on two 3-CPU nodes: t=2 places 1+1 = 2 < 3, t=1 places 3+3
    assert threads_per_actor([{"CPU": 3}, {"CPU": 3}], 3) == 1
    # 8 GPU actors on two 16-CPU/4-GPU nodes: t=4 places min(4,4)*2 = 8, t=5 min(3,4)*2 = 6
    assert threads_per_actor([{"CPU": 16, "GPU": 4}] * 2, 8, 1) == 4
    # half a GPU each: one 8-CPU/1-GPU node holds 2 actors of 4 threads
    assert threads_per_actor([{"CPU": 8, "GPU": 1}], 2, 0.5) == 4
    # tenth of a GPU: 1.0 // 0.1 == 9.0 in floating point, but 10 actors fit
    assert threads_per_actor([{"CPU": 10, "GPU": 1}], 10, 0.1) == 1
    assert threads_per_actor([{"CPU": 4}], 2, want=2) == 2
    for nodes, n, gpa, want in [
        ([{"CPU": 2}], 3, 0, None),
        ([{"CPU": 8}], 1, 1, None),
        ([{"CPU": 2}], 1, 0, 3),
        ([{"CPU": 2}], 0, 0, None),
    ]:
        with pytest.raises(ConfigError):
            threads_per_actor(nodes, n, gpa, want)


@needs_ray
def test_ray_equals_local_resumes_and_the_ordinary_reader_reads_it(
    embed_setup: dict, embed_argv, tmp_path: Path, capsys
) -> None:
    """One local Ray instance (2 CPUs; started here, so the engine must leave it running), two runs:
    the library resuming a killed run (actors write chunks), then the CLI from scratch (the driver
    writes them)."""
    import ray

    ref, ref_dir = embed_setup["ref"], embed_setup["ref_dir"]
    ref_rows = np.concatenate([ref.chosen, ref.rejected])
    # a killed run leaves store.json, whole chunks and a temp file of the one in flight
    killed = tmp_path / "killed" / ref_dir.name
    killed.mkdir(parents=True)
    shutil.copy(ref_dir / "store.json", killed / "store.json")
    plan = plan_cache(pair_rows(embed_setup["ds"]), embed_setup["cfg"], tmp_path / "killed")
    sentinel = np.full((3, 1, 32), 7.0, np.float32)  # proves chunk 0 is read, not recomputed
    plan.write(0, sentinel)
    (killed / "chunks" / ".x.npy.k1ll3d.tmp").write_bytes(b"\x93NUMPY half a chunk")
    ray.init(address="local", num_cpus=2, include_dashboard=False)
    try:
        got = embed_pairs_ray(
            embed_setup["ds"],
            embed_setup["cfg"],
            tmp_path / "killed",
            ScaleConfig(engine="ray", num_actors=2),
        )
        assert ray.is_initialized()  # not ours to shut down
        code = main(
            [
                "embed",
                *embed_argv(tmp_path / "fresh"),
                "--engine",
                "ray",
                "--num-actors",
                "2",
                "--ray-write-on",
                "driver",
            ]
        )
        assert ray.is_initialized()
    finally:
        ray.shutdown()

    st = got.meta["ray"]
    assert (st["chunks_total"], st["chunks_computed"], st["rows_computed"]) == (7, 6, 17)
    assert st["threads_per_actor"] == 1 and st["num_gpus_per_actor"] == 0
    assert sum(a["rows"] for a in st["per_actor"].values()) == 17
    assert got.meta["cache"]["hit"]  # embed_pairs found every chunk: it only read
    rows = np.concatenate([got.chosen, got.rejected])
    assert np.array_equal(rows[:3], sentinel[:, 0])
    assert np.array_equal(rows[3:], ref_rows[3:])  # incl. the short last chunk
    assert verify_cache(killed)["stale_tmp"] == [".x.npy.k1ll3d.tmp"]

    assert code == 0
    assert "ray: 7 of 7 chunks" in capsys.readouterr().out
    fresh = tmp_path / "fresh" / ref_dir.name  # same key as the single-process cache
    again = load_pair_cache(fresh, expect=embed_setup["cfg"])
    assert again.ids == ref.ids
    assert np.array_equal(np.concatenate([again.chosen, again.rejected]), ref_rows)
    meta, ref_meta = (json.loads((x / "store.json").read_text()) for x in (fresh, ref_dir))
    assert meta["request"] == ref_meta["request"]
    assert {k: v for k, v in meta["embedder"].items() if k != "device"} == {
        k: v for k, v in ref_meta["embedder"].items() if k != "device"
    }
    assert verify_cache(fresh)["stale_tmp"] == []
