"""Reward head on embeddings: an MLP scored by the Bradley-Terry loss, alone or as an ensemble.

A :class:`RewardHead` maps a (prompt, response) embedding to a scalar reward. It carries its own
input standardisation (mean/std of the training seed set, as buffers), so a saved head scores raw
embeddings; an :class:`EnsembleHead` is the mean of K of them (a single head is an ensemble of
one: ``head.members``). :class:`latentrm.head.fitter.RewardHeadFitter` trains them;
:class:`latentrm.model.RewardModel` pairs a head with the embedder that produced its inputs and
scores raw text. The head's files (write, read
back with every check) are :mod:`latentrm.hub.head`'s.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from latentrm.errors import ConfigError, ModelError

log = logging.getLogger(__name__)

HEAD_FORMAT = "latentrm.reward_head/1"
ENSEMBLE_FORMAT = "latentrm.reward_ensemble/1"


class RewardHead(nn.Module):
    """MLP ``d -> hidden... -> 1`` with ReLU + dropout after each hidden layer.

    ``forward`` standardises its input with the ``mean``/``std`` buffers (identity until
    :meth:`set_standardization` is called), so the head always takes raw embeddings.
    """

    def __init__(self, d: int, hidden: Sequence[int], dropout: float) -> None:
        super().__init__()
        if d < 1 or any(h < 1 for h in hidden) or not 0 <= dropout < 1:
            raise ConfigError(f"RewardHead: bad d={d}, hidden={tuple(hidden)}, dropout={dropout}")
        self.d, self.hidden, self.dropout = d, tuple(hidden), float(dropout)
        layers: list[nn.Module] = []
        width = d
        for h in self.hidden:
            layers += [nn.Linear(width, h), nn.ReLU(), nn.Dropout(dropout)]
            width = h
        layers.append(nn.Linear(width, 1))
        self.mlp = nn.Sequential(*layers)
        self.register_buffer("mean", torch.zeros(d))
        self.register_buffer("std", torch.ones(d))

    @property
    def members(self) -> tuple[RewardHead, ...]:
        """A single head is an ensemble of one (an :class:`EnsembleHead` lists its K)."""
        return (self,)

    def set_standardization(self, mean: np.ndarray, std: np.ndarray) -> None:
        """Store per-dimension input statistics (d,) used by ``forward``."""
        self.mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        self.std.copy_(torch.as_tensor(std, dtype=torch.float32))

    def forward(self, e: Tensor) -> Tensor:
        """e (B, d) raw embeddings -> rewards (B,)."""
        return self.mlp((e - self.mean) / self.std).squeeze(-1)

    @torch.no_grad()
    def score(self, e: np.ndarray, batch_size: int = 4096) -> np.ndarray:
        """Rewards (N,) float32 for raw embeddings e (N, d), in eval mode, in batches."""
        e = np.asarray(e, np.float32)
        if e.ndim != 2 or e.shape[1] != self.d:
            raise ConfigError(f"reward head expects (N, {self.d}) embeddings, got {e.shape}")
        was_training = self.training
        self.eval()
        out = [self(torch.from_numpy(e[i : i + batch_size])) for i in range(0, len(e), batch_size)]
        self.train(was_training)
        return torch.cat(out).numpy() if out else np.zeros(0, np.float32)

    def config(self) -> dict[str, Any]:
        return {
            "format": HEAD_FORMAT,
            "d": self.d,
            "hidden": list(self.hidden),
            "dropout": self.dropout,
        }


def bradley_terry_loss(
    r_chosen: Tensor,
    r_rejected: Tensor,
    target: Tensor | None = None,
    margin: Tensor | None = None,
    weight: Tensor | None = None,
) -> Tensor:
    """Bradley-Terry negative log-likelihood of the preferences.

    ``L = mean_b -log sigmoid(r+_b - r-_b) = mean_b softplus(-(r+_b - r-_b))`` (softplus form is
    stable for large margins). E.g. margin 0 -> log 2, margin 1 -> log(1 + e^-1) = 0.3133.

    Optional per-pair terms, each (B,): `margin` m (TRL's convention, chosen should win by m):
    ``delta = r+ - r- - m``; a soft `target` t (the probability that chosen is preferred):
    ``t * softplus(-delta) + (1 - t) * softplus(delta)`` (t = 1 is the hard loss); `weight` w:
    ``sum_b w_b l_b / sum_b w_b``. E.g. delta 0 gives log 2 for any t; t = 0.5 is minimal at
    delta = 0.

    Shapes: r_chosen, r_rejected (B,) -> scalar.
    """
    delta = r_chosen - r_rejected
    if target is None and margin is None and weight is None:
        return F.softplus(-delta).mean()
    if margin is not None:
        delta = delta - margin
    per_pair = F.softplus(-delta)
    if target is not None:
        per_pair = target * per_pair + (1.0 - target) * F.softplus(delta)
    if weight is None:
        return per_pair.mean()
    return (weight * per_pair).sum() / weight.sum().clamp_min(torch.finfo(per_pair.dtype).tiny)


class EnsembleHead(nn.Module):
    """The mean of K reward heads: ``forward(e) = mean_k head_k(e)``; ``spread(e)`` is their std.

    Each member standardises its own input, so members trained on different seeds combine as is.
    """

    def __init__(self, members: Sequence[RewardHead]) -> None:
        super().__init__()
        if not members or len({m.d for m in members}) != 1:
            raise ConfigError("EnsembleHead needs members of one input dimension")
        self.members = nn.ModuleList(members)
        self.d = members[0].d

    def forward(self, e: Tensor) -> Tensor:
        """e (B, d) raw embeddings -> mean reward (B,)."""
        return torch.stack([m(e) for m in self.members]).mean(0)

    @torch.no_grad()
    def score_and_spread(
        self, e: np.ndarray, batch_size: int = 4096
    ) -> tuple[np.ndarray, np.ndarray]:
        """Mean rewards (N,) and the members' standard deviation (N,), float32, for raw
        embeddings e (N, d), each member scoring once."""
        members = np.stack([m.score(e, batch_size) for m in self.members])
        return members.mean(0).astype(np.float32), members.std(0).astype(np.float32)

    def score(self, e: np.ndarray, batch_size: int = 4096) -> np.ndarray:
        """Mean rewards (N,) float32 for raw embeddings e (N, d)."""
        return self.score_and_spread(e, batch_size)[0]

    def spread(self, e: np.ndarray, batch_size: int = 4096) -> np.ndarray:
        """Standard deviation (N,) of the members' rewards: the ensemble's uncertainty."""
        return self.score_and_spread(e, batch_size)[1]

    def config(self) -> dict[str, Any]:
        return {
            "format": ENSEMBLE_FORMAT,
            "d": self.d,
            "members": [m.config() for m in self.members],
        }


def check_scores(scores: np.ndarray, where: str = "reward model") -> np.ndarray:
    """`scores` if every value is finite, else ModelError naming the rows (never serve NaN)."""
    bad = np.flatnonzero(~np.isfinite(scores))
    if len(bad):
        rows = ", ".join(map(str, bad[:5])) + (", ..." if len(bad) > 5 else "")
        raise ModelError(
            f"{where}: {len(bad)} of {len(scores)} scores are NaN/Inf (rows {rows}); the head "
            "or the embeddings overflow (check head.safetensors: weights, std)"
        )
    return scores
