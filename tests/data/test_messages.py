"""latentrm.data.messages: prompts and completions as people pass them -> message tuples."""

from __future__ import annotations

import pytest

from latentrm.data.messages import as_prompt, as_response, maybe_json_list, short
from latentrm.errors import DataError

DEEP = "[" * 100_000 + "]" * 100_000


def test_text_hh_text_and_messages_become_the_same_kind_of_prompt():
    assert as_prompt("  What is 2+2? ") == ({"role": "user", "content": "What is 2+2?"},)
    assert as_prompt("\n\nHuman: hi\n\nAssistant: hey\n\nHuman: more?\n\nAssistant:") == (
        {"role": "user", "content": "hi"}, {"role": "assistant", "content": "hey"},
        {"role": "user", "content": "more?"})
    msgs = [{"role": "system", "content": "be brief"},
            {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text",
                                                                         "text": "b"}]}]
    assert as_prompt(msgs) == ({"role": "system", "content": "be brief"},
                               {"role": "user", "content": "ab"})
    # a CSV cell holding the messages as JSON text
    assert as_prompt('[{"role": "user", "content": "x"}]') == ({"role": "user", "content": "x"},)
    assert as_prompt("[not json") == ({"role": "user", "content": "[not json"},)


def test_a_conversational_completion_puts_tool_turns_in_the_context():
    ctx, text = as_response(
        [{"role": "assistant", "content": ""}, {"role": "tool", "content": "rain"},
         {"role": "assistant", "content": " Rainy. "}],
        ({"role": "user", "content": "weather?"},),
    )
    assert text == "Rainy."
    assert [m["role"] for m in ctx] == ["user", "assistant", "tool"]
    with pytest.raises(DataError, match=r"^f\.jsonl:3: completion messages contain no assistant "
                                        r"message \(field 'c'\)$"):
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
    with pytest.raises(DataError, match=r"^prompt must be a string or a list of messages, got "
                                        r"list \[\[\[\[\.\.\.\]\]\]\] \(field 'p'\)$"):
        as_prompt(deep, field="p")
    with pytest.raises(DataError, match=r"got int 123 \(field 'c'\)$"):
        as_response(123, field="c")
