"""latentrm.recipes.publish and `latentrm export HEAD_DIR OUT [--push REPO]`: a run's head folder
becomes a Hugging Face model folder, optionally on the Hub (the Hub calls replaced here)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from latentrm.cli import main
from latentrm.head.reward import RewardHead
from latentrm.model import RewardModel
from latentrm.testing import cfg_for

pytestmark = pytest.mark.usefixtures("one_thread")


def head_folder(tmp_path: Path, model: Path, hidden: tuple[int, ...] = ()) -> Path:
    """What `latentrm run` writes per head (RewardModel.save), with a known linear head."""
    torch.manual_seed(0)
    head = RewardHead(32, hidden, 0.0).eval()
    d = tmp_path / "runs" / "x" / "heads" / "none-r0"
    RewardModel(
        cfg_for(model),
        head,
        training={"data": "/home/me/pairs.jsonl", "metrics": {"heldout_accuracy": 0.7}},
    ).save(d)
    return d


def test_export_a_run_head_natively(tmp_path, tiny_llama, capsys):
    head = head_folder(tmp_path, tiny_llama)
    out = tmp_path / "hf"
    assert main(["export", str(head), str(out), "--export", "native", "--license", "mit"]) == 0
    assert "wrote" in capsys.readouterr().out
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["architectures"] == ["LlamaForSequenceClassification"]
    card = (out / "README.md").read_text()
    assert "license: mit" in card and "/home/me" not in card and "pairs.jsonl" in card
    assert "heldout_accuracy" in card
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(out)
    rm = RewardModel.load(head)
    ids = rm.embedder.tokenize(
        [[{"role": "user", "content": "the quick brown fox"}]], ["jumps over the lazy dog"]
    )[0]
    with torch.no_grad():
        logit = float(model(input_ids=torch.tensor([ids])).logits[0, 0])
    want = rm.score(["the quick brown fox"], ["jumps over the lazy dog"])[0]
    assert np.isclose(logit + cfg["latentrm_offset"], want, atol=1e-4)


def test_a_refused_native_export_leaves_no_folder(tmp_path, tiny_llama, capsys):
    head = head_folder(tmp_path, tiny_llama, hidden=(4,))
    out = tmp_path / "hf"
    assert main(["export", str(head), str(out), "--export", "native"]) == 2
    assert "cannot export natively: the head is an MLP" in capsys.readouterr().err
    assert not out.exists()


def test_export_needs_head_and_out(tmp_path, capsys):
    assert main(["export", str(tmp_path)]) == 2
    assert "give HEAD_DIR OUT" in capsys.readouterr().err


def test_export_push_uploads_the_folder_whose_card_loads_the_repo(
    tmp_path, tiny_llama, monkeypatch
):
    from huggingface_hub import HfApi

    calls: dict = {}
    monkeypatch.setattr(
        HfApi, "create_repo", lambda self, repo_id, **kw: calls.setdefault("create", (repo_id, kw))
    )

    def upload_folder(self, *, repo_id, folder_path, **kw):
        calls["upload"] = (repo_id, folder_path)
        return "https://huggingface.co/me/rm/commit/1"

    monkeypatch.setattr(HfApi, "upload_folder", upload_folder)
    head = head_folder(tmp_path, tiny_llama)
    out = tmp_path / "hf"
    assert (
        main(["export", str(head), str(out), "--export", "none", "--push", "me/rm", "--private"])
        == 0
    )
    assert calls["create"] == ("me/rm", {"private": True, "exist_ok": True})
    assert calls["upload"] == ("me/rm", str(out))
    assert 'RewardModel.from_pretrained("me/rm")' in (out / "README.md").read_text()
    assert main(["export", str(head), str(tmp_path / "y"), "--push", "rm"]) == 2  # no owner
