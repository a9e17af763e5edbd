from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import torch

from latentrm.config import RewardConfig, SynthConfig, VAEConfig
from latentrm.errors import ConfigError, TrainingError
from latentrm.evaluate import pairwise_accuracy
from latentrm.pairs import AugmentedPairs
from latentrm.reward import (
    RewardHead,
    RewardHeadFitter,
    bradley_terry_loss,
    load_head,
    save_head,
)
from latentrm.synth import LensAugmenter
from latentrm.testing import toy_pairs

FAST = RewardConfig(epochs=30, patience=5, batch_size=64, hidden=(32,))


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def toy():
    """400 train, 100 validation, 2000 held-out pairs sharing one planted direction (d=32)."""
    c, r, w = toy_pairs(2500, 32, seed=0)
    return (c[:400], r[:400]), (c[400:500], r[400:500]), (c[500:], r[500:]), w


def test_bt_loss_known_values():
    # softplus(-(r+ - r-)) = log(1 + exp(-(r+ - r-)))
    assert bradley_terry_loss(torch.tensor([1.0]), torch.tensor([0.0])).item() == pytest.approx(
        math.log(1 + math.exp(-1))
    )  # 0.31326
    assert bradley_terry_loss(torch.zeros(3), torch.zeros(3)).item() == pytest.approx(math.log(2))
    mean = (math.log(1 + math.exp(-1)) + math.log(1 + math.e)) / 2  # margins +1 and -1
    assert bradley_terry_loss(torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])).item() == (
        pytest.approx(mean)
    )
    # Stable at huge margins: -1000 -> 1000 exactly, +1000 -> 0.
    big = bradley_terry_loss(torch.tensor([-500.0, 500.0]), torch.tensor([500.0, -500.0]))
    assert big.item() == pytest.approx(500.0)


def test_head_standardises_inputs():
    head = RewardHead(2, hidden=(), dropout=0.0)
    with torch.no_grad():
        head.mlp[0].weight.copy_(torch.tensor([[1.0, -2.0]]))
        head.mlp[0].bias.fill_(0.5)
    head.set_standardization(np.array([1.0, 1.0]), np.array([2.0, 0.5]))
    # ((3-1)/2) * 1 + ((2-1)/0.5) * -2 + 0.5 = 1 - 4 + 0.5
    assert head.score(np.array([[3.0, 2.0]])).tolist() == pytest.approx([-2.5])
    assert head(torch.zeros(4, 2)).shape == (4,)
    with pytest.raises(ConfigError, match=r"\(N, 2\)"):
        head.score(np.zeros((3, 5)))


def accuracy(head: RewardHead, pairs) -> float:
    return pairwise_accuracy(head.score(pairs[0]), head.score(pairs[1]))


def test_end_to_end_losses_fall_and_head_beats_chance(toy):
    train, val, test, w = toy
    c, r = train
    vae = VAEConfig(epochs=20, batch_size=64)
    lens = LensAugmenter(vae, SynthConfig(), seed=0, val_fraction=0.1).fit(c, r)
    aug = lens.augment(c, r, 4, seed=0)
    assert len(aug) == 400 * 5
    vae_hist = lens.vae_.history_
    assert vae_hist["val_loss"][vae_hist["best_epoch"]] < vae_hist["val_loss"][0]
    for data in (AugmentedPairs.originals(c, r), aug):
        fitter = RewardHeadFitter(FAST, seed=0).fit(data, val)
        head, h = fitter.head_, fitter.history_
        assert h["train_loss"][h["best_epoch"]] < h["train_loss"][0] < math.log(2) + 0.1
        assert h["best_val"] < math.log(2) - 0.05
        # The planted direction ranks 85% of pairs right (see toy_pairs); the head must get close.
        assert accuracy(head, test) > 0.7
        assert head.training is False


def test_best_weights_restored(toy):
    train, val, _, _ = toy
    fitter = RewardHeadFitter(FAST, seed=0).fit(AugmentedPairs.originals(*train), val)
    head = fitter.head_
    val_now = bradley_terry_loss(
        torch.from_numpy(head.score(val[0])), torch.from_numpy(head.score(val[1]))
    ).item()
    assert val_now == pytest.approx(fitter.history_["best_val"], rel=1e-6)


def test_standardisation_from_seed_rows_only(toy):
    train, val, _, _ = toy
    aug = AugmentedPairs.originals(*train, pool_rows=1000)
    aug.pool[800:] = 1e6  # synthetic rows must not leak into the statistics
    aug.add_pairs(np.array([800]), np.array([801]), np.array([0]))
    head = RewardHeadFitter(dataclasses.replace(FAST, epochs=1), seed=0).fit(aug, val).head_
    both = np.concatenate(train)
    assert np.allclose(head.mean.numpy(), both.mean(0), atol=1e-5)


def test_deterministic(toy):
    train, val, _, _ = toy
    data = AugmentedPairs.originals(*train)
    a = RewardHeadFitter(FAST, seed=0).fit(data, val).head_.state_dict()
    b = RewardHeadFitter(FAST, seed=0).fit(data, val).head_.state_dict()
    other = RewardHeadFitter(FAST, seed=1).fit(data, val).head_.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["mlp.0.weight"], other["mlp.0.weight"])


def test_nan_embedding_raises_training_error(toy):
    train, val, _, _ = toy
    c = train[0].copy()
    c[5, 3] = np.nan
    with pytest.raises(TrainingError, match="epoch 0 step 0"):
        RewardHeadFitter(FAST, seed=0).fit(AugmentedPairs.originals(c, train[1]), val)


def test_save_load_round_trip(tmp_path, toy):
    train, val, test, _ = toy
    fitter = RewardHeadFitter(FAST, seed=0).fit(AugmentedPairs.originals(*train), val)
    head = fitter.head_
    save_head(head, tmp_path / "h", fitter.history_)
    assert sorted(p.name for p in (tmp_path / "h").iterdir()) == ["head.json", "head.safetensors"]
    back = load_head(tmp_path / "h")
    assert np.array_equal(back.score(test[0]), head.score(test[0]))
    info = json.loads((tmp_path / "h" / "head.json").read_text())
    assert info["history"]["best_epoch"] == fitter.history_["best_epoch"]
    assert info["d"] == 32 and info["hidden"] == [32]
    with pytest.raises(ConfigError, match="not a reward head"):
        load_head(tmp_path)



def test_bradley_terry_loss_with_targets_margins_and_weights():
    rc, rr = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 0.0])
    plain = bradley_terry_loss(rc, rr)
    # margins 1 and 0: deltas 0 and 0 -> log 2 each
    assert bradley_terry_loss(rc, rr, margin=torch.tensor([1.0, 0.0])).item() == pytest.approx(
        math.log(2))
    # a soft target t: t*softplus(-d) + (1-t)*softplus(d); d = 1, t = 0.5 -> (0.3133 + 1.3133) / 2
    t = torch.tensor([0.5, 1.0])
    want = ((math.log1p(math.exp(-1)) + math.log1p(math.e)) / 2 + math.log(2)) / 2
    assert bradley_terry_loss(rc, rr, target=t).item() == pytest.approx(want, rel=1e-6)
    assert bradley_terry_loss(rc, rr, target=torch.ones(2)).item() == pytest.approx(plain.item())
    # weights (3, 1): (3 * 0.3133 + 1 * log 2) / 4
    want = (3 * math.log1p(math.exp(-1)) + math.log(2)) / 4
    got = bradley_terry_loss(rc, rr, weight=torch.tensor([3.0, 1.0])).item()
    assert got == pytest.approx(want, rel=1e-6)


def test_synthetic_pairs_weigh_lambda_and_soft_labels_reach_the_loss(toy, monkeypatch):
    import latentrm.reward as R

    train, val, _, _ = toy
    aug = AugmentedPairs.originals(*train, pool_rows=802)
    aug.pool[800:] = aug.pool[:2]
    aug.add_pairs(np.array([800]), np.array([801]), np.array([0]))
    seen = {}
    orig = R.bradley_terry_loss

    def spy(rc, rr, target=None, margin=None, weight=None):
        seen.setdefault("weight", weight)
        return orig(rc, rr, target, margin, weight)

    monkeypatch.setattr(R, "bradley_terry_loss", spy)
    cfg = dataclasses.replace(FAST, epochs=1, batch_size=1000, synthetic_weight=0.25)
    RewardHeadFitter(cfg, seed=0).fit(aug, val)
    w = seen["weight"].numpy()
    assert sorted(np.unique(w).tolist()) == [0.25, 1.0] and (w == 0.25).sum() == 1


def test_fixed_epochs_train_exactly_that_many(toy):
    train, val, _, _ = toy
    cfg = dataclasses.replace(FAST, epochs=7, patience=1, early_stopping=False)
    h = RewardHeadFitter(cfg, seed=0).fit(AugmentedPairs.originals(*train), val).history_
    assert h["epochs_run"] == 7 and h["best_epoch"] == 6 and len(h["val_loss"]) == 7


def test_ensemble_is_the_mean_of_heads_each_missing_one_fold(toy, tmp_path):
    from latentrm.reward import EnsembleHead

    train, val, test, _ = toy
    cfg = dataclasses.replace(FAST, ensemble=4)
    fit = RewardHeadFitter(cfg, seed=0).fit(AugmentedPairs.originals(*train), val)
    head = fit.head_
    assert isinstance(head, EnsembleHead) and len(head.members) == 4
    assert len(fit.history_["members"]) == 4
    each = np.stack([m.score(test[0]) for m in head.members])
    np.testing.assert_allclose(head.score(test[0]), each.mean(0), atol=1e-5)
    np.testing.assert_allclose(head.spread(test[0]), each.std(0), atol=1e-5)
    # member k standardises with the 3/4 of the seeds it trained on: the means differ
    means = [m.mean.numpy() for m in head.members]
    assert not np.allclose(means[0], means[1])
    assert accuracy(head, test) > 0.7
    save_head(head, tmp_path / "e", fit.history_)
    back = load_head(tmp_path / "e")
    assert isinstance(back, EnsembleHead)
    np.testing.assert_array_equal(back.score(test[0]), head.score(test[0]))


# --- loading a head: every corrupt file is one ModelError naming it (issue 16 items 4, 5) --------
def _saved_head(folder, d=6, hidden=(4,), seed=0):
    torch.manual_seed(seed)
    head = RewardHead(d, hidden, 0.0)
    head.set_standardization(np.zeros(d), np.full(d, 2.0))
    save_head(head, folder)
    return folder


def _edit_json(name, fn):
    def apply(folder):
        p = folder / name
        obj = json.loads(p.read_text())
        fn(obj)
        p.write_text(json.dumps(obj))

    return apply


def _pickle(folder):
    import io

    buf = io.BytesIO()
    torch.save({"mlp.0.weight": torch.zeros(4, 6)}, buf)  # a torch checkpoint is a zip of pickles
    (folder / "head.safetensors").write_bytes(buf.getvalue())


def _int_tensor(folder):
    from safetensors.torch import save_file

    save_file({"mean": torch.zeros(6, dtype=torch.int64)}, str(folder / "head.safetensors"))


def _truncate(folder):
    p = folder / "head.safetensors"
    p.write_bytes(p.read_bytes()[:-40])  # header intact, data short: offsets point past the end


CORRUPT_HEADS = {
    # case: (mutation, regex the error must match)
    "bad-header": (lambda f: (f / "head.safetensors").write_bytes(b"\x16" + bytes(7) + b"{" * 30),
                   r"head\.safetensors: not a valid safetensors file \(the header is not JSON\)"),
    # 180 data bytes (24 + 4 + 4 + 1 + 6 + 6 float32) cut by 40
    "truncated": (_truncate, r"head\.safetensors: .* does not fit the file's 140 data bytes "
                             r"\(truncated\?\)"),
    "empty": (lambda f: (f / "head.safetensors").write_bytes(b""),
              r"head\.safetensors: .*0 bytes, too short"),
    "pickle": (_pickle, r"head\.safetensors: .*a pickle or torch checkpoint is not accepted"),
    "json-broken": (lambda f: (f / "head.json").write_text('{"format": '),
                    r"head\.json: not valid JSON"),
    "json-list": (lambda f: (f / "head.json").write_text("[]"),
                  r"head\.json: expected a JSON object, got list"),
    "missing-d": (_edit_json("head.json", lambda o: o.pop("d")), r"head\.json: missing 'd'"),
    "hidden-not-ints": (_edit_json("head.json", lambda o: o.update(hidden=["a"])),
                        r"head\.json: 'hidden' must be a list of integers"),
    "dropout-not-a-number": (_edit_json("head.json", lambda o: o.update(dropout="x")),
                             r"head\.json: 'dropout' must be a number in \[0, 1\)"),
    "d-is-bool": (_edit_json("head.json", lambda o: o.update(d=True)),
                  r"head\.json: 'd' must be an integer >= 1, got True"),
    "hidden-mismatch": (_edit_json("head.json", lambda o: o.update(hidden=[16])),
                        r"head\.json: 'hidden' = \[16\] but head\.safetensors holds layers of "
                        r"widths \[4, 1\]"),
    "d-mismatch": (_edit_json("head.json", lambda o: o.update(d=7)),
                   r"head\.json: 'd' = 7 but head\.safetensors holds 'mean' of shape \[6\]"),
    "unknown-format": (_edit_json("head.json", lambda o: o.update(format="x/9")),
                       r"head\.json: unknown format 'x/9'"),
    "int-tensor": (_int_tensor,
                   r"head\.safetensors: .*tensor 'mean' has dtype 'I64'; a head holds floats"),
}


@pytest.mark.parametrize("case", list(CORRUPT_HEADS))
def test_corrupt_head_is_one_model_error_naming_the_file(tmp_path, case):
    from latentrm.errors import ModelError

    folder = _saved_head(tmp_path / "h")
    mutate, pattern = CORRUPT_HEADS[case]
    mutate(folder)
    with pytest.raises(ModelError, match=pattern) as info:
        load_head(folder)
    assert "\n" not in str(info.value) and str(folder) in str(info.value)


def test_ensemble_member_sizes_are_checked_against_the_file(tmp_path):
    from latentrm.errors import ModelError
    from latentrm.reward import EnsembleHead

    torch.manual_seed(0)
    save_head(EnsembleHead([RewardHead(6, (4,), 0.0), RewardHead(6, (3,), 0.0)]), tmp_path)
    _edit_json("head.json", lambda o: o["members"][1].update(hidden=[4]))(tmp_path)
    with pytest.raises(ModelError, match=r"members\[1\]: 'hidden' = \[4\] .* widths \[3, 1\]"):
        load_head(tmp_path)


def test_absurd_sizes_are_refused_before_anything_is_allocated(tmp_path, repo_root):
    """head.json asking for a 2^40-wide layer (a 4 TB `mean`, a 1.7 PB weight): the sizes are
    checked against the file's header first. Run under a 4 GiB address-space cap, where any
    attempt to allocate would fail with a MemoryError/RuntimeError instead of this ModelError."""
    import subprocess
    import sys

    folder = _saved_head(tmp_path / "h", d=384, hidden=(8,))
    code = f"""
import json, resource, sys
from pathlib import Path
resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))
from latentrm.errors import ModelError
from latentrm.reward import load_head
p = Path({str(folder)!r}) / "head.json"
info = json.loads(p.read_text())
for field, value in (("d", 2 ** 40), ("hidden", [2 ** 40])):
    p.write_text(json.dumps({{**info, field: value}}))
    try:
        load_head(p.parent)
    except ModelError as e:
        print(field, "ModelError", str(e).split(": ", 1)[1])
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300, cwd=repo_root)
    assert out.stdout.splitlines() == [
        "d ModelError 'd' = 1099511627776 but head.safetensors holds 'mean' of shape [384]",
        "hidden ModelError 'hidden' = [1099511627776] but head.safetensors holds layers of "
        "widths [8, 1]",
    ], out.stderr[-2000:]


@pytest.mark.parametrize(
    ("tensor", "change", "pattern"),
    [
        ("mlp.0.weight", lambda t: t.index_fill_(1, torch.tensor([2]), float("nan")),
         r"head\.safetensors: tensor 'mlp\.0\.weight' holds 4 NaN/Inf values"),
        ("mlp.3.bias", lambda t: t.fill_(float("inf")),
         r"tensor 'mlp\.3\.bias' holds 1 NaN/Inf values"),
        ("std", lambda t: t.index_fill_(0, torch.tensor([1, 5]), 0.0),
         r"head\.safetensors: standardisation 'std' is <= 0 at 2 dimensions \(first: 1\)"),
        ("std", lambda t: t.fill_(-1.0), r"'std' is <= 0 at 6 dimensions \(first: 0\)"),
    ],
    ids=["nan-weight", "inf-bias", "zero-std", "negative-std"],
)
def test_head_that_would_score_nan_is_refused_at_load(tmp_path, tensor, change, pattern):
    from safetensors.torch import load_file, save_file

    from latentrm.errors import ModelError

    folder = _saved_head(tmp_path / "h")
    tensors = load_file(folder / "head.safetensors")
    tensors[tensor] = change(tensors[tensor]).contiguous()
    save_file(tensors, str(folder / "head.safetensors"))
    with pytest.raises(ModelError, match=pattern):
        load_head(folder)
