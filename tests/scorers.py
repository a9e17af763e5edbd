"""A reward model whose scores are worked out by hand, for the serving tests.

The LLM is replaced by a small deterministic embedder: `LengthEmbedder` gives e = [len(response),
#prompt messages, len(last prompt message)], and `length_model`'s linear head with weights
[1, 0, 0] then scores a response by its length in characters.
"""

from __future__ import annotations

import numpy as np
import torch

from latentrm.config import EmbedConfig
from latentrm.head.reward import RewardHead
from latentrm.model import RewardModel


class LengthEmbedder:
    """e = [len(response), #prompt messages, len(last prompt content)]; records its inputs."""

    dim = 3

    def __init__(self) -> None:
        self.calls: list[tuple[list, list]] = []

    def embed(self, prompts, responses) -> np.ndarray:
        self.calls.append((list(prompts), list(responses)))
        return np.array(
            [
                [len(r), len(p), len(p[-1]["content"])]
                for p, r in zip(prompts, responses, strict=True)
            ],
            np.float32,
        ).reshape(-1, 3)


def length_model() -> RewardModel:
    """A linear head [1, 0, 0] on LengthEmbedder: a response scores its length in characters."""
    head = RewardHead(3, hidden=(), dropout=0.0)
    with torch.no_grad():
        head.mlp[0].weight.copy_(torch.tensor([[1.0, 0.0, 0.0]]))
        head.mlp[0].bias.zero_()
    return RewardModel(EmbedConfig(model="fake"), head.eval(), embedder=LengthEmbedder())
