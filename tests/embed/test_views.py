"""Views: verification (every bad chunk listed and set aside), reading back a view whose chunk
failed its checksum, and a view asked for with other settings.

`embed_setup` (conftest.py) is a tiny model, a 10-pair HH file and its single-process cache:
20 rows in 7 chunks of 3.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest

import latentrm.embed.local as E
from latentrm.embed.chunks import list_chunks
from latentrm.embed.views import load_pair_cache, verify_cache
from latentrm.errors import CacheError
from latentrm.testing import cfg_for


def flip_byte(path: Path, at: int = -5) -> None:
    data = bytearray(path.read_bytes())
    data[at] ^= 0x55
    path.write_bytes(bytes(data))


def test_verify_lists_every_bad_chunk_and_sets_them_aside(embed_setup: dict, tmp_path) -> None:
    d = tmp_path / embed_setup["ref_dir"].name
    shutil.copytree(embed_setup["ref_dir"], d)
    view = next((d / "views").glob("*.json"))
    info = verify_cache(view)
    assert (info["rows"], info["dim"], info["chunks"], info["layers"]) == (20, 32, 7, [-1])
    chunks = list_chunks(d)
    flip_byte(d / "chunks" / chunks[2].file)  # a flipped byte: finite values, wrong checksum
    (d / "chunks" / chunks[3].file).unlink()  # a missing vector file
    with pytest.raises(CacheError) as e:
        verify_cache(view)
    msg = str(e.value)
    assert f"{chunks[2].file}: checksum mismatch" in msg
    assert f"{chunks[3].file}: unreadable chunk" in msg
    assert "rows are not stored" in msg and "rerun `latentrm embed`" in msg
    assert chunks[0].file not in msg
    # both were set aside: the store is intact again, but the view misses their rows
    assert len(list_chunks(d)) == 5
    verify_cache(d)
    with pytest.raises(CacheError, match="6 of the view's 20 rows are not stored"):
        verify_cache(view)


def test_a_flipped_byte_is_detected_on_read_and_recomputed(tmp_path, tiny_bert, five_pairs):
    cfg = cfg_for(tiny_bert, chunk_size=4)
    first = E.embed_pairs(five_pairs, cfg, tmp_path)
    d = Path(first.meta["cache"]["dir"])
    ch = list_chunks(d)[1]
    flip_byte(d / "chunks" / ch.file)
    with pytest.raises(CacheError, match="failed their checksum") as e:
        load_pair_cache(first.meta["cache"]["view"])
    assert ch.file in str(e.value)  # `latentrm train CACHE` names the bad chunk
    again = E.embed_pairs(five_pairs, cfg, tmp_path)  # the bad chunk is recomputed
    assert again.meta["cache"]["chunks_computed"] == 1
    np.testing.assert_array_equal(again.chosen, first.chosen)
    np.testing.assert_array_equal(again.rejected, first.rejected)


def test_mismatching_cache_names_the_field(tmp_path, tiny_bert, five_pairs):
    cfg = cfg_for(tiny_bert, chunk_size=4)
    view = E.embed_pairs(five_pairs, cfg, tmp_path).meta["cache"]["view"]
    with pytest.raises(CacheError, match=r"made with layers=\[-1\], asked layers=\[-2\]"):
        load_pair_cache(view, expect=dataclasses.replace(cfg, layer=-2))
    with pytest.raises(CacheError, match=r"made with max_length=512, asked max_length=64"):
        load_pair_cache(view, expect=dataclasses.replace(cfg, max_length=64))


def test_a_corrupt_chunk_file_is_a_cache_error_naming_it(tmp_path, tiny_bert, five_pairs):
    cfg = cfg_for(tiny_bert, chunk_size=4)
    out = E.embed_pairs(five_pairs, cfg, tmp_path)
    d = Path(out.meta["cache"]["dir"])
    ch = list_chunks(d)[0]
    (d / "chunks" / ch.file).write_bytes(b"")
    with pytest.raises(CacheError, match=rf"{ch.id}.*set aside"):
        verify_cache(d)
