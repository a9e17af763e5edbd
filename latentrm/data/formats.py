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

Messages, prompts and responses are parsed by :mod:`latentrm.data.messages`, the one parser
that serving uses too (contents and responses stripped). A problem inside a record raises
:class:`RecordError` (message + field); the loaders add file and line.
:func:`render_plain` is the inverse of :func:`parse_hh`: the HH text of a prompt (and response).
"""

from __future__ import annotations

import difflib
import math
import os
from collections.abc import Iterator, Sequence

from latentrm.config import DataConfig
from latentrm.data.messages import (
    ASSISTANT,
    RecordError,
    check_prompt,
    conversation_reply,
    hh_messages,
    hh_split,
    looks_hh,
    messages,
    parse_hh,
    response,
    text,
    text_prompt,
)
from latentrm.data.readers import Source
from latentrm.data.types import Message, Prompt
from latentrm.errors import ConfigError, DataError

__all__ = [
    "PARSERS",
    "RecordError",
    "detect_format",
    "iter_records",
    "parse_candidates",
    "parse_hh",
    "record_id",
    "render_plain",
]

# difflib ratio above which an unexpected key counts as a misspelling ("rejeced" 0.93, "promt"
# 0.91) rather than another format's key ("choice" vs "chosen" 0.67) or an extra column
# ("prompt_id" vs "prompt" 0.80, common next to implicit-prompt conversations).
_NEAR = 0.82
_FORMATS = ("auto", "hh", "trl", "tldr", "candidates", "labelled")
# Candidates in one set: binarising compares every two (n^2 / 2 pairs, 0.5 M for 1024), so a 1.5 MB
# file of 40,000 would ask for ~6 GiB. alpaca-eval sets hold at most 55.
MAX_CANDIDATES = 1024
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
            return RecordError(f"missing '{k}' (found '{close[0]}')", k, near=True)
    found = ", ".join(f"'{k}'" for k in rec) or "none"
    return RecordError(f"missing '{missing[0]}' (keys: {found})", missing[0])


def _nearest_format_error(rec: dict, shapes: Sequence[str]) -> RecordError:
    def score(s: str) -> tuple[int, int]:
        req = _REQUIRED[s]
        return sum(k in rec for k in req), -sum(k not in rec for k in req)

    best = max(shapes, key=score)
    fallback = RecordError(f"unrecognised record (keys: {list(rec)})")
    return _missing_key(rec, _REQUIRED[best]) or fallback


def _parse_hh_pair(rec: dict, allow_empty: bool) -> tuple[Prompt, str, str, bool]:
    (pc, rc), (pr, rr) = hh_split(rec["chosen"], "chosen"), hh_split(rec["rejected"], "rejected")
    diverged = pc != pr
    if diverged:
        common = os.path.commonprefix([rec["chosen"], rec["rejected"]])
        j = common.rfind(ASSISTANT)
        if j < 0 or "\n\nHuman:" in common[j:]:
            raise RecordError(
                "chosen and rejected do not share the dialogue before the final Assistant turn",
                "rejected",
            )
        pc, rc, rr = (
            common[:j],
            rec["chosen"][j + len(ASSISTANT) :],
            rec["rejected"][j + len(ASSISTANT) :],
        )
    prompt = check_prompt(hh_messages(pc), "chosen")
    return (
        prompt,
        response(rc, "chosen", allow_empty),
        response(rr, "rejected", allow_empty),
        diverged,
    )


def _parse_trl_text(rec: dict, allow_empty: bool) -> tuple[Prompt, str, str, bool]:
    # An HH-style prompt string (e.g. "\n\nHuman: hi\n\nAssistant:") keeps its turns.
    return (
        text_prompt(rec["prompt"], "prompt"),
        response(rec["chosen"], "chosen", allow_empty),
        response(rec["rejected"], "rejected", allow_empty),
        False,
    )


def _parse_trl_implicit_text(rec: dict, allow_empty: bool) -> tuple[Prompt, str, str, bool]:
    c, r = text(rec["chosen"], "chosen"), text(rec["rejected"], "rejected")
    common = os.path.commonprefix([c, r])
    if common not in (c, r) and not common[-1:].isspace():
        # Cut back to a whitespace boundary: a word both texts start alike ("bl|ue", "bl|ack")
        # stays whole in the responses.
        common = common[: max(common.rfind(" "), common.rfind("\n"), 0)]
    prompt = check_prompt([{"role": "user", "content": common.strip()}], "chosen")
    return (
        prompt,
        response(c[len(common) :], "chosen", allow_empty),
        response(r[len(common) :], "rejected", allow_empty),
        False,
    )


def _parse_trl_messages(rec: dict, allow_empty: bool) -> tuple[Prompt, str, str, bool]:
    prompt = messages(rec["prompt"], "prompt") if "prompt" in rec else []
    c, r = messages(rec["chosen"], "chosen"), messages(rec["rejected"], "rejected")
    (c_before, c_reply), (r_before, r_reply) = (
        conversation_reply(c, "chosen"),
        conversation_reply(r, "rejected"),
    )
    if c_before != r_before:
        raise RecordError(
            "chosen and rejected differ before their final message (they must share the prompt)",
            "rejected",
        )
    prompt_msgs = check_prompt(prompt + c_before, "prompt" if prompt else "chosen")
    return (
        prompt_msgs,
        response(c_reply, "chosen", allow_empty),
        response(r_reply, "rejected", allow_empty),
        False,
    )


def _parse_tldr(rec: dict, allow_empty: bool) -> tuple[Prompt, str, str, bool]:
    info = rec["info"]
    if not isinstance(info, dict):
        raise RecordError(f"expected an object, got {type(info).__name__}", "info")
    body_key = "post" if info.get("post") is not None or info.get("article") is None else "article"
    body = text(info.get(body_key), f"info.{body_key}").strip()
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
        texts.append(response(s["text"], f"summaries[{k}].text", allow_empty))
    prompt = ({"role": "user", "content": "\n\n".join(parts)},)
    return prompt, texts[choice], texts[1 - choice], False


def parse_candidates(rec: dict) -> tuple[Prompt, list[str], list[float]]:
    key = "instruction" if "instruction" in rec else "prompt"
    value = rec[key]
    prompt = (
        check_prompt(messages(value, key), key)
        if isinstance(value, list)
        else text_prompt(value, key)
    )
    cands = rec["candidates"]
    if not isinstance(cands, list) or not cands:
        raise RecordError("expected a non-empty list of candidates", "candidates")
    if len(cands) > MAX_CANDIDATES:
        raise RecordError(
            f"{len(cands)} candidates in one set, more than the {MAX_CANDIDATES} allowed",
            "candidates",
        )
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
        outputs.append(text(c["output"], f"{where}.output").strip())
        gold.append(float(g))
    return prompt, outputs, gold


def _parse_labelled(rec: dict, allow_empty: bool) -> tuple[Prompt, str, str, bool]:
    for key in ("prompt", "label"):
        if key not in rec:
            raise RecordError(
                f"missing '{key}' (a labelled file has prompt, response_a, "
                "response_b and label a or b)",
                key,
            )
    label = rec["label"]
    choice = label.strip().lower() if isinstance(label, str) else None
    if choice not in ("a", "b"):
        raise RecordError(
            f"label must be a or b (the preferred response), got {label!r}; label "
            "the pair or drop the row",
            "label",
        )
    win, lose = ("response_a", "response_b") if choice == "a" else ("response_b", "response_a")
    if isinstance(rec["prompt"], list):
        prompt = check_prompt(messages(rec["prompt"], "prompt"), "prompt")
    else:
        prompt = text_prompt(rec["prompt"], "prompt")
    return (
        prompt,
        response(rec[win], win, allow_empty),
        response(rec[lose], lose, allow_empty),
        False,
    )


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
        hh = cfg.format == "hh" or looks_hh(rec["chosen"])
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
        missing = _missing_key(rec, _REQUIRED[shape])  # e.g. candidates without instruction
        if missing is not None:
            raise DataError(missing.msg, path=src.label, line=line, field=missing.field)
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
    turns.append(ASSISTANT if response is None else f"{ASSISTANT} {response}")
    return "\n\n".join(system) + "".join(turns)
