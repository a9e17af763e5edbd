"""Embedding through the cache: hit without loading the model, miss, resume, crash safety.

BERT is the cheapest tiny model to load (`tiny_bert`); the cache logic does not depend on the
architecture.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import latentrm.embed.local as E
from latentrm.data import CandidateSet
from latentrm.embed.chunks import list_chunks
from latentrm.embed.store import read_store_meta
from latentrm.embed.views import load_pair_cache
from latentrm.errors import ConfigError
from latentrm.testing import cfg_for


def chunk_files(d: Path) -> list[str]:
    """The complete chunks of a store (those with a description), oldest first."""
    return [c.id for c in list_chunks(d)]


class Counting:
    """Counts rows the model embeds (patched over Embedder.embed_ids)."""

    def __init__(self, monkeypatch, fail_after_chunks: int | None = None) -> None:
        self.rows, self.calls = 0, 0
        orig = E.Embedder.embed_ids
        me = self

        def embed_ids(self, ids, bar=None):
            if fail_after_chunks is not None and me.calls >= fail_after_chunks:
                raise KeyboardInterrupt("simulated crash")
            me.calls += 1
            me.rows += len(ids)
            return orig(self, ids, bar)

        monkeypatch.setattr(E.Embedder, "embed_ids", embed_ids)


def test_miss_then_hit_without_loading_the_model(tmp_path, tiny_bert, five_pairs, monkeypatch):
    cfg = cfg_for(tiny_bert, chunk_size=4)
    count = Counting(monkeypatch)
    first = E.embed_pairs(five_pairs, cfg, tmp_path)
    d = Path(first.meta["cache"]["dir"])
    assert d.parent == tmp_path and first.meta["cache"]["hit"] is False
    assert len(chunk_files(d)) == 3  # 10 rows / 4
    assert count.rows == 10 and first.chosen.shape == first.rejected.shape == (5, 32)
    assert first.ids == [p.id for p in five_pairs.pairs]
    # rows are chosen_0..4 then rejected_0..4: compare with a direct embedding
    emb = E.Embedder(cfg)
    prompts = five_pairs.prompts
    np.testing.assert_allclose(first.chosen, emb.embed(prompts, five_pairs.chosen), atol=1e-6)
    np.testing.assert_allclose(first.rejected, emb.embed(prompts, five_pairs.rejected), atol=1e-6)

    def no_model(*a, **k):
        raise AssertionError("a cache hit must not load the model")

    monkeypatch.setattr(E, "Embedder", no_model)
    rows_before = count.rows
    second = E.embed_pairs(five_pairs, cfg, tmp_path)
    assert second.meta["cache"]["hit"] is True and count.rows == rows_before
    np.testing.assert_array_equal(second.chosen, first.chosen)
    np.testing.assert_array_equal(second.rejected, first.rejected)
    meta = read_store_meta(d)
    assert meta["embedder"]["dim"] == 32 and meta["embedder"]["layers"] == [-1]
    assert meta["request"]["dtype"] == "float32"
    loaded = load_pair_cache(first.meta["cache"]["view"])  # no flags: the view names the embedder
    np.testing.assert_array_equal(loaded.chosen, first.chosen)
    assert loaded.ids == first.ids and loaded.meta["embed"] == cfg


def test_store_key_follows_what_changes_the_vectors(tmp_path, tiny_bert, five_pairs):
    cfg = cfg_for(tiny_bert, chunk_size=4)
    base = E.embed_pairs(five_pairs, cfg, tmp_path).meta["cache"]["dir"]
    # batch size / threads / chunk size do not change the vectors: same store, a hit
    same = dataclasses.replace(cfg, batch_size=1, threads=1, chunk_size=3)
    hit = E.embed_pairs(five_pairs, same, tmp_path)
    assert hit.meta["cache"]["dir"] == base and hit.meta["cache"]["hit"] is True
    # another layer is another store; the same texts under other ids or as a subset are a hit
    other_layer = E.embed_pairs(five_pairs, dataclasses.replace(cfg, layer=-2), tmp_path)
    assert other_layer.meta["cache"]["dir"] != base
    assert not np.allclose(other_layer.chosen, hit.chosen, atol=1e-4)
    subset = E.embed_pairs(five_pairs.subset([3, 1]), cfg, tmp_path)
    assert subset.meta["cache"]["hit"] is True
    np.testing.assert_array_equal(subset.chosen, hit.chosen[[3, 1]])
    renamed = type(five_pairs)(
        [dataclasses.replace(p, id=f"other-{i}") for i, p in enumerate(five_pairs.pairs)]
    )
    again = E.embed_pairs(renamed, cfg, tmp_path)
    assert again.meta["cache"]["hit"] is True and again.ids[0] == "other-0"
    # a stored layer set serves every layer of it, and their mean, without embedding again
    multi = dataclasses.replace(cfg, layer=1, layers=(1, 2))
    both = E.embed_pairs(five_pairs, multi, tmp_path)
    assert both.meta["cache"]["hit"] is False
    for layer in (1, 2, "mean"):
        out = E.embed_pairs(five_pairs, dataclasses.replace(multi, layer=layer), tmp_path)
        assert out.meta["cache"]["dir"] == both.meta["cache"]["dir"]
        assert out.meta["cache"]["hit"] is True
    one = E.embed_pairs(five_pairs, dataclasses.replace(multi, layer=1), tmp_path).chosen
    two = E.embed_pairs(five_pairs, dataclasses.replace(multi, layer=2), tmp_path).chosen
    mean = E.embed_pairs(five_pairs, dataclasses.replace(multi, layer="mean"), tmp_path).chosen
    np.testing.assert_allclose(mean, (one + two) / 2, atol=1e-6)
    np.testing.assert_array_equal(two, hit.chosen)  # layer 2 of 2 is the last layer


def test_resume_computes_only_missing_chunks(tmp_path, tiny_bert, five_pairs, monkeypatch):
    cfg = cfg_for(tiny_bert, chunk_size=4)
    full = E.embed_pairs(five_pairs, cfg, tmp_path)
    d = Path(full.meta["cache"]["dir"])
    (d / "chunks" / f"{chunk_files(d)[1]}.json").unlink()
    count = Counting(monkeypatch)
    again = E.embed_pairs(five_pairs, cfg, tmp_path)
    assert (count.rows, again.meta["cache"]["chunks_computed"]) == (4, 1)
    np.testing.assert_allclose(again.chosen, full.chosen, atol=1e-6)
    np.testing.assert_allclose(again.rejected, full.rejected, atol=1e-6)


def test_partial_run_then_resume_equals_uninterrupted(tmp_path, tiny_bert, five_pairs, monkeypatch):
    cfg = cfg_for(tiny_bert, chunk_size=3)  # 10 rows -> 4 chunks
    ref = E.embed_pairs(five_pairs, cfg, tmp_path / "ref")
    Counting(monkeypatch, fail_after_chunks=2)
    with pytest.raises(KeyboardInterrupt):
        E.embed_pairs(five_pairs, cfg, tmp_path / "run")
    d = tmp_path / "run" / Path(ref.meta["cache"]["dir"]).name
    assert len(chunk_files(d)) == 2
    monkeypatch.undo()
    count = Counting(monkeypatch)
    out = E.embed_pairs(five_pairs, cfg, tmp_path / "run")
    assert count.rows == 4  # chunks 2 (rows 6..8) and 3 (row 9)
    np.testing.assert_allclose(out.chosen, ref.chosen, atol=1e-6)
    np.testing.assert_allclose(out.rejected, ref.rejected, atol=1e-6)


def test_embedder_argument_must_match_the_request(tmp_path, tiny_bert, five_pairs, monkeypatch):
    cfg = cfg_for(tiny_bert, chunk_size=4)
    emb = E.Embedder(cfg)
    monkeypatch.setattr(E, "Embedder", lambda *a, **k: pytest.fail("given embedder not reused"))
    out = E.embed_pairs(five_pairs, dataclasses.replace(cfg, batch_size=2), tmp_path, embedder=emb)
    assert out.chosen.shape == (5, 32)
    with pytest.raises(ConfigError, match="embedder was built with"):
        E.embed_pairs(five_pairs, dataclasses.replace(cfg, layer=-2), tmp_path, embedder=emb)


def test_embed_candidates_split_per_set(tmp_path, tiny_bert):
    sets = [
        CandidateSet(
            "a",
            ({"role": "user", "content": "bake bread"},),
            ("mix", "flour water", "no"),
            (0.1, 0.5, 0.9),
        ),
        CandidateSet(
            "b", ({"role": "user", "content": "a joke"},), ("pens", "ink pranks"), (0.0, 1.0)
        ),
    ]
    cfg = cfg_for(tiny_bert, chunk_size=2)
    out = E.embed_candidates(sets, cfg, tmp_path)
    assert [x.shape for x in out] == [(3, 32), (2, 32)]
    emb = E.Embedder(cfg)
    np.testing.assert_allclose(
        out[1], emb.embed([sets[1].prompt] * 2, list(sets[1].responses)), atol=1e-6
    )
    again = E.embed_candidates(sets, cfg, tmp_path)
    np.testing.assert_array_equal(np.concatenate(again), np.concatenate(out))


CHILD = textwrap.dedent(
    """
    import json, sys, time
    import latentrm.embed.local as E
    from latentrm.config import EmbedConfig
    from latentrm.data import PreferenceDataset, PreferencePair

    spec = json.load(open(sys.argv[1]))
    pairs = [PreferencePair(p["id"], tuple(p["prompt"]), p["chosen"], p["rejected"])
             for p in spec["pairs"]]
    from latentrm.embed.store import CachePlan

    orig, written = CachePlan.write, []

    def write_then_hang(self, c, rows):
        orig(self, c, rows)
        written.append(c)
        if len(written) == 2:  # the parent kills us here, half-way through the run
            print("WROTE2", flush=True)
            time.sleep(120)

    CachePlan.write = write_then_hang
    E.embed_pairs(PreferenceDataset(pairs), EmbedConfig(**spec["cfg"]), spec["root"])
    """
)


def test_sigkill_mid_run_then_rerun_equals_uninterrupted(
    tmp_path, tiny_bert, five_pairs, repo_root
):
    cfg = cfg_for(tiny_bert, chunk_size=2)  # 10 rows -> 5 chunks
    spec = {
        "cfg": dataclasses.asdict(cfg),
        "root": str(tmp_path / "killed"),
        "pairs": [dataclasses.asdict(p) for p in five_pairs.pairs],
    }
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    (tmp_path / "child.py").write_text(CHILD)
    env = {**os.environ, "PYTHONPATH": str(repo_root), "HF_HUB_OFFLINE": "1"}
    child = subprocess.Popen(
        [sys.executable, str(tmp_path / "child.py"), str(tmp_path / "spec.json")],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env,
        text=True,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "WROTE2"
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL
    (d,) = (tmp_path / "killed").glob("*/store.json")
    d = d.parent
    assert len(chunk_files(d)) == 2
    survived = {p.name: p.stat().st_mtime_ns for p in (d / "chunks").glob("*.npy")}
    rerun = E.embed_pairs(five_pairs, cfg, tmp_path / "killed")
    assert rerun.meta["cache"]["chunks_computed"] == 3
    kept = {n: (d / "chunks" / n).stat().st_mtime_ns for n in survived}
    assert kept == survived  # kept, not recomputed
    ref = E.embed_pairs(five_pairs, cfg, tmp_path / "ref")
    assert Path(ref.meta["cache"]["dir"]).name == d.name
    assert rerun.ids == ref.ids and rerun.chosen.shape == ref.chosen.shape == (5, 32)
    np.testing.assert_allclose(rerun.chosen, ref.chosen, atol=1e-6)
    np.testing.assert_allclose(rerun.rejected, ref.rejected, atol=1e-6)
