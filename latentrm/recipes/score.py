"""`latentrm score` and `latentrm bon`: a reward model over rows read from a file.

Each row command turns rows (``(line, dict)`` from `latentrm.data.readers.read_rows`) into
(prompt, response) pairs, scores them through `latentrm.serve` (`score_in_batches`, `pick_best`:
NaN/Inf scores are refused there) and returns the rows with their new fields and a summary.
Errors name the file, the row's line and the field.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from latentrm.data.formats import parse_hh
from latentrm.data.messages import (
    as_prompt,
    as_response,
    is_messages,
    maybe_json_list,
    maybe_json_messages,
    short,
)
from latentrm.data.types import Prompt
from latentrm.errors import DataError
from latentrm.evaluate import pairwise_accuracy
from latentrm.serve import Scorer, has_spread, pick_best, score_in_batches

_RESPONSE_KEYS = ("response", "completion")
_PROMPT_KEYS = ("prompt", "instruction")
_CANDIDATE_TEXT_KEYS = ("output", "response", "completion", "text", "content")
# Columns `bon` takes candidates from when not told (alpaca-eval, TRL completions, plain lists).
CANDIDATE_COLUMNS = ("candidates", "completions", "responses")


def _field(row: Mapping[str, Any], keys: Sequence[str]) -> str | None:
    return next((k for k in keys if k in row and row[k] is not None), None)


def _pair_split(value: Any, **where: Any) -> tuple[Prompt, str]:
    """A prompt-less pair's side (conversation or HH dialogue): its last reply is the response."""
    value = maybe_json_messages(value, **where)
    if is_messages(value):
        return as_response(value, (), **where)
    if isinstance(value, str) and "\n\nAssistant:" in value:
        try:
            return parse_hh(value)
        except DataError as e:
            raise DataError(str(e), **where) from None
    raise DataError(
        "without a 'prompt' field, chosen/rejected must be conversations (message lists) or "
        "'\\n\\nHuman: ...\\n\\nAssistant: ...' dialogues",
        **where,
    )


def score_rows(
    model: Scorer,
    rows: Sequence[tuple[int, dict[str, Any]]],
    path: str = "<rows>",
    batch_size: int | None = 1024,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Score every row; returns (rows with new fields, summary).

    A row is either a single response (`prompt` + `response`/`completion`) and gains `score`, or a
    preference pair (`chosen` + `rejected`, with or without `prompt`) and gains `score_chosen`,
    `score_rejected` and `correct` (score_chosen > score_rejected). The first row decides the kind.
    A model with an ensemble head also gives each score its members' std (`score_spread`, or
    `spread_chosen`/`spread_rejected`) and the summary `spread_mean`.
    """
    if not rows:
        raise DataError("no rows to score", path=path)
    first = rows[0][1]
    paired = "chosen" in first and "rejected" in first
    prompts: list[Prompt] = []
    responses: list[str] = []
    for line, row in rows:
        where = {"path": path, "line": line}
        if paired:
            for side in ("chosen", "rejected"):
                if row.get(side) is None:
                    raise DataError("missing preference field", field=side, **where)
            pkey = _field(row, _PROMPT_KEYS)
            prompt = as_prompt(row[pkey], field=pkey, **where) if pkey is not None else None
            for side in ("chosen", "rejected"):
                if prompt is not None:
                    ctx, text = as_response(row[side], prompt, field=side, **where)
                else:
                    ctx, text = _pair_split(row[side], field=side, **where)
                prompts.append(ctx)
                responses.append(text)
        else:
            pkey = _field(row, _PROMPT_KEYS)
            rkey = _field(row, _RESPONSE_KEYS)
            if pkey is None:
                raise DataError("missing prompt", field="prompt", **where)
            if rkey is None:
                raise DataError(
                    "missing response (or chosen/rejected for pairs, as in the first row)"
                    if not paired and ("chosen" in row or "rejected" in row)
                    else "missing response",
                    field="response",
                    **where,
                )
            prompt = as_prompt(row[pkey], field=pkey, **where)
            ctx, text = as_response(row[rkey], prompt, field=rkey, **where)
            prompts.append(ctx)
            responses.append(text)
    if has_spread(model):  # an ensemble: its members' disagreement goes with each score
        scores, sd = score_in_batches(model, prompts, responses, batch_size, spread=True)
    else:
        scores, sd = score_in_batches(model, prompts, responses, batch_size), None
    out: list[dict[str, Any]] = []
    summary: dict[str, Any] = {"rows": len(rows), "kind": "pairs" if paired else "responses"}
    if sd is not None:
        summary["spread_mean"] = float(np.mean(sd))
    if paired:
        sc, sr = scores[0::2], scores[1::2]
        for i, ((_, row), c, r) in enumerate(zip(rows, sc, sr, strict=True)):
            out.append(
                {
                    **row,
                    "score_chosen": float(c),
                    "score_rejected": float(r),
                    "correct": bool(c > r),
                    **(
                        {}
                        if sd is None
                        else {
                            "spread_chosen": float(sd[2 * i]),
                            "spread_rejected": float(sd[2 * i + 1]),
                        }
                    ),
                }
            )
        summary.update(
            accuracy=pairwise_accuracy(sc, sr),  # ties count half, as everywhere
            ties=int(np.sum(sc == sr)),
            mean_margin=float(np.mean(sc - sr)),
            **_stats(scores),
        )
    else:
        for i, ((_, row), s) in enumerate(zip(rows, scores, strict=True)):
            out.append(
                {**row, "score": float(s), **({} if sd is None else {"score_spread": float(sd[i])})}
            )
        summary.update(_stats(scores))
    return out, summary


def _stats(scores: np.ndarray) -> dict[str, float]:
    return {
        "score_mean": float(np.mean(scores)),
        "score_std": float(np.std(scores)),
        "score_min": float(np.min(scores)),
        "score_max": float(np.max(scores)),
    }


def _gold(value: Any, **where: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise DataError(f"gold must be a finite number, got {short(value)}", **where)
    return float(value)


def parse_candidate(c: Any, **where: Any) -> tuple[Any, float | None]:
    """(text or messages, gold) of a candidate: a string, messages, or a dict with a text field."""
    if isinstance(c, Mapping) and "role" not in c:
        key = _field(c, _CANDIDATE_TEXT_KEYS)
        if key is None:
            raise DataError(f"candidate dict needs one of {_CANDIDATE_TEXT_KEYS}", **where)
        field = where.pop("field", "candidates")
        return c[key], _gold(c.get("gold"), field=f"{field}.gold", **where)
    return c, None


def candidates_column(row: Mapping[str, Any], **where: Any) -> str:
    """The column of candidates: the first of CANDIDATE_COLUMNS the row has."""
    key = next((k for k in CANDIDATE_COLUMNS if row.get(k) is not None), None)
    if key is None:
        raise DataError(
            f"no candidates column: expected one of {', '.join(CANDIDATE_COLUMNS)} (or name it "
            f"with --candidates-field); keys: {', '.join(map(str, row))}",
            **where,
        )
    return key


def bon_rows(
    model: Scorer,
    rows: Sequence[tuple[int, dict[str, Any]]],
    path: str = "<rows>",
    candidates_field: str | None = None,
    batch_size: int | None = 1024,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Best-of-N per row (`prompt`/`instruction` + a list of candidates); returns (rows, summary).

    The candidates are in `candidates_field`, or (None) the first of `candidates`, `completions`,
    `responses` the first row has. They are strings, message lists, or dicts with an
    `output`/`response`/`text` field (the alpaca-eval layout); dicts may carry `gold` (a finite
    number). Rows gain `best_index`, `best_response`, `best_score` and `scores` (one per
    candidate), and `best_gold` when every candidate has gold; the summary then compares the mean
    gold of the picks with random (mean) and oracle (max) picks. Errors name `path`, the row's
    line and the field (``candidates[j]``).
    """
    if not rows:
        raise DataError("no rows to rank", path=path)
    key = candidates_field or candidates_column(rows[0][1], path=path, line=rows[0][0])
    parsed: list[list[tuple[Prompt, str]]] = []
    raws: list[list[Any]] = []
    golds: list[list[float] | None] = []
    for line, row in rows:
        where = {"path": path, "line": line}
        pkey = _field(row, _PROMPT_KEYS)
        if pkey is None:
            raise DataError("missing prompt", field="prompt", **where)
        raw = maybe_json_list(row.get(key), field=key, **where)
        if not isinstance(raw, (list, tuple)) or len(raw) == 0:
            raise DataError("expected a non-empty list of candidates", field=key, **where)
        prompt = as_prompt(row[pkey], field=pkey, **where)
        cands, gold = [], []
        for j, c in enumerate(raw):
            value, g = parse_candidate(c, field=f"{key}[{j}]", **where)
            cands.append(as_response(value, prompt, field=f"{key}[{j}]", **where))
            gold.append(g)
        parsed.append(cands)
        raws.append(list(raw))
        golds.append(None if any(x is None for x in gold) else gold)  # type: ignore[arg-type]
    spreads: list[np.ndarray] | None = None
    if has_spread(model):  # an ensemble: its members' disagreement on each candidate, as score's
        flat = [item for group in parsed for item in group]
        sc, sd = score_in_batches(
            model, [c for c, _ in flat], [t for _, t in flat], batch_size, spread=True
        )
        cuts = np.cumsum([len(g) for g in parsed])[:-1]
        scores, spreads = np.split(sc, cuts), np.split(sd, cuts)
        indices = np.array([int(np.argmax(s)) for s in scores], dtype=np.int64)
    else:
        indices, scores = pick_best(model, parsed, batch_size)
    out = []
    for k, ((_, row), i, s, raw, cands) in enumerate(
        zip(rows, indices, scores, raws, parsed, strict=True)
    ):
        best = raw[int(i)]
        out.append(
            {
                **row,
                "best_index": int(i),
                "best_response": best if isinstance(best, str) else cands[int(i)][1],
                "best_score": float(s[i]),
                "scores": [float(x) for x in s],
                **(
                    {}
                    if spreads is None
                    else {
                        "best_spread": float(spreads[k][i]),
                        "spreads": [float(x) for x in spreads[k]],
                    }
                ),
            }
        )
    summary: dict[str, Any] = {
        "rows": len(rows),
        "candidates": int(sum(len(c) for c in parsed)),
        "best_score_mean": float(np.mean([s[i] for i, s in zip(indices, scores, strict=True)])),
    }
    if spreads is not None:
        summary["best_spread_mean"] = float(
            np.mean([sd[i] for i, sd in zip(indices, spreads, strict=True)])
        )
    if all(g is not None for g in golds):
        picked = [g[int(i)] for g, i in zip(golds, indices, strict=True)]  # type: ignore[index]
        for r, p in zip(out, picked, strict=True):
            r["best_gold"] = p
        summary.update(
            gold_picked=float(np.mean(picked)),
            gold_random=float(np.mean([np.mean(g) for g in golds])),  # type: ignore[arg-type]
            gold_oracle=float(np.mean([np.max(g) for g in golds])),  # type: ignore[arg-type]
        )
    return out, summary


__all__ = ["CANDIDATE_COLUMNS", "bon_rows", "candidates_column", "score_rows"]
