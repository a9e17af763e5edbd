"""A reward model you can use: embedder + reward head, text in, score out.

:class:`RewardModel` scores raw (prompt, response) text end to end and is what every serving path
(`latentrm score`/`bon`, the TRL reward function, Best-of-N) loads from a model folder.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from latentrm.config import EmbedConfig, from_dict, load_config, to_dict
from latentrm.embed.embedder import Embedder
from latentrm.errors import ConfigError, DataError
from latentrm.io import atomic_write_json
from latentrm.reward import RewardHead, load_head, save_head

log = logging.getLogger(__name__)

class RewardModel:
    """Embedder + reward head: scores raw (prompt, response) text end to end.

    The embedder (``latentrm.embed.Embedder(embed_cfg)``) is built on first use; pass `embedder`
    to reuse a loaded one. Its dimension must match the head's. `history` is the head's training
    record (``RewardHeadFitter.history_``), saved with it.
    """

    def __init__(
        self, embed_cfg: EmbedConfig, head: RewardHead, embedder: Any | None = None,
        history: dict | None = None,
    ) -> None:
        self.embed_cfg, self.head, self.history = embed_cfg, head, history
        self._embedder = None
        if embedder is not None:
            self._check_dim(embedder)
            self._embedder = embedder

    def _check_dim(self, embedder: Any) -> None:
        if int(embedder.dim) != self.head.d:
            raise ConfigError(
                f"reward head takes d={self.head.d} embeddings but embedder "
                f"'{self.embed_cfg.model}' gives d={embedder.dim}; use the embedding model the "
                "head was trained on"
            )

    @property
    def embedder(self) -> Any:
        if self._embedder is None:
            emb = Embedder(self.embed_cfg)
            self._check_dim(emb)
            self._embedder = emb
        return self._embedder

    def score(self, prompts: Sequence[Any], responses: Sequence[str]) -> np.ndarray:
        """Rewards (N,) float32 for N (prompt, response) pairs; prompts are message tuples."""
        if len(prompts) != len(responses):
            raise ConfigError(f"got {len(prompts)} prompts but {len(responses)} responses")
        return self.head.score(self.embedder.embed(prompts, responses))

    def save(self, out_dir: str | Path) -> None:
        """Head files plus ``embed_config.json``; :meth:`load` restores both."""
        save_head(self.head, out_dir, self.history)
        atomic_write_json(Path(out_dir) / "embed_config.json", to_dict(self.embed_cfg))

    @classmethod
    def load(cls, in_dir: str | Path, embedder: Any | None = None) -> RewardModel:
        """The model saved in `in_dir` by :meth:`save`.

        A bare head of an older `latentrm run` (``<out_dir>/heads/<method>-r<ratio>/`` without
        ``embed_config.json``) takes its embedding config from the run's ``config.yaml``.
        `embedder` (an already loaded ``latentrm.embed.Embedder``) saves loading the LLM again.
        """
        d = Path(in_dir)
        if not d.is_dir():
            raise DataError("reward model directory not found", path=str(d))
        run_config = d.parent.parent / "config.yaml"
        if (d / "embed_config.json").exists():
            cfg = from_dict(EmbedConfig, json.loads((d / "embed_config.json").read_text()))
        elif (d / "head.json").exists() and run_config.exists():
            log.info("embedding config of %s taken from %s", d, run_config)
            cfg = load_config(run_config).embed
        else:
            raise ConfigError(f"{d}: not a reward model (embed_config.json missing)")
        history = json.loads((d / "head.json").read_text()).get("history") if (
            d / "head.json").exists() else None
        return cls(cfg, load_head(d), embedder=embedder, history=history)
