"""Self-rewarding text synthesis: the base instruct model writes new responses and judges them.

The text-space counterpart of LENS's latent synthesis (and its cost reference in the efficiency
table): for each seed prompt the LLM samples new responses, and an LLM-as-a-judge prompt orders
pairs of them. Configured by :class:`latentrm.config.SelfRewardConfig`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from latentrm.config import SelfRewardConfig
from latentrm.data.formats import render_plain
from latentrm.data.types import PreferenceDataset, PreferencePair
from latentrm.errors import ConfigError, TrainingError
from latentrm.runtime import resolve_device
from latentrm.text.lm import (
    Prompt,
    load_text_model,
    pad_batch,
    prompt_ids,
    token_ids,
    use_chat,
)

log = logging.getLogger(__name__)

JUDGE_TEMPLATE = (
    "Below is a conversation between a user and an AI assistant, then two candidate replies for "
    "the assistant's next turn.\n\n[Conversation]\n{conversation}\n\n[Reply A]\n{a}\n\n"
    "[Reply B]\n{b}\n\nWhich reply is better: more helpful, honest and harmless? "
    "Answer with one letter, A or B."
)


def combine_orders(log_odds_ab: np.ndarray, log_odds_ba: np.ndarray) -> np.ndarray:
    """Position-debiased judgement: log-odds that the first reply x beats the second y.

    log_odds_ab = logit(A) - logit(B) with x shown as A; log_odds_ba the same with y shown as A.
    Returns (log_odds_ab - log_odds_ba) / 2, shape (N,). A constant bias toward the letter A (or B)
    adds the same c to both terms and cancels; swapping x and y flips the sign exactly.
    """
    return (np.asarray(log_odds_ab, np.float64) - np.asarray(log_odds_ba, np.float64)) / 2.0


def n_responses(ratio: int) -> int:
    """Smallest k with k(k-1)/2 >= ratio: k responses give `ratio` distinct unordered pairs."""
    k = 2
    while k * (k - 1) // 2 < ratio:
        k += 1
    return k


@dataclass
class SynthesisResult:
    pairs: PreferenceDataset  # ratio*N new pairs, ids "<seed id>#sr<j>", prompt = seed prompt
    seed_idx: np.ndarray  # (P,) int64: index of each pair's seed in the input dataset
    log_odds: np.ndarray  # (P,) float64 judge log-odds chosen > rejected (>= 0)
    stats: dict = field(default_factory=dict)


class SelfRewardingSynthesizer:
    """The base instruct model writes new responses to seed prompts and judges pairs of them.

    For ratio r it samples k = min{k: k(k-1)/2 >= r} distinct responses per seed prompt, takes r of
    the k(k-1)/2 response pairs (seeded choice), and orders each with an LLM-as-a-judge prompt
    (JUDGE_TEMPLATE). The judge is read, not parsed: at the answer position the next-token logits
    of "A" vs "B" (each the logsumexp over its single-token spellings, e.g. "A" and " A") give
    log-odds; each pair is judged in both orders and combined by `combine_orders` to cancel the
    model's position/letter bias. (Yuan et al.'s self-rewarding scores single responses 0-5 and
    pairs best with worst; a pairwise judge is the cheaper variant for a 135M model.)
    Learned state after synthesize(): model_, tokenizer_.
    """

    def __init__(
        self, base_model: str, cfg: SelfRewardConfig | None = None, gguf_file: str | None = None
    ) -> None:
        self.base_model, self.gguf_file = base_model, gguf_file
        self.cfg = cfg or SelfRewardConfig()

    def _ensure_model(self) -> None:
        if not hasattr(self, "model_"):
            model, self.tokenizer_ = load_text_model(self.base_model, self.gguf_file, causal=True)
            self.device_ = resolve_device(self.cfg.device)
            self.model_ = model.to(self.device_).eval()
            self.chat_ = use_chat(self.tokenizer_, self.cfg.text_format)
            self.answer_ids_ = [self._letter_ids(c) for c in "AB"]

    def _letter_ids(self, letter: str) -> list[int]:
        ids = {
            t[0]
            for s in (letter, " " + letter)
            if len(t := self.tokenizer_.encode(s, add_special_tokens=False)) == 1
        }
        if not ids:
            raise ConfigError(f"judge: the tokenizer has no single token for the answer {letter!r}")
        return sorted(ids)

    def _prompt_ids(self, prompt: Prompt) -> list[int]:
        return prompt_ids(self.tokenizer_, prompt, self.chat_, self.cfg.max_prompt_tokens)

    def generate(self, prompts: Sequence[Prompt], n: int) -> list[list[str]]:
        """n sampled responses per prompt (torch's global RNG: seed it first to reproduce)."""
        self._ensure_model()
        import torch

        tok, cfg = self.tokenizer_, self.cfg
        out: list[list[str]] = []
        for s in range(0, len(prompts), cfg.batch_size):
            ids = [self._prompt_ids(p) for p in prompts[s : s + cfg.batch_size]]
            x, mask = pad_batch(ids, tok.pad_token_id, True, self.device_)
            with torch.inference_mode():
                gen = self.model_.generate(
                    input_ids=x,
                    attention_mask=mask,
                    do_sample=True,
                    temperature=cfg.temperature,
                    top_p=cfg.top_p,
                    top_k=0,
                    max_new_tokens=cfg.max_new_tokens,
                    num_return_sequences=n,
                    pad_token_id=tok.pad_token_id,
                    eos_token_id=tok.eos_token_id,
                )  # (B * n, T + new)
            texts = tok.batch_decode(gen[:, x.shape[1] :], skip_special_tokens=True)
            out.extend([t.strip() for t in texts[i * n : (i + 1) * n]] for i in range(len(ids)))
        return out

    def _judge_text(self, prompt: Prompt, a: str, b: str) -> list[int]:
        tok, budget = self.tokenizer_, self.cfg.max_judge_tokens
        conv_ids = tok(render_plain(prompt, None).strip(), add_special_tokens=False)["input_ids"]

        def render(conv: str) -> list[int]:
            user = JUDGE_TEMPLATE.format(conversation=conv, a=a, b=b)
            return token_ids(tok, [{"role": "user", "content": user}], None, self.chat_)

        ids = render(tok.decode(conv_ids))
        if len(ids) > budget:  # keep the replies and the question; cut the conversation's start
            keep = max(len(conv_ids) - (len(ids) - budget), 0)
            ids = render(tok.decode(conv_ids[len(conv_ids) - keep :]) if keep else "...")
        return ids

    def _log_odds(self, texts: Sequence[list[int]]) -> np.ndarray:
        """(N,) logit("A") - logit("B") at the position after each judge prompt."""
        import torch

        out = np.empty(len(texts), dtype=np.float64)
        for s in range(0, len(texts), self.cfg.batch_size):
            x, mask = pad_batch(
                texts[s : s + self.cfg.batch_size], self.tokenizer_.pad_token_id, True, self.device_
            )
            pos = (mask.cumsum(-1) - 1).clamp(
                min=0
            )  # left padding: real tokens start at position 0
            with torch.inference_mode():
                logits = (
                    self.model_(
                        input_ids=x, attention_mask=mask, position_ids=pos, logits_to_keep=1
                    )
                    .logits[:, -1]
                    .float()
                )  # (B, V)
            a, b = (torch.logsumexp(logits[:, i], dim=-1) for i in self.answer_ids_)
            out[s : s + len(x)] = (a - b).cpu().numpy()
        return out

    def judge(self, prompts: Sequence[Prompt], x: Sequence[str], y: Sequence[str]) -> np.ndarray:
        """(N,) position-debiased log-odds that x[i] is a better reply to prompts[i] than y[i]."""
        self._ensure_model()
        ab = [self._judge_text(p, a, b) for p, a, b in zip(prompts, x, y, strict=True)]
        ba = [self._judge_text(p, b, a) for p, a, b in zip(prompts, x, y, strict=True)]
        lo = self._log_odds(ab + ba)
        return combine_orders(lo[: len(ab)], lo[len(ab) :])

    def synthesize(self, seeds: PreferenceDataset, ratio: int, seed: int) -> SynthesisResult:
        """ratio * len(seeds) new judged pairs, each on its seed's prompt, plus timing stats."""
        import torch

        if ratio < 1:
            raise ConfigError(f"self-rewarding synthesis needs ratio >= 1, got {ratio}")
        self._ensure_model()
        torch.manual_seed(seed)
        k = n_responses(ratio)
        pools: list[list[str]] = [[] for _ in seeds]
        n_generated, t0 = 0, time.perf_counter()
        for _ in range(self.cfg.max_rounds):
            todo = [i for i, pool in enumerate(pools) if len(pool) < k]
            if not todo:
                break
            for i, texts in zip(
                todo, self.generate([seeds[i].prompt for i in todo], k), strict=True
            ):
                n_generated += len(texts)
                for t in texts:  # distinct, non-empty responses only: a pair must differ
                    if t and t not in pools[i] and len(pools[i]) < k:
                        pools[i].append(t)
        gen_seconds = time.perf_counter() - t0
        n_filled = 0
        for i, pool in enumerate(pools):
            for t in (seeds[i].chosen, seeds[i].rejected):
                if len(pool) < k and t not in pool:
                    pool.append(t)
                    n_filled += 1
            if len(pool) < k:
                raise TrainingError(
                    f"seed {seeds[i].id}: only {len(pool)} distinct responses, need {k}"
                )
        rng = np.random.default_rng(seed)
        grid = [(a, b) for a in range(k) for b in range(a + 1, k)]
        picks = [[grid[j] for j in rng.permutation(len(grid))[:ratio]] for _ in pools]
        seed_idx = np.repeat(np.arange(len(seeds), dtype=np.int64), ratio)
        xs = [pools[i][a] for i, pp in enumerate(picks) for a, _ in pp]
        ys = [pools[i][b] for i, pp in enumerate(picks) for _, b in pp]
        t1 = time.perf_counter()
        lo = self.judge([seeds[int(i)].prompt for i in seed_idx], xs, ys)
        judge_seconds = time.perf_counter() - t1
        pairs = []
        for j, (i, x, y, v) in enumerate(zip(seed_idx.tolist(), xs, ys, lo, strict=True)):
            chosen, rejected = (x, y) if v >= 0 else (y, x)
            pairs.append(
                PreferencePair(f"{seeds[i].id}#sr{j % ratio}", seeds[i].prompt, chosen, rejected)
            )
        n_pairs = len(pairs)
        stats = {
            "responses_per_seed": k,
            "responses_generated": n_generated,
            "filled_with_seed_responses": n_filled,
            "pairs": n_pairs,
            "generate_seconds": gen_seconds,
            "judge_seconds": judge_seconds,
            "seconds_per_response": gen_seconds / max(n_generated, 1),
            "seconds_per_judged_pair": judge_seconds / max(n_pairs, 1),
            "seconds_per_pair": (gen_seconds + judge_seconds) / max(n_pairs, 1),
            "judge_mean_abs_log_odds": float(np.abs(lo).mean()) if n_pairs else float("nan"),
        }
        log.info("self-rewarding: %d pairs from %d seeds, %s", n_pairs, len(seeds), stats)
        return SynthesisResult(
            PreferenceDataset(pairs, f"self-rewarding({seeds.source})", stats),
            seed_idx,
            np.abs(lo),
            stats,
        )
