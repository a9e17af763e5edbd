"""Reward head on embeddings: an MLP trained with the Bradley-Terry loss.

A :class:`RewardHead` maps a (prompt, response) embedding to a scalar reward. It carries its own
input standardisation (mean/std of the training seed set, as buffers), so a saved head scores raw
embeddings. :class:`RewardHeadFitter` trains one; :class:`latentrm.model.RewardModel` pairs a head
with the embedder that produced its inputs and scores raw text.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from latentrm.config import RewardConfig
from latentrm.errors import ConfigError
from latentrm.estimator import Estimator
from latentrm.io import atomic_write, atomic_write_json
from latentrm.pairs import AugmentedPairs, check_pairs
from latentrm.train import fit_loop, minibatches, seeded, standardization_stats

log = logging.getLogger(__name__)

HEAD_FORMAT = "latentrm.reward_head/1"


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


def bradley_terry_loss(r_chosen: Tensor, r_rejected: Tensor) -> Tensor:
    """Bradley-Terry negative log-likelihood of the preferences.

    ``L = mean_b -log sigmoid(r+_b - r-_b) = mean_b softplus(-(r+_b - r-_b))`` (softplus form is
    stable for large margins). E.g. margin 0 -> log 2, margin 1 -> log(1 + e^-1) = 0.3133.

    Shapes: r_chosen, r_rejected (B,) -> scalar.
    """
    return F.softplus(-(r_chosen - r_rejected)).mean()


class RewardHeadFitter(Estimator):
    """Train a :class:`RewardHead` with the Bradley-Terry loss (estimator-style).

    ``fit(train, val)`` returns self with learned state ``head_`` (in eval mode) and ``history_``
    (the curves of :func:`latentrm.train.fit_loop`). Input statistics come from the original seed
    embeddings only (pool rows [0, 2N)). Early stopping on the validation BT loss of `val`
    (chosen (V, d), rejected (V, d)) restores the best weights; without `val` the mean training
    loss stands in. Raises TrainingError if a loss turns NaN/Inf (e.g. NaN embeddings).
    """

    def __init__(self, cfg: RewardConfig, seed: int) -> None:
        self.cfg, self.seed = cfg, seed

    def fit(
        self, train: AugmentedPairs, val: tuple[np.ndarray, np.ndarray] | None
    ) -> RewardHeadFitter:
        cfg, seed = self.cfg, self.seed
        n_seed, d = train.n_seed, train.pool.shape[1]
        if val is not None:
            check_pairs(*val, "reward validation")
        with seeded(seed):
            head = RewardHead(d, cfg.hidden, cfg.dropout)
        if cfg.standardize:
            originals = train.pool[:n_seed], train.pool[n_seed : 2 * n_seed]
            head.set_standardization(*standardization_stats(*originals))
        pool = torch.from_numpy(train.pool)  # shares memory: no copy of the pool
        c_idx, r_idx = torch.from_numpy(train.chosen_idx), torch.from_numpy(train.rejected_idx)

        def step(batch: Tensor) -> Tensor:
            b = len(batch)
            rows = torch.cat([c_idx[batch], r_idx[batch]])  # one pass for both sides: (2B,)
            r = head(pool.index_select(0, rows))  # (2B,)
            return bradley_terry_loss(r[:b], r[b:])

        def val_fn() -> float:
            rc = torch.from_numpy(head.score(val[0]))
            rr = torch.from_numpy(head.score(val[1]))
            return bradley_terry_loss(rc, rr).item()

        self.history_ = fit_loop(
            head, head.parameters(), step,
            lambda epoch, rng: minibatches(len(train), cfg.batch_size, rng),
            val_fn if val is not None else None,
            epochs=cfg.epochs, lr=cfg.lr, weight_decay=cfg.weight_decay, patience=cfg.patience,
            seed=seed, name="reward",
        )
        self.head_ = head
        return self


# --- persistence ----------------------------------------------------------------------------------
def save_head(head: RewardHead, out_dir: str | Path, history: dict | None = None) -> None:
    """Write ``head.safetensors`` (weights + standardisation buffers) and ``head.json`` (config,
    and the training `history` when given)."""
    from safetensors.torch import save_file

    out = Path(out_dir)
    tensors = {k: v.detach().contiguous() for k, v in head.state_dict().items()}
    atomic_write(out / "head.safetensors", lambda p: save_file(tensors, str(p)))
    info = head.config()
    if history is not None:
        info["history"] = history
    atomic_write_json(out / "head.json", info)


def load_head(in_dir: str | Path) -> RewardHead:
    """Read a head written by :func:`save_head` (in eval mode)."""
    from safetensors.torch import load_file

    d = Path(in_dir)
    if not (d / "head.json").exists() or not (d / "head.safetensors").exists():
        raise ConfigError(f"{d}: not a reward head (head.json/head.safetensors missing)")
    info = json.loads((d / "head.json").read_text())
    if info.get("format") != HEAD_FORMAT:
        raise ConfigError(f"{d}/head.json: unknown format {info.get('format')!r}")
    head = RewardHead(int(info["d"]), tuple(info["hidden"]), float(info["dropout"]))
    head.load_state_dict(load_file(str(d / "head.safetensors")))
    return head.eval()
