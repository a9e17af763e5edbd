"""The on-disk store: row keys, planning, writers sharing a store, corrupt chunks and descriptions.

`embed_setup` (conftest.py) is a tiny model, a 10-pair HH file and its single-process cache:
20 rows in 7 chunks of 3.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

import latentrm.embed.local as E
from latentrm.embed.chunks import list_chunks
from latentrm.embed.store import pair_rows, plan_cache, row_key
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
    np.testing.assert_allclose(
        small.rejected, ref.embed(five_pairs.prompts, five_pairs.rejected), atol=1e-6
    )


@pytest.mark.parametrize("what", ["store.json", "view", "chunk description"])
@pytest.mark.parametrize("content", ["", "{broken", "[]", "{}"])
def test_corrupt_descriptions_are_one_line_errors_saying_delete(
    tmp_path, tiny_bert, five_pairs, what, content
):
    cfg = cfg_for(tiny_bert, chunk_size=4)
    out = E.embed_pairs(five_pairs, cfg, tmp_path)
    d, view = Path(out.meta["cache"]["dir"]), Path(out.meta["cache"]["view"])
    target = {
        "store.json": d / "store.json",
        "view": view,
        "chunk description": d / "chunks" / f"{list_chunks(d)[0].id}.json",
    }[what]
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


# --- what one cache file may cost (issue 23 items 2, 5, 7) ----------------------------------------
def _description(d: Path) -> Path:
    return d / "chunks" / f"{list_chunks(d)[0].id}.json"


@pytest.mark.parametrize("name", ["/dev/zero", "../../outside.npy", "sub/x.npy", ".."])
def test_a_chunk_description_may_only_name_a_file_beside_it(tmp_path, tiny_bert, five_pairs, name):
    """A description naming /dev/zero made the read run until memory ran out."""
    out = E.embed_pairs(five_pairs, cfg_for(tiny_bert, chunk_size=4), tmp_path)
    d, view = Path(out.meta["cache"]["dir"]), Path(out.meta["cache"]["view"])
    side = _description(d)
    doc = json.loads(side.read_text())
    (tmp_path / "outside.npy").write_bytes((d / "chunks" / doc["file"]).read_bytes())
    side.write_text(json.dumps({**doc, "file": name}))
    with pytest.raises(
        CacheError,
        match=rf"^{side}: malformed chunk description \(file "
        rf"{name!r} is not a chunk file name\); delete it",
    ):
        load_pair_cache(view)


def test_a_huge_sparse_chunk_is_refused_by_its_size_before_it_is_read(
    tmp_path, tiny_bert, five_pairs
):
    """A 30 GB sparse file in place of a chunk (no disk used): its size is checked against the
    rows x layers x dim x 4 bytes its description implies before a byte is read; the chunk is
    set aside like any corrupt one."""
    out = E.embed_pairs(five_pairs, cfg_for(tiny_bert, chunk_size=4), tmp_path)
    d, view = Path(out.meta["cache"]["dir"]), Path(out.meta["cache"]["view"])
    ch = list_chunks(d)[0]
    os.truncate(d / "chunks" / ch.file, 30 << 30)
    with pytest.raises(CacheError, match=r"1 chunks failed their checksum") as e:
        load_pair_cache(view)
    assert "\n" not in str(e.value)
    assert (d / "chunks" / f"{ch.id}.json.bad").exists()
    with pytest.raises(
        CacheError,
        match=rf"{ch.file}: 32212254720 bytes, but 4 rows of 1 "
        r"layers x dim 32 take \d+",
    ):
        from latentrm.embed.chunks import read_chunk

        read_chunk(d, ch, 32, 1)


VIEW_DAMAGE = {
    "keys-not-a-list": (lambda v: v.update(keys="abc"), "'keys' must be a list of row keys"),
    "a-key-not-a-string": (
        lambda v: v["keys"].__setitem__(0, 5),
        "'keys' must be a list of row keys",
    ),
    "kind-unknown": (lambda v: v.update(kind="other"), "'kind' must be pairs or candidates"),
    "ids-missing": (lambda v: v.pop("ids"), "'ids' must be a list"),
    "ids-too-few": (lambda v: v["ids"].pop(), r"10 rows for 4 pairs"),
    "embed-not-an-object": (lambda v: v.update(embed=[1]), "'embed' must be an object"),
    "bad-pooling": (
        lambda v: v["embed"].update(pooling="max"),
        r"bad embedder config \(embed\.pooling must be",
    ),
}


@pytest.mark.parametrize("case", list(VIEW_DAMAGE))
def test_a_malformed_view_is_one_line_naming_it(tmp_path, tiny_bert, five_pairs, case):
    """A view with a bad pooling value let `train` write a model that `score` refused."""
    damage, pattern = VIEW_DAMAGE[case]
    out = E.embed_pairs(five_pairs, cfg_for(tiny_bert, chunk_size=4), tmp_path)
    view = Path(out.meta["cache"]["view"])
    doc = json.loads(view.read_text())
    damage(doc)
    view.write_text(json.dumps(doc))
    with pytest.raises(CacheError, match=rf"^{view}: .*{pattern}") as e:
        load_pair_cache(view)
    assert "\n" not in str(e.value)
