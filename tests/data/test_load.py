"""latentrm.data.load: what loading keeps, drops and cuts (counted in stats); candidate sets and
their binarisation; real alpaca-eval candidates."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from latentrm.config import DataConfig
from latentrm.data import CandidateSet, binarize_candidates, load_candidates, load_pairs
from latentrm.errors import DataError
from latentrm.testing import HH_RECORD, write_jsonl
from latentrm.testing import user_message as u


# --- what loading keeps, drops and cuts -----------------------------------------------------------
def test_empty_response_kept_by_default_error_when_disallowed(tmp_path: Path) -> None:
    rec = {"chosen": "\n\nHuman: hi\n\nAssistant:", "rejected": "\n\nHuman: hi\n\nAssistant: go"}
    path = write_jsonl(tmp_path / "r.jsonl", [HH_RECORD, rec])
    ds = load_pairs(path)
    assert (ds[1].chosen, ds[1].rejected, ds.stats["empty_responses"]) == ("", "go", 1)
    with pytest.raises(DataError, match=r"r\.jsonl:2: empty response \(field 'chosen'\)$"):
        load_pairs(path, DataConfig(allow_empty_response=False))


def test_identical_pairs_are_dropped_counted_and_warned(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    same = {"prompt": "q", "chosen": "same ", "rejected": " same"}
    path = write_jsonl(
        tmp_path / "same.jsonl", [same, {"prompt": "q", "chosen": "a", "rejected": "b"}, same]
    )
    with caplog.at_level(logging.WARNING, logger="latentrm.data"):
        ds = load_pairs(path)
    assert ds.ids == ["same:2"]
    assert ds.stats["dropped_identical"] == 2
    assert "dropped 2 pairs whose chosen == rejected (lines 1, 3)" in caplog.text


def test_megabyte_response_is_cut_keeping_the_start(tmp_path: Path) -> None:
    long = "start " + "x" * 1_000_000
    path = write_jsonl(tmp_path / "long.jsonl", [{"prompt": "q", "chosen": long, "rejected": "b"}])
    ds = load_pairs(path, DataConfig(max_response_chars=100))
    assert ds[0].chosen == long[:100]
    assert ds[0].rejected == "b"
    assert ds.stats["truncated_responses"] == 1
    assert load_pairs(path).stats["truncated_responses"] == 1  # default cap 32768 < 1 MB
    assert len(load_pairs(path)[0].chosen) == 32768


def test_duplicate_ids(tmp_path: Path) -> None:
    recs = [{"id": 7, "prompt": "q", "chosen": "a", "rejected": "b"}] * 2
    with pytest.raises(DataError, match=r"dup\.jsonl:2: duplicate id '7' \(also on line 1\)"):
        load_pairs(write_jsonl(tmp_path / "dup.jsonl", recs))


# --- candidates -----------------------------------------------------------------------------------
def test_candidates_fixture_and_binarisation_by_hand(fixtures_dir: Path) -> None:
    sets = load_candidates(fixtures_dir / "candidates.jsonl")
    assert sets[0] == CandidateSet(
        "candidates:1",
        (u("Name a prime number."),),
        ("7", "9", "I don't know", "Eleven"),
        (0.9, 0.5, 0.1, 0.45),
    )
    ds = binarize_candidates(sets, min_gap=0.3, pairs_per_prompt=10, seed=0)
    # Set 1: every gap >= 0.3 except 0.5 vs 0.45. Set 2: "hi"/"hi" is one text, "" is no reply,
    # 0.6 vs 0.55 is too close; only "hello" (0.55) > "hi" (0.1) remains.
    assert ds.ids == [
        "candidates:1:0>1",
        "candidates:1:0>2",
        "candidates:1:0>3",
        "candidates:1:1>2",
        "candidates:1:3>2",
        "candidates:2:3>1",
    ]
    assert (ds[4].chosen, ds[4].rejected) == ("Eleven", "I don't know")
    assert (ds[5].chosen, ds[5].rejected) == ("hello", "hi")
    assert ds.stats["eligible_pairs"] == 6
    capped = binarize_candidates(sets, min_gap=0.3, pairs_per_prompt=2, seed=0)
    assert len(capped) == 3
    assert set(capped.ids[:2]) <= set(ds.ids[:5])
    # load_pairs on a candidates file binarises with the config's gap/cap/seed.
    via_load = load_pairs(
        fixtures_dir / "candidates.jsonl", DataConfig(min_gold_gap=0.3, pairs_per_prompt=10)
    )
    assert via_load.ids == ds.ids
    assert via_load.source == str(fixtures_dir / "candidates.jsonl")


def test_binarisation_is_deterministic_per_seed(fixtures_dir: Path) -> None:
    sets = load_candidates(fixtures_dir / "candidates.jsonl")
    draws = {tuple(binarize_candidates(sets, 0.3, 2, seed).ids) for seed in range(20)}
    assert tuple(binarize_candidates(sets, 0.3, 2, 5).ids) == tuple(
        binarize_candidates(sets, 0.3, 2, 5).ids
    )
    assert len(draws) > 1  # 10 possible pairs of 5 eligible ones in set 1: seeds vary the draw


# --- real data ------------------------------------------------------------------------------------
def test_real_alpaca_candidates_and_binarisation(shared_data: Path) -> None:
    path = shared_data / "alpaca-eval" / "candidates.jsonl.gz"
    sets = load_candidates(path)
    assert len(sets) == 805
    assert {len(s.responses) for s in sets} == {53, 54, 55}
    assert all(
        len(s.gold) == len(s.responses) and 0 <= min(s.gold) <= max(s.gold) <= 1 for s in sets
    )
    ds = binarize_candidates(sets, min_gap=0.3, pairs_per_prompt=4, seed=0)
    by_id = {s.id: s for s in sets}
    per_set: dict[str, int] = {}
    for p in ds:
        set_id, ij = p.id.rsplit(":", 1)
        c, r = map(int, ij.split(">"))
        s = by_id[set_id]
        assert s.gold[c] - s.gold[r] >= 0.3
        assert (s.responses[c], s.responses[r]) == (p.chosen, p.rejected)
        assert p.chosen != p.rejected and p.chosen and p.rejected
        per_set[set_id] = per_set.get(set_id, 0) + 1
    assert max(per_set.values()) == 4
    assert len(ds) == sum(per_set.values()) > 2000
    assert binarize_candidates(sets, 0.3, 4, seed=0).ids == ds.ids


# --- issue 23: what one record may cost, files that yield nothing, repeated records -------------
def test_too_many_candidates_in_one_set_are_refused_before_binarising(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Binarising compares every two candidates of a set: 40,000 of them (a 1.5 MB file) asked
    for ~6 GiB. The bound (formats.MAX_CANDIDATES, lowered to 1,000 here) is checked while the
    record is parsed, before anything is allocated for it."""
    import latentrm.data.formats as formats

    monkeypatch.setattr(formats, "MAX_CANDIDATES", 1000, raising=False)
    cands = [{"output": f"o{k}", "gold": k} for k in range(2000)]
    path = write_jsonl(
        tmp_path / "many.jsonl",
        [{"instruction": "q", "candidates": cands[:3]}, {"instruction": "q2", "candidates": cands}],
    )
    with pytest.raises(
        DataError,
        match=r"many\.jsonl:2: 2000 candidates in one set, more than "
        r"the 1000 allowed \(field 'candidates'\)$",
    ):
        load_pairs(path)
    with pytest.raises(DataError, match=r"many\.jsonl:2: 2000 candidates"):
        load_candidates(path)


def test_a_candidates_file_that_yields_no_pairs_is_an_error(tmp_path: Path) -> None:
    same_gold = [{"output": "a", "gold": 1.0}, {"output": "b", "gold": 1.0}]
    path = write_jsonl(tmp_path / "flat.jsonl", [{"instruction": "q", "candidates": same_gold}] * 2)
    with pytest.raises(
        DataError,
        match=r"^\S*flat\.jsonl: no usable pairs: none of the 2 "
        r"candidate sets has two different non-empty outputs "
        r"whose gold differs by >= data.min_gold_gap=0",
    ):
        load_pairs(path)


def test_exact_duplicate_records_are_kept_and_warned_with_their_lines(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    a = {"prompt": "q", "chosen": "a", "rejected": "b"}
    c = {"prompt": "q", "chosen": "c", "rejected": "b"}
    path = write_jsonl(tmp_path / "dup.jsonl", [a, c, a, c, a])
    with caplog.at_level(logging.WARNING, logger="latentrm.data"):
        ds = load_pairs(path)
    assert len(ds) == 5 and ds.stats["exact_duplicates"] == 3
    want = "dup.jsonl: 3 records repeat an earlier record exactly (lines 3 (= 1), 4 (= 2), 5 (= 1))"
    assert want in caplog.text


def test_a_margin_column_reaches_every_pair_and_a_missing_one_counts_as_zero(caplog):
    """TRL's `margin` column: parsed with the pairs (training and `latentrm run` share it); a
    record without a value (absent, or None as a `datasets.Dataset` stores a missing cell) gets
    margin 0, the plain loss, with one warning naming its lines; a non-number names its line."""
    from latentrm.data.load import pairs_from_source
    from latentrm.data.readers import Source

    recs = [
        {
            "prompt": f"q {i}?",
            "chosen": f"good {i}",
            "rejected": f"bad {i}",
            "margin": 0.5 * (i % 3),
        }
        for i in range(8)
    ]
    recs[2]["margin"] = None
    del recs[5]["margin"]
    with caplog.at_level("WARNING"):
        ds = pairs_from_source(Source("<records>", "record", list(enumerate(recs, 1))))
    want = [0.0, 0.5, 0.0, 0.0, 0.5, 0.0, 0.0, 0.5]  # 0.5 * (i % 3), lines 3 and 6 without
    np.testing.assert_array_equal(ds.margins, np.array(want, np.float32))
    assert "<records>: 2 of 8 records have no margin (lines 3, 6): margin 0 for them" in caplog.text
    assert ds.subset([1, 4]).margins.tolist() == [0.5, 0.5]  # subsets keep them
    plain = [{k: v for k, v in r.items() if k != "margin"} for r in recs]
    assert (
        pairs_from_source(Source("<records>", "record", list(enumerate(plain, 1)))).margins is None
    )
    recs[4]["margin"] = "big"
    with pytest.raises(DataError, match=r"<records>:5: margin must be a finite number, got 'big'"):
        pairs_from_source(Source("<records>", "record", list(enumerate(recs, 1))))
