"""Config sections of the ``[text]`` extra (``text:`` and ``self_rewarding:``).

They live with the other configs, not in :mod:`latentrm.text`, so RunConfig nests them without
importing the extra.
"""

from __future__ import annotations

from dataclasses import dataclass

from latentrm.config.bounds import check_bounds
from latentrm.config.stages import opt


@dataclass(frozen=True)
class TextRewardConfig:
    """Text baselines (``latentrm[text]``): reward models fine-tuned on text with TRL."""

    epochs: int = opt(1, "Training epochs over the (seed + synthetic) text pairs.")
    max_length: int = opt(
        256,
        "Max tokens per (prompt, response). Longer inputs lose prompt tokens from the left; the "
        "response is cut (from its end) only when it alone exceeds the budget. Nothing is dropped.",
    )
    batch_size: int = opt(8, "Pairs per step (each pair is two sequences); also the scoring batch.")
    lr: float | None = opt(None, "AdamW learning rate; None = 1e-5 for full, 1e-4 for lora.")
    weight_decay: float = opt(0.0, "AdamW weight decay.")
    lora_r: int = opt(8, "LoRA rank.")
    lora_alpha: int = opt(16, "LoRA alpha (adapter scale = alpha / r).")
    lora_dropout: float = opt(0.05, "Dropout on the LoRA adapter input.")
    lora_target_modules: tuple[str, ...] = opt(
        (),
        "Modules that get LoRA adapters; () = peft's default for the architecture "
        "(Llama: q_proj, v_proj).",
    )
    gradient_accumulation: int = opt(1, "Steps whose gradients are summed before an update.")
    max_train_pairs: int | None = opt(
        None, "Train on a seeded random subset of this many pairs; None = all."
    )
    seed: int = opt(
        0, "Seed (head init, data order, LoRA init) when the model is built without one."
    )
    output_dir: str | None = opt(
        None,
        "Trainer output folder (no checkpoints are saved); None = a temporary folder, removed.",
    )
    text_format: str = opt(
        "auto",
        "auto | chat | plain: chat template (auto: when the tokenizer has one) or HH plain text.",
    )
    device: str = opt("auto", "auto | cpu | cuda | cuda:N; auto = embed.device in `experiment`.")
    show_progress: bool = opt(False, "Show the Trainer's tqdm bar.")

    def __post_init__(self) -> None:
        check_bounds(self, "text.")


@dataclass(frozen=True)
class SelfRewardConfig:
    """Self-rewarding text synthesis: the base model writes new responses and judges pairs."""

    max_new_tokens: int = opt(64, "Tokens generated per new response.")
    temperature: float = opt(0.8, "Sampling temperature of the new responses.")
    top_p: float = opt(0.95, "Nucleus sampling mass.")
    max_prompt_tokens: int = opt(
        384, "Generation prompt budget: earliest turns are dropped, then tokens from the left."
    )
    max_judge_tokens: int = opt(
        768, "Judge prompt budget: the conversation is cut from the left to fit the two replies."
    )
    batch_size: int = opt(8, "Prompts per generation batch / judge texts per forward pass.")
    max_rounds: int = opt(
        3,
        "Generation rounds to get enough distinct non-empty responses per prompt; what is still "
        "missing is filled with the seed pair's own chosen/rejected responses (counted in stats).",
    )
    train_mode: str = opt("lora", "full | lora: the reward model trained on seed + judged pairs.")
    text_format: str = opt("auto", "auto | chat | plain, as TextRewardConfig.text_format.")
    device: str = opt("auto", "auto | cpu | cuda | cuda:N; auto = embed.device in `experiment`.")

    def __post_init__(self) -> None:
        check_bounds(self, "self_rewarding.")
