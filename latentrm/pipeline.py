"""`latentrm run`: data -> split -> embed (cached) -> augment -> reward head -> evaluation.

The run is split in two halves so that `latentrm experiment` can reuse the expensive one:

- `prepare_data(cfg, split_seeds)` loads the data, fixes the splits of every requested split seed
  and embeds (through the on-disk cache) exactly the pairs and candidates those splits need, once.
- `evaluate_split(cfg, data, split)` trains and evaluates every method x ratio on one split.

Two kinds of data:

- pairs (HH-RLHF, TRL, TL;DR): `data.split_indices` draws the seed / held-out split of the pairs,
  `data.carve_validation` the validation part of the seed set. Validation serves early stopping
  and hyperparameter selection; the held-out pairs only the final evaluation.
- candidates (alpaca-eval) as `data.path`: the split is by *instruction*, never by pair. Each
  instruction keeps `eval.candidate_pool` candidates (a fixed subset, so embeddings are shared by
  every seed); its candidates are embedded once and pairs are binarised from them, so a pair's two
  embeddings are looked up, not recomputed. Training pairs come from the training instructions
  only; accuracy and Best-of-N gold are measured on the held-out instructions.

Best-of-N draws (see `evaluate.bon_draws`) depend on `eval.bon_seed` and the set id only.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import logging
import time
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from latentrm.config import RunConfig, save_config, to_dict
from latentrm.errors import ConfigError, DataError
from latentrm.evaluate import (
    ScoreFn,
    best_of_n,
    bootstrap_ci,
    head_score_fn,
    pair_correctness,
    score_embeddings,
    spearman_with_gold,
    synthetic_fidelity,
)
from latentrm.io import atomic_write_json, atomic_write_text

if TYPE_CHECKING:
    from latentrm.data import CandidateSet, PreferenceDataset

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
    """

    mode: str  # "pairs" | "candidates"
    ds: PreferenceDataset
    chosen: np.ndarray
    rejected: np.ndarray
    sets: list[CandidateSet]
    set_emb: list[np.ndarray]
    splits: dict[int, Split]
    meta: dict[str, Any] = field(default_factory=dict)


def _is_candidates_file(cfg: RunConfig) -> bool:
    """Whether data.path holds candidate sets (format 'candidates', or detected under 'auto')."""
    from latentrm.data import load_candidates

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
    from latentrm.data import carve_validation

    train, val = carve_validation(idx, cfg.data.val_fraction, split_seed)
    if len(val) == 0:
        raise ConfigError(
            "the validation split is empty: raise data.val_fraction or data.n_seed (it serves "
            "early stopping and hyperparameter selection)"
        )
    return train, val


def prepare_data(
    cfg: RunConfig, split_seeds: Sequence[int] | None = None, embed_all: bool = False,
    embedder: Any | None = None,
) -> PreparedData:
    """Load `cfg.data`, fix the splits of `split_seeds` (default: data.split_seed), embed (cached).

    Pairs data: only the pairs some split needs are embedded, unless `embed_all` (experiments: one
    cache entry per dataset and embedder, whatever the split sizes). With n_test = None the two
    coincide (a subset of every row in order has the full dataset's content hash). `embedder` (an
    `embed.Embedder`) is reused instead of loading the model again.
    """
    from latentrm import embed as emb_mod
    from latentrm.data import binarize_candidates, load_candidates, load_pairs, split_indices

    seeds = list(split_seeds) if split_seeds is not None else [cfg.data.split_seed]
    t0 = time.perf_counter()
    sets: list[CandidateSet] = []
    set_emb: list[np.ndarray] = []
    splits: dict[int, Split] = {}
    meta: dict[str, Any] = {}
    if _is_candidates_file(cfg):
        mode = "candidates"
        sets = pool_candidates(
            load_candidates(cfg.data.path, cfg.data), cfg.eval.candidate_pool,
            cfg.eval.max_prompts, cfg.eval.bon_seed,
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
                log.warning("only %d training pairs from %d instructions (data.n_seed=%d)",
                            len(pool), len(tr_sets), cfg.data.n_seed)
            seed_idx = np.sort(rng.permutation(pool)[: cfg.data.n_seed])
            if cfg.data.n_test is not None and len(test) > cfg.data.n_test:
                test = np.sort(rng.permutation(test)[: cfg.data.n_test])
            train, val = _seed_val(seed_idx, cfg, s)
            splits[s] = Split(s, train, val, test, te_sets)
        meta.update(instructions=len(sets), pairs=len(ds), binarize=ds.stats,
                    candidates_embedded=int(sum(len(e) for e in set_emb)))
    else:
        mode = "pairs"
        full = load_pairs(cfg.data.path, cfg.data)
        parts = {s: split_indices(len(full), cfg.data.n_seed, cfg.data.n_test, s) for s in seeds}
        rows = (np.arange(len(full)) if embed_all
                else np.unique(np.concatenate([np.r_[a, b] for a, b in parts.values()])))
        ds = full.subset(rows)
        pe = emb_mod.embed_pairs(ds, cfg.embed, cfg.cache_dir, embedder=embedder)
        chosen, rejected = np.asarray(pe.chosen, np.float32), np.asarray(pe.rejected, np.float32)
        meta.update(pairs_total=len(full), pairs_embedded=len(ds), load_stats=full.stats,
                    embed=getattr(pe, "meta", {}))
        for s, (seed_idx, test) in parts.items():
            pos_seed, pos_test = np.searchsorted(rows, seed_idx), np.searchsorted(rows, test)
            train, val = _seed_val(pos_seed, cfg, s)
            splits[s] = Split(s, train, val, pos_test, np.zeros(0, np.int64))
        if cfg.eval.candidates:
            sets = pool_candidates(
                load_candidates(cfg.eval.candidates, cfg.data), cfg.eval.candidate_pool,
                cfg.eval.max_prompts, cfg.eval.bon_seed,
            )
            set_emb = emb_mod.embed_candidates(sets, cfg.embed, cfg.cache_dir, embedder=embedder)
            for sp in splits.values():  # the candidates file shares no prompt with the pairs
                sp.bon_sets = np.arange(len(sets), dtype=np.int64)
    meta["prepare_seconds"] = time.perf_counter() - t0
    log.info("prepared %s data: %d pairs embedded, %d candidate sets, %.1fs",
             mode, len(ds), len(sets), meta["prepare_seconds"])
    return PreparedData(mode, ds, chosen, rejected, sets, set_emb, splits, meta)


# --- training and evaluation of one split -------------------------------------------------------
def _n_params(module: Any) -> int:
    return int(sum(p.numel() for p in module.parameters())) if module is not None else 0


def _augmenter_params(aug: Any) -> int:
    """Parameters of an augmenter's generative model (the VAE for LENS; 0 for the baselines)."""
    vae = getattr(aug, "vae_", None)
    return _n_params(getattr(vae, "model_", None))


def _with(cfg: RunConfig, **changes: Any) -> RunConfig:
    """cfg with dotted-key changes, e.g. _with(cfg, **{'vae.gamma': 0.5})."""
    for key, value in changes.items():
        head, _, rest = key.partition(".")
        if rest:
            cfg = dataclasses.replace(
                cfg, **{head: dataclasses.replace(getattr(cfg, head), **{rest: value})}
            )
        else:
            cfg = dataclasses.replace(cfg, **{head: value})
    return cfg


def _refit_free(fresh: Any, fitted: Any) -> Any:
    """`fresh` (new synthesis hyperparameters) given `fitted`'s learned state, without refitting.

    By the estimator contract learned state is every attribute ending in '_', so this is
    set_params for the hyperparameters that do not affect fit() (e.g. LENS's sigma2).
    """
    for name, value in vars(fitted).items():
        if name.endswith("_") and not name.startswith("_"):
            setattr(fresh, name, value)
    return fresh


def selection_grid(cfg: RunConfig, method: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Hyperparameters chosen on validation for `method`: (dotted keys, value tuples).

    The first key is the one the augmenter's fit depends on (refit per value); the others only
    change synthesis. One grid point = no selection.
    """
    if method == "lens":
        keys = ["vae.gamma", "synth.sigma2"]
        vals = [cfg.select_gamma or (cfg.vae.gamma,), cfg.select_sigma2 or (cfg.synth.sigma2,)]
    elif method == "direct":
        keys, vals = ["synth.direct_noise"], [cfg.select_direct_noise or (cfg.synth.direct_noise,)]
    else:
        return [], [()]
    return keys, list(itertools.product(*vals))


def fit_reference_head(data: PreparedData, cfg: RunConfig, seed: int) -> ScoreFn:
    """A reward head trained on every labelled pair of `data` (seed + held-out of all splits).

    For candidates data those pairs are binarised from the gold scores of every instruction, so
    the reference is the gold preference as far as the embedding space can express it. Used only
    to measure synthetic-pair fidelity; 10% of the pairs serve its early stopping.
    """
    from latentrm.data import carve_validation
    from latentrm.reward import fit_reward_head
    from latentrm.synth import AugmentedPairs

    tr, va = carve_validation(np.arange(len(data.chosen)), 0.1, seed)
    aug = AugmentedPairs.originals(data.chosen[tr], data.rejected[tr])
    head = fit_reward_head(aug, (data.chosen[va], data.rejected[va]), cfg.reward, seed)
    return head_score_fn(head)


def _score_metrics(
    score_fn: ScoreFn, data: PreparedData, split: Split, cfg: RunConfig, seed: int
) -> dict[str, Any]:
    """Held-out accuracy with bootstrap CI, validation accuracy, Best-of-N and Spearman."""
    rc = score_embeddings(score_fn, data.chosen[split.test])
    rr = score_embeddings(score_fn, data.rejected[split.test])
    correct = pair_correctness(rc, rr)
    lo, hi = bootstrap_ci(correct, cfg.eval.n_bootstrap, seed)
    vc = pair_correctness(score_embeddings(score_fn, data.chosen[split.val]),
                          score_embeddings(score_fn, data.rejected[split.val]))
    out: dict[str, Any] = {"accuracy": float(correct.mean()), "accuracy_lo": lo,
                           "accuracy_hi": hi, "val_accuracy": float(vc.mean())}
    if len(split.bon_sets):
        sets = [data.sets[i] for i in split.bon_sets]
        scores = [score_embeddings(score_fn, data.set_emb[i]) for i in split.bon_sets]
        out.update(best_of_n(scores, sets, cfg.eval.best_of_n, cfg.eval.bon_draws,
                             cfg.eval.bon_seed, cfg.eval.skip_short, cfg.eval.n_bootstrap))
        out.update(spearman_with_gold(scores, [np.asarray(s.gold) for s in sets]))
    return out


def evaluate_split(
    cfg: RunConfig, data: PreparedData, split: Split, reference: ScoreFn | None = None,
    heads_dir: Path | None = None,
) -> list[dict[str, Any]]:
    """Train and evaluate every method x ratio of `cfg` on `split`; one result row each.

    Augmenters are fitted on the split's training pairs only; heads stop early on its validation
    pairs; hyperparameter grids (`selection_grid`) are decided by validation accuracy, never by
    the held-out pairs. Method 'none' runs once (ratio 0). Heads are saved under `heads_dir`.
    """
    from latentrm.reward import fit_reward_head, save_head
    from latentrm.synth import AugmentedPairs, make_augmenter

    tc, tr = data.chosen[split.train], data.rejected[split.train]
    val = (data.chosen[split.val], data.rejected[split.val])
    rows: list[dict[str, Any]] = []
    for method in cfg.methods:
        ratios = (0,) if method == "none" else cfg.ratios
        keys, grid = selection_grid(cfg, method)
        best: dict[int, tuple[float, dict[str, Any], Any, Any]] = {}
        fitted: dict[Any, tuple[Any, float]] = {}
        t_select = time.perf_counter()
        for point in grid:
            mcfg = _with(cfg, **dict(zip(keys, point, strict=True)))
            fit_key = point[:1]  # the first key is the only one the fit depends on
            if method != "none" and fit_key not in fitted:
                t0 = time.perf_counter()
                augmenter = make_augmenter(method, mcfg, cfg.seed).fit(tc, tr)
                fitted[fit_key] = (augmenter, time.perf_counter() - t0)
            augmenter, t_fit = fitted.get(fit_key, (None, 0.0))  # 'none' fits nothing
            if augmenter is not None and len(point) > 1:
                augmenter = _refit_free(make_augmenter(method, mcfg, cfg.seed), augmenter)
            for ratio in ratios:
                t0 = time.perf_counter()
                aug = (AugmentedPairs.originals(tc, tr) if augmenter is None
                       else augmenter.augment(tc, tr, ratio, cfg.seed))
                t_syn = time.perf_counter() - t0
                t0 = time.perf_counter()
                head = fit_reward_head(aug, val, cfg.reward, cfg.seed)
                t_head = time.perf_counter() - t0
                fn = head_score_fn(head)
                val_acc = float(pair_correctness(score_embeddings(fn, val[0]),
                                                 score_embeddings(fn, val[1])).mean())
                info = {
                    "time_fit_s": t_fit, "time_synth_s": t_syn, "time_head_s": t_head,
                    "params_augmenter": _augmenter_params(augmenter),
                    "params_head": _n_params(head),
                    "n_pairs_trained": len(aug), "n_synthetic": int(np.sum(aug.synthetic)),
                    **{k.split(".")[-1]: v for k, v in zip(keys, point, strict=True)},
                }
                if len(grid) > 1:
                    log.info("%s ratio %d %s: validation accuracy %.4f", method, ratio,
                             dict(zip(keys, point, strict=True)), val_acc)
                # strict '>' keeps the first grid point on ties: the config's order decides
                if ratio not in best or val_acc > best[ratio][0]:
                    best[ratio] = (val_acc, info, head, aug)
        t_select = time.perf_counter() - t_select
        for ratio in ratios:
            _, info, head, aug = best[ratio]
            row: dict[str, Any] = {"method": method, "ratio": ratio, "seed": cfg.seed,
                                   "split_seed": split.split_seed, "n_train": len(split.train),
                                   "n_val": len(split.val), "n_test": len(split.test), **info}
            if len(grid) > 1:
                row["select_seconds"] = t_select
                row["select_grid"] = len(grid)
            row.update(_score_metrics(head_score_fn(head), data, split, cfg, cfg.seed))
            row["epochs"] = int(getattr(head, "history_", {}).get("epochs_run", 0))
            if reference is not None:
                row["fidelity"] = synthetic_fidelity(aug, reference)
            if heads_dir is not None:
                d = heads_dir / f"{method}-r{ratio}"
                save_head(head, d)
                row["head_dir"] = str(d)
            rows.append(row)
            log.info("%s ratio %d: held-out accuracy %.4f [%.4f, %.4f]", method, ratio,
                     row["accuracy"], row["accuracy_lo"], row["accuracy_hi"])
    return rows


# --- reporting ----------------------------------------------------------------------------------
def json_safe(obj: Any) -> Any:
    """Plain JSON types: numpy scalars -> Python, NaN/Inf -> None (strict JSON has no NaN)."""
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    return obj


def _fmt(v: Any, spec: str = ".3f") -> str:
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "-"
    return format(v, spec)


def metrics_table(rows: Sequence[dict[str, Any]]) -> str:
    """Markdown table of one run's rows: accuracy [95% bootstrap CI], BoN, fidelity, times."""
    bon = any("bon_picked" in r for r in rows)
    head = ["method", "ratio", "accuracy [95% CI]", "val acc"]
    if bon:
        head += ["BoN gold (floor/ceil)", "gap closed", "Spearman"]
    head += ["fidelity", "fit s", "synth s", "head s", "params (aug/head)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["method"], str(r["ratio"]),
                 f"{_fmt(r['accuracy'])} [{_fmt(r['accuracy_lo'])}, {_fmt(r['accuracy_hi'])}]",
                 _fmt(r.get("val_accuracy"))]
        if bon:
            cells += [f"{_fmt(r.get('bon_picked'))} ({_fmt(r.get('bon_floor'))}/"
                      f"{_fmt(r.get('bon_ceiling'))})", _fmt(r.get("bon_gap_closed")),
                      _fmt(r.get("spearman_prompt"))]
        cells += [_fmt(r.get("fidelity")), _fmt(r["time_fit_s"], ".1f"),
                  _fmt(r["time_synth_s"], ".1f"), _fmt(r["time_head_s"], ".1f"),
                  f"{r['params_augmenter']:,}/{r['params_head']:,}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run the block with `n` torch intra-op threads (None: leave as is), restoring them after."""
    import torch

    before = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def run_pipeline(cfg: RunConfig, embedder: Any | None = None) -> dict[str, Any]:
    """`latentrm run`: one split, every method x ratio; artifacts and metrics in cfg.out_dir.

    Writes config.yaml (resolved config), heads/<method>-r<ratio>/ (save_head), metrics.json
    (atomic) and results.md (the table). Returns the metrics dict (its 'table' key holds the
    markdown table).
    """
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out / "config.yaml")
    with torch_threads(cfg.threads):
        t0 = time.perf_counter()
        data = prepare_data(cfg, embedder=embedder)
        split = data.splits[cfg.data.split_seed]
        t_ref = time.perf_counter()
        reference = fit_reference_head(data, cfg, cfg.seed) if cfg.eval.fidelity else None
        t_ref = time.perf_counter() - t_ref
        rows = evaluate_split(cfg, data, split, reference, heads_dir=out / "heads")
    table = metrics_table(rows)
    metrics = {
        "config": to_dict(cfg), "mode": data.mode, "data": data.meta,
        "split": {"split_seed": split.split_seed, "n_train": len(split.train),
                  "n_val": len(split.val), "n_test": len(split.test),
                  "bon_prompts": len(split.bon_sets)},
        "reference_seconds": t_ref if reference is not None else None,
        "total_seconds": time.perf_counter() - t0,
        "results": rows, "table": table,
    }
    atomic_write_json(out / "metrics.json", json_safe(metrics))
    atomic_write_text(out / "results.md", table)
    log.info("wrote %s", out / "metrics.json")
    return metrics
