"""Prompts and completions as people pass them to a reward model -> message tuples.

Serving (`latentrm score` / `bon`, the TRL reward function, Best-of-N) takes prompts and responses
in the shapes people already have: plain strings or chat messages (TRL's "standard" and
"conversational" formats), HH-style dialogue text, JSON text in CSV cells. :func:`as_prompt` and
:func:`as_response` turn each into what the embedder reads: a tuple of ``{"role", "content"}``
messages and a response string, rendered like the training data. Served prompts may hold tool
turns (agentic rollouts), which training data never has.
"""

from __future__ import annotations

import json
import reprlib
from collections.abc import Mapping, Sequence
from typing import Any

from latentrm.data.formats import parse_hh
from latentrm.data.types import Prompt
from latentrm.errors import DataError

_ROLES = ("system", "user", "assistant", "tool")


def _content_text(content: Any) -> str:
    """Message content as text; multimodal content lists keep their text parts only."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p.get("text", "") if isinstance(p, Mapping) else str(p) for p in content]
        return "".join(p for p in parts if p)
    return str(content)


def is_messages(value: Any) -> bool:
    return (
        isinstance(value, (list, tuple))
        and len(value) > 0
        and all(isinstance(m, Mapping) and "role" in m for m in value)
    )


def maybe_json_list(value: Any, **where: Any) -> Any:
    """CSV cells hold lists as JSON text: decode text that parses as a JSON list, else keep it.

    JSON nested deeper than Python's recursion limit is a DataError (`where`: path=, line=,
    field=), not a RecursionError.
    """
    if isinstance(value, str) and value.lstrip().startswith("["):
        try:
            decoded = json.loads(value)
        except json.JSONDecodeError:
            return value
        except RecursionError:
            raise DataError("JSON nested too deeply", **where) from None
        if isinstance(decoded, list):
            return decoded
    return value


def maybe_json_messages(value: Any, **where: Any) -> Any:
    """Like maybe_json_list, but only for message lists: a text prompt may well start with '['."""
    decoded = maybe_json_list(value, **where)
    return decoded if is_messages(decoded) else value


def _messages(value: Sequence[Mapping[str, Any]], where: dict[str, Any]) -> Prompt:
    out = []
    for m in value:
        role = m.get("role")
        if role not in _ROLES:
            raise DataError(f"message role must be one of {_ROLES}, got {role!r}", **where)
        out.append({"role": str(role), "content": _content_text(m.get("content")).strip()})
    return tuple(out)


def _looks_hh(text: str) -> bool:
    return "\n\nHuman:" in text or text.lstrip().startswith("Human:")


def _hh_prompt(text: str, where: dict[str, Any]) -> Prompt:
    """'\\n\\nHuman: hi\\n\\nAssistant:' -> messages, by the rule training data was parsed with."""
    body = text.rstrip()
    if not body.endswith("Assistant:"):
        body += "\n\nAssistant:"
    try:
        # parse_hh splits a whole dialogue at its last Assistant turn; "." stands in for the reply.
        return parse_hh(body + " .")[0]
    except DataError as e:
        raise DataError(str(e), **where) from None


def as_prompt(value: Any, **where: Any) -> Prompt:
    """A prompt as a message tuple: text becomes one user turn, a message list is kept.

    HH-style text ("\\n\\nHuman: ...\\n\\nAssistant:") keeps its turns, as `latentrm.data` parses
    training prompts, so served inputs render like the training data. Contents are stripped (so are
    the training pairs'). `where` (path=, line=, field=) goes into any DataError.
    """
    value = maybe_json_messages(value, **where)
    if isinstance(value, str):
        if _looks_hh(value):
            return _hh_prompt(value, where)
        return ({"role": "user", "content": value.strip()},)
    if is_messages(value):
        return _messages(value, where)
    raise DataError(f"prompt must be a string or a list of messages, got {short(value)}", **where)


def as_response(value: Any, prompt: Prompt = (), **where: Any) -> tuple[Prompt, str]:
    """(context, response) for a completion given as text or as messages; the response is stripped.

    A conversational completion's last assistant message is the response; messages before it (tool
    calls and tool results in agentic rollouts) belong to the context the response answers, so they
    are appended to `prompt`.
    """
    value = maybe_json_messages(value, **where)
    if isinstance(value, str):
        return prompt, value.strip()
    if isinstance(value, Mapping) and "role" in value:
        value = [value]
    if is_messages(value):
        msgs = _messages(value, where)
        last = max((i for i, m in enumerate(msgs) if m["role"] == "assistant"), default=None)
        if last is None:
            raise DataError("completion messages contain no assistant message", **where)
        return prompt + msgs[:last], msgs[last]["content"]
    raise DataError(
        f"response must be a string or a list of messages, got {short(value)}", **where
    )


_SHORT = reprlib.Repr()
_SHORT.maxlevel, _SHORT.maxstring, _SHORT.maxother = 3, 60, 60


def short(value: Any) -> str:
    """Type and a bounded repr of `value` for error messages (deeply nested values are safe)."""
    text = _SHORT.repr(value)
    return f"{type(value).__name__} {text[:60]}{'...' if len(text) > 60 else ''}"
