"""Reward head on embeddings: an MLP trained with the Bradley-Terry loss.

A :class:`RewardHead` maps a (prompt, response) embedding to a scalar reward. It carries its own
input standardisation (mean/std of the training seed set, as buffers), so a saved head scores raw
embeddings. :class:`RewardHeadFitter` trains one; :class:`latentrm.model.RewardModel` pairs a head
with the embedder that produced its inputs and scores raw text.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from latentrm.config import RewardConfig
from latentrm.data.splits import seed_folds
from latentrm.errors import ConfigError, ModelError
from latentrm.estimator import Estimator
from latentrm.io import atomic_write, atomic_write_json
from latentrm.pairs import AugmentedPairs, check_pairs
from latentrm.train import fit_loop, minibatches, seeded, standardization_stats

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
    def score(self, e: np.ndarray, batch_size: int = 4096) -> np.ndarray:
        """Mean rewards (N,) float32 for raw embeddings e (N, d)."""
        return np.mean([m.score(e, batch_size) for m in self.members], axis=0).astype(np.float32)

    @torch.no_grad()
    def spread(self, e: np.ndarray, batch_size: int = 4096) -> np.ndarray:
        """Standard deviation (N,) of the members' rewards: the ensemble's uncertainty."""
        return np.std([m.score(e, batch_size) for m in self.members], axis=0).astype(np.float32)

    def config(self) -> dict[str, Any]:
        return {"format": ENSEMBLE_FORMAT, "d": self.d,
                "members": [m.config() for m in self.members]}


class RewardHeadFitter(Estimator):
    """Train a :class:`RewardHead` with the Bradley-Terry loss (estimator-style).

    ``fit(train, val)`` returns self with learned state ``head_`` (in eval mode; an
    :class:`EnsembleHead` when ``cfg.ensemble > 1``) and ``history_`` (the curves of
    :func:`latentrm.train.fit_loop`; for an ensemble, its members' under "members"). Input
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


# --- persistence ----------------------------------------------------------------------------------
# Byte sizes of the safetensors dtypes a head may hold (float only: heads are trained in float32).
_ST_FLOAT_BYTES = {"F16": 2, "BF16": 2, "F32": 4, "F64": 8}
_ST_MAX_HEADER = 100 << 20  # a head's header is a few kB; more means a corrupt or hostile file


def save_head(
    head: RewardHead | EnsembleHead, out_dir: str | Path, history: dict | None = None
) -> None:
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


def read_safetensors_header(path: Path) -> dict[str, tuple[str, tuple[int, ...]]]:
    """{tensor name: (dtype, shape)} of a safetensors file, checked against the file's size.

    Reads the header only (nothing is allocated from what the file claims): every tensor's byte
    range must lie inside the file and match its shape, so the shapes are as large as the file
    is, not as large as a corrupt or hostile header says. ModelError naming the file otherwise
    (empty, truncated, a pickle/torch checkpoint, a bad header).
    """
    def bad(why: str) -> ModelError:
        return ModelError(f"{path}: not a valid safetensors file ({why})")

    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise bad(f"{size} bytes, too short for a header")
            n = int.from_bytes(head, "little")
            if n > min(size - 8, _ST_MAX_HEADER):
                raise bad(f"header length {n} but the file has {size} bytes; a pickle or "
                          "torch checkpoint is not accepted")
            raw = f.read(n)
    except OSError as e:
        raise ModelError(f"{path}: cannot read ({e.strerror or e})") from None
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise bad("the header is not JSON") from None
    if not isinstance(doc, dict):
        raise bad("the header is not a JSON object")
    data_bytes = size - 8 - n
    out: dict[str, tuple[str, tuple[int, ...]]] = {}
    for name, t in doc.items():
        if name == "__metadata__":
            continue
        ok = (isinstance(t, dict) and isinstance(t.get("shape"), list)
              and all(isinstance(x, int) and not isinstance(x, bool) and x >= 0
                      for x in t["shape"])
              and isinstance(t.get("data_offsets"), list) and len(t["data_offsets"]) == 2
              and all(isinstance(x, int) and not isinstance(x, bool) for x in t["data_offsets"]))
        if not ok:
            raise bad(f"malformed entry for tensor {name!r}")
        if t.get("dtype") not in _ST_FLOAT_BYTES:
            raise bad(f"tensor {name!r} has dtype {t.get('dtype')!r}; a head holds floats")
        begin, end = t["data_offsets"]
        shape = tuple(t["shape"])
        if not 0 <= begin <= end <= data_bytes or end - begin != (
            math.prod(shape) * _ST_FLOAT_BYTES[t["dtype"]]
        ):
            raise bad(f"tensor {name!r} {list(shape)} does not fit the file's {data_bytes} data "
                      "bytes (truncated?)")
        out[name] = (t["dtype"], shape)
    return out


def _head_spec(info: Any, where: str) -> tuple[int, tuple[int, ...], float]:
    """(d, hidden, dropout) of one head's config in head.json, type-checked."""
    if not isinstance(info, dict):
        raise ModelError(f"{where}: expected an object, got {type(info).__name__}")
    for key in ("d", "hidden", "dropout"):
        if key not in info:
            raise ModelError(f"{where}: missing {key!r}")
    d, hidden, dropout = info["d"], info["hidden"], info["dropout"]
    if isinstance(d, bool) or not isinstance(d, int) or d < 1:
        raise ModelError(f"{where}: 'd' must be an integer >= 1, got {d!r}")
    if not isinstance(hidden, list) or any(
        isinstance(h, bool) or not isinstance(h, int) or h < 1 for h in hidden
    ):
        raise ModelError(f"{where}: 'hidden' must be a list of integers >= 1, got {hidden!r}")
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not (
        0 <= dropout < 1
    ):
        raise ModelError(f"{where}: 'dropout' must be a number in [0, 1), got {dropout!r}")
    return d, tuple(hidden), float(dropout)


def _check_sizes(
    shapes: dict[str, tuple[str, tuple[int, ...]]], prefix: str, d: int,
    hidden: tuple[int, ...], where: str, file: Path,
) -> None:
    """head.json's `d` and `hidden` against the tensors of the file, before anything is built."""
    mean = shapes.get(f"{prefix}mean")
    if mean is None:
        raise ModelError(f"{file}: tensor '{prefix}mean' missing")
    if mean[1] != (d,):
        raise ModelError(f"{where}: 'd' = {d} but {file.name} holds '{prefix}mean' of shape "
                         f"{list(mean[1])}")
    widths = []
    for k in range(len(hidden) + 1):
        w = shapes.get(f"{prefix}mlp.{3 * k}.weight")
        if w is None or len(w[1]) != 2:
            break
        widths.append(w[1][0])
    if tuple(widths[:-1]) != hidden or len(widths) != len(hidden) + 1 or widths[-1] != 1:
        raise ModelError(f"{where}: 'hidden' = {list(hidden)} but {file.name} holds layers of "
                         f"widths {widths}")


def load_head(in_dir: str | Path) -> RewardHead | EnsembleHead:
    """Read a head (or an ensemble of heads) written by :func:`save_head`, in eval mode.

    Every problem is one ModelError (a ConfigError) naming the file and the field or tensor:
    head.json that is not JSON or lacks/mistypes `d`, `hidden`, `dropout`; head.safetensors that
    is not a safetensors file (empty, truncated, pickle); sizes that disagree with the file
    (checked on the file's header before any allocation, so an absurd `d` allocates nothing);
    NaN/Inf weights, or a standardisation `std` that is not > 0 (the head would score NaN).
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    d = Path(in_dir)
    hj, hs = d / "head.json", d / "head.safetensors"
    if not hj.exists() or not hs.exists():
        raise ConfigError(f"{d}: not a reward head (head.json/head.safetensors missing)")
    try:
        info = json.loads(hj.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as e:
        raise ModelError(f"{hj}: not valid JSON ({e})") from None
    if not isinstance(info, dict):
        raise ModelError(f"{hj}: expected a JSON object, got {type(info).__name__}")
    shapes = read_safetensors_header(hs)
    if info.get("format") == ENSEMBLE_FORMAT:
        members = info.get("members")
        if not isinstance(members, list) or not members:
            raise ModelError(f"{hj}: 'members' must be a non-empty list of heads")
        specs = [_head_spec(m, f"{hj}: members[{k}]") for k, m in enumerate(members)]
        for k, (dim, hidden, _) in enumerate(specs):
            _check_sizes(shapes, f"members.{k}.", dim, hidden, f"{hj}: members[{k}]", hs)
        head: RewardHead | EnsembleHead = EnsembleHead([RewardHead(*s) for s in specs])
    elif info.get("format") == HEAD_FORMAT:
        spec = _head_spec(info, str(hj))
        _check_sizes(shapes, "", spec[0], spec[1], str(hj), hs)
        head = RewardHead(*spec)
    else:
        raise ModelError(f"{hj}: unknown format {info.get('format')!r}")
    expected = {k: tuple(v.shape) for k, v in head.state_dict().items()}
    got = {k: s for k, (_, s) in shapes.items()}
    if expected != got:
        diff = sorted(set(expected) ^ set(got)) or sorted(
            k for k in expected if expected[k] != got[k])
        raise ModelError(f"{hs}: tensors do not match head.json (first difference: {diff[0]!r})")
    try:
        tensors = load_file(str(hs))
    except (SafetensorError, OSError, ValueError) as e:
        raise ModelError(f"{hs}: not a valid safetensors file ({e})") from None
    check_finite_state(tensors, hs)
    head.load_state_dict(tensors)
    return head.eval()


def check_finite_state(tensors: dict[str, Tensor], where: str | Path) -> None:
    """ModelError naming the tensor unless every value is finite and every `std` is > 0."""
    for name, t in tensors.items():
        if not torch.isfinite(t).all():
            n = int((~torch.isfinite(t)).sum())
            raise ModelError(f"{where}: tensor {name!r} holds {n} NaN/Inf values")
        if name == "std" or name.endswith(".std"):
            bad = (t <= 0).nonzero().flatten()
            if len(bad):
                raise ModelError(
                    f"{where}: standardisation {name!r} is <= 0 at {len(bad)} dimensions "
                    f"(first: {int(bad[0])}); the head would divide by zero"
                )
