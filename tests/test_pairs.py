"""latentrm.pairs: an augmented set's layout, and its save/load round trip."""

from __future__ import annotations

import numpy as np
import pytest

from latentrm.errors import ConfigError
from latentrm.pairs import AugmentedPairs, load_augmented, save_augmented

N = 40  # the `lens_data` fixture's

pytestmark = pytest.mark.usefixtures("one_thread")


def test_pair_embeddings_and_originals(lens_data):
    c, r = lens_data
    aug = AugmentedPairs.originals(c, r)
    ce, re_ = aug.pair_embeddings(np.array([3, 0]))
    assert np.array_equal(ce, c[[3, 0]]) and np.array_equal(re_, r[[3, 0]])
    assert aug.method == "none" and aug.ratio == 0 and len(aug) == N


def test_save_load_round_trip(tmp_path, lens_data, lens):
    aug = lens.augment(*lens_data, 2, seed=0)
    val = (lens_data[0][:5], lens_data[1][:5])
    save_augmented(tmp_path, aug, val=val, ids=[str(i) for i in range(N)])
    back, val_back, head = load_augmented(tmp_path)
    for name in ("pool", "chosen_idx", "rejected_idx", "seed_idx", "synthetic"):
        assert np.array_equal(getattr(back, name), getattr(aug, name))
    assert back.method == "lens" and back.ratio == 2 and head["ids"][1] == "1"
    assert back.stats["pairs_made"] == 2 * N
    assert np.array_equal(val_back[0], val[0])
    with pytest.raises(ConfigError, match="not an augmented set"):
        load_augmented(tmp_path / "nope")


# --- a damaged augmented set is refused where it is read ------------------------------------------
def _saved(tmp_path):
    """3 seed pairs (d=2) + 2 direct-style pairs using pool rows 6, 7; 1 validation pair."""
    c = np.arange(6, dtype=np.float32).reshape(3, 2)
    aug = AugmentedPairs.originals(c, -c, method="direct", ratio=1, pool_rows=8)
    aug.pool[6:] = [[9, 9], [8, 8]]
    aug.add_pairs(np.array([6, 0]), np.array([3, 7]), np.array([0, 0]))
    save_augmented(tmp_path / "aug", aug, val=(c[:1], -c[:1]), ids=["a", "b", "c"])
    return tmp_path / "aug"


def _edit(folder, **changes):
    from safetensors.numpy import load_file, save_file

    t = load_file(str(folder / "augmented.safetensors"))
    for name, fn in changes.items():
        if fn is None:
            del t[name]
        else:
            t[name] = np.ascontiguousarray(fn(t[name].copy()))
    save_file(t, str(folder / "augmented.safetensors"))


def _put(i, v):
    def fn(a):
        a[i] = v
        return a

    return fn


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"chosen_idx": _put(3, 10**6)},
            r"pair 3 has chosen_idx 1000000, outside \[0, 8\) "
            r"\(field 'chosen_idx'\)",
        ),
        ({"rejected_idx": _put(0, -1)}, r"pair 0 has rejected_idx -1, outside \[0, 8\)"),
        ({"seed_idx": _put(4, 3)}, r"pair 4 has seed_idx 3, outside \[0, 3\)"),
        # pair 0 marked synthetic: 2 seed pairs, so pair 1's rejected row 4 lies past the originals
        (
            {"synthetic": _put(0, True)},
            r"pair 1 uses a synthetic pool row but is not marked "
            r"synthetic",
        ),
        (
            {"pool": _put((7, 1), np.nan)},
            r"pair 4 uses pool row 7, which holds NaN/Inf \(field "
            r"'pool'\)",
        ),
        ({"val_rejected": _put((0, 0), np.inf)}, r"holds NaN/Inf \(field 'val_rejected'\)"),
        ({"seed_idx": None}, r"missing arrays; rerun latentrm synth \(field 'seed_idx'\)"),
        (
            {"seed_idx": lambda a: a[:2]},
            r"expected 5 integer values \(one per pair\), got int64 "
            r"\(2,\) \(field 'seed_idx'\)",
        ),
    ],
)
def test_load_augmented_refuses_a_damaged_set_naming_file_and_field(tmp_path, changes, message):
    from latentrm.errors import DataError

    folder = _saved(tmp_path)
    load_augmented(folder)  # intact
    _edit(folder, **changes)
    with pytest.raises(DataError, match=rf"^{folder / 'augmented.safetensors'}: {message}"):
        load_augmented(folder)


def test_load_augmented_unreadable_files_are_one_data_error(tmp_path):
    from latentrm.errors import DataError

    folder = _saved(tmp_path)
    (folder / "augmented.json").write_text('{"method": "direct", "ratio": "x"}')
    with pytest.raises(DataError, match=r"augmented\.json: needs 'method' and an integer 'ratio'"):
        load_augmented(folder)
    (folder / "augmented.json").write_text('{"method": ')
    with pytest.raises(DataError, match=r"augmented\.json: unreadable"):
        load_augmented(folder)
    folder = _saved(tmp_path / "again")
    (folder / "augmented.safetensors").write_bytes(b"\x10\0\0\0\0\0\0\0{not a header!!}")
    with pytest.raises(
        DataError,
        match=r"augmented\.safetensors: unreadable .*rerun latentrm "
        "synth",
    ):
        load_augmented(folder)
