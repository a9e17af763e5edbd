"""Put a trained reward model to work: score files, pick Best-of-N, reward online RL (TRL).

Everything here sits on one contract, `Scorer.score(prompts, responses) -> (N,) float32`, prompts
as tuples of ``{"role", "content"}`` messages; `latentrm.model.RewardModel` is the real one. Inputs
arrive in the shapes people already have: plain strings or chat messages (TRL's "standard" and
"conversational" formats), as JSONL, JSON, CSV or Parquet rows. A score that is NaN or Inf is
never served: `score_in_batches` (which every path here uses) raises instead, so nothing writes
NaN and Best-of-N never picks from broken scores.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

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
from latentrm.model import RewardModel, check_scores
from latentrm.reward import EnsembleHead

log = logging.getLogger(__name__)

_RESPONSE_KEYS = ("response", "completion")
_PROMPT_KEYS = ("prompt", "instruction")
_CANDIDATE_TEXT_KEYS = ("output", "response", "completion", "text", "content")
# Columns `bon` takes candidates from when not told (alpaca-eval, TRL completions, plain lists).
CANDIDATE_COLUMNS = ("candidates", "completions", "responses")


class Scorer(Protocol):
    """What serve needs of a reward model (`latentrm.reward.RewardModel` satisfies it)."""

    def score(self, prompts: Sequence[Prompt], responses: Sequence[str]) -> np.ndarray: ...


def as_scorer(
    model_or_dir: Scorer | str | Path, embedder: Any | None = None, *,
    trust_remote_code: bool = False,
) -> Scorer:
    """A ready scorer: returned as is when it has `.score`, else the RewardModel of a model
    folder or Hub repo id (`RewardModel.from_pretrained`).

    `embedder` (an already loaded `latentrm.embed.Embedder`) saves loading the LLM again.
    `trust_remote_code` (the caller's decision, never the folder's) lets the embedder run its
    repository's code.
    """
    if hasattr(model_or_dir, "score"):
        return model_or_dir  # type: ignore[return-value]
    return RewardModel.from_pretrained(
        str(model_or_dir), embedder=embedder, trust_remote_code=trust_remote_code
    )


# --- scoring --------------------------------------------------------------------------------------
def score_in_batches(
    model: Scorer,
    prompts: Sequence[Prompt],
    responses: Sequence[str],
    batch_size: int | None = None,
    log_progress: bool = True,
    spread: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """`model.score` over slices of `batch_size` rows (bounds memory) -> (N,) float32.

    ModelError if any score is NaN/Inf, whatever the scorer. `log_progress`: an INFO line per
    slice (the CLI's progress; the TRL reward function stays quiet). `spread`: also the ensemble
    members' std per row, `(scores, spreads)` (`RewardModel.score(..., return_spread=True)`).
    """
    n = len(prompts)
    if n != len(responses):
        raise ValueError(f"{n} prompts but {len(responses)} responses")
    if n == 0:
        empty = np.zeros(0, dtype=np.float32)
        return (empty, empty.copy()) if spread else empty
    step = n if not batch_size or batch_size >= n else batch_size
    out, spreads = [], []
    for start in range(0, n, step):
        p, r = prompts[start : start + step], responses[start : start + step]
        if spread:
            s, sd = model.score(p, r, return_spread=True)  # type: ignore[call-arg]
            spreads.append(np.asarray(sd, np.float32))
        else:
            s = model.score(p, r)
        s = np.asarray(s)
        if s.shape != (min(step, n - start),):
            raise ValueError(
                f"model.score returned shape {s.shape} for {min(step, n - start)} rows"
            )
        out.append(s.astype(np.float32, copy=False))
        if step < n and log_progress:
            log.info("scored %d/%d", min(start + step, n), n)
    scores = check_scores(np.concatenate(out), "model.score")
    return (scores, np.concatenate(spreads)) if spread else scores


def has_spread(model: Scorer) -> bool:
    """Whether `model` is a reward model whose head is an ensemble (it can report a spread)."""
    return isinstance(getattr(model, "head", None), EnsembleHead)


class TRLRewardFunc:
    """A reward function as TRL's online trainers (GRPOTrainer, RLOOTrainer) call it.

    ``f(prompts=..., completions=..., completion_ids=..., **dataset_columns) -> list[float]``, one
    reward per (prompt, completion), in input order. Prompts and completions may be plain text
    ("standard" format) or lists of ``{"role", "content"}`` messages ("conversational"), mixed per
    item. A class instance rather than a closure so TRL can pickle it; `__name__` is what TRL logs
    the reward under (``rewards/<name>/mean``).
    """

    def __init__(
        self, model: Scorer, name: str = "latentrm", batch_size: int | None = None
    ) -> None:
        self.model = model
        self.__name__ = name
        self.batch_size = batch_size

    def __call__(
        self,
        prompts: Sequence[Any],
        completions: Sequence[Any],
        completion_ids: Sequence[Any] | None = None,
        **kwargs: Any,
    ) -> list[float]:
        if len(prompts) != len(completions):
            raise ValueError(f"{len(prompts)} prompts but {len(completions)} completions")
        ctx, resp = [], []
        for i, (p, c) in enumerate(zip(prompts, completions, strict=True)):
            c_prompt, c_text = as_response(
                c, as_prompt(p, field=f"prompts[{i}]"), field=f"completions[{i}]"
            )
            ctx.append(c_prompt)
            resp.append(c_text)
        scores = score_in_batches(self.model, ctx, resp, self.batch_size, log_progress=False)
        return [float(s) for s in scores]

    def __repr__(self) -> str:
        return f"TRLRewardFunc(name={self.__name__!r}, model={type(self.model).__name__})"


def make_trl_reward_func(
    model_or_dir: Scorer | str | Path,
    name: str = "latentrm",
    batch_size: int | None = None,
    embedder: Any | None = None,
    *,
    trust_remote_code: bool = False,
) -> TRLRewardFunc:
    """Reward function for ``GRPOTrainer(reward_funcs=...)`` from a RewardModel or its saved dir.

    ``f(prompts=, completions=, **kw) -> list[float]``; `name` is its ``__name__`` (TRL's log key).
    Quiet (no progress bars, no INFO lines per call); raises ModelError rather than return a
    NaN reward. `trust_remote_code` as in :func:`as_scorer`.
    """
    scorer = as_scorer(model_or_dir, embedder, trust_remote_code=trust_remote_code)
    return TRLRewardFunc(scorer, name=name, batch_size=batch_size)


def best_of_n(
    model: Scorer,
    prompts: Sequence[Any],
    candidates: Sequence[Sequence[Any]],
    batch_size: int | None = None,
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Pick the highest-scoring candidate per prompt.

    Returns ``(indices, scores)``: indices (n,) int64, the argmax per prompt (the first on ties);
    scores[i] (len(candidates[i]),) float32. All candidates go through one batched scoring pass.
    Errors name the prompt and candidate (``candidates[i][j]``); a NaN/Inf score is a ModelError,
    never a silent pick.
    """
    if len(prompts) != len(candidates):
        raise ValueError(f"{len(prompts)} prompts but {len(candidates)} candidate lists")
    parsed: list[list[tuple[Prompt, str]]] = []
    for i, (p, cands) in enumerate(zip(prompts, candidates, strict=True)):
        if len(cands) == 0:
            raise DataError(f"prompt {i} has no candidates", field="candidates")
        prompt = as_prompt(p, field=f"prompts[{i}]")
        parsed.append(
            [as_response(c, prompt, field=f"candidates[{i}][{j}]") for j, c in enumerate(cands)]
        )
    return _pick_best(model, parsed, batch_size)


def _pick_best(
    model: Scorer, parsed: Sequence[Sequence[tuple[Prompt, str]]], batch_size: int | None
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Best-of-N over parsed (context, response) candidates: (indices, per-prompt scores)."""
    flat = [item for group in parsed for item in group]
    scores = score_in_batches(model, [c for c, _ in flat], [t for _, t in flat], batch_size)
    split = np.split(scores, np.cumsum([len(g) for g in parsed])[:-1])
    return np.array([int(np.argmax(s)) for s in split], dtype=np.int64), split


# --- score / bon over rows ------------------------------------------------------------------------
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
            for side in ("chosen", "rejected"):
                if pkey is not None:
                    prompt = as_prompt(row[pkey], field=pkey, **where)
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
                    **({} if sd is None else {"spread_chosen": float(sd[2 * i]),
                                              "spread_rejected": float(sd[2 * i + 1])}),
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
            out.append({**row, "score": float(s),
                        **({} if sd is None else {"score_spread": float(sd[i])})})
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


def _candidate(c: Any, **where: Any) -> tuple[Any, float | None]:
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
            value, g = _candidate(c, field=f"{key}[{j}]", **where)
            cands.append(as_response(value, prompt, field=f"{key}[{j}]", **where))
            gold.append(g)
        parsed.append(cands)
        raws.append(list(raw))
        golds.append(None if any(x is None for x in gold) else gold)  # type: ignore[arg-type]
    indices, scores = _pick_best(model, parsed, batch_size)
    out = []
    for (_, row), i, s, raw, cands in zip(rows, indices, scores, raws, parsed, strict=True):
        best = raw[int(i)]
        out.append(
            {
                **row,
                "best_index": int(i),
                "best_response": best if isinstance(best, str) else cands[int(i)][1],
                "best_score": float(s[i]),
                "scores": [float(x) for x in s],
            }
        )
    summary: dict[str, Any] = {
        "rows": len(rows),
        "candidates": int(sum(len(c) for c in parsed)),
        "best_score_mean": float(np.mean([s[i] for i, s in zip(indices, scores, strict=True)])),
    }
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


__all__ = [
    "CANDIDATE_COLUMNS", "Scorer", "TRLRewardFunc", "as_scorer", "best_of_n", "bon_rows",
    "candidates_column", "make_trl_reward_func", "score_in_batches",
    "score_rows",
]
