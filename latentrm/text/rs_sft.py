"""Rejection-sampling fine-tuning: keep the reward model's best response per prompt, then SFT.

The loop (Touvron et al.'s rejection sampling, Dong et al.'s RAFT): a policy samples N responses
per prompt (:mod:`latentrm.text.generation`), a reward model scores them, the best per prompt is
kept (optionally only above a reward threshold, :func:`pick_best`) and the policy is fine-tuned on
the kept (prompt, response) pairs with TRL's SFTTrainer (:class:`PolicyTuner`, LoRA or full).
The glue (files in and out) is :mod:`latentrm.recipes.rs_sft`.

Training sees exactly the context generation saw: the prompt ids are
:func:`latentrm.text.lm.prompt_ids` (same chat rendering, same `max_prompt_tokens` cut), the
response's ids and the end-of-sequence token follow, and only those carry loss (labels -100 on
the prompt). trl/peft are imported inside functions (the ``[text]`` extra).
"""

from __future__ import annotations

import json
import logging
import math
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from latentrm.errors import ConfigError, TrainingError
from latentrm.io import atomic_write_text
from latentrm.runtime import resolve_device
from latentrm.text.lm import (
    Prompt,
    load_text_model,
    prompt_ids,
    require_text_extra,
    run_trainer,
    use_chat,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SFTConfig:
    """How the policy is fine-tuned on the picks (TRL SFTTrainer)."""

    mode: str = "lora"  # lora | full
    epochs: int = 1
    lr: float | None = None  # None: 1e-4 for lora, 1e-5 for full
    batch_size: int = 8
    gradient_accumulation: int = 1
    weight_decay: float = 0.0
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    lora_target_modules: tuple[str, ...] = ()  # () = peft's default (Llama: q_proj, v_proj)
    max_prompt_tokens: int = 384  # as SamplingConfig.max_prompt_tokens: the same context
    max_length: int = 512  # prompt + response tokens; longer examples lose the response's end
    merge: bool = True  # lora: save the merged model (loads as any causal LM), not the adapter
    seed: int = 0
    text_format: str = "auto"
    device: str = "cpu"
    show_progress: bool = False

    def check(self) -> None:
        if self.mode not in ("lora", "full"):
            raise ConfigError(f"mode must be 'lora' or 'full', got {self.mode!r}")
        if min(self.epochs, self.batch_size, self.gradient_accumulation, self.lora_r) < 1:
            raise ConfigError("epochs, batch_size, gradient_accumulation and lora_r must be >= 1")
        if self.max_length < 2 or self.max_prompt_tokens < 1:
            raise ConfigError("max_length must be >= 2 and max_prompt_tokens >= 1")


def pick_best(scores: Sequence[np.ndarray], threshold: float | None = None) -> np.ndarray:
    """(P,) int64: per prompt the index of its highest score (the first on ties), or -1 when
    that score is below `threshold` (the prompt is then left out of fine-tuning)."""
    out = np.empty(len(scores), dtype=np.int64)
    for i, s in enumerate(scores):
        s = np.asarray(s, dtype=np.float64)
        if s.size == 0:
            raise ValueError(f"prompt {i} has no scored responses")
        j = int(np.argmax(s))
        out[i] = -1 if threshold is not None and s[j] < threshold else j
    return out


def sft_examples(
    tok: Any,
    prompts: Sequence[Prompt],
    responses: Sequence[str],
    chat: bool,
    max_prompt_tokens: int,
    max_length: int,
) -> dict[str, list[list[int]]]:
    """{"input_ids", "labels"}: prompt ids (as generation saw them) + response ids + eos; labels
    are -100 on the prompt. Cut to max_length from the response's end (the prompt is kept)."""
    ids_out, labels_out = [], []
    for p, r in zip(prompts, responses, strict=True):
        pid = prompt_ids(tok, p, chat, max_prompt_tokens)[: max_length - 1]
        rid = tok(r, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        rid = rid[: max_length - len(pid)]
        ids_out.append(pid + rid)
        labels_out.append([-100] * len(pid) + rid)
    return {"input_ids": ids_out, "labels": labels_out}


class PolicyTuner:
    """Fine-tunes a causal LM on (prompt, response) examples with TRL's SFTTrainer.

    Loss (TRL): mean token cross-entropy on the response tokens (labels -100 elsewhere).
    Learned state: model_ (merged when lora and cfg.merge), tokenizer_, history_ (the Trainer's
    log), train_seconds_, n_trainable_, n_params_, n_examples_.
    """

    def __init__(
        self, policy: str, cfg: SFTConfig | None = None, gguf_file: str | None = None
    ) -> None:
        self.policy, self.gguf_file = policy, gguf_file
        self.cfg = cfg or SFTConfig()

    def fit(self, prompts: Sequence[Prompt], responses: Sequence[str]) -> PolicyTuner:
        require_text_extra()
        import trl
        from datasets import Dataset
        from transformers import set_seed

        cfg = self.cfg
        cfg.check()
        if len(prompts) == 0:
            raise TrainingError(
                "no examples to fine-tune on (every prompt was below the threshold?)"
            )
        set_seed(cfg.seed)
        model, self.tokenizer_ = load_text_model(self.policy, self.gguf_file, causal=True)
        self.chat_ = use_chat(self.tokenizer_, cfg.text_format)
        data = Dataset.from_dict(
            sft_examples(
                self.tokenizer_,
                prompts,
                responses,
                self.chat_,
                cfg.max_prompt_tokens,
                cfg.max_length,
            )
        )
        peft_config = None
        if cfg.mode == "lora":
            from peft import LoraConfig

            peft_config = LoraConfig(
                task_type="CAUSAL_LM",
                r=cfg.lora_r,
                lora_alpha=cfg.lora_alpha,
                lora_dropout=cfg.lora_dropout,
                target_modules=list(cfg.lora_target_modules) or None,
            )
        lr = cfg.lr if cfg.lr is not None else (1e-5 if cfg.mode == "full" else 1e-4)
        device = resolve_device(cfg.device)
        with tempfile.TemporaryDirectory(prefix="latentrm-sft-") as out:
            args = trl.SFTConfig(
                output_dir=out,
                num_train_epochs=cfg.epochs,
                learning_rate=lr,
                weight_decay=cfg.weight_decay,
                per_device_train_batch_size=cfg.batch_size,
                gradient_accumulation_steps=cfg.gradient_accumulation,
                seed=cfg.seed,
                data_seed=cfg.seed,
                logging_steps=1,
                report_to="none",
                save_strategy="no",
                max_length=cfg.max_length,
                packing=False,
                bf16=False,
                fp16=False,
                use_cpu=device.type == "cpu",
                disable_tqdm=not cfg.show_progress,
                dataloader_num_workers=0,
            )
            trainer = trl.SFTTrainer(
                model=model,
                args=args,
                train_dataset=data,
                processing_class=self.tokenizer_,
                peft_config=peft_config,
            )
            run = run_trainer(trainer, "rs-sft", len(data), cfg.mode, lr)
            self.n_params_, self.n_trainable_ = run.n_params, run.n_trainable
            self.train_seconds_, self.history_ = run.seconds, run.history
            model = run.model
            del trainer
        losses = [h["loss"] for h in self.history_ if "loss" in h]
        if not losses or not all(math.isfinite(x) for x in losses):
            raise TrainingError(f"fine-tuning produced a non-finite loss: {losses[-5:]}")
        if cfg.mode == "lora" and cfg.merge:
            model = model.merge_and_unload()
        self.model_ = model.eval()
        self.n_examples_ = len(data)
        return self

    def save_pretrained(self, out_dir: str | Path, record: dict[str, Any] | None = None) -> None:
        """model + tokenizer (save_pretrained) and rs_sft.json (settings, history, `record`)."""
        if not hasattr(self, "model_"):
            raise RuntimeError("PolicyTuner.save_pretrained() called before fit()")
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        self.model_.save_pretrained(out)
        self.tokenizer_.save_pretrained(out)
        doc = {
            "policy": self.policy,
            "gguf_file": self.gguf_file,
            "sft": asdict(self.cfg),
            "n_examples": self.n_examples_,
            "n_trainable": self.n_trainable_,
            "train_seconds": self.train_seconds_,
            "history": self.history_,
            **(record or {}),
        }
        atomic_write_text(out / "rs_sft.json", json.dumps(doc, indent=2, default=str) + "\n")


__all__ = ["PolicyTuner", "SFTConfig", "pick_best", "sft_examples"]
