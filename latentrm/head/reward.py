"""Reward head on embeddings: an MLP trained with the Bradley-Terry loss.

A :class:`RewardHead` maps a (prompt, response) embedding to a scalar reward. It carries its own
input standardisation (mean/std of the training seed set, as buffers), so a saved head scores raw
embeddings. :class:`RewardHeadFitter` trains one; :class:`latentrm.model.RewardModel` pairs a head
with the embedder that produced its inputs and scores raw text. The head's files (write, read
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

from latentrm.config import RewardConfig
from latentrm.data.splits import seed_folds
from latentrm.errors import ConfigError, ModelError
from latentrm.head.estimator import Estimator
from latentrm.head.train import fit_loop, minibatches, seeded, standardization_stats
from latentrm.pairs import AugmentedPairs, check_pairs

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
        return {"format": HEAD_FORMAT, "d": self.d, "hidden": list(self.hidden),
                "dropout": self.dropout}


def bradley_terry_loss(
    r_chosen: Tensor, r_rejected: Tensor, target: Tensor | None = None,
    margin: Tensor | None = None, weight: Tensor | None = None,
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
        return {"format": ENSEMBLE_FORMAT, "d": self.d,
                "members": [m.config() for m in self.members]}


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


class RewardHeadFitter(Estimator):
    """Train a :class:`RewardHead` with the Bradley-Terry loss (estimator-style).

    ``fit(train, val)`` returns self with learned state ``head_`` (in eval mode; an
    :class:`EnsembleHead` when ``cfg.ensemble > 1``) and ``history_`` (the curves of
    :func:`latentrm.head.train.fit_loop`; for an ensemble, its members' under "members"). Input
    statistics come from the original seed embeddings only. With early stopping (the default) the
    validation BT loss of `val` (chosen (V, d), rejected (V, d)) picks the epoch whose weights are
    kept; without `val` the mean training loss stands in. The pairs' soft targets, margins and
    weights are honoured (:func:`bradley_terry_loss`), and every synthetic pair weighs
    ``cfg.synthetic_weight``. Raises TrainingError if a loss turns NaN/Inf (e.g. NaN embeddings).
    """

    def __init__(self, cfg: RewardConfig, seed: int) -> None:
        self.cfg, self.seed = cfg, seed

    def fit(
        self, train: AugmentedPairs, val: tuple[np.ndarray, np.ndarray] | None
    ) -> RewardHeadFitter:
        if val is not None:
            check_pairs(*val, "reward validation")
        if self.cfg.ensemble < 1:
            raise ConfigError(f"reward.ensemble must be >= 1, got {self.cfg.ensemble}")
        if self.cfg.ensemble == 1:
            self.head_, self.history_ = self._fit_one(train, val, self.seed)
            return self
        # Member k leaves out the pairs of the seeds in fold k (their synthetic pairs too).
        n_seed = train.n_seed
        folds = seed_folds(n_seed, self.cfg.ensemble, self.seed)
        members, histories = [], []
        for k in range(self.cfg.ensemble):
            keep = folds[train.seed_idx] != k
            head, hist = self._fit_one(train.select(keep), val, self.seed + k)
            members.append(head)
            histories.append(hist)
        self.head_ = EnsembleHead(members).eval()
        self.history_ = {
            "members": histories,
            "best_val": float(np.mean([h["best_val"] for h in histories])),
            "epochs_run": int(max(h["epochs_run"] for h in histories)),
            "best_epoch": int(np.median([h["best_epoch"] for h in histories])),
            "seconds": float(sum(h["seconds"] for h in histories)),
        }
        return self

    def _fit_one(
        self, train: AugmentedPairs, val: tuple[np.ndarray, np.ndarray] | None, seed: int
    ) -> tuple[RewardHead, dict[str, Any]]:
        cfg = self.cfg
        d = train.pool.shape[1]
        with seeded(seed):
            head = RewardHead(d, cfg.hidden, cfg.dropout)
        if cfg.standardize:
            head.set_standardization(*standardization_stats(*train.originals_embeddings()))
        pool = torch.from_numpy(train.pool)  # shares memory: no copy of the pool
        c_idx, r_idx = torch.from_numpy(train.chosen_idx), torch.from_numpy(train.rejected_idx)
        target, margin, weight = _pair_terms(train, cfg.synthetic_weight)

        def step(batch: Tensor) -> Tensor:
            b = len(batch)
            rows = torch.cat([c_idx[batch], r_idx[batch]])  # one pass for both sides: (2B,)
            r = head(pool.index_select(0, rows))  # (2B,)
            return bradley_terry_loss(
                r[:b], r[b:], None if target is None else target[batch],
                None if margin is None else margin[batch],
                None if weight is None else weight[batch],
            )

        def val_fn() -> float:
            rc = torch.from_numpy(head.score(val[0]))
            rr = torch.from_numpy(head.score(val[1]))
            return bradley_terry_loss(rc, rr).item()

        history = fit_loop(
            head, head.parameters(), step,
            lambda epoch, rng: minibatches(len(train), cfg.batch_size, rng),
            val_fn if val is not None else None,
            epochs=cfg.epochs, lr=cfg.lr, weight_decay=cfg.weight_decay, patience=cfg.patience,
            seed=seed, name="reward", early_stopping=cfg.early_stopping,
        )
        return head, history


def _pair_terms(
    train: AugmentedPairs, synthetic_weight: float
) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
    """Per-pair target, margin and weight tensors (None where every pair has the default)."""
    if synthetic_weight < 0:
        raise ConfigError(f"reward.synthetic_weight must be >= 0, got {synthetic_weight}")

    def tensor(a: np.ndarray | None) -> Tensor | None:
        return None if a is None else torch.from_numpy(np.asarray(a, np.float32))

    weight = None if train.weight is None else np.asarray(train.weight, np.float32)
    if synthetic_weight != 1.0 and train.synthetic.any():
        weight = np.ones(len(train), np.float32) if weight is None else weight.copy()
        weight[train.synthetic] *= synthetic_weight
    return tensor(train.target), tensor(train.margin), tensor(weight)
