"""latentrm.data: each format from hand-written fixtures, each bad input, real HH/alpaca-eval."""

from __future__ import annotations

import gzip
import json
import logging
from pathlib import Path

import numpy as np
import pytest

from latentrm.config import DataConfig
from latentrm.data import (
    CandidateSet,
    PreferenceDataset,
    PreferencePair,
    binarize_candidates,
    carve_validation,
    load_candidates,
    load_pairs,
    parse_hh,
    render_plain,
    split_indices,
)
from latentrm.data.readers import records_from_datasets
from latentrm.errors import ConfigError, DataError

FIX = Path(__file__).parent / "fixtures"


def u(text: str) -> dict[str, str]:
    return {"role": "user", "content": text}


def a(text: str) -> dict[str, str]:
    return {"role": "assistant", "content": text}


def write_jsonl(path: Path, records: list) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), "utf-8")
    return path


# --- formats from fixtures ------------------------------------------------------------------------
def test_hh_fixture_prompts_and_responses() -> None:
    ds = load_pairs(str(FIX / "hh.jsonl"))
    assert ds.stats["format"] == "hh"
    assert ds.ids == ["hh:1", "hh-multi", "hh:4"]  # line 3 is blank; the id field wins on line 2
    assert ds[0] == PreferencePair("hh:1", (u("What is 2+2?"),), "4.", "5.")
    assert ds[1].prompt == (u("Hi"), a("Hello! How can I help?"), u("Tell me a joke."))
    assert ds[1].chosen == "Why did the chicken cross the road?"  # surrounding whitespace stripped
    assert ds[1].rejected == "No."
    # Text before the first Human turn is a system preamble (Anthropic's legacy prompt layout).
    assert ds[2].prompt == ({"role": "system", "content": "You are kind."}, u("Help me"))
    assert (ds[2].chosen, ds[2].rejected) == ("Sure.", "Go away.")


def test_trl_standard_fixture() -> None:
    ds = load_pairs(FIX / "trl_standard.jsonl")
    assert ds.stats["format"] == "trl-standard"
    assert ds[0] == PreferencePair("trl_standard:1", (u("The sky is"),), "blue.", "green.")
    # An HH-style prompt string keeps its turns; the trailing empty Assistant marker is dropped.
    assert ds[1].prompt == (u("Hi"), a("Hey"), u("Name a color"))
    assert (ds[1].chosen, ds[1].rejected) == ("Red", "Table")


def test_trl_conversational_fixture_earlier_messages_join_prompt() -> None:
    ds = load_pairs(FIX / "trl_conversational.jsonl")
    assert ds.stats["format"] == "trl-conversational"
    assert ds[0].prompt == (u("What color is the sky?"),)
    assert (ds[0].chosen, ds[0].rejected) == ("It is blue.", "It is green.")
    system = {"role": "system", "content": "Be brief."}
    assert ds[1].prompt == (system, u("Hi"), a("Hello"), u("Capital of France?"))
    assert (ds[1].chosen, ds[1].rejected) == ("Paris", "Lyon")


def test_trl_implicit_text_prompt_is_common_prefix_at_word_boundary() -> None:
    ds = load_pairs(FIX / "trl_implicit.jsonl")
    assert ds.stats["format"] == "trl-implicit"
    # "The sky is bl" is the character prefix; the prompt backs off to whole words.
    assert (ds[0].prompt, ds[0].chosen, ds[0].rejected) == ((u("The sky is"),), "blue.", "black.")
    assert (ds[1].prompt, ds[1].chosen, ds[1].rejected) == ((u("Q: 1+1? A:"),), "2", "3")


def test_trl_implicit_conversational_json_data_wrapper() -> None:
    ds = load_pairs(FIX / "trl_implicit_conversational.json")
    assert ds.stats["format"] == "trl-implicit-conversational"
    assert len(ds) == 1
    assert ds[0] == PreferencePair(
        "trl_implicit_conversational:1", (u("Where is the sun?"),), "In the sky.", "In the sea."
    )


def test_tldr_fixture() -> None:
    ds = load_pairs(FIX / "tldr.jsonl")
    assert ds.stats["format"] == "tldr"
    expected = (
        "SUBREDDIT: r/cats\n\nTITLE: New cat hides\n\n"
        "POST: I adopted a cat last week and she hides all day.\n\nTL;DR:"
    )
    assert ds[0].prompt == (u(expected),)
    # choice = 1: summaries[1] is chosen.
    assert ds[0].chosen == "New cat hides all day, how do I help her settle in?"
    assert ds[0].rejected == "My cat hides."
    assert ds[1].prompt == (u("POST: Rain all week.\n\nTL;DR:"),)
    assert (ds[1].chosen, ds[1].rejected) == ("It rained all week.", "Sunny.")


def test_csv_conversational_json_cells_match_jsonl() -> None:
    from_csv = load_pairs(FIX / "trl_conversational.csv")
    from_jsonl = load_pairs(FIX / "trl_conversational.jsonl")
    assert [(p.prompt, p.chosen, p.rejected) for p in from_csv] == [
        (p.prompt, p.chosen, p.rejected) for p in from_jsonl
    ]
    # CSV ids use the file line of the record's start (header = line 1).
    assert from_csv.ids == ["trl_conversational:2", "trl_conversational:3"]


def test_csv_standard_with_multiline_cell() -> None:
    ds = load_pairs(FIX / "trl_standard.csv")
    assert ds.ids == ["c1", "c2"]
    assert ds[0].prompt == (u("Write a haiku\nabout rain"),)
    assert (ds[1].prompt, ds[1].chosen, ds[1].rejected) == ((u("The sky is"),), "blue", "green")


def test_gz_json_list_and_parquet_give_the_same_pairs(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    records = [json.loads(line) for line in (FIX / "trl_conversational.jsonl").open()]
    gz = tmp_path / "conv.jsonl.gz"
    gz.write_bytes(gzip.compress((FIX / "trl_conversational.jsonl").read_bytes()))
    listed = tmp_path / "conv.json"
    listed.write_text(json.dumps(records))
    parquet = tmp_path / "conv.parquet"
    pq.write_table(pa.Table.from_pylist(records), parquet)
    reference = load_pairs(FIX / "trl_conversational.jsonl")
    for path in (gz, listed, parquet):
        ds = load_pairs(path)
        assert ds.ids == ["conv:1", "conv:2"], path
        assert [(p.prompt, p.chosen, p.rejected) for p in ds] == [
            (p.prompt, p.chosen, p.rejected) for p in reference
        ], path


def test_forced_format_mismatch_is_an_error() -> None:
    with pytest.raises(
        DataError, match=r"tldr\.jsonl:1: expected hh records but this one looks like tldr$"
    ):
        load_pairs(FIX / "tldr.jsonl", DataConfig(format="hh"))
    with pytest.raises(ConfigError, match="data.format must be one of"):
        load_pairs(FIX / "hh.jsonl", DataConfig(format="sharegpt"))


# --- the Hub path, offline -----------------------------------------------------------------------
def test_records_from_datasets_match_the_file_reader() -> None:
    import datasets

    ds = datasets.load_dataset("json", data_files=str(FIX / "tldr.jsonl"), split="train")
    records = records_from_datasets(ds)
    assert [line for line, _ in records] == [1, 2]
    assert records[0][1]["choice"] == 1
    assert records[0][1]["info"]["subreddit"] == "cats"
    with pytest.raises(DataError, match="expected one split"):
        records_from_datasets(datasets.DatasetDict({"train": ds}))


def test_hub_id_goes_through_datasets_load_dataset(monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets

    real = datasets.load_dataset
    calls = []

    def fake(name, config=None, split=None):  # stands in for the Hub: serves a local file
        calls.append((name, config, split))
        return real("json", data_files=str(FIX / "tldr.jsonl"), split="train")

    monkeypatch.setattr(datasets, "load_dataset", fake)
    cfg = DataConfig(hub_config="comparisons", split="validation")
    ds = load_pairs("openai/summarize_from_feedback", cfg)
    assert calls == [("openai/summarize_from_feedback", "comparisons", "validation")]
    assert ds.source == "openai/summarize_from_feedback[validation]"
    assert ds.ids == [
        "openai/summarize_from_feedback/validation:1",
        "openai/summarize_from_feedback/validation:2",
    ]
    local = load_pairs(FIX / "tldr.jsonl")
    assert [(p.prompt, p.chosen, p.rejected) for p in ds] == [
        (p.prompt, p.chosen, p.rejected) for p in local
    ]


def test_hub_failure_is_one_data_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets

    def fail(*args, **kwargs):
        raise ConnectionError("offline")

    monkeypatch.setattr(datasets, "load_dataset", fail)
    with pytest.raises(DataError, match=r"^nobody/nothing: could not load Hub dataset .*offline"):
        load_pairs("nobody/nothing")


def test_missing_local_file_is_not_sent_to_the_hub(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"nope\.jsonl: file not found"):
        load_pairs(str(tmp_path / "nope.jsonl"))


# --- bad input ------------------------------------------------------------------------------------
HH_OK = {
    "chosen": "\n\nHuman: hi\n\nAssistant: hello",
    "rejected": "\n\nHuman: hi\n\nAssistant: go",
}


def test_malformed_json_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(HH_OK) + "\n" + '{"chosen": "x", "rejected": \n')
    with pytest.raises(
        DataError, match=r"bad\.jsonl:2: malformed JSON: Expecting value \(column 29\)"
    ):
        load_pairs(path)


def test_misspelled_key_names_the_nearest(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "typo.jsonl", [HH_OK, {"chosen": HH_OK["chosen"], "rejeced": "x"}]
    )
    with pytest.raises(DataError, match=r"typo\.jsonl:2: missing 'rejected' \(found 'rejeced'\)$"):
        load_pairs(path)
    # On the first record too, and for the prompt key of the TRL format.
    path = write_jsonl(tmp_path / "typo1.jsonl", [{"promt": "a", "chosen": "b", "rejected": "c"}])
    with pytest.raises(DataError, match=r"typo1\.jsonl:1: missing 'prompt' \(found 'promt'\)$"):
        load_pairs(path)


def test_extra_columns_are_not_taken_for_misspellings(tmp_path: Path) -> None:
    rec = {
        "prompt_id": "p1",
        "chosen": [u("q"), a("yes")],
        "rejected": [u("q"), a("no")],
        "score": 3,
    }
    ds = load_pairs(write_jsonl(tmp_path / "extra.jsonl", [rec]))
    assert (ds[0].prompt, ds[0].chosen, ds[0].rejected) == ((u("q"),), "yes", "no")


def test_missing_key_without_a_near_miss_lists_the_keys(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "k.jsonl", [{"chosen": "a", "answer": "b"}])
    with pytest.raises(
        DataError, match=r"k\.jsonl:1: missing 'rejected' \(keys: 'chosen', 'answer'\)"
    ):
        load_pairs(path)


def test_empty_prompt(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "p.jsonl", [{"prompt": "  ", "chosen": "a", "rejected": "b"}])
    with pytest.raises(DataError, match=r"p\.jsonl:1: empty prompt \(field 'prompt'\)$"):
        load_pairs(path)
    path = write_jsonl(
        tmp_path / "hp.jsonl",
        [{"chosen": "\n\nHuman: \n\nAssistant: a", "rejected": "\n\nHuman: \n\nAssistant: b"}],
    )
    with pytest.raises(DataError, match=r"hp\.jsonl:1: empty prompt \(field 'chosen'\)$"):
        load_pairs(path)


def test_empty_response_kept_by_default_error_when_disallowed(tmp_path: Path) -> None:
    rec = {"chosen": "\n\nHuman: hi\n\nAssistant:", "rejected": "\n\nHuman: hi\n\nAssistant: go"}
    path = write_jsonl(tmp_path / "r.jsonl", [HH_OK, rec])
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


def test_non_utf8_bytes_name_the_line(tmp_path: Path) -> None:
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(
        json.dumps(HH_OK).encode()
        + b"\n"
        + '{"prompt": "caf\u00e9", "chosen": "a", "rejected": "b"}'.encode("latin-1")
    )
    with pytest.raises(DataError, match=r"latin1\.jsonl:2: not valid UTF-8"):
        load_pairs(path)
    csv_path = tmp_path / "latin1.csv"
    csv_path.write_bytes(b"prompt,chosen,rejected\nq,a,b\nq,caf\xe9,b\n")
    with pytest.raises(DataError, match=r"latin1\.csv:3: not valid UTF-8"):
        load_pairs(csv_path)


def test_megabyte_response_is_cut_keeping_the_start(tmp_path: Path) -> None:
    long = "start " + "x" * 1_000_000
    path = write_jsonl(tmp_path / "long.jsonl", [{"prompt": "q", "chosen": long, "rejected": "b"}])
    ds = load_pairs(path, DataConfig(max_response_chars=100))
    assert ds[0].chosen == long[:100]
    assert ds[0].rejected == "b"
    assert ds.stats["truncated_responses"] == 1
    assert load_pairs(path).stats["truncated_responses"] == 1  # default cap 32768 < 1 MB
    assert len(load_pairs(path)[0].chosen) == 32768


def test_mixed_formats_name_the_first_differing_line(tmp_path: Path) -> None:
    std = {"prompt": "q", "chosen": "a", "rejected": "b"}
    conv = {"prompt": [u("q")], "chosen": [a("a")], "rejected": [a("b")]}
    path = write_jsonl(tmp_path / "mixed.jsonl", [std, std, conv, HH_OK])
    with pytest.raises(
        DataError,
        match=r"mixed\.jsonl:3: mixed formats: this record is trl-conversational "
        r"but line 1 is trl-standard$",
    ):
        load_pairs(path)
    path = write_jsonl(
        tmp_path / "mixed2.jsonl", [HH_OK, {"info": {}, "summaries": [], "choice": 0}]
    )
    with pytest.raises(
        DataError, match=r"mixed2\.jsonl:2: mixed formats: this record is tldr but line 1 is hh$"
    ):
        load_pairs(path)


def test_empty_file(tmp_path: Path) -> None:
    for name, content in (
        ("e.jsonl", ""),
        ("blank.jsonl", "\n\n"),
        ("e.csv", ""),
        ("e.json", "[]"),
    ):
        (tmp_path / name).write_text(content)
        with pytest.raises(DataError, match=rf"{name}: no records \(empty file\)$"):
            load_pairs(tmp_path / name)


def test_hh_dialogue_without_assistant_turn(tmp_path: Path) -> None:
    rec = {"chosen": "\n\nHuman: hi there", "rejected": "\n\nHuman: hi\n\nAssistant: go"}
    path = write_jsonl(tmp_path / "noasst.jsonl", [HH_OK, rec])
    with pytest.raises(
        DataError,
        match=r"noasst\.jsonl:2: HH dialogue has no '\\n\\nAssistant:' turn \(field 'chosen'\)$",
    ):
        load_pairs(path)


def test_hh_pairs_must_share_the_prompt(tmp_path: Path) -> None:
    rec = {"chosen": "\n\nHuman: hi\n\nAssistant: a", "rejected": "\n\nHuman: bye\n\nAssistant: b"}
    path = write_jsonl(tmp_path / "diff.jsonl", [rec])
    with pytest.raises(
        DataError, match=r"diff\.jsonl:1: chosen and rejected do not share the dialogue"
    ):
        load_pairs(path)


def test_hh_prompt_must_end_with_a_human_turn(tmp_path: Path) -> None:
    text = "\n\nHuman: a\n\nAssistant: b\n\nAssistant: {}"
    path = write_jsonl(
        tmp_path / "aa.jsonl", [{"chosen": text.format("c"), "rejected": text.format("d")}]
    )
    with pytest.raises(
        DataError, match=r"aa\.jsonl:1: prompt must end with a user message, not assistant"
    ):
        load_pairs(path)


def test_hh_reply_with_extra_turns_splits_where_the_dialogues_diverge(tmp_path: Path) -> None:
    # As on HH-RLHF lines 1255/1689/...: the chosen reply itself contains a further Assistant turn.
    rec = {
        "chosen": "\n\nHuman: q\n\nAssistant: I think\n\nHuman: go on\n\nAssistant: more",
        "rejected": "\n\nHuman: q\n\nAssistant: No.",
    }
    ds = load_pairs(write_jsonl(tmp_path / "div.jsonl", [rec]))
    assert ds[0].prompt == (u("q"),)
    assert ds[0].chosen == "I think\n\nHuman: go on\n\nAssistant: more"
    assert (ds[0].rejected, ds.stats["hh_split_at_divergence"]) == ("No.", 1)


def test_conversational_errors_name_the_field(tmp_path: Path) -> None:
    rec = {"prompt": [u("q")], "chosen": [{"role": "bot", "content": "a"}], "rejected": [a("b")]}
    with pytest.raises(
        DataError,
        match=r"c\.jsonl:1: role must be one of .* got 'bot' \(field 'chosen\[0\]\.role'\)",
    ):
        load_pairs(write_jsonl(tmp_path / "c.jsonl", [rec]))
    rec = {"prompt": [u("q")], "chosen": [a("a"), u("more?")], "rejected": [a("b")]}
    with pytest.raises(
        DataError, match=r"d\.jsonl:1: must end with an assistant message .*field 'chosen'"
    ):
        load_pairs(write_jsonl(tmp_path / "d.jsonl", [rec]))


def test_candidates_gold_not_a_number(tmp_path: Path) -> None:
    rec = {
        "instruction": "q",
        "candidates": [{"output": "a", "gold": 0.5}, {"output": "b", "gold": "high"}],
    }
    path = write_jsonl(tmp_path / "g.jsonl", [rec])
    with pytest.raises(
        DataError,
        match=r"g\.jsonl:1: gold must be a finite number, got 'high' "
        r"\(field 'candidates\[1\]\.gold'\)$",
    ):
        load_candidates(path)
    rec["candidates"][1]["gold"] = None
    with pytest.raises(DataError, match=r"got None"):
        load_pairs(write_jsonl(tmp_path / "g2.jsonl", [rec]))


def test_duplicate_ids(tmp_path: Path) -> None:
    recs = [{"id": 7, "prompt": "q", "chosen": "a", "rejected": "b"}] * 2
    with pytest.raises(DataError, match=r"dup\.jsonl:2: duplicate id '7' \(also on line 1\)"):
        load_pairs(write_jsonl(tmp_path / "dup.jsonl", recs))


def test_tldr_bad_choice(tmp_path: Path) -> None:
    rec = json.loads((FIX / "tldr.jsonl").read_text().splitlines()[0])
    rec["choice"] = 2
    with pytest.raises(
        DataError, match=r"t\.jsonl:1: choice must be 0 or 1, got 2 \(field 'choice'\)"
    ):
        load_pairs(write_jsonl(tmp_path / "t.jsonl", [rec]))


# --- candidates -----------------------------------------------------------------------------------
def test_candidates_fixture_and_binarisation_by_hand() -> None:
    sets = load_candidates(FIX / "candidates.jsonl")
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
        FIX / "candidates.jsonl", DataConfig(min_gold_gap=0.3, pairs_per_prompt=10)
    )
    assert via_load.ids == ds.ids
    assert via_load.source == str(FIX / "candidates.jsonl")


def test_binarisation_is_deterministic_per_seed() -> None:
    sets = load_candidates(FIX / "candidates.jsonl")
    draws = {tuple(binarize_candidates(sets, 0.3, 2, seed).ids) for seed in range(20)}
    assert tuple(binarize_candidates(sets, 0.3, 2, 5).ids) == tuple(
        binarize_candidates(sets, 0.3, 2, 5).ids
    )
    assert len(draws) > 1  # 10 possible pairs of 5 eligible ones in set 1: seeds vary the draw


def test_load_candidates_rejects_a_pairs_file() -> None:
    with pytest.raises(
        DataError, match=r"hh\.jsonl:1: expected candidates records but this one looks like hh"
    ):
        load_candidates(FIX / "hh.jsonl")


# --- dataset object, splits, rendering ------------------------------------------------------------
def test_content_hash_is_pinned_and_content_sensitive() -> None:
    ds = load_pairs(FIX / "hh.jsonl")
    # Pinned: a change here invalidates every embedding cache, so it must be deliberate.
    assert ds.content_hash() == "d94c33a683ec28b0a085c992b56b3328c199fdfbbbaea0b2308479c7612fce00"
    assert load_pairs(FIX / "hh.jsonl").content_hash() == ds.content_hash()
    changed = PreferenceDataset(
        [ds[0], ds[1], PreferencePair("hh:4", ds[2].prompt, "Sure!", ds[2].rejected)]
    )
    assert changed.content_hash() != ds.content_hash()
    assert ds.subset([1, 0]).content_hash() != ds.subset([0, 1]).content_hash()
    assert ds.subset(np.array([2])).pairs == [ds[2]]
    assert ds[1:].ids == ["hh-multi", "hh:4"]


def test_split_indices_deterministic_disjoint_nested() -> None:
    s1, t1 = split_indices(100, 30, 50, seed=3)
    s2, t2 = split_indices(100, 30, 50, seed=3)
    np.testing.assert_array_equal(s1, s2)
    np.testing.assert_array_equal(t1, t2)
    assert (len(s1), len(t1), s1.dtype) == (30, 50, np.int64)
    assert not set(s1) & set(t1)
    assert not np.array_equal(split_indices(100, 30, 50, seed=4)[0], s1)
    seed_all, rest = split_indices(100, 30, None, seed=3)
    assert sorted([*seed_all, *rest]) == list(range(100))
    small, _ = split_indices(100, 10, None, seed=3)
    assert set(small) <= set(s1)  # a smaller seed set is inside a larger one for the same seed


def test_split_indices_errors() -> None:
    with pytest.raises(
        ConfigError, match="asked for 1000 seed pairs .* but the data has 800 pairs"
    ):
        split_indices(800, 1000, None, 0)
    with pytest.raises(ConfigError, match="asked for 600 seed \\+ 300 test pairs"):
        split_indices(800, 600, 300, 0)
    with pytest.raises(ConfigError):
        split_indices(800, 0, None, 0)


def test_carve_validation() -> None:
    idx = np.arange(100, 200)
    train, val = carve_validation(idx, 0.1, seed=0)
    assert (len(train), len(val)) == (90, 10)
    assert sorted([*train, *val]) == list(range(100, 200))
    np.testing.assert_array_equal(carve_validation(idx, 0.1, seed=0)[1], val)
    assert len(carve_validation(np.arange(5), 0.01, 0)[1]) == 1  # at least one validation pair
    train0, val0 = carve_validation(idx, 0.0, 0)
    assert (len(train0), len(val0)) == (100, 0)
    with pytest.raises(ConfigError, match="val_fraction"):
        carve_validation(idx, 1.0, 0)


def test_render_plain_exact() -> None:
    prompt = ({"role": "system", "content": "Be kind."}, u("Hi"), a("Hello"), u("Joke?"))
    assert (
        render_plain(prompt, "No.")
        == "Be kind.\n\nHuman: Hi\n\nAssistant: Hello\n\nHuman: Joke?\n\nAssistant: No."
    )
    assert render_plain((u("Hi"),), None) == "\n\nHuman: Hi\n\nAssistant:"
    assert parse_hh(render_plain(prompt, "No.")) == (prompt, "No.")


# --- real data ------------------------------------------------------------------------------------
def test_real_hh_first_lines_and_count(shared_data: Path) -> None:
    path = shared_data / "hh-rlhf" / "harmless-base-test.jsonl.gz"
    ds = load_pairs(path)  # load time is a benchmark figure (scripts/bench.py), not asserted here
    assert len(ds) == 2312
    with gzip.open(path, "rt", encoding="utf-8") as f:
        raw = [json.loads(next(f)) for _ in range(5)]
    for pair, rec in zip(ds.pairs[:5], raw, strict=True):
        c_prompt, c_resp = parse_hh(rec["chosen"])
        r_prompt, r_resp = parse_hh(rec["rejected"])
        assert pair.prompt == c_prompt == r_prompt
        assert pair.prompt[-1]["role"] == "user"
        assert (pair.chosen, pair.rejected) == (c_resp, r_resp)
        assert pair.chosen != pair.rejected
        assert rec["chosen"].endswith(pair.chosen) and rec["rejected"].endswith(pair.rejected)
    assert ds[0].prompt[0] == u("what are some pranks with a pen i can do?")
    assert ds[0].prompt[-1] == u("okay some of these do not have anything to do with pens")
    assert ds[0].chosen.startswith("No, sorry!  All of these involve a pen")
    assert len(ds[0].prompt) == 5
    assert all(p.prompt[-1]["role"] == "user" for p in ds)
    assert ds.stats["hh_split_at_divergence"] == 5
    assert ds.stats["empty_responses"] == 4  # 4 lines prefer an empty reply
    assert ds[1254].prompt[-1] == u("Isn't that drag kings?")  # line 1255, split where they diverge


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
