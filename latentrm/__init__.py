"""latentrm: reward models from little preference data via LENS latent-space synthesis.

The Python-first API, imported on first use (``import latentrm`` stays cheap):

    latentrm.fit(data, embedder="minilm") -> RewardModel    # latentrm.recipes.fit
    latentrm.RewardModel.from_pretrained("dir or user/repo")  # latentrm.model
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_LAZY = {"fit": "latentrm.recipes.fit", "RewardModel": "latentrm.model"}
__all__ = ["RewardModel", "__version__", "fit"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'latentrm' has no attribute {name!r}")
