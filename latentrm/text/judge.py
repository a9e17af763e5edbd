"""An offline judge: two policies' answers to held-out prompts, compared by a stronger reward model.

The judge is any scorer (``score(prompts, responses) -> (N,)``): a latentrm reward-model folder
(:class:`latentrm.model.RewardModel`) or any ``AutoModelForSequenceClassification`` with one
label (:class:`SeqClsJudge`). :func:`compare` reports A's win rate over B (ties count half) with a
percentile bootstrap CI over prompts, the mean judged reward of each side and the mean answer
length of each (in characters and words): a policy that wins only by writing longer answers is
the usual failure of reward-model-driven fine-tuning, and the lengths show it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from latentrm.errors import ConfigError
from latentrm.evaluate import bootstrap_ci, pair_correctness

log = logging.getLogger(__name__)


def compare(
    scores_a: np.ndarray,
    scores_b: np.ndarray,
    answers_a: Sequence[Sequence[str]],
    answers_b: Sequence[Sequence[str]],
    n_bootstrap: int = 2000,
    seed: int = 0,
) -> dict[str, Any]:
    """Judge statistics of A against B on P prompts with K answers each.

    scores_*: (P, K) judged rewards (a (P,) array is K=1); answer k of A meets answer k of B.
    Per prompt, A's credit is the mean over k of 1 (A's reward higher), 1/2 (equal) or 0; the
    win rate is the mean credit, its 95% CI a percentile bootstrap over prompts. Lengths are
    means over all answers, in characters and whitespace-separated words.
    """
    a = np.asarray(scores_a, np.float64)
    b = np.asarray(scores_b, np.float64)
    a, b = (a[:, None] if a.ndim == 1 else a), (b[:, None] if b.ndim == 1 else b)
    if a.shape != b.shape or a.ndim != 2 or a.shape[0] == 0:
        raise ValueError(f"scores of A {a.shape} and B {b.shape} must be the same (P, K), P > 0")
    for name, ans in (("A", answers_a), ("B", answers_b)):
        if len(ans) != a.shape[0] or any(len(x) != a.shape[1] for x in ans):
            raise ValueError(f"answers of {name} must be {a.shape[0]} lists of {a.shape[1]}")
    credit = pair_correctness(a.ravel(), b.ravel()).reshape(a.shape).mean(axis=1)  # (P,)
    lo, hi = bootstrap_ci(credit, n_bootstrap, seed)

    def length(ans: Sequence[Sequence[str]], words: bool) -> float:
        return float(np.mean([len(t.split()) if words else len(t) for x in ans for t in x]))

    return {
        "prompts": int(a.shape[0]),
        "answers_per_prompt": int(a.shape[1]),
        "win_rate": float(credit.mean()),
        "win_rate_lo": lo,
        "win_rate_hi": hi,
        "wins": int(np.sum(a > b)),
        "ties": int(np.sum(a == b)),
        "losses": int(np.sum(a < b)),
        "reward_a": float(a.mean()),
        "reward_b": float(b.mean()),
        "reward_diff": float((a - b).mean()),
        "chars_a": length(answers_a, False),
        "chars_b": length(answers_b, False),
        "words_a": length(answers_a, True),
        "words_b": length(answers_b, True),
    }


class SeqClsJudge:
    """Any one-label ``AutoModelForSequenceClassification`` as a scorer (float32).

    (prompt, response) texts are rendered with the tokenizer's chat template when it has one
    (text_format "auto"), cut to `max_length` tokens as the text reward models cut them
    (:func:`latentrm.text.lm.encode_texts`), and scored in length-sorted batches. Never runs
    remote code.
    """

    def __init__(
        self,
        path: str,
        max_length: int = 512,
        batch_size: int = 16,
        text_format: str = "auto",
        device: str = "cpu",
    ) -> None:
        import torch

        from latentrm.embed.models import load_hf_model, resolve_model
        from latentrm.runtime import resolve_device
        from latentrm.text.lm import use_chat

        folder, gguf = resolve_model(path)
        self.device_ = resolve_device(device)
        self.tokenizer_, self.model_ = load_hf_model(
            folder,
            gguf,
            None,
            False,
            torch.float32,
            self.device_,
            "AutoModelForSequenceClassification",
        )
        if int(self.model_.config.num_labels) != 1:
            raise ConfigError(
                f"judge {path}: a reward model has one output, this one has "
                f"{self.model_.config.num_labels} labels"
            )
        if self.tokenizer_.pad_token is None:
            self.tokenizer_.pad_token = self.tokenizer_.eos_token
        self.model_.config.pad_token_id = self.tokenizer_.pad_token_id
        self.chat_ = use_chat(self.tokenizer_, text_format)
        self.path, self.max_length, self.batch_size = path, max_length, batch_size

    def score(self, prompts: Sequence[Any], responses: Sequence[str]) -> np.ndarray:
        import torch

        from latentrm.text.lm import encode_texts, pad_batch

        ids = encode_texts(self.tokenizer_, prompts, responses, self.max_length, self.chat_)
        order = np.argsort([len(x) for x in ids], kind="stable")
        out = np.empty(len(ids), dtype=np.float32)
        with torch.inference_mode():
            for s in range(0, len(ids), self.batch_size):
                rows = order[s : s + self.batch_size]
                x, mask = pad_batch(
                    [ids[i] for i in rows], self.tokenizer_.pad_token_id, False, self.device_
                )
                out[rows] = (
                    self.model_(input_ids=x, attention_mask=mask).logits[:, 0].float().cpu().numpy()
                )
        return out


def load_judge(
    path: str | Path, *, max_length: int = 512, device: str = "cpu", trust_remote_code: bool = False
) -> Any:
    """A latentrm reward-model folder (it has head.json) or any sequence classifier."""
    p = Path(path)
    if (p / "head.json").is_file():
        from latentrm.model import RewardModel

        return RewardModel.from_pretrained(str(p), trust_remote_code=trust_remote_code)
    return SeqClsJudge(str(path), max_length=max_length, device=device)


__all__ = ["SeqClsJudge", "compare", "load_judge"]
