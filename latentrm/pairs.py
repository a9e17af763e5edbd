"""Augmented preference pairs: index pairs into one embedding pool, and the Augmenter protocol.

Every augmentation method (LENS, the paper's latent baselines, no augmentation) returns an
:class:`AugmentedPairs`: the seed pairs first, then the synthetic ones, each a (chosen row,
rejected row) of one float32 pool, so a synthetic embedding shared by several pairs is stored
once. :func:`save_augmented` / :func:`load_augmented` are the on-disk form `latentrm synth` writes
and `latentrm train` reads (safetensors + JSON, no pickle); :mod:`latentrm.parquet` exports it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from latentrm.errors import ConfigError, DataError
from latentrm.io import atomic_write, atomic_write_json


def check_pairs(chosen: np.ndarray, rejected: np.ndarray, what: str = "embeddings") -> None:
    """Raise ConfigError unless chosen/rejected are matching non-empty (N, d) arrays."""
    if chosen.ndim != 2 or chosen.shape != rejected.shape or chosen.shape[0] == 0:
        raise ConfigError(
            f"{what}: chosen and rejected must be non-empty (N, d) arrays of one shape, got "
            f"{chosen.shape} and {rejected.shape}"
        )


@dataclass
class AugmentedPairs:
    """Preference pairs as index pairs into one embedding pool (nothing bigger is materialised).

    pool: (M, d) float32; rows [0, N) original chosen, [N, 2N) original rejected, then synthetic.
    chosen_idx, rejected_idx: (P,) int64 rows of `pool`; pair p prefers chosen over rejected.
    seed_idx: (P,) int64 seed pair each pair derives from. The first N pairs are the originals.
    synthetic: (P,) bool, the pair is a new one, not one of the N labelled seed pairs (it may use
        synthetic embeddings, or pair two originals across prompts).
    target: (P,) float32 or None: the probability that chosen is preferred (a soft label, e.g. a
        teacher's); None = 1 for every pair.
    margin: (P,) float32 or None: how much chosen should beat rejected (TRL's `margin`); None = 0.
    weight: (P,) float32 or None: the pair's weight in the Bradley-Terry loss; None = 1.
    """

    pool: np.ndarray
    chosen_idx: np.ndarray
    rejected_idx: np.ndarray
    seed_idx: np.ndarray
    synthetic: np.ndarray
    method: str
    ratio: int
    stats: dict[str, Any] = field(default_factory=dict)
    target: np.ndarray | None = None
    margin: np.ndarray | None = None
    weight: np.ndarray | None = None

    @classmethod
    def originals(
        cls,
        chosen: np.ndarray,
        rejected: np.ndarray,
        method: str = "none",
        ratio: int = 0,
        pool_rows: int | None = None,
    ) -> AugmentedPairs:
        """The un-augmented pairs. `pool_rows` reserves room for synthetic rows after the 2N."""
        check_pairs(chosen, rejected, "pairs")
        n, d = chosen.shape
        pool = np.empty((pool_rows or 2 * n, d), np.float32)
        pool[:n], pool[n : 2 * n] = chosen, rejected
        idx = np.arange(n, dtype=np.int64)
        return cls(
            pool=pool,
            chosen_idx=idx,
            rejected_idx=idx + n,
            seed_idx=idx.copy(),
            synthetic=np.zeros(n, bool),
            method=method,
            ratio=ratio,
            stats={"n_seed": n, "pairs_made": 0, "n_pairs": n},
        )

    @property
    def n_seed(self) -> int:
        """Number of seed (original) pairs N."""
        return int(np.count_nonzero(~self.synthetic))

    def __len__(self) -> int:
        return len(self.chosen_idx)

    def pair_embeddings(self, batch_idx: Any) -> tuple[np.ndarray, np.ndarray]:
        """Embeddings of pairs `batch_idx`: (chosen (B, d), rejected (B, d)) float32."""
        b = np.asarray(batch_idx)
        return self.pool[self.chosen_idx[b]], self.pool[self.rejected_idx[b]]

    def originals_embeddings(self) -> tuple[np.ndarray, np.ndarray]:
        """(chosen, rejected) embeddings of the labelled seed pairs among these pairs."""
        orig = ~self.synthetic
        return self.pool[self.chosen_idx[orig]], self.pool[self.rejected_idx[orig]]

    def select(self, keep: np.ndarray) -> AugmentedPairs:
        """The pairs where `keep` (P,) bool is set, sharing the pool."""
        keep = np.asarray(keep, bool)
        if len(keep) != len(self):
            raise ValueError(f"select() needs one flag per pair ({len(self)}), got {len(keep)}")

        def part(a: np.ndarray | None) -> np.ndarray | None:
            return None if a is None else a[keep]

        out = AugmentedPairs(
            pool=self.pool,
            chosen_idx=self.chosen_idx[keep],
            rejected_idx=self.rejected_idx[keep],
            seed_idx=self.seed_idx[keep],
            synthetic=self.synthetic[keep],
            method=self.method,
            ratio=self.ratio,
            stats=dict(self.stats),
            target=part(self.target),
            margin=part(self.margin),
            weight=part(self.weight),
        )
        out.stats.update(pairs_made=int(out.synthetic.sum()), n_pairs=len(out))
        return out

    def add_pairs(
        self, chosen_rows: np.ndarray, rejected_rows: np.ndarray, seed_rows: np.ndarray
    ) -> None:
        """Append synthetic pairs (pool rows, seed ids); used by the augmenters."""
        if any(a is not None for a in (self.target, self.margin, self.weight)):
            raise ValueError("add_pairs() before labels, margins or weights are set")
        self.chosen_idx = np.concatenate([self.chosen_idx, chosen_rows.astype(np.int64).ravel()])
        self.rejected_idx = np.concatenate(
            [self.rejected_idx, rejected_rows.astype(np.int64).ravel()]
        )
        self.seed_idx = np.concatenate([self.seed_idx, seed_rows.astype(np.int64).ravel()])
        self.synthetic = np.concatenate([self.synthetic, np.ones(seed_rows.size, bool)])
        self.stats["pairs_made"] = int(self.synthetic.sum())
        self.stats["n_pairs"] = len(self.chosen_idx)


class Augmenter(Protocol):
    """What LENS and the baselines share: fit on seed pairs, then make originals + ratio*N pairs."""

    def fit(self, chosen: np.ndarray, rejected: np.ndarray) -> Augmenter: ...

    def augment(
        self, chosen: np.ndarray, rejected: np.ndarray, ratio: int, seed: int
    ) -> AugmentedPairs: ...


# --- persistence ----------------------------------------------------------------------------------
_ARRAYS = ("pool", "chosen_idx", "rejected_idx", "seed_idx", "synthetic")
_OPTIONAL = ("target", "margin", "weight")


def save_augmented(
    out_dir: str | Path,
    aug: AugmentedPairs,
    val: tuple[np.ndarray, np.ndarray] | None = None,
    ids: list[str] | None = None,
    meta: dict[str, Any] | None = None,
) -> None:
    """Write `aug` (+ optional validation pairs) as ``augmented.safetensors`` + ``augmented.json``.

    No pickle: arrays go to safetensors; method, ratio, stats, seed ids and `meta` go to JSON.
    """
    from safetensors.numpy import save_file

    out = Path(out_dir)
    tensors = {name: np.ascontiguousarray(getattr(aug, name)) for name in _ARRAYS}
    tensors.update(
        {
            name: np.ascontiguousarray(getattr(aug, name), np.float32)
            for name in _OPTIONAL
            if getattr(aug, name) is not None
        }
    )
    if val is not None:
        tensors["val_chosen"], tensors["val_rejected"] = (np.ascontiguousarray(v) for v in val)
    atomic_write(out / "augmented.safetensors", lambda p: save_file(tensors, str(p)))
    atomic_write_json(
        out / "augmented.json",
        {
            "format": "latentrm.augmented/1",
            "method": aug.method,
            "ratio": aug.ratio,
            "stats": aug.stats,
            "ids": ids,
            "meta": meta or {},
        },
    )


def check_augmented(
    aug: AugmentedPairs, where: str, val: tuple[np.ndarray, np.ndarray] | None = None
) -> None:
    """DataError naming `where` (the file) and the field unless `aug` is a well-formed set.

    Index arrays of one length P inside the pool (and seed_idx inside the N seed pairs), a pair
    using a row past the 2N originals marked synthetic, finite embeddings in every row a pair
    uses (and in the validation pairs), and finite labels. Checked where a set is read, so a
    damaged file is refused before training or export instead of failing inside torch.
    """
    pool = np.asarray(aug.pool)
    if pool.ndim != 2 or pool.dtype.kind != "f":
        raise DataError(
            f"pool must be a 2-D float array, got {pool.dtype} {pool.shape}",
            path=where,
            field="pool",
        )
    p = len(aug.chosen_idx)
    for name in ("chosen_idx", "rejected_idx", "seed_idx", "synthetic"):
        a = np.asarray(getattr(aug, name))
        kind = "b" if name == "synthetic" else "iu"
        if a.ndim != 1 or len(a) != p or a.dtype.kind not in kind:
            want = "bool" if name == "synthetic" else "integer"
            raise DataError(
                f"expected {p} {want} values (one per pair), got {a.dtype} {a.shape}",
                path=where,
                field=name,
            )
    n, m = aug.n_seed, pool.shape[0]
    if m < 2 * n:
        raise DataError(
            f"pool has {m} rows, fewer than the {2 * n} of its {n} seed pairs",
            path=where,
            field="pool",
        )

    def in_range(name: str, hi: int) -> None:
        a = np.asarray(getattr(aug, name))
        if p and (a.min() < 0 or a.max() >= hi):
            bad = int(np.flatnonzero((a < 0) | (a >= hi))[0])
            raise DataError(
                f"pair {bad} has {name} {int(a[bad])}, outside [0, {hi})", path=where, field=name
            )

    in_range("chosen_idx", m)
    in_range("rejected_idx", m)
    uses_new = (np.asarray(aug.chosen_idx) >= 2 * n) | (np.asarray(aug.rejected_idx) >= 2 * n)
    if (uses_new & ~np.asarray(aug.synthetic)).any():
        bad = int(np.flatnonzero(uses_new & ~np.asarray(aug.synthetic))[0])
        raise DataError(
            f"pair {bad} uses a synthetic pool row but is not marked synthetic",
            path=where,
            field="synthetic",
        )
    in_range("seed_idx", n)
    finite = np.ones(m, bool)
    for lo in range(0, m, 65536):  # row blocks: no copy of a large pool
        finite[lo : lo + 65536] = np.isfinite(pool[lo : lo + 65536]).all(axis=1)
    for name in ("chosen_idx", "rejected_idx"):
        a = np.asarray(getattr(aug, name))
        if p and not finite[a].all():
            bad = int(np.flatnonzero(~finite[a])[0])
            raise DataError(
                f"pair {bad} uses pool row {int(a[bad])}, which holds NaN/Inf",
                path=where,
                field="pool",
            )
    for name in _OPTIONAL:
        a = getattr(aug, name)
        if a is not None and (np.shape(a) != (p,) or not np.isfinite(a).all()):
            raise DataError(f"expected {p} finite values (one per pair)", path=where, field=name)
    if val is not None:
        vc, vr = (np.asarray(v) for v in val)
        if vc.ndim != 2 or vc.shape != vr.shape or vc.shape[1] != pool.shape[1]:
            raise DataError(
                f"validation pairs of shape {vc.shape} / {vr.shape} do not match the "
                f"pool's dimension {pool.shape[1]}",
                path=where,
                field="val_chosen",
            )
        for name, v in (("val_chosen", vc), ("val_rejected", vr)):
            if not np.isfinite(v).all():
                raise DataError("holds NaN/Inf", path=where, field=name)


def load_augmented(
    in_dir: str | Path,
) -> tuple[AugmentedPairs, tuple[np.ndarray, np.ndarray] | None, dict[str, Any]]:
    """Read what :func:`save_augmented` wrote: (pairs, validation pairs or None, JSON header).

    A damaged set (unreadable files, missing arrays, indices outside the pool, NaN embeddings) is
    a DataError naming the file and field (:func:`check_augmented`).
    """
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    d = Path(in_dir)
    if not (d / "augmented.json").exists() or not (d / "augmented.safetensors").exists():
        raise ConfigError(f"{d}: not an augmented set (augmented.json/.safetensors missing)")
    hp, tp = d / "augmented.json", d / "augmented.safetensors"
    try:
        head = json.loads(hp.read_text())
        method, ratio = str(head["method"]), int(head["ratio"])
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"unreadable ({e}); rerun latentrm synth", path=str(hp)) from None
    except (KeyError, TypeError, ValueError) as e:
        raise DataError(f"needs 'method' and an integer 'ratio' ({e!r})", path=str(hp)) from None
    try:
        t = load_file(str(tp))
    except (SafetensorError, OSError, ValueError) as e:
        raise DataError(f"unreadable ({e}); rerun latentrm synth", path=str(tp)) from None
    missing = [name for name in _ARRAYS if name not in t]
    if missing:
        raise DataError("missing arrays; rerun latentrm synth", path=str(tp), field=missing[0])
    aug = AugmentedPairs(
        **{name: t[name] for name in _ARRAYS},
        method=method,
        ratio=ratio,
        stats=head.get("stats", {}),
        **{name: t[name] for name in _OPTIONAL if name in t},
    )
    val = (t["val_chosen"], t["val_rejected"]) if "val_chosen" in t else None
    check_augmented(aug, str(tp), val)
    return aug, val, head
