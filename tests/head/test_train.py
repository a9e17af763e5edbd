from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from latentrm.errors import TrainingError
from latentrm.head.train import fit_loop, minibatches, seeded, standardization_stats

pytestmark = pytest.mark.usefixtures("one_thread")


def _quadratic_problem(target: float = 3.0):
    """One parameter w, loss (w - target)^2: plain SGD-like problem with a known optimum."""
    model = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(0.0)

    def step(batch: object) -> torch.Tensor:
        return (model.weight.squeeze() - target) ** 2

    return model, step


def test_minibatches_cover_every_index_once():
    rng = torch.Generator().manual_seed(0)
    batches = minibatches(10, 3, rng)
    assert [len(b) for b in batches] == [3, 3, 3, 1]
    assert sorted(torch.cat(batches).tolist()) == list(range(10))


def test_early_stopping_restores_best_weights():
    model, step = _quadratic_problem()
    # Validation curve scripted per epoch: best at epoch 2, then worse; patience 2 -> stop at 4.
    curve = [5.0, 4.0, 1.0, 2.0, 3.0, 0.5, 0.1]
    seen: list[float] = []

    def val_fn() -> float:
        seen.append(model.weight.item())
        return curve[len(seen) - 1]

    hist = fit_loop(
        model,
        model.parameters(),
        step,
        lambda e, rng: [torch.zeros(1)],
        val_fn,
        epochs=7,
        lr=0.1,
        weight_decay=0.0,
        patience=2,
        seed=0,
    )
    assert hist["epochs_run"] == 5 and hist["best_epoch"] == 2 and hist["best_val"] == 1.0
    assert hist["val_loss"] == curve[:5]
    assert hist["steps"] == 5 and len(hist["train_loss"]) == 5
    # The weights are those that were validated at epoch 2, not the last ones.
    assert model.weight.item() == seen[2] != seen[4]


def test_loss_decreases_towards_optimum():
    model, step = _quadratic_problem(target=3.0)
    hist = fit_loop(
        model,
        model.parameters(),
        step,
        lambda e, rng: [torch.zeros(1)] * 5,
        None,
        epochs=100,
        lr=0.1,
        weight_decay=0.0,
        patience=100,
        seed=0,
    )
    # Adam moves w by ~lr per step: the first epoch's 5 steps average (3 - 0.1 t)^2, t = 0..4.
    first = sum((3 - 0.1 * t) ** 2 for t in range(5)) / 5
    assert hist["train_loss"][0] == pytest.approx(first, abs=0.05)
    assert hist["train_loss"][-1] < 0.01
    assert model.weight.item() == pytest.approx(3.0, abs=0.1)


def test_nan_loss_raises_with_epoch_and_step():
    model, _ = _quadratic_problem()
    calls = {"n": 0}

    def step(batch: torch.Tensor) -> torch.Tensor:
        calls["n"] += 1
        value = float("nan") if calls["n"] == 5 else 1.0
        return model.weight.squeeze() * 0 + value

    with pytest.raises(TrainingError, match="epoch 1 step 1"):
        fit_loop(
            model,
            model.parameters(),
            step,
            lambda e, rng: [0, 1, 2],
            None,
            epochs=3,
            lr=0.1,
            weight_decay=0.0,
            patience=5,
            seed=0,
        )


def test_nan_validation_raises():
    model, step = _quadratic_problem()
    with pytest.raises(TrainingError, match="validation loss is nan at epoch 0"):
        fit_loop(
            model,
            model.parameters(),
            step,
            lambda e, rng: [0],
            lambda: float("nan"),
            epochs=3,
            lr=0.1,
            weight_decay=0.0,
            patience=5,
            seed=0,
        )


def _train_dropout_net(seed: int) -> torch.Tensor:
    with seeded(seed):
        net = nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.5), nn.Linear(8, 1))
    x = torch.linspace(-1, 1, 40).reshape(10, 4)

    def step(idx: torch.Tensor) -> torch.Tensor:
        return net(x[idx]).pow(2).mean()

    fit_loop(
        net,
        net.parameters(),
        step,
        lambda e, rng: minibatches(10, 3, rng),
        None,
        epochs=5,
        lr=0.01,
        weight_decay=0.0,
        patience=5,
        seed=seed,
    )
    return torch.cat([p.detach().flatten() for p in net.parameters()])


def test_deterministic_and_leaves_global_rng_alone():
    state = torch.get_rng_state()
    a, b, c = _train_dropout_net(0), _train_dropout_net(0), _train_dropout_net(1)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert torch.equal(torch.get_rng_state(), state)


def test_standardization_stats_constant_dim():
    x = np.array([[1.0, 5.0], [3.0, 5.0]], np.float32)
    mean, std = standardization_stats(x, x, chunk=1)
    assert mean.tolist() == [2.0, 5.0] and std.tolist() == [1.0, 1.0]  # const dim -> std 1


@pytest.mark.parametrize("foreach", [True, False])
def test_adamw_is_bit_identical_to_torch_and_skips_dynamo(foreach):
    import subprocess
    import sys

    from latentrm.head.train import AdamW

    def run(make_opt) -> list[torch.Tensor]:
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(7, 5), nn.ReLU(), nn.Linear(5, 1))
        x, y = torch.randn(32, 7), torch.randn(32, 1)
        opt = make_opt(model.parameters())
        for i in range(6):
            loss = ((model(x[i::2]) - y[i::2]) ** 2).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if i == 2:  # a parameter without a gradient is skipped, as torch does
                model[0].bias.grad = None
            opt.step()
        return [p.detach().clone() for p in model.parameters()]

    ours = run(lambda ps: AdamW(ps, lr=0.01, weight_decay=0.1, foreach=foreach))
    ref = run(lambda ps: torch.optim.AdamW(ps, lr=0.01, weight_decay=0.1, foreach=foreach))
    assert all(torch.equal(a, b) for a, b in zip(ours, ref, strict=True))
    # In a fresh interpreter a whole fit_loop leaves torch._dynamo unimported.
    code = (
        "import sys, torch; from latentrm.head.train import fit_loop; torch.set_num_threads(1)\n"
        "m = torch.nn.Linear(2, 1)\n"
        "fit_loop(m, m.parameters(), lambda b: m(b).pow(2).mean(), lambda e, r: [torch.ones(3, 2)],"
        " None, epochs=2, lr=0.1, weight_decay=0.1, patience=5, seed=0)\n"
        "print('torch._dynamo' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_small_models_train_on_one_thread_and_the_count_is_restored():
    from latentrm.runtime import torch_threads

    seen: list[int] = []
    small = nn.Linear(8, 1)  # 9 parameters
    big = nn.Linear(1000, 200, bias=False)  # 200,000: not small

    def step(model: nn.Module):
        def fn(batch: torch.Tensor) -> torch.Tensor:
            seen.append(torch.get_num_threads())
            return model.weight.sum() * 0 + model.weight.pow(2).mean()

        return fn

    with torch_threads(2):
        for model in (small, big):
            fit_loop(
                model,
                model.parameters(),
                step(model),
                lambda e, rng: [0],
                None,
                epochs=1,
                lr=0.1,
                weight_decay=0.0,
                patience=1,
                seed=0,
            )
        assert torch.get_num_threads() == 2
    assert seen == [1, 2]


def test_the_small_model_thread_note_is_logged_once_not_per_head(caplog, monkeypatch):
    """Ten heads trained at 2 torch threads: "trained with 1 torch thread(s)" once; every head's
    summary says what its number is ("best val loss")."""
    import latentrm.head.train as train
    from latentrm.runtime import torch_threads

    monkeypatch.setattr(train, "_NOTED", set())
    caplog.set_level("INFO", logger="latentrm.head.train")
    with torch_threads(2):
        for _ in range(10):
            model, step = _quadratic_problem()
            fit_loop(
                model,
                model.parameters(),
                step,
                lambda e, rng: [torch.zeros(1)],
                None,
                epochs=1,
                lr=0.1,
                weight_decay=0.0,
                patience=1,
                seed=0,
            )
    assert caplog.text.count("torch thread(s) instead of 2") == 1
    assert caplog.text.count("best val loss") == 10


def _scripted(vals: list[float], epochs: int, **kw) -> tuple[dict, nn.Module]:
    """fit_loop on a one-weight model whose steps add 1 to the weight (the gradient is zero, so
    AdamW moves nothing) and whose validation losses are `vals`, epoch by epoch."""
    model = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.zero_()
    it = iter(vals)

    def step(_batch):
        with torch.no_grad():
            model.weight.add_(1.0)
        return (model.weight * 0).sum()

    hist = fit_loop(
        model,
        model.parameters(),
        step,
        lambda e, rng: [0],
        lambda: next(it),
        epochs=epochs,
        lr=0.1,
        weight_decay=0.0,
        patience=2,
        seed=0,
        **kw,
    )
    return hist, model


def test_min_epochs_keeps_no_epoch_before_it_and_does_not_stop_before_it():
    rising = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]
    # Without it: best epoch 0, stopped at epoch 0 + patience 2 (3 epochs run), weight 1.
    hist, model = _scripted(rising, 8)
    assert (hist["best_epoch"], hist["epochs_run"]) == (0, 3)
    assert model.weight.item() == 1.0
    # min_epochs 4: epochs 0-2 are neither kept nor stopped on; epoch 3 (loss 4) is the first
    # candidate, epochs 4 and 5 do not improve: stop after epoch 5; the weight of epoch 3 is 4.
    hist, model = _scripted(rising, 8, min_epochs=4)
    assert (hist["best_epoch"], hist["best_val"], hist["epochs_run"]) == (3, 4.0, 6)
    assert model.weight.item() == 4.0
    with pytest.raises(TrainingError, match="min_epochs=9 exceeds epochs=8"):
        _scripted(rising, 8, min_epochs=9)


def test_weight_averaging_validates_and_keeps_the_running_mean():
    # The weight after epoch e is e + 1 (the steps go on from the last weights, not the mean),
    # so the running means are 1, 1.5, 2, 2.5; validation reads the averaged weight.
    model = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.zero_()
    seen = []

    def val():
        seen.append(model.weight.item())
        return -seen[-1]

    def step(_batch):
        with torch.no_grad():
            model.weight.add_(1.0)
        return (model.weight * 0).sum()

    hist = fit_loop(
        model,
        model.parameters(),
        step,
        lambda e, rng: [0],
        val,
        epochs=4,
        lr=0.1,
        weight_decay=0.0,
        patience=2,
        seed=0,
        average=True,
    )
    assert seen == [1.0, 1.5, 2.0, 2.5]
    assert hist["best_epoch"] == 3 and model.weight.item() == 2.5
    # Without early stopping the last mean is kept too.
    hist, model = _scripted([0.0] * 4, 4, average=True, early_stopping=False)
    assert model.weight.item() == 2.5
