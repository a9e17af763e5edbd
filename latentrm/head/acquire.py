"""Which pairs to label next: acquisition functions on a reward head's margins (pure math).

The inputs are what a reward model says about each candidate pair (a, b) of a pool:

- ``margins`` (K, N): member k's margin ``r_k(a) - r_k(b)`` for N pairs (K = 1 for a single head,
  K ensemble members otherwise); under Bradley-Terry member k says ``p_k = sigmoid(margin)`` is the
  probability that a is preferred;
- ``features`` (N, D): one vector per pair for diversity, by convention the standardised
  embedding difference ``z(a) - z(b)``, compared with the sign-invariant distance
  ``dist(u, v) = min(|u - v|, |u + v|)`` (the pair (b, a) is the pair (a, b));
- ``groups`` (N,): pairs that may not go to the annotators together (the pairs drawn from one
  candidate set: one per prompt per batch); pairs of a pool of pairs are each their own group.

Strategies (:data:`STRATEGIES`; :func:`select` runs one):

- ``random``: a uniform draw of K groups (then one of its pairs), seeded;
- ``bald``: Bayesian active learning by disagreement for the Bradley-Terry label, the mutual
  information between the label and the member: ``H[mean_k p_k] - mean_k H[p_k]`` (nats, binary
  entropy H). Zero when all members agree; needs an ensemble (K >= 2): a single head raises
  ConfigError, since its BALD is 0 for every pair;
- ``entropy``: predictive entropy of the mean margin, ``H[sigmoid(mean_k margin_k)]``: largest
  where the model's margin is near 0 (works with one head);
- ``diversity``: k-center greedy (Sener & Savarese, 2018) on `features`: each pick is the pair
  farthest from its nearest center (already labelled pairs, then earlier picks);
- ``hybrid``: batch mode. The ``top_m`` (default 4K) groups with the highest uncertainty (BALD
  with an ensemble, else entropy) are the candidates; the most uncertain one is picked first,
  then k-center greedy among the candidates, so one batch is not K near-duplicates of the most
  uncertain pair.

Ties always go to the lower index, so every choice is reproducible by hand.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from latentrm.errors import ConfigError

STRATEGIES = ("random", "bald", "entropy", "diversity", "hybrid")
HYBRID_POOL = 4  # hybrid's candidates: the HYBRID_POOL * K most uncertain groups (top_m default)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # stable for large |x|


def binary_entropy(p: np.ndarray) -> np.ndarray:
    """H(p) = -p log p - (1 - p) log(1 - p) in nats (0 at p in {0, 1}; log 2 at p = 0.5)."""
    p = np.asarray(p, np.float64)
    q = 1.0 - p
    with np.errstate(divide="ignore", invalid="ignore"):
        h = -(np.where(p > 0, p * np.log(p), 0.0) + np.where(q > 0, q * np.log(q), 0.0))
    return h


def _check_margins(margins: np.ndarray) -> np.ndarray:
    m = np.asarray(margins, np.float64)
    if m.ndim == 1:
        m = m[None]
    if m.ndim != 2 or m.shape[0] < 1:
        raise ConfigError(f"margins must be (members, pairs), got shape {np.shape(margins)}")
    if not np.isfinite(m).all():
        raise ConfigError("margins hold NaN/Inf: the head or the embeddings overflow")
    return m


def bald(margins: np.ndarray) -> np.ndarray:
    """BALD (N,) for the Bradley-Terry label: ``H[mean_k p_k] - mean_k H[p_k]``, p_k =
    sigmoid(margins[k]) (nats, in [0, log 2]). margins (K, N) with K >= 2.

    E.g. members at margins (+2, -2): p = (0.8808, 0.1192), mean 0.5, H = log 2 = 0.6931; each
    H(p_k) = 0.3653, so BALD = 0.3278. Members at (3, 3): both terms H(0.9526), BALD = 0.
    """
    m = _check_margins(margins)
    if m.shape[0] < 2:
        raise ConfigError(
            "bald needs an ensemble head (reward.ensemble > 1): with one head the disagreement "
            "is 0 for every pair; use strategy entropy, or train with reward.ensemble: 5"
        )
    p = _sigmoid(m)  # (K, N)
    return np.clip(binary_entropy(p.mean(0)) - binary_entropy(p).mean(0), 0.0, None)


def predictive_entropy(margins: np.ndarray) -> np.ndarray:
    """``H[sigmoid(mean_k margins[k])]`` (N,), nats: log 2 = 0.6931 at mean margin 0."""
    return binary_entropy(_sigmoid(_check_margins(margins).mean(0)))


def response_scale(emb: np.ndarray) -> np.ndarray:
    """Per-dimension std (D,) of a pool's response embeddings (N, D), floored at 1e-6: the scale
    of :func:`pair_features` (no labels involved)."""
    return np.asarray(emb, np.float64).std(0) + 1e-6


def pair_features(emb_a: np.ndarray, emb_b: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Diversity features (N, D) of pairs: the standardised difference ``(e_a - e_b) / scale``."""
    return (np.asarray(emb_a, np.float64) - np.asarray(emb_b, np.float64)) / scale


def pair_distances(x: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Sign-invariant distances (N, C) between rows of x (N, D) and c (C, D):
    ``min(|x - c|, |x + c|)``, i.e. ``sqrt(|x|^2 + |c|^2 - 2 |x . c|)``."""
    x, c = np.asarray(x, np.float64), np.asarray(c, np.float64)
    sq = (x * x).sum(1)[:, None] + (c * c).sum(1)[None, :] - 2.0 * np.abs(x @ c.T)
    return np.sqrt(np.clip(sq, 0.0, None))


def kcenter_greedy(
    features: np.ndarray,
    k: int,
    *,
    groups: np.ndarray | None = None,
    centers: np.ndarray | None = None,
    first: int | None = None,
    candidates: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """k-center greedy: (picked indices (k',), each pick's distance to its nearest center (k',)).

    Each step picks, among `candidates` (default: all rows) whose group is not picked yet, the
    row farthest (:func:`pair_distances`) from its nearest center; the pick becomes a center.
    Centers start as `centers` (e.g. the labelled pairs' features; (C, D)). Without centers the
    first pick is `first`, or the row of largest norm (the farthest from "no difference"); its
    distance is reported as its norm (or its distance to `centers`). k' = min(k, free groups).
    """
    x = np.asarray(features, np.float64)
    n = len(x)
    g = np.arange(n) if groups is None else np.asarray(groups)
    allowed = np.zeros(n, bool)
    allowed[np.arange(n) if candidates is None else np.asarray(candidates, np.int64)] = True
    if centers is not None and len(centers):
        near = pair_distances(x, centers).min(1)
    else:
        near = np.full(n, np.inf)
    picks: list[int] = []
    dists: list[float] = []
    used: set = set()
    while len(picks) < k:
        free = allowed & ~np.isin(g, list(used)) if used else allowed
        if not free.any():
            break
        if not picks and first is not None:
            i = int(first)
        elif np.isinf(near[free]).all():  # no center yet: the largest norm
            norms = np.where(free, np.linalg.norm(x, axis=1), -1.0)
            i = int(np.argmax(norms))
        else:
            i = int(np.argmax(np.where(free, near, -1.0)))
        d = near[i] if np.isfinite(near[i]) else float(np.linalg.norm(x[i]))
        picks.append(i)
        dists.append(float(d))
        used.add(g[i])
        near = np.minimum(near, pair_distances(x, x[i : i + 1])[:, 0])
    return np.asarray(picks, np.int64), np.asarray(dists, np.float64)


def top_by_group(score: np.ndarray, k: int, groups: np.ndarray | None = None) -> np.ndarray:
    """Indices of the k highest `score`s, at most one per group (the group's best), best first;
    ties to the lower index."""
    s = np.asarray(score, np.float64)
    order = np.lexsort((np.arange(len(s)), -s))  # descending score, then ascending index
    if groups is None:
        return order[:k].astype(np.int64)
    g = np.asarray(groups)
    _, first = np.unique(g[order], return_index=True)  # each group's best in `order`
    return order[np.sort(first)][:k].astype(np.int64)


@dataclass(frozen=True)
class Acquisition:
    """What :func:`select` chose: `index` (k',) into the pool's pairs, best first, `score` (k',)
    each pick's acquisition value (strategy-specific: BALD/entropy in nats, a k-center distance;
    NaN for random), and for every pair of the pool `margin` (mean margin), `disagreement` (BALD;
    NaN with one head) and `entropy` (predictive entropy)."""

    strategy: str
    index: np.ndarray
    score: np.ndarray
    margin: np.ndarray
    disagreement: np.ndarray
    entropy: np.ndarray


def select(
    strategy: str,
    margins: np.ndarray,
    k: int,
    *,
    features: np.ndarray | None = None,
    groups: np.ndarray | None = None,
    labelled: np.ndarray | None = None,
    seed: int = 0,
    top_m: int | None = None,
) -> Acquisition:
    """Choose k pairs of the pool by `strategy` (module docstring), at most one per group.

    margins (K, N); features (N, D) for diversity/hybrid; labelled (C, D) features of pairs
    already labelled (the first centers of diversity/hybrid); `seed` for random; `top_m` hybrid's
    candidate count (default 4k). Returns fewer than k picks when the pool has fewer groups.
    """
    if strategy not in STRATEGIES:
        raise ConfigError(f"strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
    if k < 1:
        raise ConfigError(f"k must be >= 1, got {k}")
    m = _check_margins(margins)
    n = m.shape[1]
    g = np.arange(n) if groups is None else np.asarray(groups)
    if len(g) != n:
        raise ConfigError(f"groups has {len(g)} entries for {n} pairs")
    ent = predictive_entropy(m)
    dis = bald(m) if m.shape[0] >= 2 else np.full(n, np.nan)
    if strategy in ("diversity", "hybrid"):
        if features is None or len(features) != n:
            raise ConfigError(f"strategy {strategy} needs features, one row per pair")
    if strategy == "random":
        rng = np.random.default_rng(seed)
        uniq = np.unique(g)
        chosen = rng.permutation(uniq)[:k]
        idx = np.asarray([rng.choice(np.flatnonzero(g == u)) for u in chosen], np.int64)
        score = np.full(len(idx), np.nan)
    elif strategy in ("bald", "entropy"):
        value = bald(m) if strategy == "bald" else ent
        idx = top_by_group(value, k, g)
        score = value[idx]
    elif strategy == "diversity":
        idx, score = kcenter_greedy(features, k, groups=g, centers=labelled)
    else:
        value = dis if m.shape[0] >= 2 else ent
        cand = top_by_group(value, top_m or HYBRID_POOL * k, g)
        idx, _ = kcenter_greedy(
            features, k, groups=g, centers=labelled, first=int(cand[0]), candidates=cand
        )
        score = value[idx]
    return Acquisition(strategy, idx, np.asarray(score, np.float64), m.mean(0), dis, ent)


__all__ = [
    "STRATEGIES",
    "Acquisition",
    "bald",
    "binary_entropy",
    "kcenter_greedy",
    "pair_distances",
    "pair_features",
    "predictive_entropy",
    "response_scale",
    "select",
    "top_by_group",
]
