"""Data stage of `latentrm run` / `latentrm experiment`: load, split, embed (cached), once.

`prepare_data(cfg, split_seeds)` loads the data, fixes the splits of every requested split seed
and embeds (through the on-disk cache) exactly the pairs and candidates those splits need, once;
`pipeline.evaluate_split` then trains and evaluates on one split.

Two kinds of data:

- pairs (HH-RLHF, TRL, TL;DR): `data.split_indices` draws the seed / held-out split of the pairs,
  `data.carve_validation` the validation part of the seed set. Validation serves early stopping
  and hyperparameter selection; the held-out pairs only the final evaluation.
- candidates (alpaca-eval) as `data.path`: the split is by *instruction*, never by pair. Each
  instruction keeps `eval.candidate_pool` candidates (a fixed subset, so embeddings are shared by
  every seed); its candidates are embedded once and pairs are binarised from them, so a pair's two
  embeddings are looked up, not recomputed. Training pairs come from the training instructions
  only; accuracy and Best-of-N gold are measured on the held-out instructions.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from latentrm.config import RunConfig
from latentrm.data.load import binarize_candidates, load_candidates, load_pairs
from latentrm.data.splits import carve_validation, split_indices
from latentrm.embed import local as emb_mod
from latentrm.errors import ConfigError, DataError

if TYPE_CHECKING:
    from latentrm.data.types import CandidateSet, PreferenceDataset

log = logging.getLogger(__name__)


# --- data preparation ---------------------------------------------------------------------------
@dataclass
class Split:
    """One split as row indices into `PreparedData.chosen/rejected` (sorted int64 arrays)."""

    split_seed: int
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    bon_sets: np.ndarray  # indices into PreparedData.sets used for Best-of-N (empty: no BoN)


@dataclass
class PreparedData:
    """Embedded pairs (and candidate sets) of one dataset, shared by every split seed.

    chosen, rejected: (P, d) float32, row i = pair i of `ds` (the text, for text baselines).
    sets / set_emb: pooled candidate sets and their (N_i, d) embeddings (Best-of-N), or empty.
    groups: (P,) int64: pairs that share embeddings share a group (candidates data: the
    instruction; pairs data: each pair its own), so folds never split a group.
    """

    mode: str  # "pairs" | "candidates"
    ds: PreferenceDataset
    chosen: np.ndarray
    rejected: np.ndarray
    sets: list[CandidateSet]
    set_emb: list[np.ndarray]
    splits: dict[int, Split]
    meta: dict[str, Any] = field(default_factory=dict)
    groups: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    @property
    def margins(self) -> np.ndarray | None:
        """(P,) TRL margins of the pairs (they enter the loss), or None without a margin column."""
        return None if self.ds is None else self.ds.margins


def _is_candidates_file(cfg: RunConfig) -> bool:
    """Whether data.path holds candidate sets (format 'candidates', or detected under 'auto')."""
    if cfg.data.format == "candidates":
        return True
    if cfg.data.format != "auto":
        return False
    try:  # the data module detects formats from the first record; a non-candidates file fails
        load_candidates(cfg.data.path, cfg.data)
    except DataError:
        return False
    return True


def pool_candidates(
    sets: Sequence[CandidateSet], pool: int | None, max_prompts: int | None, seed: int
) -> list[CandidateSet]:
    """Fixed random subsets: at most `max_prompts` sets, each with at most `pool` candidates.

    Both draws depend on `seed` (and, for candidates, the set id) only, so every split seed and
    every method sees the same candidates, and their embeddings are computed once. Order is kept.
    """
    sets = list(sets)
    if max_prompts is not None and max_prompts < len(sets):
        keep = np.random.default_rng([seed, 2]).choice(len(sets), max_prompts, replace=False)
        sets = [sets[i] for i in np.sort(keep)]
    if pool is None:
        return sets
    if pool < 1:
        raise ConfigError(f"eval.candidate_pool must be >= 1 or null, got {pool}")
    out = []
    for s in sets:
        if len(s.responses) > pool:
            rng = np.random.default_rng([seed, zlib.crc32(s.id.encode("utf-8")), 3])
            k = np.sort(rng.choice(len(s.responses), pool, replace=False))
            s = dataclasses.replace(
                s, responses=tuple(s.responses[i] for i in k), gold=tuple(s.gold[i] for i in k)
            )
        out.append(s)
    return out


def _pairs_from_candidates(
    ds: PreferenceDataset, sets: Sequence[CandidateSet], emb: Sequence[np.ndarray]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Look up binarised pairs' embeddings in their set's candidate embeddings.

    Pair ids are '{set id}:{chosen index}>{rejected index}' (data.binarize_candidates). Returns
    chosen (P, d), rejected (P, d) and the set index of each pair (P,).
    """
    where = {s.id: i for i, s in enumerate(sets)}
    rows = []
    for p in ds:
        sid, cr = p.id.rsplit(":", 1)
        c, r = (int(x) for x in cr.split(">"))
        i = where[sid]
        if sets[i].responses[c] != p.chosen or sets[i].responses[r] != p.rejected:
            raise DataError(f"binarised pair {p.id!r} does not match its candidate set")
        rows.append((i, c, r))
    if not rows:
        raise DataError(
            "no binarised pairs: no two candidates of one instruction differ by data.min_gold_gap"
        )
    g, c, r = (np.array(x, dtype=np.int64) for x in zip(*rows, strict=True))
    chosen = np.stack([emb[i][j] for i, j in zip(g, c, strict=True)]).astype(np.float32)
    rejected = np.stack([emb[i][j] for i, j in zip(g, r, strict=True)]).astype(np.float32)
    return chosen, rejected, g


def _seed_val(idx: np.ndarray, cfg: RunConfig, split_seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, validation) carved from the seed set; validation must not be empty."""
    train, val = carve_validation(idx, cfg.data.val_fraction, split_seed)
    if len(val) == 0:
        raise ConfigError(
            "the validation split is empty: raise data.val_fraction or data.n_seed (it serves "
            "early stopping and hyperparameter selection)"
        )
    return train, val


def prepare_data(
    cfg: RunConfig,
    split_seeds: Sequence[int] | None = None,
    embed_all: bool | None = False,
    embedder: Any | None = None,
) -> PreparedData:
    """Load `cfg.data`, fix the splits of `split_seeds` (default: data.split_seed), embed (cached).

    Pairs data: only the pairs some split needs are embedded, unless `embed_all`: then the whole
    dataset, so that every config of one dataset and embedder shares one cache entry whatever its
    split sizes. `embed_all=None` (experiments) embeds the whole dataset when the splits need at
    least a quarter of it, else only what they need (a small study of a huge dataset). With
    n_test = None the two coincide: a subset of every row, in order, has the full dataset's
    content hash. `embedder` (an `embed.Embedder`) is reused instead of loading the model again.
    """

    seeds = list(split_seeds) if split_seeds is not None else [cfg.data.split_seed]
    t0 = time.perf_counter()
    sets: list[CandidateSet] = []
    set_emb: list[np.ndarray] = []
    splits: dict[int, Split] = {}
    meta: dict[str, Any] = {}
    if _is_candidates_file(cfg):
        mode = "candidates"
        other = cfg.eval.candidates
        if other and Path(other).resolve() != Path(cfg.data.path).resolve():
            raise ConfigError(
                "data.path is a candidates file, so Best-of-N runs on its held-out instructions; "
                f"eval.candidates={cfg.eval.candidates!r} must be null or the same file"
            )
        sets = pool_candidates(
            load_candidates(cfg.data.path, cfg.data),
            cfg.eval.candidate_pool,
            cfg.eval.max_prompts,
            cfg.eval.bon_seed,
        )
        if not 0 < cfg.eval.heldout_prompts < 1:
            raise ConfigError(
                f"eval.heldout_prompts must be in (0, 1), got {cfg.eval.heldout_prompts}"
            )
        set_emb = emb_mod.embed_candidates(sets, cfg.embed, cfg.cache_dir, embedder=embedder)
        # One binarisation (fixed seed) for all split seeds: splits then only choose instructions.
        ds = binarize_candidates(
            sets, cfg.data.min_gold_gap, cfg.data.pairs_per_prompt, cfg.eval.bon_seed
        )
        chosen, rejected, group = _pairs_from_candidates(ds, sets, set_emb)
        n_held = max(1, int(round(cfg.eval.heldout_prompts * len(sets))))
        for s in seeds:
            tr_sets, te_sets = split_indices(len(sets), len(sets) - n_held, n_held, s)
            pool = np.flatnonzero(np.isin(group, tr_sets))
            test = np.flatnonzero(np.isin(group, te_sets))
            rng = np.random.default_rng([s, 4])
            if len(pool) < cfg.data.n_seed:
                log.warning(
                    "only %d training pairs from %d instructions (data.n_seed=%d)",
                    len(pool),
                    len(tr_sets),
                    cfg.data.n_seed,
                )
            seed_idx = np.sort(rng.permutation(pool)[: cfg.data.n_seed])
            if cfg.data.n_test is not None and len(test) > cfg.data.n_test:
                test = np.sort(rng.permutation(test)[: cfg.data.n_test])
            train, val = _seed_val(seed_idx, cfg, s)
            splits[s] = Split(s, train, val, test, te_sets)
        meta.update(
            instructions=len(sets),
            pairs=len(ds),
            binarize=ds.stats,
            candidates_embedded=int(sum(len(e) for e in set_emb)),
        )
    else:
        mode = "pairs"
        full = load_pairs(cfg.data.path, cfg.data)  # a margin column rides on the pairs
        parts = {
            s: split_indices(len(full), cfg.data.n_seed, cfg.data.n_test, s, cfg.data.fixed_test)
            for s in seeds
        }
        rows = np.unique(np.concatenate([np.r_[a, b] for a, b in parts.values()]))
        if embed_all or (embed_all is None and 4 * len(rows) >= len(full)):
            rows = np.arange(len(full))
        ds = full.subset(rows)
        pe = emb_mod.embed_pairs(ds, cfg.embed, cfg.cache_dir, embedder=embedder)
        chosen, rejected = np.asarray(pe.chosen, np.float32), np.asarray(pe.rejected, np.float32)
        meta.update(
            pairs_total=len(full),
            pairs_embedded=len(ds),
            load_stats=full.stats,
            embed=getattr(pe, "meta", {}),
        )
        for s, (seed_idx, test) in parts.items():
            pos_seed, pos_test = np.searchsorted(rows, seed_idx), np.searchsorted(rows, test)
            train, val = _seed_val(pos_seed, cfg, s)
            splits[s] = Split(s, train, val, pos_test, np.zeros(0, np.int64))
        if cfg.eval.candidates:
            sets = pool_candidates(
                load_candidates(cfg.eval.candidates, cfg.data),
                cfg.eval.candidate_pool,
                cfg.eval.max_prompts,
                cfg.eval.bon_seed,
            )
            set_emb = emb_mod.embed_candidates(sets, cfg.embed, cfg.cache_dir, embedder=embedder)
            for sp in splits.values():  # the candidates file shares no prompt with the pairs
                sp.bon_sets = np.arange(len(sets), dtype=np.int64)
    meta["prepare_seconds"] = time.perf_counter() - t0
    log.info(
        "prepared %s data: %d pairs embedded, %d candidate sets, %.1fs",
        mode,
        len(ds),
        len(sets),
        meta["prepare_seconds"],
    )
    groups = group if mode == "candidates" else np.arange(len(chosen), dtype=np.int64)
    return PreparedData(mode, ds, chosen, rejected, sets, set_emb, splits, meta, groups)


def prepare_layers(
    cfg: RunConfig,
    split_seeds: Sequence[int] | None = None,
    embed_all: bool | None = False,
    embedder: Any | None = None,
) -> dict[Any, PreparedData]:
    """:func:`prepare_data` at each embed.layer candidate (select_layer, else embed.layer).

    The candidates are stored layers of one embedding pass, so only the first call may embed; the
    others read the same cache.
    """
    from latentrm.config import apply_changes

    layers = list(cfg.select_layer) or [cfg.embed.layer]
    if len(layers) > 1:
        missing = [
            x for x in layers if x != "mean" and x not in cfg.embed.layers and x != cfg.embed.layer
        ]
        if missing:
            raise ConfigError(f"select_layer {missing} are not cached: add them to embed.layers")
    out = {}
    for layer in layers:
        lcfg = apply_changes(cfg, {"embed.layer": layer})
        out[layer] = prepare_data(lcfg, split_seeds, embed_all, embedder)
    return out
