"""Record formats: one raw record -> (prompt messages, chosen, rejected), or a candidate set.

Formats are detected from the first record's keys (``DataConfig.format`` forces one):

- ``hh``: HH-RLHF raw dialogues ``{"chosen": "\\n\\nHuman: ...\\n\\nAssistant: ...", "rejected"}``.
  Each is split at its last ``\\n\\nAssistant:``: before it the prompt (turns become messages,
  Human -> user, Assistant -> assistant, text before the first turn -> system), after it the
  response. A few HH replies contain further turns written by the model, so the two dialogues'
  last markers differ; then the split is the last ``\\n\\nAssistant:`` before the texts diverge
  (only when they diverge inside an assistant turn; counted in ``stats["hh_split_at_divergence"]``).
- ``trl``: TRL preference formats: standard (``prompt``/``chosen``/``rejected`` strings; an
  HH-style prompt string is parsed into turns), conversational (lists of ``{role, content}``;
  earlier messages of ``chosen``/``rejected`` join the prompt, the final assistant message is the
  response), and implicit prompt (no ``prompt``: conversations sharing all but their last message,
  or texts whose common prefix, cut back to whitespace, is the prompt; HH-style texts use the HH
  rule).
- ``tldr``: openai/summarize_from_feedback "comparisons": ``info.{subreddit,title,post}`` ->
  prompt, ``summaries[choice].text`` chosen, ``summaries[1 - choice].text`` rejected.
- ``candidates``: alpaca-eval ``{"instruction", "candidates": [{"generator", "output", "gold"}]}``.
- ``labelled``: a labelled `latentrm suggest` file: ``prompt`` (text, HH-style turns kept, or
  messages), ``response_a``, ``response_b`` and ``label`` ``a`` or ``b`` (the preferred response,
  any case); other columns (the suggestion's reasons) are ignored.

All message contents and responses are stripped of surrounding whitespace. A problem inside a
record raises :class:`RecordError` (message + field); the loaders add file and line.
:func:`render_plain` is the inverse of :func:`parse_hh`: the HH text of a prompt (and response).
"""

from __future__ import annotations

import difflib
import math
import os
import re
from collections.abc import Iterator, Sequence
from typing import Any

from latentrm.config import DataConfig
from latentrm.data.readers import Source
from latentrm.data.types import Message, Prompt
from latentrm.errors import ConfigError, DataError

_ROLES = ("user", "assistant", "system")
_HH_TURN = re.compile(r"\n\n(Human|Assistant):")
_ASSISTANT = "\n\nAssistant:"
# difflib ratio above which an unexpected key counts as a misspelling ("rejeced" 0.93, "promt"
# 0.91) rather than another format's key ("choice" vs "chosen" 0.67) or an extra column
# ("prompt_id" vs "prompt" 0.80, common next to implicit-prompt conversations).
_NEAR = 0.82
_FORMATS = ("auto", "hh", "trl", "tldr", "candidates", "labelled")
# Keys each record shape needs; "candidates" also needs "instruction" or "prompt".
_REQUIRED = {
    "prompt-text": ("prompt", "chosen", "rejected"),
    "prompt-messages": ("prompt", "chosen", "rejected"),
    "pair-text": ("chosen", "rejected"),
    "pair-messages": ("chosen", "rejected"),
    "tldr": ("info", "summaries", "choice"),
    "candidates": ("instruction", "candidates"),
    "labelled": ("prompt", "response_a", "response_b", "label"),
}
_FORCED_SHAPES = {
    "hh": ("pair-text",),
    "trl": ("prompt-text", "prompt-messages", "pair-text", "pair-messages"),
    "tldr": ("tldr",),
    "candidates": ("candidates",),
    "labelled": ("labelled",),
}


class RecordError(Exception):
    """A problem inside one record; the record loop adds file and line to make it a DataError."""

    def __init__(self, msg: str, field: str | None = None, near: bool = False) -> None:
        super().__init__(msg)
        # near: a missing key has a close misspelling in the record, the likeliest explanation.
        self.msg, self.field, self.near = msg, field, near


# --- parsing records ------------------------------------------------------------------------------
def _shape(rec: dict) -> str | None:
    if "candidates" in rec:
        return "candidates"
    if "summaries" in rec and "choice" in rec:
        return "tldr"
    if "response_a" in rec and "response_b" in rec:
        return "labelled"
    if "chosen" in rec and "rejected" in rec:
        if "prompt" in rec:
            return "prompt-messages" if isinstance(rec["prompt"], list) else "prompt-text"
        return "pair-messages" if isinstance(rec["chosen"], list) else "pair-text"
    return None


def _missing_key(rec: dict, expected: Sequence[str]) -> RecordError | None:
    missing = [k for k in expected if k not in rec]
    if expected == _REQUIRED["candidates"] and "prompt" in rec:
        missing = [k for k in missing if k != "instruction"]
    if not missing:
        return None
    extra = [str(k) for k in rec if k not in expected]
    for k in missing:
        close = difflib.get_close_matches(k, extra, n=1, cutoff=_NEAR)
        if close:
            return RecordError(f"missing '{k}' (found '{close[0]}')", near=True)
    found = ", ".join(f"'{k}'" for k in rec) or "none"
    return RecordError(f"missing '{missing[0]}' (keys: {found})")


def _nearest_format_error(rec: dict, shapes: Sequence[str]) -> RecordError:
    def score(s: str) -> tuple[int, int]:
        req = _REQUIRED[s]
        return sum(k in rec for k in req), -sum(k not in rec for k in req)

    best = max(shapes, key=score)
    fallback = RecordError(f"unrecognised record (keys: {list(rec)})")
    return _missing_key(rec, _REQUIRED[best]) or fallback


def _looks_hh(text: Any) -> bool:
    return isinstance(text, str) and (
        "\n\nHuman:" in text or _ASSISTANT in text or text.lstrip().startswith("Human:")
    )


def _text(value: Any, field: str) -> str:
    if not isinstance(value, str):
        raise RecordError(f"expected a string, got {type(value).__name__}", field)
    return value


def _response(value: Any, field: str, allow_empty: bool) -> str:
    text = _text(value, field).strip()
    if not text and not allow_empty:
        raise RecordError("empty response", field)
    return text


def _check_prompt(msgs: Sequence[Message], field: str) -> Prompt:
    if not any(m["content"] for m in msgs):
        raise RecordError("empty prompt", field)
    if msgs[-1]["role"] != "user":
        raise RecordError(f"prompt must end with a user message, not {msgs[-1]['role']}", field)
    return tuple(msgs)


def _messages(value: Any, field: str) -> list[Message]:
    if not isinstance(value, list):
        raise RecordError(
            f"expected a list of {{role, content}} messages, got {type(value).__name__}", field
        )
    out = []
    for k, m in enumerate(value):
        where = f"{field}[{k}]"
        if not isinstance(m, dict):
            raise RecordError(
                f"expected a {{role, content}} message, got {type(m).__name__}", where
            )
        if m.get("role") not in _ROLES:
            raise RecordError(
                f"role must be one of {', '.join(_ROLES)}, got {m.get('role')!r}", where + ".role"
            )
        out.append(
            {"role": m["role"], "content": _text(m.get("content"), where + ".content").strip()}
        )
    return out


def _hh_messages(text: str) -> list[Message]:
    """'\\n\\nHuman: a\\n\\nAssistant: b' -> messages; text before the first turn -> system."""
    stripped = text.lstrip()
    if stripped.startswith(("Human:", "Assistant:")):
        text = "\n\n" + stripped
    parts = _HH_TURN.split(text)
    msgs = [{"role": "system", "content": parts[0].strip()}] if parts[0].strip() else []
    for role, content in zip(parts[1::2], parts[2::2], strict=True):
        msgs.append(
            {"role": "user" if role == "Human" else "assistant", "content": content.strip()}
        )
    return msgs


def _hh_split(text: Any, field: str) -> tuple[str, str]:
    i = _text(text, field).rfind(_ASSISTANT)
    if i < 0:
        raise RecordError("HH dialogue has no '\\n\\nAssistant:' turn", field)
    return text[:i], text[i + len(_ASSISTANT) :]


def parse_hh(text: str) -> tuple[Prompt, str]:
    """One HH dialogue -> (prompt messages, final assistant response); inverse of render_plain."""
    try:
        before, response = _hh_split(text, "text")
        return _check_prompt(_hh_messages(before), "text"), _response(response, "text", True)
    except RecordError as e:
        raise DataError(e.msg, field=e.field) from None


def _parse_hh_pair(rec: dict, allow_empty: bool) -> tuple[Prompt, str, str, bool]:
    (pc, rc), (pr, rr) = _hh_split(rec["chosen"], "chosen"), _hh_split(rec["rejected"], "rejected")
    diverged = pc != pr
    if diverged:
        common = os.path.commonprefix([rec["chosen"], rec["rejected"]])
        j = common.rfind(_ASSISTANT)
        if j < 0 or "\n\nHuman:" in common[j:]:
            raise RecordError(
                "chosen and rejected do not share the dialogue before the final Assistant turn",
                "rejected",
            )
        pc, rc, rr = (
            common[:j],
            rec["chosen"][j + len(_ASSISTANT) :],
            rec["rejected"][j + len(_ASSISTANT) :],
        )
    prompt = _check_prompt(_hh_messages(pc), "chosen")
    return (
        prompt,
        _response(rc, "chosen", allow_empty),
        _response(rr, "rejected", allow_empty),
        diverged,
    )


def _parse_trl_text(rec: dict, allow_empty: bool) -> tuple[Prompt, str, str, bool]:
    prompt = _text(rec["prompt"], "prompt")
    if _looks_hh(prompt):
        # An HH-style prompt string (e.g. "\n\nHuman: hi\n\nAssistant:") keeps its turns.
        msgs = _hh_messages(prompt)
        if msgs and msgs[-1]["role"] == "assistant" and not msgs[-1]["content"]:
            msgs = msgs[:-1]
    else:
        msgs = [{"role": "user", "content": prompt.strip()}]
    prompt_msgs = _check_prompt(msgs, "prompt")
    return (
        prompt_msgs,
        _response(rec["chosen"], "chosen", allow_empty),
        _response(rec["rejected"], "rejected", allow_empty),
        False,
    )


def _parse_trl_implicit_text(rec: dict, allow_empty: bool) -> tuple[Prompt, str, str, bool]:
    c, r = _text(rec["chosen"], "chosen"), _text(rec["rejected"], "rejected")
    common = os.path.commonprefix([c, r])
    if common not in (c, r) and not common[-1:].isspace():
        # Cut back to a whitespace boundary: a word both texts start alike ("bl|ue", "bl|ack")
        # stays whole in the responses.
        common = common[: max(common.rfind(" "), common.rfind("\n"), 0)]
    prompt = _check_prompt([{"role": "user", "content": common.strip()}], "chosen")
    return (
        prompt,
        _response(c[len(common) :], "chosen", allow_empty),
        _response(r[len(common) :], "rejected", allow_empty),
        False,
    )


def _parse_trl_messages(rec: dict, allow_empty: bool) -> tuple[Prompt, str, str, bool]:
    prompt = _messages(rec["prompt"], "prompt") if "prompt" in rec else []
    c, r = _messages(rec["chosen"], "chosen"), _messages(rec["rejected"], "rejected")
    for name, msgs in (("chosen", c), ("rejected", r)):
        if not msgs or msgs[-1]["role"] != "assistant":
            raise RecordError("must end with an assistant message (the response)", name)
    if c[:-1] != r[:-1]:
        raise RecordError(
            "chosen and rejected differ before their final message (they must share the prompt)",
            "rejected",
        )
    prompt_msgs = _check_prompt(prompt + c[:-1], "prompt" if prompt else "chosen")
    return (
        prompt_msgs,
        _response(c[-1]["content"], "chosen", allow_empty),
        _response(r[-1]["content"], "rejected", allow_empty),
        False,
    )


def _parse_tldr(rec: dict, allow_empty: bool) -> tuple[Prompt, str, str, bool]:
    info = rec["info"]
    if not isinstance(info, dict):
        raise RecordError(f"expected an object, got {type(info).__name__}", "info")
    body_key = "post" if info.get("post") is not None or info.get("article") is None else "article"
    body = _text(info.get(body_key), f"info.{body_key}").strip()
    if not body:
        raise RecordError("empty prompt", f"info.{body_key}")
    # The query layout of summarize_from_feedback (and TRL's TL;DR examples).
    parts = [f"SUBREDDIT: r/{info['subreddit']}"] if info.get("subreddit") else []
    parts += [f"TITLE: {str(info['title']).strip()}"] if info.get("title") else []
    parts += [f"{body_key.upper()}: {body}", "TL;DR:"]
    choice, summaries = rec["choice"], rec["summaries"]
    if not isinstance(choice, int) or isinstance(choice, bool) or choice not in (0, 1):
        raise RecordError(f"choice must be 0 or 1, got {choice!r}", "choice")
    if not isinstance(summaries, list) or len(summaries) != 2:
        raise RecordError("expected a list of two summaries", "summaries")
    texts = []
    for k, s in enumerate(summaries):
        if not isinstance(s, dict) or "text" not in s:
            raise RecordError("missing 'text'", f"summaries[{k}]")
        texts.append(_response(s["text"], f"summaries[{k}].text", allow_empty))
    prompt = ({"role": "user", "content": "\n\n".join(parts)},)
    return prompt, texts[choice], texts[1 - choice], False


def parse_candidates(rec: dict) -> tuple[Prompt, list[str], list[float]]:
    key = "instruction" if "instruction" in rec else "prompt"
    value = rec[key]
    msgs = (
        _messages(value, key)
        if isinstance(value, list)
        else [{"role": "user", "content": _text(value, key).strip()}]
    )
    prompt = _check_prompt(msgs, key)
    cands = rec["candidates"]
    if not isinstance(cands, list) or not cands:
        raise RecordError("expected a non-empty list of candidates", "candidates")
    outputs, gold = [], []
    for k, c in enumerate(cands):
        where = f"candidates[{k}]"
        if not isinstance(c, dict):
            raise RecordError(f"expected an object, got {type(c).__name__}", where)
        for k_ in ("output", "gold"):
            if k_ not in c:
                raise RecordError(f"missing '{k_}'", where)
        g = c["gold"]
        if isinstance(g, bool) or not isinstance(g, (int, float)) or not math.isfinite(g):
            raise RecordError(f"gold must be a finite number, got {g!r}", f"{where}.gold")
        # Empty outputs are kept: real candidates with a gold score (binarisation skips them).
        outputs.append(_text(c["output"], f"{where}.output").strip())
        gold.append(float(g))
    return prompt, outputs, gold


def _parse_labelled(rec: dict, allow_empty: bool) -> tuple[Prompt, str, str, bool]:
    for key in ("prompt", "label"):
        if key not in rec:
            raise RecordError(f"missing '{key}' (a labelled file has prompt, response_a, "
                              "response_b and label a or b)", key)
    label = rec["label"]
    choice = label.strip().lower() if isinstance(label, str) else None
    if choice not in ("a", "b"):
        raise RecordError(f"label must be a or b (the preferred response), got {label!r}; label "
                          "the pair or drop the row", "label")
    win, lose = ("response_a", "response_b") if choice == "a" else ("response_b", "response_a")
    if isinstance(rec["prompt"], list):
        prompt = _check_prompt(_messages(rec["prompt"], "prompt"), "prompt")
    else:
        prompt = _parse_trl_text({"prompt": rec["prompt"], "chosen": "", "rejected": ""}, True)[0]
    return (prompt, _response(rec[win], win, allow_empty), _response(rec[lose], lose, allow_empty),
            False)


PARSERS = {
    "hh": _parse_hh_pair,
    "trl-standard": _parse_trl_text,
    "trl-implicit": _parse_trl_implicit_text,
    "trl-conversational": _parse_trl_messages,
    "trl-implicit-conversational": _parse_trl_messages,
    "tldr": _parse_tldr,
    "labelled": _parse_labelled,
}


def detect_format(src: Source, cfg: DataConfig) -> tuple[str, str]:
    """(shape, format name) of the file, from its first record or cfg.format."""
    if cfg.format not in _FORMATS:
        raise ConfigError(f"data.format must be one of {', '.join(_FORMATS)}, got {cfg.format!r}")
    if not src.records:
        raise DataError("no records (empty file)", path=src.label)
    line, rec = src.records[0]
    if not isinstance(rec, dict):
        raise DataError(
            f"expected a JSON object, got {type(rec).__name__}", path=src.label, line=line
        )
    allowed = _FORCED_SHAPES.get(cfg.format, tuple(_REQUIRED))
    shape = _shape(rec)
    if shape not in allowed:
        bad = _nearest_format_error(rec, allowed)
        if shape is not None and not bad.near:
            want = "/".join(_NAMES[x].split(" ")[0] for x in allowed)
            bad = RecordError(f"expected {want} records but this one looks like {_NAMES[shape]}")
        raise DataError(bad.msg, path=src.label, line=line)
    if shape.startswith("pair-"):
        # No 'prompt' makes it an implicit-prompt record, unless 'prompt' is just misspelled.
        typo = difflib.get_close_matches("prompt", [str(k) for k in rec], n=1, cutoff=_NEAR)
        if typo:
            raise DataError(f"missing 'prompt' (found '{typo[0]}')", path=src.label, line=line)
    if shape == "pair-text":
        hh = cfg.format == "hh" or _looks_hh(rec["chosen"])
        return shape, "hh" if hh else "trl-implicit"
    return shape, _NAMES[shape].split(" ")[0]


_NAMES = {
    "prompt-text": "trl-standard",
    "prompt-messages": "trl-conversational",
    "pair-text": "hh (chosen/rejected texts)",
    "pair-messages": "trl-implicit-conversational",
    "tldr": "tldr",
    "candidates": "candidates",
    "labelled": "labelled (prompt, response_a, response_b, label)",
}


def iter_records(src: Source, shape: str, fmt: str) -> Iterator[tuple[int, dict]]:
    """Yield records of `shape`; DataError on a wrong key set or a record of another format."""
    first = src.records[0][0]
    for line, rec in src.records:
        if not isinstance(rec, dict):
            raise DataError(
                f"expected a JSON object, got {type(rec).__name__}", path=src.label, line=line
            )
        got = _shape(rec)
        if got != shape:
            bad = _missing_key(rec, _REQUIRED[shape])
            if got is not None and (bad is None or not bad.near):
                bad = RecordError(
                    f"mixed formats: this record is {_NAMES[got]} but line {first} is {fmt}"
                )
            raise DataError(bad.msg if bad else "unrecognised record", path=src.label, line=line)
        yield line, rec


def record_id(rec: dict, stem: str, line: int) -> str:
    return str(rec["id"]) if rec.get("id") is not None else f"{stem}:{line}"


# --- rendering ------------------------------------------------------------------------------------
def render_plain(prompt: Sequence[Message], response: str | None = None) -> str:
    """HH-style text: '\\n\\nHuman: ...\\n\\nAssistant: ...' for embedders without a chat template.

    Leading system messages come first as plain text (Anthropic's legacy prompt layout), other roles
    become their capitalised name. Without `response` the text ends with '\\n\\nAssistant:' (the
    generation prompt). parse_hh(render_plain(p, r)) == (p, r) for stripped, marker-free contents.
    """
    system: list[str] = []
    turns: list[str] = []
    for m in prompt:
        if m["role"] == "system" and not turns:
            system.append(m["content"])
            continue
        name = {"user": "Human", "assistant": "Assistant"}.get(m["role"], m["role"].capitalize())
        turns.append(f"\n\n{name}: {m['content']}")
    turns.append(_ASSISTANT if response is None else f"{_ASSISTANT} {response}")
    return "\n\n".join(system) + "".join(turns)
