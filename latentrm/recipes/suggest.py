"""`latentrm suggest`: a pool file in, the K pairs most worth labelling out, as a file that
labelling tools import. Glue only: the choice is `RewardModel.suggest` (latentrm.suggest).

Pool files (any reader input: .jsonl/.json/.csv/.tsv/.parquet, a saved dataset, a Hub id), the
kind decided by the first row:

- ``response_a`` + ``response_b`` (+ ``prompt``): pairs kept in that a/b order (e.g. an earlier
  suggest file);
- a candidates column (``candidates``/``completions``/``responses``, as `latentrm bon` reads:
  strings, messages or dicts with ``output``/``text``) + ``prompt``/``instruction``: candidate
  sets; the command chooses which two responses of a set to compare;
- anything else: preference pairs in any format the training readers take (HH, TRL, TL;DR, ...);
  their labels are ignored and each pair's two responses go out in a seeded random a/b order.

The output (:data:`COLUMNS`; CSV, TSV, JSONL or JSON by suffix): ``id``, ``prompt`` (text; a
multi-turn prompt in ``\\n\\nHuman: ...\\n\\nAssistant:`` form), ``response_a``, ``response_b``,
an empty ``label`` for the annotator (``a`` or ``b``), then the reasons: ``strategy``, ``rank``,
``acquisition`` (the strategy's value), ``predicted_margin`` (the head's mean r(a) - r(b)),
``predicted_p_a`` (its sigmoid), ``disagreement`` (BALD), ``entropy``; candidate pools add
``set_id``, ``index_a``, ``index_b``. Once labelled, the file is a training file as it is (data
format ``labelled``). No reason column is called ``margin``: that name is TRL's training margin,
which the training readers put into the loss.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from latentrm.config import DataConfig
from latentrm.data.formats import record_id, render_plain
from latentrm.data.load import load_pairs
from latentrm.data.messages import as_prompt, as_response, maybe_json_list
from latentrm.data.readers import read_source
from latentrm.data.types import CandidateSet, PreferencePair, Prompt
from latentrm.data.writers import check_output_path, write_rows
from latentrm.errors import DataError
from latentrm.recipes.score import CANDIDATE_COLUMNS, candidates_column, parse_candidate

log = logging.getLogger(__name__)

COLUMNS = (
    "id",
    "prompt",
    "response_a",
    "response_b",
    "label",
    "strategy",
    "rank",
    "acquisition",
    "predicted_margin",
    "predicted_p_a",
    "disagreement",
    "entropy",
)
_PROMPT_KEYS = ("prompt", "instruction")


def _prompt(row: dict[str, Any], **where: Any) -> Prompt:
    key = next((k for k in _PROMPT_KEYS if row.get(k) is not None), None)
    if key is None:
        raise DataError("missing prompt", field="prompt", **where)
    return as_prompt(row[key], field=key, **where)


def read_pool(path: str | Path, cfg: DataConfig | None = None) -> tuple[str, list[Any]]:
    """(kind, pool) of a pool file: kind "ab" / "candidates" (lists of PreferencePair /
    CandidateSet built here) or "pairs" (`load_pairs`, labels ignored). Module docstring."""
    cfg = cfg or DataConfig()
    src = read_source(str(path), cfg)
    if not src.records:
        raise DataError("no records (empty file)", path=src.label)
    first = src.records[0][1]
    if not isinstance(first, dict):
        raise DataError(
            f"expected an object, got {type(first).__name__}",
            path=src.label,
            line=src.records[0][0],
        )
    if "response_a" in first and "response_b" in first:
        pairs = []
        for line, row in src.records:
            where = {"path": src.label, "line": line}
            prompt = _prompt(row, **where)
            a = as_response(row.get("response_a"), prompt, field="response_a", **where)[1]
            b = as_response(row.get("response_b"), prompt, field="response_b", **where)[1]
            pairs.append(PreferencePair(record_id(row, src.stem, line), prompt, a, b))
        return "ab", pairs
    if any(first.get(c) is not None for c in CANDIDATE_COLUMNS):
        key = candidates_column(first, path=src.label, line=src.records[0][0])
        sets = []
        for line, row in src.records:
            where = {"path": src.label, "line": line}
            prompt = _prompt(row, **where)
            raw = maybe_json_list(row.get(key), field=key, **where)
            if not isinstance(raw, (list, tuple)) or not raw:
                raise DataError("expected a non-empty list of candidates", field=key, **where)
            texts = []
            for j, c in enumerate(raw):
                value, _ = parse_candidate(c, field=f"{key}[{j}]", **where)
                text = as_response(value, prompt, field=f"{key}[{j}]", **where)[1]
                texts.append(text[: cfg.max_response_chars])
            sets.append(CandidateSet(record_id(row, src.stem, line), prompt, tuple(texts), ()))
        return "candidates", sets
    return "pairs", list(load_pairs(path, cfg))


def prompt_text(prompt: Prompt) -> str:
    """A prompt as one text cell: a lone user turn as is, else HH-style turns (which the
    ``labelled`` reader splits back into messages)."""
    if len(prompt) == 1 and prompt[0]["role"] == "user":
        return prompt[0]["content"]
    return render_plain(prompt)


def suggestion_rows(suggestions: Sequence[Any], candidates: bool) -> list[dict[str, Any]]:
    """Rows of :data:`COLUMNS` (+ set_id, index_a, index_b for candidate pools)."""
    rows = []
    for s in suggestions:
        row = {
            "id": s.id,
            "prompt": prompt_text(s.prompt),
            "response_a": s.response_a,
            "response_b": s.response_b,
            "label": "",
            "strategy": s.strategy,
            "rank": s.rank,
            "acquisition": s.score,
            "predicted_margin": s.margin,
            "predicted_p_a": s.p_a,
            "disagreement": s.disagreement,
            "entropy": s.entropy,
        }
        if candidates:
            row.update(set_id=s.set_id, index_a=s.index_a, index_b=s.index_b)
        rows.append(row)
    return rows


def run_suggest(
    model: Any,
    pool_path: str | Path,
    k: int,
    out: str | Path,
    *,
    strategy: str = "hybrid",
    seed: int = 0,
    labelled_path: str | Path | None = None,
) -> dict[str, Any]:
    """Read the pool, suggest `k` pairs with `model` (a RewardModel), write them to `out`;
    returns a summary. The output path is checked before anything is read or embedded."""
    check_output_path(out, (".jsonl", ".json", ".csv", ".tsv", ".parquet"))
    kind, pool = read_pool(pool_path)
    labelled = list(load_pairs(labelled_path)) if labelled_path is not None else None
    sug = model.suggest(
        pool, k, strategy=strategy, seed=seed, labelled=labelled, shuffle_sides=kind == "pairs"
    )
    rows = suggestion_rows(sug, kind == "candidates")
    write_rows(rows, out)
    summary: dict[str, Any] = {
        "pool": kind,
        "pool_size": len(pool),
        "suggested": len(rows),
        "strategy": strategy,
    }
    if rows and strategy != "random":
        summary["acquisition_mean"] = float(sum(r["acquisition"] for r in rows) / len(rows))
    return summary


__all__ = ["COLUMNS", "prompt_text", "read_pool", "run_suggest", "suggestion_rows"]
