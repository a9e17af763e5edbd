"""latentrm.hub.head: a head's files round-trip, and every corrupt file is one ModelError."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from latentrm.config import RewardConfig
from latentrm.errors import ConfigError
from latentrm.head.fitter import RewardHeadFitter
from latentrm.head.reward import EnsembleHead, RewardHead
from latentrm.hub.head import load_head, save_head
from latentrm.pairs import AugmentedPairs

FAST = RewardConfig(epochs=30, patience=5, batch_size=64, hidden=(32,))

pytestmark = pytest.mark.usefixtures("one_thread")


def test_save_load_round_trip(tmp_path, head_pairs):
    train, val, test, _ = head_pairs
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


def test_ensemble_round_trip(tmp_path):
    torch.manual_seed(0)
    members = [RewardHead(6, (4,), 0.0), RewardHead(6, (3,), 0.0)]
    members[1].set_standardization(np.full(6, 0.5), np.full(6, 2.0))
    head = EnsembleHead(members).eval()
    save_head(head, tmp_path / "e", {"best_epoch": 3})
    back = load_head(tmp_path / "e")
    assert isinstance(back, EnsembleHead) and [m.hidden for m in back.members] == [(4,), (3,)]
    x = np.random.default_rng(0).normal(size=(5, 6)).astype(np.float32)
    np.testing.assert_array_equal(back.score(x), head.score(x))


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
    "bad-header": (
        lambda f: (f / "head.safetensors").write_bytes(b"\x16" + bytes(7) + b"{" * 30),
        r"head\.safetensors: not a valid safetensors file \(the header is not JSON\)",
    ),
    # 180 data bytes (24 + 4 + 4 + 1 + 6 + 6 float32) cut by 40
    "truncated": (
        _truncate,
        r"head\.safetensors: .* does not fit the file's 140 data bytes "
        r"\(truncated\?\)",
    ),
    "empty": (
        lambda f: (f / "head.safetensors").write_bytes(b""),
        r"head\.safetensors: .*0 bytes, too short",
    ),
    "pickle": (_pickle, r"head\.safetensors: .*a pickle or torch checkpoint is not accepted"),
    "json-broken": (
        lambda f: (f / "head.json").write_text('{"format": '),
        r"head\.json: not valid JSON",
    ),
    "json-list": (
        lambda f: (f / "head.json").write_text("[]"),
        r"head\.json: expected a JSON object, got list",
    ),
    "missing-d": (_edit_json("head.json", lambda o: o.pop("d")), r"head\.json: missing 'd'"),
    "hidden-not-ints": (
        _edit_json("head.json", lambda o: o.update(hidden=["a"])),
        r"head\.json: 'hidden' must be a list of integers",
    ),
    "dropout-not-a-number": (
        _edit_json("head.json", lambda o: o.update(dropout="x")),
        r"head\.json: 'dropout' must be a number in \[0, 1\)",
    ),
    "d-is-bool": (
        _edit_json("head.json", lambda o: o.update(d=True)),
        r"head\.json: 'd' must be an integer >= 1, got True",
    ),
    "hidden-mismatch": (
        _edit_json("head.json", lambda o: o.update(hidden=[16])),
        r"head\.json: 'hidden' = \[16\] but head\.safetensors holds layers of "
        r"widths \[4, 1\]",
    ),
    "d-mismatch": (
        _edit_json("head.json", lambda o: o.update(d=7)),
        r"head\.json: 'd' = 7 but head\.safetensors holds 'mean' of shape \[6\]",
    ),
    "unknown-format": (
        _edit_json("head.json", lambda o: o.update(format="x/9")),
        r"head\.json: unknown format 'x/9'",
    ),
    "int-tensor": (
        _int_tensor,
        r"head\.safetensors: .*tensor 'mean' has dtype 'I64'; a head holds floats",
    ),
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
from latentrm.hub.head import load_head
p = Path({str(folder)!r}) / "head.json"
info = json.loads(p.read_text())
for field, value in (("d", 2 ** 40), ("hidden", [2 ** 40])):
    p.write_text(json.dumps({{**info, field: value}}))
    try:
        load_head(p.parent)
    except ModelError as e:
        print(field, "ModelError", str(e).split(": ", 1)[1])
"""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=repo_root
    )
    assert out.stdout.splitlines() == [
        "d ModelError 'd' = 1099511627776 but head.safetensors holds 'mean' of shape [384]",
        "hidden ModelError 'hidden' = [1099511627776] but head.safetensors holds layers of "
        "widths [8, 1]",
    ], out.stderr[-2000:]


@pytest.mark.parametrize(
    ("tensor", "change", "pattern"),
    [
        (
            "mlp.0.weight",
            lambda t: t.index_fill_(1, torch.tensor([2]), float("nan")),
            r"head\.safetensors: tensor 'mlp\.0\.weight' holds 4 NaN/Inf values",
        ),
        (
            "mlp.3.bias",
            lambda t: t.fill_(float("inf")),
            r"tensor 'mlp\.3\.bias' holds 1 NaN/Inf values",
        ),
        (
            "std",
            lambda t: t.index_fill_(0, torch.tensor([1, 5]), 0.0),
            r"head\.safetensors: standardisation 'std' is <= 0 at 2 dimensions \(first: 1\)",
        ),
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
