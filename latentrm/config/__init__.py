"""Configuration: one frozen dataclass per stage, nested in RunConfig; YAML + key=value overrides.

:mod:`~latentrm.config.stages` (data, embed, vae, synth, reward, eval),
:mod:`~latentrm.config.text` (the text extra's sections), :mod:`~latentrm.config.run`
(RunConfig, the method names, the ratio rule) and :mod:`~latentrm.config.loading` (YAML,
overrides, help text). A run's resolved config is saved next to its artifacts.
"""

from latentrm.config.loading import (
    apply_changes,
    deep_merge,
    from_dict,
    help_lines,
    load_config,
    method_config,
    parse_overrides,
    save_config,
    saved_config_matches,
    to_dict,
)
from latentrm.config.run import METHODS, RunConfig, check_ratio
from latentrm.config.stages import (
    DataConfig,
    EmbedConfig,
    EvalConfig,
    RewardConfig,
    SynthConfig,
    VAEConfig,
)
from latentrm.config.text import SelfRewardConfig, TextRewardConfig

__all__ = [
    "METHODS",
    "DataConfig",
    "EmbedConfig",
    "EvalConfig",
    "RewardConfig",
    "RunConfig",
    "SelfRewardConfig",
    "SynthConfig",
    "TextRewardConfig",
    "VAEConfig",
    "apply_changes",
    "check_ratio",
    "deep_merge",
    "from_dict",
    "help_lines",
    "load_config",
    "method_config",
    "parse_overrides",
    "save_config",
    "saved_config_matches",
    "to_dict",
]
