"""latentrm.hub.folder: every file of a model folder is a regular file inside the folder (no
symlinks out, no devices, no FIFOs), JSON files are size-capped, and a run head's folder is
checked against the training values latentrm.json records (issue 23 items 2, 3, 5)."""

from __future__ import annotations

import json
import os
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import pytest
import torch

from latentrm.config import EmbedConfig
from latentrm.errors import ConfigError, ModelError
from latentrm.head.reward import RewardHead
from latentrm.model import RewardModel


class TwoDim:
    """An embedder giving e = [len(response), 1]."""

    dim = 2

    def embed(self, prompts, responses):
        import numpy as np

        return np.array([[len(r), 1.0] for r in responses], np.float32).reshape(-1, 2)


def _saved(folder: Path, **cfg) -> Path:
    head = RewardHead(2, hidden=(), dropout=0.0)
    with torch.no_grad():
        head.mlp[0].weight.fill_(1.0)
        head.mlp[0].bias.zero_()
    RewardModel(EmbedConfig(model="fake", **cfg), head.eval()).save(folder)
    return folder


@pytest.fixture
def alarm() -> Iterator[None]:
    """Fail instead of hanging: a read of a FIFO blocks until a writer opens it."""

    def timeout(*_):
        raise TimeoutError("blocked reading the model folder")

    old = signal.signal(signal.SIGALRM, timeout)
    signal.alarm(10)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def _link(target: str | Path):
    def apply(path: Path) -> None:
        path.unlink()
        path.symlink_to(target)

    return apply


def _fifo(path: Path) -> None:
    path.unlink()
    os.mkfifo(path)


def _outside(path: Path) -> None:
    other = path.parent.parent / ("elsewhere-" + path.name)
    shutil.copy(path, other)
    _link(other)(path)


FOLDER_ATTACKS = {
    "head-json-dev-zero": ("head.json", _link("/dev/zero"), "not a regular file"),
    "info-dev-urandom": ("latentrm.json", _link("/dev/urandom"), "not a regular file"),
    "embed-config-fifo": ("embed_config.json", _fifo, "not a regular file"),
    "head-json-fifo": ("head.json", _fifo, "not a regular file"),
    "weights-dev-zero": ("head.safetensors", _link("/dev/zero"), "not a regular file"),
    "weights-out-of-the-folder": (
        "head.safetensors",
        _outside,
        r"a link to .*elsewhere-head\.safetensors, outside the folder",
    ),
    "info-out-of-the-folder": (
        "latentrm.json",
        _outside,
        r"a link to .*elsewhere-latentrm\.json, outside the folder",
    ),
}


@pytest.mark.parametrize("case", list(FOLDER_ATTACKS))
def test_model_folder_files_must_be_regular_files_inside_the_folder(tmp_path, alarm, case):
    name, attack, why = FOLDER_ATTACKS[case]
    folder = _saved(tmp_path / "rm")
    attack(folder / name)
    with pytest.raises(ModelError, match=rf"^{folder / name}: {why}") as info:
        RewardModel.load(folder, embedder=TwoDim())
    assert "\n" not in str(info.value)


def test_json_files_are_size_capped(tmp_path, monkeypatch):
    import latentrm.hub.head as head_files

    monkeypatch.setattr(head_files, "MAX_JSON_BYTES", 4096, raising=False)
    folder = _saved(tmp_path / "rm")
    info = json.loads((folder / "latentrm.json").read_text())
    info["padding"] = "x" * 5000
    (folder / "latentrm.json").write_text(json.dumps(info))
    with pytest.raises(ModelError, match=r"latentrm\.json: \d+ bytes, more than the 4096 a "):
        RewardModel.load(folder, embedder=TwoDim())


def test_links_inside_the_folder_and_a_hub_cache_snapshot_load(tmp_path):
    folder = _saved(tmp_path / "rm")
    os.replace(folder / "head.json", folder / "head-v1.json")
    (folder / "head.json").symlink_to("head-v1.json")
    assert RewardModel.load(folder, embedder=TwoDim()).score(["q"], ["abc"]).tolist() == [4.0]
    # The Hugging Face cache: snapshots/<commit>/<file> -> ../../blobs/<sha>, outside the
    # snapshot folder but inside the repo's cache folder, which from_pretrained trusts.
    repo = tmp_path / "hub" / "models--me--rm"
    snap = repo / "snapshots" / "abc123"
    (repo / "blobs").mkdir(parents=True)
    snap.mkdir(parents=True)
    for f in _saved(tmp_path / "src").iterdir():
        shutil.copy(f, repo / "blobs" / f.name)
        (snap / f.name).symlink_to(Path("..", "..", "blobs", f.name))
    import latentrm.hub.pretrained as M

    with mock.patch.object(M, "snapshot_download", return_value=str(snap)):
        rm = RewardModel.from_pretrained("me/rm", embedder=TwoDim())
    assert rm.score(["q"], ["abc"]).tolist() == [4.0]
    with pytest.raises(ModelError, match="outside the folder"):  # the same folder, loaded as such
        RewardModel.load(snap, embedder=TwoDim())


# --- a run head's folder is checked like a save_pretrained folder (issue 23 item 3) ------------
EDITS = {"layer": 3, "pooling": "last", "max_length": 64, "text_format": "plain"}


@pytest.mark.parametrize("key", list(EDITS))
def test_an_edited_embed_config_is_refused_when_latentrm_json_records_training(tmp_path, key):
    """`latentrm run` writes each head with RewardModel.save: latentrm.json records the embed
    settings of training (unresolved: the embedder is not loaded). Editing embed_config.json
    used to change the scores silently."""
    folder = _saved(tmp_path / "rm", layer=-1, pooling="mean", max_length=128, text_format="chat")
    rec = json.loads((folder / "latentrm.json").read_text())["embedder"]
    assert (rec["layer"], rec["pooling"], rec["max_length"], rec["text_format"]) == (
        -1,
        "mean",
        128,
        "chat",
    )
    cfg = json.loads((folder / "embed_config.json").read_text())
    (folder / "embed_config.json").write_text(json.dumps({**cfg, key: EDITS[key]}))
    with pytest.raises(
        ModelError,
        match=rf"^{folder / 'embed_config.json'}: {key}="
        rf"{EDITS[key]!r} but the head was trained with "
        rf"{key}={rec[key]!r} \(latentrm\.json\)",
    ) as info:
        RewardModel.load(folder, embedder=TwoDim())
    assert "\n" not in str(info.value)
    (folder / "embed_config.json").write_text(json.dumps(cfg))  # as written: loads
    with pytest.raises(ModelError, match=rf"embed_overrides: {key}="):  # nor by an override
        RewardModel.load(folder, embedder=TwoDim(), embed_overrides={key: EDITS[key]})
    rm = RewardModel.load(folder, embedder=TwoDim(), embed_overrides={"batch_size": 3})
    assert rm.embed_cfg.batch_size == 3


IDENTITY_DAMAGE = {
    "not-an-object": ("model_identity", ["x"], r"'embedder\.model_identity' must be an object"),
    "files-not-an-object": (
        "model_identity",
        {"files": "abc"},
        r"'embedder\.model_identity\.files' must be an object of file ",
    ),
    "commit-not-a-string": (
        "model_identity",
        {"commit": 5},
        r"'embedder\.model_identity\.commit' must be a string",
    ),
    "layer-a-list": ("layer", [1, 2], r"'embedder\.layer' must be an integer or 'mean'"),
    "pooling-a-number": ("pooling", 3, r"'embedder\.pooling' must be a string"),
}


@pytest.mark.parametrize("case", list(IDENTITY_DAMAGE))
def test_a_malformed_identity_record_is_one_line(tmp_path, case):
    key, value, pattern = IDENTITY_DAMAGE[case]
    folder = _saved(tmp_path / "rm")
    info = json.loads((folder / "latentrm.json").read_text())
    info["embedder"][key] = value
    (folder / "latentrm.json").write_text(json.dumps(info))
    with pytest.raises(ModelError, match=rf"^{folder / 'latentrm.json'}: {pattern}"):
        RewardModel.load(folder, embedder=TwoDim())


def test_embed_overrides_must_be_a_mapping(tmp_path):
    folder = _saved(tmp_path / "rm")
    with pytest.raises(
        ConfigError,
        match=r"embed_overrides must be a dict of embed config "
        r"fields, got str",
    ):
        RewardModel.load(folder, embedder=TwoDim(), embed_overrides="device=cpu")
