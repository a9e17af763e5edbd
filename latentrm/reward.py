"""Reward head on embeddings: an MLP trained with the Bradley-Terry loss, and end-to-end scoring.

A :class:`RewardHead` maps a (prompt, response) embedding to a scalar reward. It carries its own
input standardisation (mean/std of the training seed set, as buffers), so a saved head scores raw
embeddings. :class:`RewardModel` pairs a head with the embedding config that produced its inputs
and scores raw text.
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

from latentrm.config import EmbedConfig, RewardConfig, from_dict, to_dict
from latentrm.errors import ConfigError
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

    def __init__(self, d: int, hidden: Sequence[int] = (256,), dropout: float = 0.1) -> None:
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
    def score(self, e: np.ndarray, batch_size: int = 1024) -> np.ndarray:
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


def fit_reward_head(
    train: AugmentedPairs, val: tuple[np.ndarray, np.ndarray] | None, cfg: RewardConfig,
    seed: int,
) -> RewardHead:
    """Train a :class:`RewardHead` on `train` pairs with the Bradley-Terry loss.

    Input statistics come from the original seed embeddings only (pool rows [0, 2N)). Early
    stopping on the validation BT loss of `val` (chosen (V, d), rejected (V, d)) restores the best
    weights; without `val` the mean training loss stands in. ``head.history_`` holds the curves.
    Raises TrainingError if a loss turns NaN/Inf (e.g. NaN embeddings).
    """
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

    head.history_ = fit_loop(
        head, head.parameters(), step,
        lambda epoch, rng: minibatches(len(train), cfg.batch_size, rng),
        val_fn if val is not None else None,
        epochs=cfg.epochs, lr=cfg.lr, weight_decay=cfg.weight_decay, patience=cfg.patience,
        seed=seed, name="reward",
    )
    return head


# --- persistence ----------------------------------------------------------------------------------
def save_head(head: RewardHead, out_dir: str | Path) -> None:
    """Write ``head.safetensors`` (weights + standardisation buffers) and ``head.json`` (config)."""
    from safetensors.torch import save_file

    out = Path(out_dir)
    tensors = {k: v.detach().contiguous() for k, v in head.state_dict().items()}
    atomic_write(out / "head.safetensors", lambda p: save_file(tensors, str(p)))
    info = head.config()
    if hasattr(head, "history_"):
        info["history"] = head.history_
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
    if "history" in info:
        head.history_ = info["history"]
    return head.eval()


class RewardModel:
    """Embedder + reward head: scores raw (prompt, response) text end to end.

    The embedder (``latentrm.embed.Embedder(embed_cfg)``) is built on first use; pass `embedder`
    to reuse a loaded one. Its dimension must match the head's.
    """

    def __init__(
        self, embed_cfg: EmbedConfig, head: RewardHead, embedder: Any | None = None
    ) -> None:
        self.embed_cfg, self.head = embed_cfg, head
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
            from latentrm.embed import Embedder  # lazy: loads an LLM

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
        save_head(self.head, out_dir)
        atomic_write_json(Path(out_dir) / "embed_config.json", to_dict(self.embed_cfg))

    @classmethod
    def load(cls, in_dir: str | Path, embedder: Any | None = None) -> RewardModel:
        d = Path(in_dir)
        if not (d / "embed_config.json").exists():
            raise ConfigError(f"{d}: not a reward model (embed_config.json missing)")
        cfg = from_dict(EmbedConfig, json.loads((d / "embed_config.json").read_text()))
        return cls(cfg, load_head(d), embedder=embedder)
