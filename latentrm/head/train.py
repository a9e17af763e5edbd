"""The one training loop, shared by the divergence VAE and the reward head.

Read it top to bottom (minGPT-style): for each epoch, draw shuffled minibatches from a seeded
``torch.Generator``, take AdamW steps, evaluate on validation data, keep the best weights, stop
early when validation has not improved for ``patience`` epochs, and restore the best weights.

Determinism: everything random inside the loop (batch order, dropout, reparameterisation noise
that a ``step_fn`` draws from the global torch RNG) runs inside :func:`seeded`, which forks the
global RNG, so one seed gives bit-identical weights on CPU and the caller's RNG state is kept.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TypedDict

import numpy as np
import torch
from torch import nn
from torch.optim.adamw import adamw

from latentrm.errors import TrainingError
from latentrm.runtime import torch_threads, training_threads

log = logging.getLogger(__name__)


# (threads used, torch's threads) pairs fit_loop has logged: the note once, not per head
_NOTED: set[tuple[int, int]] = set()


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Run the block with the global torch RNG seeded to `seed`, restoring the caller's state after.

    Used for parameter initialisation and dropout, which draw from the global RNG.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def minibatches(n: int, batch_size: int, rng: torch.Generator) -> list[torch.Tensor]:
    """A random permutation of ``range(n)`` split into index batches of at most `batch_size`."""
    if batch_size < 1:
        raise TrainingError(f"batch_size must be >= 1, got {batch_size}")
    return list(torch.randperm(n, generator=rng).split(batch_size))


class AdamW:
    """torch's AdamW update without the ``torch.optim.Optimizer`` machinery around it.

    The first ``torch.optim.AdamW`` of a process imports ``torch._dynamo`` (seconds, a large share
    of a short LENS run: BENCHMARKS.md): ``Optimizer.add_param_group``/``zero_grad`` are wrapped in
    ``torch._disable_dynamo`` and ``step`` in a guard that imports it, whatever the flags
    (foreach, fused, capturable). This class calls torch's public functional kernel,
    ``torch.optim.adamw.adamw``, the one ``AdamW.step`` runs, with the same state (step counter as
    a float32 scalar tensor, first and second moments), so the weights are bit-identical to
    ``torch.optim.AdamW(params, lr, weight_decay=..., foreach=...)`` (tests/head/test_train.py).
    One parameter group, constant lr, no amsgrad: all the training loop needs.
    """

    def __init__(
        self,
        params: Iterable[nn.Parameter],
        lr: float,
        weight_decay: float,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        foreach: bool = True,
    ) -> None:
        self.params = list(params)
        self.lr, self.weight_decay, self.betas, self.eps = lr, weight_decay, betas, eps
        self.foreach = foreach
        self.state: dict[nn.Parameter, dict[str, torch.Tensor]] = {}

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            if set_to_none:
                p.grad = None
            elif p.grad is not None:
                p.grad.zero_()

    @torch.no_grad()
    def step(self) -> None:
        ps = [p for p in self.params if p.grad is not None]
        if not ps:
            return
        for p in ps:
            if p not in self.state:  # torch.optim.AdamW's lazily created state on CPU
                self.state[p] = {
                    "step": torch.tensor(0.0, dtype=torch.float32),
                    "exp_avg": torch.zeros_like(p, memory_format=torch.preserve_format),
                    "exp_avg_sq": torch.zeros_like(p, memory_format=torch.preserve_format),
                }
        st = [self.state[p] for p in ps]
        adamw(
            ps,
            [p.grad for p in ps],
            [s["exp_avg"] for s in st],
            [s["exp_avg_sq"] for s in st],
            [],
            [s["step"] for s in st],
            foreach=self.foreach,
            capturable=False,
            differentiable=False,
            fused=None,
            grad_scale=None,
            found_inf=None,
            has_complex=any(torch.is_complex(p) for p in ps),
            amsgrad=False,
            beta1=self.betas[0],
            beta2=self.betas[1],
            lr=self.lr,
            weight_decay=self.weight_decay,
            eps=self.eps,
            maximize=False,
        )


class History(TypedDict, total=False):
    """What a training loop gives back (a head's folder keeps it in head.json): a plain JSON
    dict, typed where it crosses modules. :func:`fit_loop` fills the first seven keys (epochs are
    0-based; ``best_val`` is the validation loss of the epoch kept). An ensemble keeps its
    members' under ``members``, with their mean ``best_val``, max ``epochs_run`` and median
    ``best_epoch``; a cross-fitted head adds its out-of-fold figures, the exact L2 fit its
    strength and cross-validation losses, the VAE its validation loss terms."""

    train_loss: list[float]
    val_loss: list[float]
    best_epoch: int
    best_val: float
    epochs_run: int
    steps: int
    seconds: float
    members: list[History]
    oof_accuracy: float
    oof_bt_loss: float
    l2: float
    l2_cv_loss: dict[str, float]
    val_parts: dict[str, float]


def fit_loop(
    model: nn.Module,
    params: Iterable[nn.Parameter],
    step_fn: Callable[[Any], torch.Tensor],
    make_batches: Callable[[int, torch.Generator], Sequence[Any]],
    val_fn: Callable[[], float] | None,
    *,
    epochs: int,
    lr: float,
    weight_decay: float,
    patience: int,
    seed: int,
    name: str = "model",
    early_stopping: bool = True,
    min_epochs: int = 0,
    average: bool = False,
) -> History:
    """Train `model` in place with AdamW and early stopping; return the history.

    Args:
        model: module whose ``state_dict`` is snapshotted at the best epoch and restored at the
            end; it is in ``train()`` mode for steps and ``eval()`` mode (``no_grad``) for `val_fn`.
        params: parameters to optimise.
        step_fn: ``batch -> scalar loss`` (a graph to backpropagate through).
        make_batches: ``(epoch, rng) -> batches`` for one epoch; shuffle with `rng`.
        val_fn: ``() -> float`` validation loss, lower is better. ``None``: the epoch's mean
            training loss is used for early stopping instead.
        epochs, lr, weight_decay, patience: the usual; stop after `patience` epochs without
            improvement.
        seed: seeds batch order and the global RNG (dropout, noise) for the duration of the loop.
        name: used in log lines and errors.
        early_stopping: False trains all `epochs` and keeps the last weights (the curves are still
            recorded; "best_epoch"/"best_val" then describe the kept, last epoch).
        min_epochs: early stopping keeps no epoch before epoch ``min_epochs - 1`` and cannot stop
            before `min_epochs` epochs have run (0 or 1: any epoch, as before). On a few dozen
            validation pairs the first epoch's loss can be the lowest by chance, which keeps a
            nearly untrained head.
        average: keep the running mean of the weights at the end of every epoch so far
            (stochastic weight averaging from epoch 0) instead of the last weights; validation,
            early stopping and the kept weights all use the averaged model.

    Returns:
        ``{"train_loss": [...], "val_loss": [...], "best_epoch": int, "best_val": float,
        "epochs_run": int, "steps": int, "seconds": float}``; epochs are 0-based.

    Raises:
        TrainingError: a loss (training or validation) is NaN/Inf; says which epoch and step.
    """
    if epochs < 1:
        raise TrainingError(f"{name}: epochs must be >= 1, got {epochs}")
    if min_epochs > epochs:
        raise TrainingError(f"{name}: min_epochs={min_epochs} exceeds epochs={epochs}")
    params = list(params)
    history: History = {
        "train_loss": [],
        "val_loss": [],
        "best_epoch": -1,
        "best_val": math.inf,
        "epochs_run": 0,
        "steps": 0,
        "seconds": 0.0,
    }
    t0 = time.perf_counter()
    best_state: dict[str, torch.Tensor] | None = None
    avg_state: dict[str, torch.Tensor] | None = None  # running mean of the epoch-end weights
    n_params = sum(p.numel() for p in params)
    threads = training_threads(n_params)
    if threads != torch.get_num_threads() and (threads, torch.get_num_threads()) not in _NOTED:
        _NOTED.add((threads, torch.get_num_threads()))  # once per process, not once per head
        log.info(
            "%s: %d parameters, trained with %d torch thread(s) instead of %d (small "
            "models lose more to thread synchronisation than they gain)",
            name,
            n_params,
            threads,
            torch.get_num_threads(),
        )
    with seeded(seed), torch_threads(threads):
        rng = torch.Generator().manual_seed(seed)
        # foreach: multi-tensor updates instead of a Python loop over parameters (torch's CPU
        # default): fewer kernel launches per step for the many small tensors of the VAE.
        # AdamW above, not torch.optim.AdamW: same bits, without importing torch._dynamo.
        opt = AdamW(params, lr=lr, weight_decay=weight_decay, foreach=True)
        for epoch in range(epochs):
            # --- train one epoch
            model.train()
            total, count = 0.0, 0
            for step, batch in enumerate(make_batches(epoch, rng)):
                loss = step_fn(batch)
                if not torch.isfinite(loss):
                    raise TrainingError(
                        f"{name}: loss is {loss.item()} at epoch {epoch} step {step}; "
                        "check the inputs for NaN/Inf or lower the learning rate"
                    )
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += loss.item()
                count += 1
                history["steps"] += 1
            train_loss = total / max(count, 1)
            history["train_loss"].append(train_loss)
            last_state = None
            if average:  # avg += (w - avg) / (epoch + 1); evaluate and keep the average
                last_state = copy.deepcopy(model.state_dict())
                avg_state = _running_mean(avg_state, last_state, epoch)
                model.load_state_dict(avg_state)
            # --- validate
            if val_fn is not None:
                model.eval()
                with torch.no_grad():
                    val = float(val_fn())
                if not math.isfinite(val):
                    raise TrainingError(f"{name}: validation loss is {val} at epoch {epoch}")
            else:
                val = train_loss
            history["val_loss"].append(val)
            history["epochs_run"] = epoch + 1
            kept = avg_state  # a fresh dict of fresh tensors each epoch (None: not averaging)
            if last_state is not None:
                model.load_state_dict(last_state)  # the optimiser goes on from the last weights
            # --- early stopping on the best validation loss, keeping its weights
            if not early_stopping:
                history["best_val"], history["best_epoch"] = val, epoch
                best_state = kept
                continue
            if epoch < min_epochs - 1:
                continue  # too early to keep or to stop
            if val < history["best_val"]:
                history["best_val"], history["best_epoch"] = val, epoch
                best_state = kept if average else copy.deepcopy(model.state_dict())
            elif epoch - history["best_epoch"] >= patience:
                log.debug(
                    "%s: early stop at epoch %d (best %d)", name, epoch, history["best_epoch"]
                )
                break
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    history["seconds"] = time.perf_counter() - t0
    log.info(
        "%s: %d epochs, best val loss %.4f at epoch %d, %.1fs",
        name,
        history["epochs_run"],
        history["best_val"],
        history["best_epoch"],
        history["seconds"],
    )
    return history


def _running_mean(
    avg: dict[str, torch.Tensor] | None, state: dict[str, torch.Tensor], count: int
) -> dict[str, torch.Tensor]:
    """The mean of `count` + 1 states: ``avg + (state - avg) / (count + 1)`` per floating tensor
    (`state` itself when `avg` is None); buffers that are not floats are taken from `state`."""
    if avg is None:
        return {k: v.clone() for k, v in state.items()}
    return {
        k: avg[k] + (v - avg[k]) / (count + 1) if v.is_floating_point() else v.clone()
        for k, v in state.items()
    }


def standardization_stats(
    *arrays: np.ndarray, chunk: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Per-dimension mean/std (float32, (d,)) over the rows of all `arrays` together.

    Accumulated in float64 over row chunks (default: 2^22 values, 32 MB, per chunk), so no
    concatenated copy is made. Constant dimensions get std 1 so standardising never divides by 0.
    """
    d = arrays[0].shape[1]
    chunk = chunk or max(1, (1 << 22) // d)
    total, sq, n = np.zeros(d), np.zeros(d), 0
    for x in arrays:
        for i in range(0, len(x), chunk):
            block = x[i : i + chunk].astype(np.float64)
            total += block.sum(0)
            sq += np.square(block).sum(0)
            n += len(block)
    mean = total / max(n, 1)
    std = np.sqrt(np.maximum(sq / max(n, 1) - mean**2, 0.0))
    std[std < 1e-6 * np.maximum(np.abs(mean), 1.0)] = 1.0
    return mean.astype(np.float32), std.astype(np.float32)
