"""`latentrm rs-sft` and `latentrm judge`: rejection-sampling fine-tuning, judged offline.

rs_sft: prompts (any file the readers take) -> N samples each (cached) or a candidates file ->
reward-model scores -> the best per prompt (above an optional threshold) -> picks.jsonl -> SFT ->
the policy saved with save_pretrained. judge: two policies answer held-out prompts (cached), a
stronger reward model scores both, :func:`latentrm.text.judge.compare` sums it up. Glue only: the
sampling is :mod:`latentrm.text.generation`, the picking and tuning :mod:`latentrm.text.rs_sft`.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from latentrm.data.load import load_pairs
from latentrm.data.messages import as_prompt, as_response, maybe_json_list
from latentrm.data.readers import read_rows
from latentrm.data.types import Prompt
from latentrm.data.writers import check_output_path, write_rows
from latentrm.errors import ConfigError, DataError
from latentrm.io import atomic_write_json, check_output_dir
from latentrm.recipes.score import candidates_column
from latentrm.serve import score_in_batches
from latentrm.text.generation import SamplingConfig, generate_responses, prompt_key
from latentrm.text.judge import compare, load_judge
from latentrm.text.rs_sft import PolicyTuner, SFTConfig, pick_best

log = logging.getLogger(__name__)

_PROMPT_KEYS = ("prompt", "instruction")
_TEXT_KEYS = ("output", "response", "completion", "text", "content")


# --- inputs ---------------------------------------------------------------------------------------
def read_prompts(path: str | Path) -> list[Prompt]:
    """The distinct prompts of a file, in file order.

    Rows with a `prompt`/`instruction` field (text, HH dialogue or messages), or any preference
    pair format `latentrm run` reads (HH-RLHF dialogues, TRL formats, TL;DR, candidate sets):
    then the prompts of its pairs.
    """
    rows = read_rows(path)
    if not rows:
        raise DataError("no prompts", path=str(path))
    first = rows[0][1]
    if any(k in first for k in _PROMPT_KEYS) and "chosen" not in first:
        prompts = []
        for line, row in rows:
            key = next((k for k in _PROMPT_KEYS if row.get(k) is not None), None)
            if key is None:
                raise DataError("missing prompt", path=str(path), line=line, field="prompt")
            prompts.append(as_prompt(row[key], path=str(path), line=line, field=key))
    else:
        prompts = load_pairs(path).prompts
    seen: dict[str, Prompt] = {}
    for p in prompts:
        seen.setdefault(prompt_key(p), p)
    return list(seen.values())


def read_candidates(
    path: str | Path, field: str | None = None
) -> tuple[list[Prompt], list[list[str]]]:
    """Prompts and their candidate responses from a candidates file (the `bon` input).

    Rows: `prompt`/`instruction` + a list in `field` (default: candidates, completions or
    responses) of strings, assistant messages or dicts with output/response/text.
    """
    rows = read_rows(path)
    if not rows:
        raise DataError("no rows", path=str(path))
    key = field or candidates_column(rows[0][1], path=str(path), line=rows[0][0])
    prompts, cands = [], []
    for line, row in rows:
        where = {"path": str(path), "line": line}
        pkey = next((k for k in _PROMPT_KEYS if row.get(k) is not None), None)
        if pkey is None:
            raise DataError("missing prompt", field="prompt", **where)
        prompt = as_prompt(row[pkey], field=pkey, **where)
        raw = maybe_json_list(row.get(key), field=key, **where)
        if not isinstance(raw, (list, tuple)) or not raw:
            raise DataError("expected a non-empty list of candidates", field=key, **where)
        texts = []
        for j, c in enumerate(raw):
            if isinstance(c, Mapping) and "role" not in c:
                tk = next((k for k in _TEXT_KEYS if c.get(k) is not None), None)
                if tk is None:
                    raise DataError(
                        f"candidate needs one of {', '.join(_TEXT_KEYS)}",
                        field=f"{key}[{j}]",
                        **where,
                    )
                c = c[tk]
            texts.append(as_response(c, prompt, field=f"{key}[{j}]", **where)[1])
        prompts.append(prompt)
        cands.append(texts)
    return prompts, cands


class RandomScorer:
    """Uniform random scores from (seed, prompt, response) alone: the random-picks baseline."""

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    def score(self, prompts: Sequence[Prompt], responses: Sequence[str]) -> np.ndarray:
        out = np.empty(len(prompts), dtype=np.float32)
        for i, (p, r) in enumerate(zip(prompts, responses, strict=True)):
            h = hashlib.sha256(f"{self.seed}:{prompt_key(p)}:{r}".encode()).digest()
            out[i] = int.from_bytes(h[:4], "big") / 2**32
        return out


def load_scorer(model: str | Path, seed: int = 0, trust_remote_code: bool = False) -> Any:
    """ "random" (RandomScorer), a latentrm reward-model folder, or a sequence classifier."""
    if str(model) == "random":
        return RandomScorer(seed)
    return load_judge(model, trust_remote_code=trust_remote_code)


def _messages(prompt: Prompt) -> list[dict[str, str]]:
    return [dict(m) for m in prompt]


# --- rs-sft ---------------------------------------------------------------------------------------
def rs_sft(
    policy: str,
    reward_model: Any,
    out_dir: str | Path,
    *,
    prompts: str | Path | None = None,
    candidates: str | Path | None = None,
    sampling: SamplingConfig | None = None,
    sft: SFTConfig | None = None,
    threshold: float | None = None,
    cache_dir: str | Path = "cache",
    gguf_file: str | None = None,
    batch_size: int = 256,
    sampler: Any | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Sample (or read candidates), score, pick, fine-tune, save; returns the summary.

    reward_model: a scorer, "random", or a path (:func:`load_scorer`). out_dir gets the policy
    (save_pretrained), picks.jsonl (TRL prompt-completion rows + score, scores, index) and
    rs_sft.json. Output paths are checked before any work; an out_dir that already holds a
    result is refused unless `overwrite`.
    """
    sampling, sft = sampling or SamplingConfig(), sft or SFTConfig()
    if (prompts is None) == (candidates is None):
        raise ConfigError("give either a prompts file or a candidates file")
    out = check_output_dir(out_dir, "rs-sft output folder")
    if (out / "rs_sft.json").exists() and not overwrite:
        raise ConfigError(f"{out_dir}: holds an rs-sft result already; choose another folder")
    sampling.check()
    sft.check()
    if candidates is not None:
        ps, cands = read_candidates(candidates)
        gen_stats: dict[str, Any] = {"candidates": str(candidates)}
    else:
        ps = read_prompts(prompts)  # type: ignore[arg-type]
        cands, gen_stats = generate_responses(policy, ps, sampling, cache_dir, gguf_file, sampler)
    scorer = (
        reward_model if hasattr(reward_model, "score") else load_scorer(reward_model, sampling.seed)
    )
    flat_p = [p for p, c in zip(ps, cands, strict=True) for _ in c]
    flat_r = [t for c in cands for t in c]
    flat = score_in_batches(scorer, flat_p, flat_r, batch_size)
    scores = np.split(flat, np.cumsum([len(c) for c in cands])[:-1])
    picks = pick_best(scores, threshold)
    rows = [
        {
            "id": prompt_key(p)[:16],
            "prompt": _messages(p),
            "completion": [{"role": "assistant", "content": c[j]}],
            "score": float(s[j]),
            "scores": [float(x) for x in s],
            "index": int(j),
        }
        for p, c, s, j in zip(ps, cands, scores, picks, strict=True)
        if j >= 0
    ]
    kept = [(p, c[j]) for p, c, j in zip(ps, cands, picks, strict=True) if j >= 0]
    summary: dict[str, Any] = {
        "prompts": len(ps),
        "responses": len(flat_r),
        "kept": len(kept),
        "threshold": threshold,
        "score_mean_all": float(flat.mean()),
        "score_mean_picked": float(np.mean([r["score"] for r in rows])) if rows else float("nan"),
        "chars_mean_all": float(np.mean([len(t) for t in flat_r])),
        "chars_mean_picked": float(np.mean([len(t) for _, t in kept])) if kept else float("nan"),
        "generation": gen_stats,
    }
    log.info(
        "rs-sft: kept %d of %d prompts (picked mean score %.4f, all %.4f)",
        len(kept),
        len(ps),
        summary["score_mean_picked"],
        summary["score_mean_all"],
    )
    out.mkdir(parents=True, exist_ok=True)
    write_rows(rows, out / "picks.jsonl")  # the picks survive a failed fine-tuning
    tuner = PolicyTuner(policy, sft, gguf_file).fit([p for p, _ in kept], [t for _, t in kept])
    summary.update(
        train_seconds=tuner.train_seconds_,
        n_trainable=tuner.n_trainable_,
        final_loss=next((h["loss"] for h in reversed(tuner.history_) if "loss" in h), None),
    )
    reward_name = getattr(scorer, "source", None) or (
        str(reward_model) if not hasattr(reward_model, "score") else type(scorer).__name__
    )
    tuner.save_pretrained(
        out, {"reward_model": reward_name, "sampling": sampling.__dict__, "summary": summary}
    )
    return summary


# --- judge ----------------------------------------------------------------------------------------
def judge_policies(
    judge: Any,
    prompts: str | Path,
    policy_a: str,
    policy_b: str,
    *,
    sampling: SamplingConfig | None = None,
    cache_dir: str | Path = "cache",
    out: str | Path | None = None,
    n_bootstrap: int = 2000,
    batch_size: int = 256,
    samplers: tuple[Any, Any] | None = None,
) -> dict[str, Any]:
    """A's win rate over B on the prompts of `prompts`, judged by `judge` (a scorer or a path:
    :func:`latentrm.text.judge.load_judge`); both answer with `sampling` (default one sample,
    temperature 0.7, seed 0), through the generation cache. `out`: per-prompt rows (answers,
    judged rewards) as .jsonl/.csv/...; checked before any work."""
    sampling = sampling or SamplingConfig(n=1)
    if out is not None:
        check_output_path(out)
    ps = read_prompts(prompts)
    answers = []
    for i, pol in enumerate((policy_a, policy_b)):
        sampler = samplers[i] if samplers else None
        answers.append(generate_responses(pol, ps, sampling, cache_dir, None, sampler)[0])
    scorer = judge if hasattr(judge, "score") else load_judge(judge)
    k = sampling.n
    flat_p = [p for p in ps for _ in range(k)]
    sa, sb = (
        score_in_batches(scorer, flat_p, [t for x in ans for t in x], batch_size).reshape(
            len(ps), k
        )
        for ans in answers
    )
    summary = compare(sa, sb, answers[0], answers[1], n_bootstrap, sampling.seed)
    summary.update(
        policy_a=str(policy_a),
        policy_b=str(policy_b),
        judge=str(getattr(scorer, "source", None) or getattr(scorer, "path", judge)),
    )
    if out is not None:
        rows = [
            {
                "prompt": _messages(p),
                "answers_a": a,
                "answers_b": b,
                "reward_a": [float(x) for x in ra],
                "reward_b": [float(x) for x in rb],
            }
            for p, a, b, ra, rb in zip(ps, answers[0], answers[1], sa, sb, strict=True)
        ]
        write_rows(rows, out)
    return summary


def write_summary(path: str | Path, summary: Mapping[str, Any]) -> None:
    atomic_write_json(Path(path), json.loads(json.dumps(summary, default=str)))


__all__ = [
    "RandomScorer",
    "judge_policies",
    "load_scorer",
    "read_candidates",
    "read_prompts",
    "rs_sft",
]
