"""A reward model whose scores are worked out by hand, for the serving tests.

The LLM is replaced by a small deterministic embedder: `LengthEmbedder` gives e = [len(response),
#prompt messages, len(last prompt message)], and `length_model`'s linear head with weights
[1, 0, 0] then scores a response by its length in characters. `vector_model` reads a response
"x y" as the vector (x, y), scored x by one ensemble member and y by the other (active selection).
"""

from __future__ import annotations

import numpy as np
import torch

from latentrm.config import EmbedConfig
from latentrm.head.reward import EnsembleHead, RewardHead
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


class VectorEmbedder:
    """A response "x y" embeds as (x, y); the prompt is ignored."""

    dim = 2

    def embed(self, prompts, responses) -> np.ndarray:
        return np.array([[float(t) for t in r.split()] for r in responses], np.float32)


def linear_head(w: list[float]) -> RewardHead:
    """A linear head scoring e . w (no bias, no standardisation)."""
    head = RewardHead(len(w), hidden=(), dropout=0.0)
    with torch.no_grad():
        head.mlp[0].weight.copy_(torch.tensor([w]))
        head.mlp[0].bias.zero_()
    return head.eval()


def vector_model(ensemble: bool = True) -> RewardModel:
    """VectorEmbedder + members scoring x and y (ensemble), or one head scoring x."""
    head = (
        EnsembleHead([linear_head([1, 0]), linear_head([0, 1])])
        if ensemble
        else linear_head([1, 0])
    )
    return RewardModel(EmbedConfig(model="fake"), head, embedder=VectorEmbedder())
