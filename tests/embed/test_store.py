"""The on-disk store: row keys, planning, writers sharing a store, corrupt chunks and descriptions.

`embed_setup` (conftest.py) is a tiny model, a 10-pair HH file and its single-process cache:
20 rows in 7 chunks of 3.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import latentrm.embed.local as E
from latentrm.embed.store import list_chunks, pair_rows, plan_cache, row_key
from latentrm.embed.views import load_pair_cache, verify_cache
from latentrm.errors import CacheError
from latentrm.testing import cfg_for


def test_row_keys_are_content_not_ids() -> None:
    p = ({"role": "user", "content": "hi"},)
    assert row_key(p, "yes") == row_key(tuple(dict(m) for m in p), "yes")
    assert row_key(p, "yes") != row_key(p, "no")
    assert row_key(p, "yes") != row_key(({"role": "system", "content": "hi"},), "yes")


def test_plan_finds_the_local_cache_without_loading_a_model(embed_setup: dict) -> None:
    rows = pair_rows(embed_setup["ds"])
    plan = plan_cache(rows, embed_setup["cfg"], embed_setup["tmp"] / "local")
    assert plan.dir == embed_setup["ref_dir"]
    assert (len(plan.rows.keys), plan.chunk_size, plan.n_chunks, plan.missing) == (20, 3, 7, [])
    assert plan.chunks[6] == [18, 19]
    assert plan.view_path.exists()  # the request was recorded as a view


def test_writers_with_other_chunk_sizes_share_a_store_safely(tmp_path, tiny_bert, five_pairs):
    """Chunks are named by their rows' content and rows are found by content, so a writer with
    another chunk size can never make a row hold another row's vector (the old failure: rows
    30-39 holding other rows after writers with chunk sizes 10 and 30)."""
    small = E.embed_pairs(five_pairs, cfg_for(tiny_bert, chunk_size=3), tmp_path)
    # a second writer, other chunk size, on an overlapping request (rows 0-2 of each side)
    sub = five_pairs.subset([0, 1, 2])
    big = E.embed_pairs(sub, cfg_for(tiny_bert, chunk_size=7), tmp_path)
    assert big.meta["cache"]["dir"] == small.meta["cache"]["dir"]
    assert big.meta["cache"]["hit"] is True  # every row was stored already
    np.testing.assert_array_equal(big.chosen, small.chosen[:3])
    np.testing.assert_array_equal(big.rejected, small.rejected[:3])
    ref = E.Embedder(cfg_for(tiny_bert))
    np.testing.assert_allclose(small.rejected, ref.embed(five_pairs.prompts, five_pairs.rejected),
                               atol=1e-6)


@pytest.mark.parametrize("what", ["store.json", "view", "chunk description"])
@pytest.mark.parametrize("content", ["", "{broken", "[]", "{}"])
def test_corrupt_descriptions_are_one_line_errors_saying_delete(
    tmp_path, tiny_bert, five_pairs, what, content
):
    cfg = cfg_for(tiny_bert, chunk_size=4)
    out = E.embed_pairs(five_pairs, cfg, tmp_path)
    d, view = Path(out.meta["cache"]["dir"]), Path(out.meta["cache"]["view"])
    target = {"store.json": d / "store.json", "view": view,
              "chunk description": d / "chunks" / f"{list_chunks(d)[0].id}.json"}[what]
    target.write_text(content)
    with pytest.raises(CacheError) as e:
        load_pair_cache(view)
    msg = str(e.value)
    assert "\n" not in msg and "delete" in msg and target.name in msg


@pytest.mark.parametrize(
    ("dim", "says"),
    [(0, "malformed"), ("384", "malformed"), (10**10, "the intact chunk")],
    ids=["zero", "text", "absurd"],
)
def test_a_corrupt_store_json_is_blamed_not_the_chunks(tmp_path, tiny_bert, five_pairs, dim, says):
    """store.json's embedder dim edited: the error names store.json and says delete; the intact
    chunks are not set aside (they are fine), and an absurd dim allocates nothing."""
    cfg = cfg_for(tiny_bert, chunk_size=4)
    out = E.embed_pairs(five_pairs, cfg, tmp_path)
    d, view = Path(out.meta["cache"]["dir"]), out.meta["cache"]["view"]
    meta = json.loads((d / "store.json").read_text())
    meta["embedder"]["dim"] = dim
    (d / "store.json").write_text(json.dumps(meta))
    n_chunks = len(list_chunks(d))
    for read in (load_pair_cache, verify_cache):
        with pytest.raises(CacheError) as e:
            read(view)
        msg = str(e.value)
        assert "store.json" in msg and says in msg and "delete" in msg, msg
    assert len(list_chunks(d)) == n_chunks


class _Payload:
    """Unpickling this writes `path`: what a pickled .npy chunk could do if it were loaded."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple:
        return (Path.write_text, (self.path, "ran"))


def test_a_pickled_chunk_is_never_unpickled_even_with_a_matching_checksum(
    tmp_path, tiny_bert, five_pairs
):
    """A chunk replaced by an object array (a pickle inside .npy) and its sidecar's checksum
    rewritten to match: refused as not float32, and nothing in it runs."""
    import hashlib
    import io

    cfg = cfg_for(tiny_bert, chunk_size=4)
    out = E.embed_pairs(five_pairs, cfg, tmp_path / "c")
    d = Path(out.meta["cache"]["dir"])
    ch = list_chunks(d)[0]
    marker = tmp_path / "ran"
    buf = io.BytesIO()
    np.save(buf, np.array([_Payload(marker)] * len(ch.keys), dtype=object), allow_pickle=True)
    (d / "chunks" / ch.file).write_bytes(buf.getvalue())
    side = d / "chunks" / f"{ch.id}.json"
    doc = json.loads(side.read_text())
    doc["sha256"] = hashlib.sha256(buf.getvalue()).hexdigest()
    side.write_text(json.dumps(doc))
    with pytest.raises(CacheError, match=rf"{ch.id}.*expected float32 .*found object"):
        verify_cache(d)
    assert not marker.exists()
