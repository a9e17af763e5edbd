"""Preference data: files or Hub datasets -> PreferencePairs (prompt messages, chosen, rejected).

Record formats, detected from the first record's keys (``DataConfig.format`` forces one):

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

Files: .jsonl, .jsonl.gz, .json (a list or ``{"data": [...]}``), .parquet, .csv (nested cells may
hold JSON). A path that is not a local file or folder is read as a Hub id with ``datasets``
(reading: :mod:`latentrm.readers`; parsing the records: here).

All message contents and responses are stripped of surrounding whitespace. Responses longer than
``DataConfig.max_response_chars`` are cut to that many characters, keeping the start (the embedder
truncates tokens later anyway; this bounds memory on pathological lines), counted in
``stats["truncated_responses"]``. Pairs whose chosen equals rejected are dropped with a warning
and counted in ``stats["dropped_identical"]``. Every other problem raises ``DataError`` naming file,
line and field; "line" is the file line for .jsonl/.csv and the 1-based record number for .json,
.parquet and Hub datasets.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import logging
import math
import os
import re
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, overload

import numpy as np

from latentrm.config import DataConfig
from latentrm.errors import ConfigError, DataError
from latentrm.readers import Source, read_source

log = logging.getLogger(__name__)

Message = dict[str, str]  # {"role": "user" | "assistant" | "system", "content": str}
Prompt = tuple[Message, ...]

_ROLES = ("user", "assistant", "system")
_HH_TURN = re.compile(r"\n\n(Human|Assistant):")
_ASSISTANT = "\n\nAssistant:"
# difflib ratio above which an unexpected key counts as a misspelling ("rejeced" 0.93, "promt"
# 0.91) rather than another format's key ("choice" vs "chosen" 0.67) or an extra column
# ("prompt_id" vs "prompt" 0.80, common next to implicit-prompt conversations).
_NEAR = 0.82
_FORMATS = ("auto", "hh", "trl", "tldr", "candidates")
# Keys each record shape needs; "candidates" also needs "instruction" or "prompt".
_REQUIRED = {
    "prompt-text": ("prompt", "chosen", "rejected"),
    "prompt-messages": ("prompt", "chosen", "rejected"),
    "pair-text": ("chosen", "rejected"),
    "pair-messages": ("chosen", "rejected"),
    "tldr": ("info", "summaries", "choice"),
    "candidates": ("instruction", "candidates"),
}
_FORCED_SHAPES = {
    "hh": ("pair-text",),
    "trl": ("prompt-text", "prompt-messages", "pair-text", "pair-messages"),
    "tldr": ("tldr",),
    "candidates": ("candidates",),
}


@dataclass(frozen=True)
class PreferencePair:
    id: str
    prompt: Prompt  # conversation before the response; last message is "user"
    chosen: str  # the final assistant reply preferred by the label
    rejected: str


@dataclass(frozen=True)
class CandidateSet:
    """One prompt with N scored responses (alpaca-eval format); gold[i] scores responses[i]."""

    id: str
    prompt: Prompt
    responses: tuple[str, ...]
    gold: tuple[float, ...]


class PreferenceDataset(Sequence[PreferencePair]):
    """An ordered list of PreferencePairs with where they came from and what loading dropped/cut."""

    def __init__(
        self, pairs: Iterable[PreferencePair], source: str = "", stats: dict | None = None
    ) -> None:
        self.pairs: list[PreferencePair] = list(pairs)
        self.source = source
        self.stats: dict = dict(stats or {})

    def __len__(self) -> int:
        return len(self.pairs)

    @overload
    def __getitem__(self, i: int) -> PreferencePair: ...
    @overload
    def __getitem__(self, i: slice) -> PreferenceDataset: ...
    def __getitem__(self, i: int | slice) -> PreferencePair | PreferenceDataset:
        if isinstance(i, slice):
            return self.subset(range(len(self))[i])
        return self.pairs[i]

    def __repr__(self) -> str:
        return f"PreferenceDataset({len(self)} pairs from {self.source!r})"

    def subset(self, idx: Iterable[int] | np.ndarray) -> PreferenceDataset:
        """Pairs at positions `idx`, in that order (same source; stats keep the loading counts)."""
        rows = np.asarray(list(idx) if not isinstance(idx, np.ndarray) else idx, dtype=np.int64)
        if rows.size and (rows.min() < -len(self) or rows.max() >= len(self)):
            raise IndexError(f"subset index out of range for {len(self)} pairs")
        return PreferenceDataset(
            [self.pairs[i] for i in rows.ravel().tolist()],
            self.source,
            {**self.stats, "subset_of": len(self)},
        )

    def content_hash(self) -> str:
        """sha256 over ids, prompts, chosen and rejected, in order; stable across runs/machines."""
        h = hashlib.sha256()
        for p in self.pairs:
            prompt = [[m["role"], m["content"]] for m in p.prompt]
            rec = [p.id, prompt, p.chosen, p.rejected]
            h.update(json.dumps(rec, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))
            h.update(b"\n")
        return h.hexdigest()

    @property
    def ids(self) -> list[str]:
        return [p.id for p in self.pairs]

    @property
    def prompts(self) -> list[Prompt]:
        return [p.prompt for p in self.pairs]

    @property
    def chosen(self) -> list[str]:
        return [p.chosen for p in self.pairs]

    @property
    def rejected(self) -> list[str]:
        return [p.rejected for p in self.pairs]


class _Bad(Exception):
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
    if "chosen" in rec and "rejected" in rec:
        if "prompt" in rec:
            return "prompt-messages" if isinstance(rec["prompt"], list) else "prompt-text"
        return "pair-messages" if isinstance(rec["chosen"], list) else "pair-text"
    return None


def _missing_key(rec: dict, expected: Sequence[str]) -> _Bad | None:
    missing = [k for k in expected if k not in rec]
    if expected == _REQUIRED["candidates"] and "prompt" in rec:
        missing = [k for k in missing if k != "instruction"]
    if not missing:
        return None
    extra = [str(k) for k in rec if k not in expected]
    for k in missing:
        close = difflib.get_close_matches(k, extra, n=1, cutoff=_NEAR)
        if close:
            return _Bad(f"missing '{k}' (found '{close[0]}')", near=True)
    found = ", ".join(f"'{k}'" for k in rec) or "none"
    return _Bad(f"missing '{missing[0]}' (keys: {found})")


def _nearest_format_error(rec: dict, shapes: Sequence[str]) -> _Bad:
    def score(s: str) -> tuple[int, int]:
        req = _REQUIRED[s]
        return sum(k in rec for k in req), -sum(k not in rec for k in req)

    best = max(shapes, key=score)
    return _missing_key(rec, _REQUIRED[best]) or _Bad(f"unrecognised record (keys: {list(rec)})")


def _looks_hh(text: Any) -> bool:
    return isinstance(text, str) and (
        "\n\nHuman:" in text or _ASSISTANT in text or text.lstrip().startswith("Human:")
    )


def _text(value: Any, field: str) -> str:
    if not isinstance(value, str):
        raise _Bad(f"expected a string, got {type(value).__name__}", field)
    return value


def _response(value: Any, field: str, allow_empty: bool) -> str:
    text = _text(value, field).strip()
    if not text and not allow_empty:
        raise _Bad("empty response", field)
    return text


def _check_prompt(msgs: Sequence[Message], field: str) -> Prompt:
    if not any(m["content"] for m in msgs):
        raise _Bad("empty prompt", field)
    if msgs[-1]["role"] != "user":
        raise _Bad(f"prompt must end with a user message, not {msgs[-1]['role']}", field)
    return tuple(msgs)


def _messages(value: Any, field: str) -> list[Message]:
    if not isinstance(value, list):
        raise _Bad(
            f"expected a list of {{role, content}} messages, got {type(value).__name__}", field
        )
    out = []
    for k, m in enumerate(value):
        where = f"{field}[{k}]"
        if not isinstance(m, dict):
            raise _Bad(f"expected a {{role, content}} message, got {type(m).__name__}", where)
        if m.get("role") not in _ROLES:
            raise _Bad(
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
        raise _Bad("HH dialogue has no '\\n\\nAssistant:' turn", field)
    return text[:i], text[i + len(_ASSISTANT) :]


def parse_hh(text: str) -> tuple[Prompt, str]:
    """One HH dialogue -> (prompt messages, final assistant response); inverse of render_plain."""
    try:
        before, response = _hh_split(text, "text")
        return _check_prompt(_hh_messages(before), "text"), _response(response, "text", True)
    except _Bad as e:
        raise DataError(e.msg, field=e.field) from None


def _parse_hh_pair(rec: dict, allow_empty: bool) -> tuple[Prompt, str, str, bool]:
    (pc, rc), (pr, rr) = _hh_split(rec["chosen"], "chosen"), _hh_split(rec["rejected"], "rejected")
    diverged = pc != pr
    if diverged:
        common = os.path.commonprefix([rec["chosen"], rec["rejected"]])
        j = common.rfind(_ASSISTANT)
        if j < 0 or "\n\nHuman:" in common[j:]:
            raise _Bad(
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
            raise _Bad("must end with an assistant message (the response)", name)
    if c[:-1] != r[:-1]:
        raise _Bad(
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
        raise _Bad(f"expected an object, got {type(info).__name__}", "info")
    body_key = "post" if info.get("post") is not None or info.get("article") is None else "article"
    body = _text(info.get(body_key), f"info.{body_key}").strip()
    if not body:
        raise _Bad("empty prompt", f"info.{body_key}")
    # The query layout of summarize_from_feedback (and TRL's TL;DR examples).
    parts = [f"SUBREDDIT: r/{info['subreddit']}"] if info.get("subreddit") else []
    parts += [f"TITLE: {str(info['title']).strip()}"] if info.get("title") else []
    parts += [f"{body_key.upper()}: {body}", "TL;DR:"]
    choice, summaries = rec["choice"], rec["summaries"]
    if not isinstance(choice, int) or isinstance(choice, bool) or choice not in (0, 1):
        raise _Bad(f"choice must be 0 or 1, got {choice!r}", "choice")
    if not isinstance(summaries, list) or len(summaries) != 2:
        raise _Bad("expected a list of two summaries", "summaries")
    texts = []
    for k, s in enumerate(summaries):
        if not isinstance(s, dict) or "text" not in s:
            raise _Bad("missing 'text'", f"summaries[{k}]")
        texts.append(_response(s["text"], f"summaries[{k}].text", allow_empty))
    prompt = ({"role": "user", "content": "\n\n".join(parts)},)
    return prompt, texts[choice], texts[1 - choice], False


def _parse_candidates(rec: dict) -> tuple[Prompt, list[str], list[float]]:
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
        raise _Bad("expected a non-empty list of candidates", "candidates")
    outputs, gold = [], []
    for k, c in enumerate(cands):
        where = f"candidates[{k}]"
        if not isinstance(c, dict):
            raise _Bad(f"expected an object, got {type(c).__name__}", where)
        for k_ in ("output", "gold"):
            if k_ not in c:
                raise _Bad(f"missing '{k_}'", where)
        g = c["gold"]
        if isinstance(g, bool) or not isinstance(g, (int, float)) or not math.isfinite(g):
            raise _Bad(f"gold must be a finite number, got {g!r}", f"{where}.gold")
        # Empty outputs are kept: real candidates with a gold score (binarisation skips them).
        outputs.append(_text(c["output"], f"{where}.output").strip())
        gold.append(float(g))
    return prompt, outputs, gold


_PARSERS = {
    "hh": _parse_hh_pair,
    "trl-standard": _parse_trl_text,
    "trl-implicit": _parse_trl_implicit_text,
    "trl-conversational": _parse_trl_messages,
    "trl-implicit-conversational": _parse_trl_messages,
    "tldr": _parse_tldr,
}


def _file_format(src: Source, cfg: DataConfig) -> tuple[str, str]:
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
            bad = _Bad(f"expected {want} records but this one looks like {_NAMES[shape]}")
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
}


def _iter_records(src: Source, shape: str, fmt: str) -> Iterator[tuple[int, dict]]:
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
                bad = _Bad(f"mixed formats: this record is {_NAMES[got]} but line {first} is {fmt}")
            raise DataError(bad.msg if bad else "unrecognised record", path=src.label, line=line)
        yield line, rec


def _record_id(rec: dict, stem: str, line: int) -> str:
    return str(rec["id"]) if rec.get("id") is not None else f"{stem}:{line}"


def _truncate(text: str, limit: int, stats: dict) -> str:
    if len(text) <= limit:
        return text
    stats["truncated_responses"] += 1
    return text[:limit]


def _check_limit(cfg: DataConfig) -> None:
    if cfg.max_response_chars < 1:
        raise ConfigError(f"data.max_response_chars must be >= 1, got {cfg.max_response_chars}")


def _pairs_from_source(src: Source, cfg: DataConfig, shape: str, fmt: str) -> PreferenceDataset:
    parse = _PARSERS[fmt]
    stats = {
        "format": fmt,
        "records": len(src.records),
        "dropped_identical": 0,
        "truncated_responses": 0,
        "hh_split_at_divergence": 0,
        "empty_responses": 0,
    }
    pairs: list[PreferencePair] = []
    seen: dict[str, int] = {}
    identical: list[int] = []
    for line, rec in _iter_records(src, shape, fmt):
        try:
            prompt, chosen, rejected, diverged = parse(rec, cfg.allow_empty_response)
        except _Bad as e:
            raise DataError(e.msg, path=src.label, line=line, field=e.field) from None
        stats["hh_split_at_divergence"] += diverged
        stats["empty_responses"] += (chosen == "") + (rejected == "")
        chosen = _truncate(chosen, cfg.max_response_chars, stats)
        rejected = _truncate(rejected, cfg.max_response_chars, stats)
        if chosen == rejected:
            identical.append(line)
            continue
        pid = _record_id(rec, src.stem, line)
        if pid in seen:
            raise DataError(
                f"duplicate id {pid!r} (also on line {seen[pid]})",
                path=src.label,
                line=line,
                field="id",
            )
        seen[pid] = line
        pairs.append(PreferencePair(pid, prompt, chosen, rejected))
    if identical:
        stats["dropped_identical"] = len(identical)
        shown = ", ".join(map(str, identical[:10])) + (", ..." if len(identical) > 10 else "")
        log.warning(
            "%s: dropped %d pairs whose chosen == rejected (lines %s)",
            src.label,
            len(identical),
            shown,
        )
    if not pairs:
        raise DataError("no usable pairs (every record was dropped)", path=src.label)
    stats["pairs"] = len(pairs)
    return PreferenceDataset(pairs, src.label, stats)


def _candidate_sets(src: Source, cfg: DataConfig) -> list[CandidateSet]:
    stats = {"truncated_responses": 0}
    sets = []
    for line, rec in _iter_records(src, "candidates", "candidates"):
        try:
            prompt, outputs, gold = _parse_candidates(rec)
        except _Bad as e:
            raise DataError(e.msg, path=src.label, line=line, field=e.field) from None
        outputs = [_truncate(o, cfg.max_response_chars, stats) for o in outputs]
        sets.append(
            CandidateSet(_record_id(rec, src.stem, line), prompt, tuple(outputs), tuple(gold))
        )
    if stats["truncated_responses"]:
        log.info(
            "%s: cut %d candidate outputs to %d characters",
            src.label,
            stats["truncated_responses"],
            cfg.max_response_chars,
        )
    return sets


# --- public loaders -------------------------------------------------------------------------------
def load_pairs(path: str | Path, cfg: DataConfig | None = None) -> PreferenceDataset:
    """Load preference pairs from a file or Hub id in any supported format (see module docstring).

    A candidates file yields binarised pairs (``binarize_candidates`` with ``cfg.min_gold_gap``,
    ``cfg.pairs_per_prompt`` and ``cfg.split_seed``). Responses over ``cfg.max_response_chars``
    characters are cut to that length keeping the start (``stats["truncated_responses"]``); pairs
    with chosen == rejected are dropped (``stats["dropped_identical"]``). Raises DataError naming
    file, line and field for anything else that is wrong with the input.
    """
    cfg = cfg or DataConfig()
    _check_limit(cfg)
    t0 = time.perf_counter()
    src = read_source(str(path), cfg)
    shape, fmt = _file_format(src, cfg)
    if shape == "candidates":
        ds = binarize_candidates(
            _candidate_sets(src, cfg), cfg.min_gold_gap, cfg.pairs_per_prompt, cfg.split_seed
        )
        ds.source = src.label
    else:
        ds = _pairs_from_source(src, cfg, shape, fmt)
    log.info("%s: %d pairs (%s) in %.2fs", src.label, len(ds), fmt, time.perf_counter() - t0)
    return ds


def load_candidates(path: str | Path, cfg: DataConfig | None = None) -> list[CandidateSet]:
    """Load alpaca-eval style candidate sets: one prompt, N responses with gold scores each.

    Outputs are stripped and cut to ``cfg.max_response_chars``; empty outputs are kept (they are
    real candidates with a gold score). ``cfg.format`` is ignored: the file must hold candidates.
    """
    cfg = cfg or DataConfig()
    _check_limit(cfg)
    src = read_source(str(path), cfg)
    _file_format(src, dataclasses.replace(cfg, format="candidates"))
    return _candidate_sets(src, cfg)


def binarize_candidates(
    sets: Sequence[CandidateSet], min_gap: float, pairs_per_prompt: int, seed: int
) -> PreferenceDataset:
    """Pairs (higher gold = chosen) of candidates of one prompt whose gold differs by >= min_gap.

    Eligible pairs also need a strictly positive gap and two different, non-empty texts. From each
    set at most `pairs_per_prompt` eligible pairs are drawn uniformly without replacement, with a
    generator seeded by (seed, set id), so a set's pairs do not depend on the other sets. Pair ids
    are ``"{set id}:{chosen index}>{rejected index}"``.
    """
    if pairs_per_prompt < 1:
        raise ConfigError(f"data.pairs_per_prompt must be >= 1, got {pairs_per_prompt}")
    if min_gap < 0:
        raise ConfigError(f"data.min_gold_gap must be >= 0, got {min_gap}")
    pairs: list[PreferencePair] = []
    stats = {
        "format": "candidates",
        "sets": len(sets),
        "eligible_pairs": 0,
        "sets_without_pairs": 0,
    }
    for s in sets:
        gold = np.asarray(s.gold, dtype=np.float64)
        i, j = np.triu_indices(len(gold), k=1)
        gap = np.abs(gold[i] - gold[j])
        texts = np.asarray(s.responses, dtype=object)
        ok = (
            (gap >= min_gap)
            & (gap > 0)
            & (texts[i] != texts[j])
            & (texts[i] != "")
            & (texts[j] != "")
        )
        i, j = i[ok], j[ok]
        stats["eligible_pairs"] += len(i)
        if len(i) == 0:
            stats["sets_without_pairs"] += 1
            continue
        key = int.from_bytes(hashlib.sha256(s.id.encode("utf-8")).digest()[:8], "little")
        rng = np.random.default_rng([seed, key])
        pick = np.sort(rng.choice(len(i), size=min(pairs_per_prompt, len(i)), replace=False))
        for a, b in zip(i[pick].tolist(), j[pick].tolist(), strict=True):
            c, r = (a, b) if gold[a] > gold[b] else (b, a)
            pairs.append(
                PreferencePair(f"{s.id}:{c}>{r}", s.prompt, s.responses[c], s.responses[r])
            )
    stats["pairs"] = len(pairs)
    return PreferenceDataset(pairs, "binarized candidates", stats)


# --- splits ---------------------------------------------------------------------------------------
def split_indices(
    n: int, n_seed: int, n_test: int | None, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Disjoint (seed, held-out) index arrays (sorted int64) from one permutation of range(n).

    The seed set is the permutation's first n_seed entries, so with one `seed` a smaller seed set is
    a subset of a larger one; held-out is the next n_test entries (all the rest if n_test is None).
    """
    if n_seed < 1 or (n_test is not None and n_test < 0):
        raise ConfigError(
            f"data.n_seed must be >= 1 and data.n_test >= 0, got {n_seed} and {n_test}"
        )
    if n_seed > n:
        raise ConfigError(f"asked for {n_seed} seed pairs (data.n_seed) but the data has {n} pairs")
    if n_test is not None and n_seed + n_test > n:
        raise ConfigError(
            f"asked for {n_seed} seed + {n_test} test pairs (data.n_seed + data.n_test) but the "
            f"data has {n} pairs"
        )
    perm = np.random.default_rng(seed).permutation(n)
    end = n if n_test is None else n_seed + n_test
    return np.sort(perm[:n_seed]).astype(np.int64), np.sort(perm[n_seed:end]).astype(np.int64)


def carve_validation(
    idx: np.ndarray, fraction: float, seed: int, stream: tuple[int, ...] = (1,)
) -> tuple[np.ndarray, np.ndarray]:
    """Split index array `idx` into (train, val), val = round(fraction * len) entries (sorted).

    With fraction > 0 and >= 2 entries both parts get at least one entry. The permutation comes
    from ``default_rng([seed, *stream])``: the default stream (1,) is tagged apart from
    split_indices', so equal seeds do not correlate the two splits; the VAE's early-stopping
    holdout uses ``stream=()``.
    """
    if not 0 <= fraction < 1:
        raise ConfigError(f"data.val_fraction must be in [0, 1), got {fraction}")
    idx = np.asarray(idx, dtype=np.int64)
    n_val = int(round(fraction * len(idx)))
    if fraction > 0 and len(idx) >= 2:
        n_val = min(max(n_val, 1), len(idx) - 1)
    perm = np.random.default_rng([seed, *stream]).permutation(len(idx))
    return np.sort(idx[perm[n_val:]]), np.sort(idx[perm[:n_val]])


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
