"""Training reward heads: :class:`RewardHeadFitter` (estimator-style) and the small-data rule.

``RewardHeadFitter(cfg, seed).fit(pairs, val)`` trains what `cfg` (a RewardConfig) asks for: one
MLP head stopped early on validation pairs, an ensemble of K (member k leaves out fold k of the
seeds), a cross-fitted ensemble (member k stops on fold k of its own pairs), or an exact linear
Bradley-Terry fit with L2 (strength chosen by k-fold validation with ``l2="cv"``).
:func:`effective_reward` is the small-data rule: below ``reward.small_data`` labelled pairs a plain
head becomes :data:`SMALL_DATA_HEAD`.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from latentrm.config import RewardConfig
from latentrm.data.splits import seed_folds
from latentrm.errors import ConfigError
from latentrm.head.estimator import Estimator
from latentrm.head.reward import EnsembleHead, RewardHead, bradley_terry_loss
from latentrm.head.train import History, fit_loop, minibatches, seeded, standardization_stats
from latentrm.pairs import AugmentedPairs, check_pairs

log = logging.getLogger(__name__)


# The small-data head (RewardConfig.small_data): what a plain head becomes below that many seed
# pairs. Chosen on validation folds inside the HH seed sets only, by the rule stated in
# configs/small_data_hh.yaml (scripts/select_small_head.py: the highest mean k-fold accuracy at
# 250 and 500 pairs, 0.627 against 0.624 for the 5-head ensemble and a minimum of 20 epochs, 0.611
# for the plain head; no fold of a cross-fitted head kept its epoch-0 weights).
SMALL_DATA_HEAD: dict[str, Any] = {"cross_fit": 5}
# reward.l2 = "cv": the L2 strengths tried (~3x apart) and the folds that choose among them.
L2_GRID = (1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0)
L2_FOLDS = 5


def is_plain(cfg: RewardConfig) -> bool:
    """Whether `cfg` asks for none of the heads beyond the plain one (ensemble, cross-fitting,
    a minimum of epochs, weight averaging, an exact L2 fit): small_data may replace it."""
    return (
        cfg.ensemble == 1
        and cfg.cross_fit < 2
        and cfg.min_epochs == 0
        and not cfg.average
        and cfg.l2 == 0
    )


def effective_reward(cfg: RewardConfig, n_seed: int) -> RewardConfig:
    """The head settings used for `n_seed` labelled pairs (those trained and stopped on): the
    small-data head (:data:`SMALL_DATA_HEAD`) when ``n_seed < cfg.small_data`` and `cfg` is plain,
    else `cfg` itself. Every fold keeps at least 2 pairs: below 10 pairs the head has
    ``n_seed // 2`` folds, and below 4 pairs it stays plain."""
    folds = min(SMALL_DATA_HEAD["cross_fit"], n_seed // 2)
    if n_seed < cfg.small_data and is_plain(cfg) and folds >= 2:
        return dataclasses.replace(cfg, **{**SMALL_DATA_HEAD, "cross_fit": folds})
    return cfg


def ignores_validation(cfg: RewardConfig, n_seed: int) -> bool:
    """Whether the head trained on `n_seed` labelled pairs makes no use of validation pairs
    (cross-fitted: it stops on folds of its own pairs; an exact L2 fit: it has no epochs), so a
    caller should train it on the whole seed set, validation carve included."""
    eff = effective_reward(cfg, n_seed)
    return eff.cross_fit >= 2 or eff.l2 != 0


class RewardHeadFitter(Estimator):
    """Train a :class:`RewardHead` with the Bradley-Terry loss (estimator-style).

    ``fit(train, val)`` returns self with learned state ``head_`` (in eval mode; an
    :class:`EnsembleHead` when ``cfg.ensemble > 1`` or ``cfg.cross_fit >= 2``), ``history_`` (the
    curves of :func:`latentrm.head.train.fit_loop`; for an ensemble, its members' under
    "members"). It trains the head `cfg` describes: resolving ``cfg.small_data`` is the caller's
    (:func:`effective_reward`; `latentrm run`/`fit` do it for the model they train, while the
    fold heads of teachers, references and k-fold selection stay as configured). Input
    statistics come from the original seed embeddings only. With early stopping (the default)
    the validation BT loss of `val` (chosen (V, d), rejected (V, d)) picks the epoch whose
    weights are kept; without `val` the mean training loss stands in. A cross-fitted head stops
    each member on its own fold of `train`'s seeds instead and records the out-of-fold accuracy
    and BT loss of every seed pair ("oof_accuracy", "oof_bt_loss"); a linear head with
    ``cfg.l2`` is fitted exactly; neither uses `val`. The pairs' soft targets, margins and
    weights are honoured (:func:`bradley_terry_loss`), and every synthetic pair weighs
    ``cfg.synthetic_weight``. Raises TrainingError if a loss turns NaN/Inf
    (e.g. NaN embeddings).
    """

    head_: RewardHead | EnsembleHead
    history_: History

    def __init__(self, cfg: RewardConfig, seed: int) -> None:
        self.cfg, self.seed = cfg, seed

    def fit(
        self, train: AugmentedPairs, val: tuple[np.ndarray, np.ndarray] | None
    ) -> RewardHeadFitter:
        if val is not None:
            check_pairs(*val, "reward validation")
        cfg = self.cfg
        if cfg.cross_fit >= 2:
            return self._fit_cross(cfg, train)
        if cfg.ensemble == 1:
            self.head_, self.history_ = self._fit_one(cfg, train, val, self.seed)
            return self
        # Member k leaves out the pairs of the seeds in fold k (their synthetic pairs too).
        n_seed = train.n_seed
        folds = seed_folds(n_seed, cfg.ensemble, self.seed)
        members, histories = [], []
        for k in range(cfg.ensemble):
            keep = folds[train.seed_idx] != k
            head, hist = self._fit_one(cfg, train.select(keep), val, self.seed + k)
            members.append(head)
            histories.append(hist)
        self.head_ = EnsembleHead(members).eval()
        self.history_ = _ensemble_history(histories)
        return self

    def _fit_cross(self, cfg: RewardConfig, train: AugmentedPairs) -> RewardHeadFitter:
        """K members, member k trained on the pairs of the seeds outside fold k and stopped on
        fold k's original pairs; each original pair is scored by the member that never saw it."""
        k = cfg.cross_fit
        folds = seed_folds(train.n_seed, k, self.seed)
        fold_of_pair = folds[train.seed_idx]  # (P,)
        orig = ~train.synthetic
        sc = np.zeros(len(train), np.float32)  # out-of-fold scores of the original pairs
        sr = np.zeros(len(train), np.float32)
        members, histories = [], []
        for f in range(k):
            held = np.flatnonzero(orig & (fold_of_pair == f))
            hc, hr = train.pair_embeddings(held)
            head, hist = self._fit_one(
                cfg, train.select(fold_of_pair != f), (hc, hr), self.seed + f
            )
            sc[held], sr[held] = head.score(hc), head.score(hr)
            members.append(head)
            histories.append(hist)
        self.head_ = EnsembleHead(members).eval()
        self.history_ = _ensemble_history(histories)
        rc, rr = torch.from_numpy(sc[orig]), torch.from_numpy(sr[orig])
        self.history_["oof_accuracy"] = float(((rc > rr).float() + 0.5 * (rc == rr).float()).mean())
        self.history_["oof_bt_loss"] = float(bradley_terry_loss(rc, rr))
        return self

    def _fit_one(
        self,
        cfg: RewardConfig,
        train: AugmentedPairs,
        val: tuple[np.ndarray, np.ndarray] | None,
        seed: int,
    ) -> tuple[RewardHead, History]:
        if cfg.l2 != 0:
            return fit_linear_l2(train, cfg, seed, val)
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
                r[:b],
                r[b:],
                None if target is None else target[batch],
                None if margin is None else margin[batch],
                None if weight is None else weight[batch],
            )

        def val_fn() -> float:
            rc = torch.from_numpy(head.score(val[0]))
            rr = torch.from_numpy(head.score(val[1]))
            return bradley_terry_loss(rc, rr).item()

        history = fit_loop(
            head,
            head.parameters(),
            step,
            lambda epoch, rng: minibatches(len(train), cfg.batch_size, rng),
            val_fn if val is not None else None,
            epochs=cfg.epochs,
            lr=cfg.lr,
            weight_decay=cfg.weight_decay,
            patience=cfg.patience,
            seed=seed,
            name="reward",
            early_stopping=cfg.early_stopping,
            min_epochs=cfg.min_epochs,
            average=cfg.average,
        )
        return head, history


def _ensemble_history(histories: list[History]) -> History:
    return {
        "members": histories,
        "best_val": float(np.mean([h["best_val"] for h in histories])),
        "epochs_run": int(max(h["epochs_run"] for h in histories)),
        "best_epoch": int(np.median([h["best_epoch"] for h in histories])),
        "seconds": float(sum(h["seconds"] for h in histories)),
    }


def epoch0_heads(history: History) -> tuple[int, int]:
    """(heads that kept their epoch-0 weights, heads) of a fitted head's history: a head stopped
    at its first epoch is nearly its initialisation (the collapse of small validation sets)."""
    members = history.get("members", [history])
    return sum(int(h.get("best_epoch", -1)) == 0 for h in members), len(members)


# --- the linear Bradley-Terry head with L2, fitted exactly ---------------------------------------
def _newton_bt(
    x: Tensor,
    target: Tensor,
    margin: Tensor,
    weight: Tensor,
    l2: float,
    max_iter: int = 100,
    tol: float = 1e-9,
) -> tuple[Tensor, int]:
    """argmin_w ``sum_b w_b l_b(x_b . w - m_b) / sum_b w_b + l2/2 |w|^2`` by Newton's method.

    ``l_b(z) = t_b softplus(-z) + (1 - t_b) softplus(z)`` (:func:`bradley_terry_loss`), so with
    ``s = sigmoid(z)`` the gradient is ``X^T (w (s - t)) / W + l2 w`` and the Hessian
    ``X^T diag(w s (1 - s)) X / W + l2 I`` (positive definite for l2 > 0: the loss is strictly
    convex and Newton's steps, halved until the loss falls, converge). Torch float64, so the
    linear algebra runs on torch's threads. Shapes: x (B, d) difference vectors, target/margin/
    weight (B,) -> (w (d,), iterations).
    """
    n, d = x.shape
    if n < d:
        # w minimises over span(x's rows) (the penalty only grows off it): with x = U S V^T,
        # w = V beta and x w = (U S) beta, |w| = |beta|, so solve in rank(x) <= n dimensions.
        _, sv, vt = torch.linalg.svd(x, full_matrices=False)
        v = vt[sv > sv.max() * 1e-12].T  # (d, r)
        beta, iters = _newton_bt(x @ v, target, margin, weight, l2, max_iter, tol)
        return v @ beta, iters
    total = weight.sum()

    def loss(w: Tensor) -> Tensor:
        z = x @ w - margin
        per = target * F.softplus(-z) + (1.0 - target) * F.softplus(z)
        return (weight * per).sum() / total + 0.5 * l2 * (w @ w)

    w = torch.zeros(d, dtype=x.dtype)
    cur = loss(w)
    eye = torch.eye(d, dtype=x.dtype)
    for it in range(1, max_iter + 1):
        s = torch.sigmoid(x @ w - margin)
        grad = x.T @ (weight * (s - target)) / total + l2 * w
        if grad.abs().max() < tol:
            return w, it - 1
        hess = (x.T * (weight * s * (1.0 - s) / total)) @ x + l2 * eye
        step = torch.linalg.solve(hess, grad)
        t = 1.0
        new = loss(w - step)
        while new > cur and t > 1e-8:  # halve the step until the loss falls
            t *= 0.5
            new = loss(w - t * step)
        w, cur = w - t * step, new
    return w, max_iter


def fit_linear_l2(
    train: AugmentedPairs,
    cfg: RewardConfig,
    seed: int,
    val: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[RewardHead, History]:
    """A linear :class:`RewardHead` (``cfg.hidden`` empty) minimising the mean Bradley-Terry loss
    plus ``l2/2 |w|^2`` on standardised inputs, exactly (:func:`_newton_bt`; the bias cancels in
    ``r+ - r-``). ``cfg.l2 == "cv"``: l2 is the value of :data:`L2_GRID` with the lowest pooled
    out-of-fold BT loss of the original pairs over :data:`L2_FOLDS` folds of the seeds (ties:
    the stronger l2); `seed` draws the folds. `val` is only scored (history "best_val")."""
    t0 = time.perf_counter()
    d = train.pool.shape[1]
    n = len(train)
    one = torch.float64

    def stats(pairs: AugmentedPairs) -> tuple[np.ndarray, np.ndarray]:
        if not cfg.standardize:
            return np.zeros(d, np.float32), np.ones(d, np.float32)
        return standardization_stats(*pairs.originals_embeddings())

    tgt, mrg, wgt = _pair_terms(train, cfg.synthetic_weight)
    tgt = torch.ones(n, dtype=one) if tgt is None else tgt.to(one)
    mrg = torch.zeros(n, dtype=one) if mrg is None else mrg.to(one)
    wgt = torch.ones(n, dtype=one) if wgt is None else wgt.to(one)
    c, r = train.pair_embeddings(np.arange(n))
    diff = torch.from_numpy(c).to(one) - torch.from_numpy(r).to(one)  # (P, d), standardised below

    scores: dict[str, float] = {}
    if cfg.l2 == "cv":
        k = min(L2_FOLDS, train.n_seed)
        if k < 2:
            raise ConfigError(f"reward.l2=cv needs >= 2 seed pairs, got {train.n_seed}")
        fold_np = seed_folds(train.n_seed, k, seed)[train.seed_idx]
        fold, orig = torch.from_numpy(fold_np), torch.from_numpy(~train.synthetic)
        parts = []  # per fold: (training x, t, m, w) and (held x, t, m, w)
        for f in range(k):
            tr, ho = fold != f, orig & (fold == f)
            sd = torch.from_numpy(stats(train.select(fold_np != f))[1]).to(one)
            parts.append(
                (
                    (diff[tr] / sd, tgt[tr], mrg[tr], wgt[tr]),
                    (diff[ho] / sd, tgt[ho], mrg[ho], wgt[ho]),
                )
            )
        best: tuple[float, float, float] | None = None  # (held loss, l2, held accuracy)
        for lam in sorted(L2_GRID, reverse=True):  # ties go to the stronger l2
            held_loss, held_w, correct, count = 0.0, 0.0, 0.0, 0
            for (xt, tt, mt, wt), (xh, th, mh, wh) in parts:
                w, _ = _newton_bt(xt, tt, mt, wt, lam)
                u = xh @ w  # (H,) held-out r+ - r-
                per = th * F.softplus(-(u - mh)) + (1 - th) * F.softplus(u - mh)
                held_loss += float((wh * per).sum())
                held_w += float(wh.sum())
                correct += float((u > 0).sum() + 0.5 * (u == 0).sum())
                count += len(u)
            scores[f"{lam:g}"] = held_loss / held_w
            if best is None or scores[f"{lam:g}"] < best[0]:
                best = (scores[f"{lam:g}"], lam, correct / max(count, 1))
        assert best is not None
        lam = best[1]
        oof = {"oof_accuracy": best[2], "oof_bt_loss": best[0]}
    else:
        lam, oof = float(cfg.l2), {}
    mean, std = stats(train)
    w, iters = _newton_bt(diff / torch.from_numpy(std).to(one), tgt, mrg, wgt, lam)
    head = RewardHead(d, (), 0.0)
    head.set_standardization(mean, std)
    with torch.no_grad():
        head.mlp[0].weight.copy_(w.float()[None])
        head.mlp[0].bias.zero_()
    head.eval()
    rc, rr = torch.from_numpy(head.score(c)), torch.from_numpy(head.score(r))
    train_loss = float(bradley_terry_loss(rc, rr, tgt.float(), mrg.float(), wgt.float()))
    val_loss = train_loss
    if val is not None:
        val_loss = float(
            bradley_terry_loss(
                torch.from_numpy(head.score(val[0])), torch.from_numpy(head.score(val[1]))
            )
        )
    history: History = {
        "train_loss": [train_loss],
        "val_loss": [val_loss],
        "best_epoch": -1,
        "best_val": val_loss,
        "epochs_run": 0,
        "steps": iters,
        "seconds": time.perf_counter() - t0,
        "l2": lam,
        "l2_cv_loss": scores,
        **oof,
    }
    log.info(
        "reward: linear head, l2 %g (%s), %d Newton steps, train BT loss %.4f",
        lam,
        "chosen by cv" if scores else "given",
        iters,
        train_loss,
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
