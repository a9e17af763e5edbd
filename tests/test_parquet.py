"""Parquet export of augmented training sets: columns, provenance, round trip, CLI."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from latentrm import parquet
from latentrm.cli import main
from latentrm.errors import DataError
from latentrm.pairs import AugmentedPairs, save_augmented
from latentrm.parquet import export_augmented, read_augmented

N, D = 3, 4


def _aug() -> AugmentedPairs:
    """3 seed pairs; 4 synthetic rows (6..9) + 2 reserved rows (10, 11) no pair uses."""
    rng = np.random.default_rng(0)
    chosen = rng.standard_normal((N, D)).astype(np.float32)
    rejected = rng.standard_normal((N, D)).astype(np.float32)
    aug = AugmentedPairs.originals(chosen, rejected, method="lens", ratio=2, pool_rows=2 * N + 6)
    aug.pool[2 * N :] = rng.standard_normal((6, D)).astype(np.float32)
    # seed 0: (syn 6, orig rej 3) and (orig chosen 0, syn 7); seed 2: (syn 8, syn 9), (2, 9)
    aug.add_pairs(np.array([6, 0, 8, 2]), np.array([3, 7, 9, 9]), np.array([0, 0, 2, 2]))
    aug.stats["candidates_drawn"] = 48
    return aug


def test_columns_and_provenance(tmp_path):
    aug = _aug()
    path = tmp_path / "aug.parquet"
    info = export_augmented(aug, path, ["a", "b", "c"], meta={"model": "toy"})
    t = pq.read_table(path)
    assert t.num_rows == 7
    assert t.column_names == [
        "pair_id",
        "seed_id",
        "seed_index",
        "source",
        "method",
        "ratio",
        "chosen_row",
        "rejected_row",
        "chosen_synthetic",
        "rejected_synthetic",
        "chosen_embedding",
        "rejected_embedding",
    ]
    assert t.schema.field("chosen_embedding").type == pa.list_(pa.float32(), D)
    rows = t.to_pydict()
    # Originals first (pairs 0..2), then the synthetic pairs in add order; j counts within a seed.
    assert rows["pair_id"] == ["a/0", "b/0", "c/0", "a/1", "a/2", "c/1", "c/2"]
    assert rows["seed_id"] == ["a", "b", "c", "a", "a", "c", "c"]
    assert rows["source"] == ["original"] * 3 + ["synthetic"] * 4
    assert rows["chosen_row"] == [0, 1, 2, 6, 0, 8, 2]
    assert rows["rejected_row"] == [3, 4, 5, 3, 7, 9, 9]
    assert rows["chosen_synthetic"] == [False] * 3 + [True, False, True, False]
    assert rows["rejected_synthetic"] == [False] * 3 + [False, True, True, True]
    assert set(rows["method"]) == {"lens"} and set(rows["ratio"]) == {2}
    np.testing.assert_array_equal(np.array(rows["chosen_embedding"][3], np.float32), aug.pool[6])
    meta = json.loads(t.schema.metadata[b"latentrm"])
    assert meta == info
    assert meta["n_seed"] == 3 and meta["dim"] == D and meta["pool_rows"] == 12
    assert meta["pairs"] == 7 and meta["synthetic_pairs"] == 4
    assert meta["meta"] == {"model": "toy"} and meta["stats"]["candidates_drawn"] == 48


@pytest.mark.parametrize("rows_per_group", [2, 8192])
def test_round_trip(tmp_path, monkeypatch, rows_per_group):
    # Small row groups exercise the chunked writer and the multi-chunk reader.
    monkeypatch.setattr(parquet, "_ROWS_PER_GROUP", rows_per_group)
    aug = _aug()
    path = tmp_path / "aug.parquet"
    export_augmented(aug, path, ["a", "b", "c"])
    if rows_per_group == 2:
        assert pq.ParquetFile(path).num_row_groups == 4
    back = read_augmented(path)
    got = back.aug
    assert back.seed_ids == ["a", "b", "c"]
    assert len(got) == len(aug) == 7
    np.testing.assert_array_equal(got.seed_idx, aug.seed_idx)
    np.testing.assert_array_equal(got.synthetic, aug.synthetic)
    assert (got.method, got.ratio, got.stats) == (aug.method, aug.ratio, aug.stats)
    # Every pair's embeddings bit-equal.
    for a, b in zip(
        got.pair_embeddings(np.arange(7)), aug.pair_embeddings(np.arange(7)), strict=True
    ):
        assert a.dtype == np.float32
        np.testing.assert_array_equal(a, b)
    # Pool compacted to the 10 referenced rows (10, 11 unused), order kept: identity on 0..9.
    np.testing.assert_array_equal(got.pool, aug.pool[:10])
    np.testing.assert_array_equal(got.chosen_idx, aug.chosen_idx)
    assert got.n_seed == 3


def test_compaction_remaps_indices(tmp_path):
    aug = _aug()
    # Drop the pair that used row 7: rows 7, 10, 11 become unreferenced, 8 and 9 move to 7 and 8.
    keep = np.array([0, 1, 2, 3, 5, 6])
    aug.chosen_idx, aug.rejected_idx = aug.chosen_idx[keep], aug.rejected_idx[keep]
    aug.seed_idx, aug.synthetic = aug.seed_idx[keep], aug.synthetic[keep]
    export_augmented(aug, tmp_path / "a.parquet", ["a", "b", "c"])
    got = read_augmented(tmp_path / "a.parquet").aug
    np.testing.assert_array_equal(got.chosen_idx, [0, 1, 2, 6, 7, 2])
    np.testing.assert_array_equal(got.rejected_idx, [3, 4, 5, 3, 8, 8])
    np.testing.assert_array_equal(got.pool, aug.pool[[0, 1, 2, 3, 4, 5, 6, 8, 9]])


def test_errors(tmp_path):
    aug = _aug()
    with pytest.raises(DataError, match="2 seed ids for 3 original pairs"):
        export_augmented(aug, tmp_path / "x.parquet", ["a", "b"])
    aug.synthetic[3] = False  # mislabelled: pair 3 uses synthetic row 6
    aug.synthetic[0] = True
    with pytest.raises(
        DataError,
        match="pair 3 uses a synthetic pool row but is not marked "
        r"synthetic \(field 'synthetic'\)",
    ):
        export_augmented(aug, tmp_path / "x.parquet", ["a", "b", "c"])
    assert not (tmp_path / "x.parquet").exists()
    pq.write_table(pa.table({"a": [1]}), tmp_path / "other.parquet")
    with pytest.raises(DataError, match="not a latentrm export"):
        read_augmented(tmp_path / "other.parquet")


def test_cli_export(tmp_path, capsys):
    aug = _aug()
    save_augmented(tmp_path / "synth", aug, ids=["a", "b", "c"], meta={"embed": {"model": "toy"}})
    out = tmp_path / "out.parquet"
    assert main(["export", "--augmented", str(tmp_path / "synth"), "--out", str(out)]) == 0
    assert "wrote 7 pairs (4 synthetic, method lens, ratio 2, d=4)" in capsys.readouterr().out
    back = read_augmented(out)
    assert back.seed_ids == ["a", "b", "c"]
    assert back.info["meta"]["embed"] == {"model": "toy"}
    np.testing.assert_array_equal(back.aug.pool[back.aug.rejected_idx], aug.pool[aug.rejected_idx])
    assert main(["export", "--augmented", str(tmp_path / "nope"), "--out", str(out)]) == 2


def _cli_error(capsys, argv):
    code = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    return err[0]


def test_cli_export_refuses_other_suffixes_before_reading(tmp_path, capsys):
    save_augmented(tmp_path / "synth", _aug(), ids=["a", "b", "c"])
    for name in ("aug.csv", "aug.jsonl", "aug.parquet.gz"):  # it writes Parquet, whatever the name
        out = tmp_path / name
        line = _cli_error(
            capsys, ["export", "--augmented", str(tmp_path / "nope"), "--out", str(out)]
        )
        assert line == f"latentrm: error: {out}: unknown output type (use .parquet)"
        assert not out.exists()
    (tmp_path / "dir.parquet").mkdir()
    line = _cli_error(
        capsys,
        ["export", "--augmented", str(tmp_path / "synth"), "--out", str(tmp_path / "dir.parquet")],
    )
    assert line.endswith("dir.parquet: is a folder; give the output file's name")


@pytest.mark.parametrize(
    ("name", "edit", "field"),
    [
        ("chosen_idx", lambda a: np.where(np.arange(len(a)) == 4, 10**6, a), "chosen_idx"),
        ("pool", lambda a: np.where(np.arange(len(a))[:, None] == 7, np.nan, a), "pool"),
    ],
)
def test_cli_export_names_the_damaged_input_and_writes_nothing(tmp_path, capsys, name, edit, field):
    from safetensors.numpy import load_file, save_file

    synth = tmp_path / "synth"
    save_augmented(synth, _aug(), ids=["a", "b", "c"])
    t = load_file(str(synth / "augmented.safetensors"))
    t[name] = np.ascontiguousarray(edit(t[name]).astype(t[name].dtype))
    save_file(t, str(synth / "augmented.safetensors"))
    out = tmp_path / "set.parquet"
    line = _cli_error(capsys, ["export", "--augmented", str(synth), "--out", str(out)])
    assert line.startswith(f"latentrm: error: {synth / 'augmented.safetensors'}: pair 4 ")
    assert line.endswith(f"(field '{field}')") and str(out) not in line
    assert not out.exists()
