"""latentrm.data.messages: prompts and completions as people pass them -> message tuples."""

from __future__ import annotations

import pytest

from latentrm.data.messages import as_prompt, as_response, maybe_json_list, short
from latentrm.errors import DataError

DEEP = "[" * 100_000 + "]" * 100_000


def test_text_hh_text_and_messages_become_the_same_kind_of_prompt():
    assert as_prompt("  What is 2+2? ") == ({"role": "user", "content": "What is 2+2?"},)
    assert as_prompt("\n\nHuman: hi\n\nAssistant: hey\n\nHuman: more?\n\nAssistant:") == (
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hey"},
        {"role": "user", "content": "more?"},
    )
    msgs = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
    ]
    assert as_prompt(msgs) == (
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "ab"},
    )
    # a CSV cell holding the messages as JSON text
    assert as_prompt('[{"role": "user", "content": "x"}]') == ({"role": "user", "content": "x"},)
    assert as_prompt("[not json") == ({"role": "user", "content": "[not json"},)


def test_a_conversational_completion_puts_tool_turns_in_the_context():
    ctx, text = as_response(
        [
            {"role": "assistant", "content": ""},
            {"role": "tool", "content": "rain"},
            {"role": "assistant", "content": " Rainy. "},
        ],
        ({"role": "user", "content": "weather?"},),
    )
    assert text == "Rainy."
    assert [m["role"] for m in ctx] == ["user", "assistant", "tool"]
    with pytest.raises(
        DataError,
        match=r"^f\.jsonl:3: completion messages contain no assistant "
        r"message \(field 'c'\)$",
    ):
        as_response([{"role": "user", "content": "x"}], path="f.jsonl", line=3, field="c")


def test_deeply_nested_json_text_is_a_data_error_naming_where():
    with pytest.raises(DataError, match=r"^in\.csv:2: JSON nested too deeply \(field 'prompt'\)$"):
        as_prompt(DEEP, path="in.csv", line=2, field="prompt")
    with pytest.raises(DataError, match=r"^JSON nested too deeply \(field 'response'\)$"):
        as_response(DEEP, field="response")
    with pytest.raises(DataError, match=r"^in\.csv:4: JSON nested too deeply$"):
        maybe_json_list(DEEP, path="in.csv", line=4)


def test_errors_show_a_short_repr_even_of_deeply_nested_values():
    deep: list = []
    for _ in range(10_000):  # repr() of this raises RecursionError
        deep = [deep]
    assert short(deep) == "list [[[[...]]]]"
    # reprlib keeps (60 - 3) // 2 = 28 characters of the repr in front and 29 behind "..."
    assert short("x" * 100) == "str '" + "x" * 27 + "..." + "x" * 28 + "'"
    with pytest.raises(
        DataError,
        match=r"^prompt must be a string or a list of messages, got "
        r"dict \{'x': \[\[\[\.\.\.\]\]\]\} \(field 'p'\)$",
    ):
        as_prompt({"x": deep}, field="p")
    # a list is a message list, checked message by message like training data
    with pytest.raises(
        DataError,
        match=r"^expected a \{role, content\} message, got list "
        r"\(field 'p\[0\]'\)$",
    ):
        as_prompt(deep, field="p")
    with pytest.raises(DataError, match=r"got int 123 \(field 'c'\)$"):
        as_response(123, field="c")


# --- one parser: serving follows the training rules (issue 23 item 6, issue 22 item 3d) ---------
U = {"role": "user", "content": "q"}
A = {"role": "assistant", "content": "a"}
PROMPT_CASES = {
    "empty-text": ("", r"empty prompt"),
    "whitespace-text": ("  \n ", r"empty prompt"),
    "whitespace-messages": ([{"role": "user", "content": "   "}], r"empty prompt"),
    "content-a-number": (
        [{"role": "user", "content": 123}],
        r"content must be a string or a list of text parts, got int",
    ),
    "content-null": (
        [{"role": "user", "content": None}],
        r"content must be a string or a list of text parts, got NoneType",
    ),
    "content-an-object": (
        [{"role": "user", "content": {"text": "q"}}],
        r"content must be a string or a list of text parts, got dict",
    ),
    "ends-with-assistant": ([U, A], r"prompt must end with a user message, not assistant"),
    "hh-ends-with-an-answer": (
        "\n\nHuman: q\n\nAssistant: a",
        r"prompt must end with a user message, not assistant",
    ),
    "unknown-role": ([{"role": "robot", "content": "q"}], r"role must be user, assistant or"),
    "lone-surrogate": ("q \ud800", r"lone UTF-16 surrogate"),
}


def _record(prompt) -> dict:
    """A training record with `prompt` (TRL standard or conversational, as the prompt is)."""
    if isinstance(prompt, str):
        return {"prompt": prompt, "chosen": "x", "rejected": "y"}
    return {
        "prompt": prompt,
        "chosen": [{"role": "assistant", "content": "x"}],
        "rejected": [{"role": "assistant", "content": "y"}],
    }


@pytest.mark.parametrize("case", list(PROMPT_CASES))
def test_serving_refuses_the_prompts_training_refuses_with_the_same_message(case):
    """One parser (latentrm.data.messages) for both: each bad prompt is refused by `score`/`bon`/
    the TRL reward function and by the training loader, with the same message."""
    from latentrm.data.load import pairs_from_source
    from latentrm.data.readers import Source

    value, pattern = PROMPT_CASES[case]
    with pytest.raises(DataError, match=pattern) as served:
        as_prompt(value, path="rows.jsonl", line=1, field="prompt")
    src = Source("pairs.jsonl", "pairs", [(1, _record(value))])
    with pytest.raises(DataError, match=pattern) as trained:
        pairs_from_source(src)
    assert str(served.value).split(": ", 1)[1] == str(trained.value).split(": ", 1)[1]


def test_serving_and_training_parse_good_prompts_alike():
    from latentrm.data.load import pairs_from_source
    from latentrm.data.readers import Source

    for value in (
        "  q ",
        "\n\nHuman: q\n\nAssistant: a\n\nHuman: more?\n\nAssistant:",
        [{"role": "system", "content": "s"}, U],
        [{"role": "user", "content": [{"type": "text", "text": "q"}]}],
    ):
        src = Source("p.jsonl", "p", [(1, _record(value))])
        assert as_prompt(value) == pairs_from_source(src)[0].prompt, value


def test_a_completion_must_end_with_its_assistant_reply():
    """A completion with a turn after its last assistant message used to lose that turn."""
    with pytest.raises(
        DataError,
        match=r"must end with an assistant message \(the response\) "
        r"\(field 'c'\)$",
    ):
        as_response([A, {"role": "user", "content": "and?"}], (U,), field="c")
    assert as_response([A], (U,)) == ((U,), "a")


def test_an_assistant_turn_that_only_calls_tools_may_have_null_content():
    call = {
        "role": "assistant",
        "content": None,
        "tool_calls": [{"type": "function", "function": {"name": "weather"}}],
    }
    ctx, reply = as_response(
        [call, {"role": "tool", "content": "rain"}, {"role": "assistant", "content": "Rainy."}],
        (U,),
    )
    assert reply == "Rainy." and [m["content"] for m in ctx] == ["q", "", "rain"]
    with pytest.raises(DataError, match=r"content must be a string .* got NoneType"):
        as_response([{"role": "assistant", "content": None}], (U,))
