"""latentrm.data.formats: each record format from hand-written fixtures, format detection, bad
records (each error names file, line and field), HH render/parse round trips, real HH-RLHF."""

from __future__ import annotations

import gzip
import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from latentrm.config import DataConfig
from latentrm.data import PreferencePair, load_candidates, load_pairs, parse_hh, render_plain
from latentrm.errors import ConfigError, DataError
from latentrm.testing import HH_RECORD, write_jsonl
from latentrm.testing import assistant_message as a
from latentrm.testing import user_message as u
from tests.data.strategies import text


# --- formats from fixtures ------------------------------------------------------------------------
def test_hh_fixture_prompts_and_responses(fixtures_dir: Path) -> None:
    ds = load_pairs(str(fixtures_dir / "hh.jsonl"))
    assert ds.stats["format"] == "hh"
    assert ds.ids == ["hh:1", "hh-multi", "hh:4"]  # line 3 is blank; the id field wins on line 2
    assert ds[0] == PreferencePair("hh:1", (u("What is 2+2?"),), "4.", "5.")
    assert ds[1].prompt == (u("Hi"), a("Hello! How can I help?"), u("Tell me a joke."))
    assert ds[1].chosen == "Why did the chicken cross the road?"  # surrounding whitespace stripped
    assert ds[1].rejected == "No."
    # Text before the first Human turn is a system preamble (Anthropic's legacy prompt layout).
    assert ds[2].prompt == ({"role": "system", "content": "You are kind."}, u("Help me"))
    assert (ds[2].chosen, ds[2].rejected) == ("Sure.", "Go away.")


def test_trl_standard_fixture(fixtures_dir: Path) -> None:
    ds = load_pairs(fixtures_dir / "trl_standard.jsonl")
    assert ds.stats["format"] == "trl-standard"
    assert ds[0] == PreferencePair("trl_standard:1", (u("The sky is"),), "blue.", "green.")
    # An HH-style prompt string keeps its turns; the trailing empty Assistant marker is dropped.
    assert ds[1].prompt == (u("Hi"), a("Hey"), u("Name a color"))
    assert (ds[1].chosen, ds[1].rejected) == ("Red", "Table")


def test_trl_conversational_fixture_earlier_messages_join_prompt(fixtures_dir: Path) -> None:
    ds = load_pairs(fixtures_dir / "trl_conversational.jsonl")
    assert ds.stats["format"] == "trl-conversational"
    assert ds[0].prompt == (u("What color is the sky?"),)
    assert (ds[0].chosen, ds[0].rejected) == ("It is blue.", "It is green.")
    system = {"role": "system", "content": "Be brief."}
    assert ds[1].prompt == (system, u("Hi"), a("Hello"), u("Capital of France?"))
    assert (ds[1].chosen, ds[1].rejected) == ("Paris", "Lyon")


def test_trl_implicit_text_prompt_is_common_prefix_at_word_boundary(fixtures_dir: Path) -> None:
    ds = load_pairs(fixtures_dir / "trl_implicit.jsonl")
    assert ds.stats["format"] == "trl-implicit"
    # "The sky is bl" is the character prefix; the prompt backs off to whole words.
    assert (ds[0].prompt, ds[0].chosen, ds[0].rejected) == ((u("The sky is"),), "blue.", "black.")
    assert (ds[1].prompt, ds[1].chosen, ds[1].rejected) == ((u("Q: 1+1? A:"),), "2", "3")


def test_trl_implicit_conversational_json_data_wrapper(fixtures_dir: Path) -> None:
    ds = load_pairs(fixtures_dir / "trl_implicit_conversational.json")
    assert ds.stats["format"] == "trl-implicit-conversational"
    assert len(ds) == 1
    assert ds[0] == PreferencePair(
        "trl_implicit_conversational:1", (u("Where is the sun?"),), "In the sky.", "In the sea."
    )


def test_tldr_fixture(fixtures_dir: Path) -> None:
    ds = load_pairs(fixtures_dir / "tldr.jsonl")
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


# --- format detection -----------------------------------------------------------------------------
def test_forced_format_mismatch_is_an_error(fixtures_dir: Path) -> None:
    with pytest.raises(
        DataError, match=r"tldr\.jsonl:1: expected hh records but this one looks like tldr$"
    ):
        load_pairs(fixtures_dir / "tldr.jsonl", DataConfig(format="hh"))
    with pytest.raises(ConfigError, match="data.format must be one of"):
        load_pairs(fixtures_dir / "hh.jsonl", DataConfig(format="sharegpt"))


def test_load_candidates_rejects_a_pairs_file(fixtures_dir: Path) -> None:
    with pytest.raises(
        DataError, match=r"hh\.jsonl:1: expected candidates records but this one looks like hh"
    ):
        load_candidates(fixtures_dir / "hh.jsonl")


def test_misspelled_key_names_the_nearest(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "typo.jsonl", [HH_RECORD, {"chosen": HH_RECORD["chosen"], "rejeced": "x"}]
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


def test_mixed_formats_name_the_first_differing_line(tmp_path: Path) -> None:
    std = {"prompt": "q", "chosen": "a", "rejected": "b"}
    conv = {"prompt": [u("q")], "chosen": [a("a")], "rejected": [a("b")]}
    path = write_jsonl(tmp_path / "mixed.jsonl", [std, std, conv, HH_RECORD])
    with pytest.raises(
        DataError,
        match=r"mixed\.jsonl:3: mixed formats: this record is trl-conversational "
        r"but line 1 is trl-standard$",
    ):
        load_pairs(path)
    path = write_jsonl(
        tmp_path / "mixed2.jsonl", [HH_RECORD, {"info": {}, "summaries": [], "choice": 0}]
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


# --- bad records ----------------------------------------------------------------------------------
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


def test_hh_dialogue_without_assistant_turn(tmp_path: Path) -> None:
    rec = {"chosen": "\n\nHuman: hi there", "rejected": "\n\nHuman: hi\n\nAssistant: go"}
    path = write_jsonl(tmp_path / "noasst.jsonl", [HH_RECORD, rec])
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
        match=r"c\.jsonl:1: role must be user, assistant or system .* got 'bot' "
        r"\(field 'chosen\[0\]\.role'\)",
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


def test_tldr_bad_choice(tmp_path: Path, fixtures_dir: Path) -> None:
    rec = json.loads((fixtures_dir / "tldr.jsonl").read_text().splitlines()[0])
    rec["choice"] = 2
    with pytest.raises(
        DataError, match=r"t\.jsonl:1: choice must be 0 or 1, got 2 \(field 'choice'\)"
    ):
        load_pairs(write_jsonl(tmp_path / "t.jsonl", [rec]))


# --- HH rendering and parsing ---------------------------------------------------------------------
def test_render_plain_exact() -> None:
    prompt = ({"role": "system", "content": "Be kind."}, u("Hi"), a("Hello"), u("Joke?"))
    assert (
        render_plain(prompt, "No.")
        == "Be kind.\n\nHuman: Hi\n\nAssistant: Hello\n\nHuman: Joke?\n\nAssistant: No."
    )
    assert render_plain((u("Hi"),), None) == "\n\nHuman: Hi\n\nAssistant:"
    assert parse_hh(render_plain(prompt, "No.")) == (prompt, "No.")


@st.composite
def dialogues(draw: st.DrawFn) -> tuple[tuple[dict[str, str], ...], str]:
    """(prompt ending with a user turn, assistant response); optional system preamble."""
    turns = draw(st.integers(1, 4))
    msgs: list[dict[str, str]] = []
    if draw(st.booleans()):
        # A preamble starting like a turn would read as one: "Human: x" before "\n\nHuman:".
        system = draw(text.filter(lambda s: not s.startswith(("Human:", "Assistant:"))))
        msgs.append({"role": "system", "content": system})
    for k in range(turns):
        msgs.append({"role": "user", "content": draw(text)})
        if k < turns - 1:
            msgs.append({"role": "assistant", "content": draw(text)})
    return tuple(msgs), draw(text)


FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(dialogues())
def test_render_plain_then_parse_hh_round_trips(dialogue: tuple) -> None:
    prompt, response = dialogue
    assert parse_hh(render_plain(prompt, response)) == (prompt, response)
    assert render_plain(prompt, None) + " " + response == render_plain(prompt, response)


@FAST
@given(dialogues(), text, text)
def test_hh_pair_file_round_trips_messages(dialogue: tuple, chosen: str, rejected: str) -> None:
    prompt, _ = dialogue
    rec = {"chosen": render_plain(prompt, chosen), "rejected": render_plain(prompt, rejected)}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "hh.jsonl"
        path.write_text(json.dumps(rec) + "\n", encoding="utf-8")
        if chosen == rejected:
            # Identical replies are dropped; the file then has no pairs at all.
            return
        ds = load_pairs(path)
    assert ds.stats["format"] == "hh"
    assert (ds[0].prompt, ds[0].chosen, ds[0].rejected) == (prompt, chosen, rejected)


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
