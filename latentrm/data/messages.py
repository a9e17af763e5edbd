"""The one message parser: prompts and responses -> message tuples, for training and serving.

Training records (:mod:`latentrm.data.formats`) and served inputs (`latentrm score` / `bon`, the
TRL reward function, Best-of-N, :meth:`RewardModel.score`) go through the same functions, so one
input is accepted or refused alike, with the same message:

- a prompt is text (one user turn; HH-style ``"\\n\\nHuman: ...\\n\\nAssistant:"`` text keeps its
  turns, text before the first turn becomes a system message) or a list of ``{"role",
  "content"}`` messages;
- a message's content is a string, or a list of text parts (``{"type": "text", "text": ...}``;
  other parts such as images are skipped), or null in an assistant turn that only calls tools
  (``tool_calls``); anything else is refused, never turned into text;
- contents and responses are stripped of surrounding whitespace;
- a prompt holds some non-blank text and ends with a user turn (served contexts may also end
  with a tool result: agentic rollouts, the one thing training data never holds);
- a conversational response ends with its assistant message; messages before it (tool calls and
  results) join the context;
- text must be encodable as UTF-8 (no lone UTF-16 surrogates).

Each check raises :class:`RecordError` (message + field); the training loaders add file and
line, and the serving functions here (:func:`as_prompt`, :func:`as_response`) raise a
:class:`DataError` with the caller's ``path=``, ``line=``, ``field=``.
"""

from __future__ import annotations

import json
import re
import reprlib
from collections.abc import Mapping, Sequence
from typing import Any

from latentrm.data.types import Message, Prompt
from latentrm.errors import DataError

# Roles of training data; served prompts may also hold tool turns (agentic rollouts).
ROLES = ("user", "assistant", "system")
SERVED_ROLES = (*ROLES, "tool")
_HH_TURN = re.compile(r"\n\n(Human|Assistant):")
ASSISTANT = "\n\nAssistant:"


class RecordError(Exception):
    """A problem inside one record or input; callers add file and line to make it a DataError."""

    def __init__(self, msg: str, field: str | None = None, near: bool = False) -> None:
        super().__init__(msg)
        # near: a missing key has a close misspelling in the record, the likeliest explanation.
        self.msg, self.field, self.near = msg, field, near


# --- the rules ------------------------------------------------------------------------------------
def text(value: Any, field: str | None) -> str:
    """`value` if it is a string of UTF-8-encodable text, else RecordError."""
    if not isinstance(value, str):
        raise RecordError(f"expected a string, got {type(value).__name__}", field)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise RecordError("lone UTF-16 surrogate (half of a character): not text", field) from None
    return value


def _content(value: Any, field: str) -> str:
    """Message content as text: a string, or the text parts of a content list."""
    if isinstance(value, list) and all(isinstance(p, Mapping) for p in value):
        parts = [
            text(p.get("text"), f"{field}[{k}].text")
            for k, p in enumerate(value)
            if p.get("type", "text") == "text"
        ]
        return "".join(parts)
    if not isinstance(value, str):
        raise RecordError(
            f"content must be a string or a list of text parts, got {type(value).__name__}", field
        )
    return text(value, field)


def messages(value: Any, field: str, roles: Sequence[str] = ROLES) -> list[Message]:
    """A list of {role, content} messages, checked, contents stripped."""
    if not isinstance(value, (list, tuple)):
        raise RecordError(
            f"expected a list of {{role, content}} messages, got {type(value).__name__}", field
        )
    out = []
    for k, m in enumerate(value):
        where = f"{field}[{k}]"
        if not isinstance(m, Mapping):
            raise RecordError(
                f"expected a {{role, content}} message, got {type(m).__name__}", where
            )
        if m.get("role") not in roles:
            raise RecordError(
                "role must be user, assistant or system (or tool, in served "
                f"prompts), got {m.get('role')!r:.40}",
                where + ".role",
            )
        content = m.get("content")
        if content is None and m["role"] == "assistant" and m.get("tool_calls"):
            content = ""  # an assistant turn that only calls tools (OpenAI / TRL tool format)
        out.append({"role": m["role"], "content": _content(content, where + ".content").strip()})
    return out


def check_prompt(msgs: Sequence[Message], field: str | None, served: bool = False) -> Prompt:
    """The prompt as a tuple: some non-blank text, ending with a user turn (or, `served`, a tool
    result)."""
    if not any(m["content"] for m in msgs):
        raise RecordError("empty prompt", field)
    ends = ("user", "tool") if served else ("user",)
    if msgs[-1]["role"] not in ends:
        raise RecordError(f"prompt must end with a user message, not {msgs[-1]['role']}", field)
    return tuple(msgs)


def looks_hh(value: Any) -> bool:
    """Whether `value` is HH-style dialogue text ('\\n\\nHuman: ...\\n\\nAssistant: ...')."""
    return isinstance(value, str) and (
        "\n\nHuman:" in value or ASSISTANT in value or value.lstrip().startswith("Human:")
    )


def hh_messages(dialogue: str) -> list[Message]:
    """'\\n\\nHuman: a\\n\\nAssistant: b' -> messages; text before the first turn -> system."""
    stripped = dialogue.lstrip()
    if stripped.startswith(("Human:", "Assistant:")):
        dialogue = "\n\n" + stripped
    parts = _HH_TURN.split(dialogue)
    msgs = [{"role": "system", "content": parts[0].strip()}] if parts[0].strip() else []
    for role, content in zip(parts[1::2], parts[2::2], strict=True):
        msgs.append(
            {"role": "user" if role == "Human" else "assistant", "content": content.strip()}
        )
    return msgs


def hh_split(value: Any, field: str) -> tuple[str, str]:
    """An HH dialogue -> (text before its last Assistant turn, the reply after it)."""
    i = text(value, field).rfind(ASSISTANT)
    if i < 0:
        raise RecordError("HH dialogue has no '\\n\\nAssistant:' turn", field)
    return value[:i], value[i + len(ASSISTANT) :]


def text_prompt(value: Any, field: str) -> Prompt:
    """A prompt given as text: HH-style text keeps its turns (a trailing empty Assistant turn,
    the generation prompt, is dropped), other text is one user turn."""
    if looks_hh(text(value, field)):
        msgs = hh_messages(value)
        if msgs and msgs[-1]["role"] == "assistant" and not msgs[-1]["content"]:
            msgs = msgs[:-1]
    else:
        msgs = [{"role": "user", "content": value.strip()}]
    return check_prompt(msgs or [{"role": "user", "content": ""}], field)


def response(value: Any, field: str, allow_empty: bool = True) -> str:
    """A response given as text, stripped."""
    reply = text(value, field).strip()
    if not reply and not allow_empty:
        raise RecordError("empty response", field)
    return reply


def conversation_reply(msgs: Sequence[Message], field: str) -> tuple[list[Message], str]:
    """(messages before the reply, the reply) of a conversation ending with its reply."""
    if not msgs or msgs[-1]["role"] != "assistant":
        raise RecordError("must end with an assistant message (the response)", field)
    return list(msgs[:-1]), msgs[-1]["content"]


def parse_hh(dialogue: str) -> tuple[Prompt, str]:
    """One HH dialogue -> (prompt messages, final assistant response); inverse of render_plain."""
    try:
        before, reply = hh_split(dialogue, "text")
        return check_prompt(hh_messages(before), "text"), response(reply, "text")
    except RecordError as e:
        raise DataError(e.msg, field=e.field) from None


# --- serving: the shapes people pass, errors naming where -----------------------------------------
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


def _data_error(e: RecordError, where: dict[str, Any]) -> DataError:
    """A RecordError as a DataError at `where`; the caller's field goes first ('prompt[0].role'
    when the caller's field is 'prompt' and the record's 'prompt[0].role')."""
    field, sub = where.get("field"), e.field
    if field and sub and sub.startswith(("prompt", "response", "text")):
        sub = sub.split("[", 1)[1] if "[" in sub else None
        sub = f"{field}[{sub}" if sub else field
    return DataError(e.msg, **{**where, "field": sub or field})


def as_prompt(value: Any, **where: Any) -> Prompt:
    """A served prompt as a message tuple (text, HH text, messages, or messages as JSON text in
    a CSV cell), by the training rules (module docstring). `where` (path=, line=, field=) goes
    into any DataError."""
    value = maybe_json_messages(value, **where)
    try:
        if isinstance(value, str):
            return text_prompt(value, "prompt")
        if isinstance(value, (list, tuple)) and value:
            return check_prompt(messages(value, "prompt", SERVED_ROLES), "prompt", served=True)
    except RecordError as e:
        raise _data_error(e, where) from None
    raise DataError(f"prompt must be a string or a list of messages, got {short(value)}", **where)


def as_response(value: Any, prompt: Prompt = (), **where: Any) -> tuple[Prompt, str]:
    """(context, response) for a completion given as text or as messages; the response is stripped.

    A conversational completion ends with its assistant message, the response; messages before
    it (tool calls and tool results in agentic rollouts) belong to the context the response
    answers, so they are appended to `prompt`.
    """
    value = maybe_json_messages(value, **where)
    if isinstance(value, Mapping) and "role" in value:
        value = [value]
    try:
        if isinstance(value, str):
            return prompt, response(value, "response")
        if isinstance(value, (list, tuple)) and value:
            msgs = messages(value, "response", SERVED_ROLES)
            if not any(m["role"] == "assistant" for m in msgs):
                raise RecordError("completion messages contain no assistant message")
            before, reply = conversation_reply(msgs, "response")
            if before:
                check_prompt(list(prompt) + before, "response", served=True)
            return prompt + tuple(before), reply
    except RecordError as e:
        raise _data_error(e, where) from None
    raise DataError(f"response must be a string or a list of messages, got {short(value)}", **where)


def as_batch(value: Any, name: str, what: str) -> Sequence[Any]:
    """`value` as a sequence of items, refusing one string (which would be iterated character
    by character) or one mapping: DataError naming the argument."""
    if isinstance(value, (str, bytes, Mapping)) or not (
        hasattr(value, "__len__") and hasattr(value, "__iter__")  # lists, arrays, Series
    ):
        raise DataError(
            f"{name} must be a list of {what}, got {short(value)} (one item? pass [item])",
            field=name,
        )
    return value


_SHORT = reprlib.Repr()
_SHORT.maxlevel, _SHORT.maxstring, _SHORT.maxother = 3, 60, 60


def short(value: Any) -> str:
    """Type and a bounded repr of `value` for error messages (deeply nested values are safe)."""
    shown = _SHORT.repr(value)
    return f"{type(value).__name__} {shown[:60]}{'...' if len(shown) > 60 else ''}"
