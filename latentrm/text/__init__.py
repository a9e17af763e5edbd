"""The ``[text]`` extra: text baselines that LENS is compared against.

:mod:`~latentrm.text.reward_model` (TRL RewardTrainer, full or LoRA, on the base model),
:mod:`~latentrm.text.self_rewarding` (the base model writes and judges new responses) and
:mod:`~latentrm.text.lm` (loading, chat rendering, encoding). trl/peft/accelerate are imported
lazily, so these modules import without the extra; ``lm.text_baselines_available()`` tells.
Their config sections (``text:``, ``self_rewarding:``) live in :mod:`latentrm.config`.
"""
