"""latentrm.recipes.run: `latentrm run` end to end on tiny data: every artifact, Best-of-N on
candidate sets, the saved reward models.

The embedder is replaced by planted embeddings (the `fake_embed` fixture): each text maps to seeded
noise plus a quality signal, so a reward head that learns anything must rank held-out pairs far
above chance. Everything after embedding is the real code.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from latentrm import cli
from latentrm.config import load_config
from latentrm.evaluate import pairwise_accuracy
from latentrm.hub.head import load_head
from latentrm.recipes.prepare import prepare_data
from latentrm.recipes.run import run_pipeline
from latentrm.testing import small_overrides


def test_run_pipeline_pairs_writes_every_artifact(
    hh_file: Path, tmp_path: Path, fake_embed: dict
) -> None:
    out = tmp_path / "run"
    cfg = load_config(None, small_overrides(hh_file, out))
    m = run_pipeline(cfg)
    # only the 80 seed + 40 test pairs of the 120 are embedded
    assert fake_embed["texts"] == 2 * 120 and m["data"]["pairs_embedded"] == 120
    assert m["split"] == {
        "split_seed": 0,
        "n_train": 64,
        "n_val": 16,
        "n_test": 40,
        "bon_prompts": 0,
    }
    rows = {r["method"]: r for r in m["results"]}
    assert list(rows) == ["none", "direct", "gaussian", "lens"]
    assert rows["none"]["ratio"] == 0 and rows["lens"]["ratio"] == 2
    assert rows["none"]["n_pairs_trained"] == 64 and rows["lens"]["n_pairs_trained"] == 64 * 3
    assert rows["lens"]["n_synthetic"] == 128 and rows["lens"]["params_augmenter"] > 0
    assert rows["none"]["params_augmenter"] == 0
    for r in rows.values():  # planted signal: every method ranks held-out pairs well
        assert r["accuracy"] >= 0.85, r
        assert r["accuracy_lo"] <= r["accuracy"] <= r["accuracy_hi"]
    assert np.isnan(rows["none"]["fidelity"]) and rows["lens"]["fidelity"] > 0.6
    # artifacts: resolved config, strict-JSON metrics, table, loadable heads
    assert load_config(out / "config.yaml") == cfg
    strict = json.loads(
        (out / "metrics.json").read_text(),
        parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"),
    )
    assert strict["results"][3]["accuracy"] == rows["lens"]["accuracy"]
    assert strict["results"][0]["fidelity"] is None
    table = (out / "results.md").read_text()
    assert table == m["table"] and table.count("\n") == 6 and "| lens | 2 |" in table
    # a saved head reproduces the reported held-out accuracy
    data = prepare_data(cfg)
    test = data.splits[0].test
    fn = load_head(rows["lens"]["head_dir"]).score
    acc = pairwise_accuracy(fn(data.chosen[test]), fn(data.rejected[test]))
    assert acc == pytest.approx(rows["lens"]["accuracy"])


def test_candidates_split_by_instruction_with_best_of_n(
    cand_file: Path, tmp_path: Path, fake_embed: dict
) -> None:
    out = tmp_path / "alpaca"
    cfg = load_config(
        None,
        small_overrides(
            cand_file,
            out,
            "data.n_seed=60",
            "data.n_test=null",
            "data.min_gold_gap=0.3",
            "eval.candidate_pool=6",
            "eval.best_of_n=4",
            "eval.bon_draws=3",
            "methods=[none,lens]",
        ),
    )
    data = prepare_data(cfg)
    assert data.mode == "candidates" and fake_embed["texts"] == 40 * 6  # pool of 6, embedded once
    sp = data.splits[0]
    set_of = np.array([p.id.rsplit(":", 1)[0] for p in data.ds])
    train_sets = set(set_of[np.r_[sp.train, sp.val]])
    test_sets = set(set_of[sp.test])
    bon_sets = {data.sets[i].id for i in sp.bon_sets}
    assert len(bon_sets) == 20 and test_sets <= bon_sets and not train_sets & bon_sets
    assert len(sp.train) + len(sp.val) == 60
    m = run_pipeline(cfg)
    for r in m["results"]:
        assert r["bon_prompts"] == 20 and r["bon_draws"] == 3
        assert r["bon_floor"] < r["bon_picked"] <= r["bon_ceiling"]
        # the planted gold signal is learned: the pick's 95% CI lies above the random pick
        assert r["bon_picked_lo"] > r["bon_floor"] and r["bon_gap_closed"] > 0
        assert r["spearman_prompt"] > 0.3 and r["spearman_prompts"] == 20
    # floor/ceiling depend on the draws only, which are the same for every method
    a, b = m["results"]
    assert (a["bon_floor"], a["bon_ceiling"]) == (b["bon_floor"], b["bon_ceiling"])


def test_cli_run_json(
    hh_file: Path,
    tmp_path: Path,
    fake_embed: dict,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    out = tmp_path / "cli"
    yaml_path = tmp_path / "c.yaml"
    yaml_path.write_text("methods: [none, gaussian]\n")
    code = cli.main(["-q", "run", str(yaml_path), *small_overrides(hh_file, out), "--json"])
    assert code == 0
    printed = json.loads(capsys.readouterr().out)
    assert [r["method"] for r in printed["results"]] == ["none", "gaussian"]
    assert printed == json.loads((out / "metrics.json").read_text())
    # more seed pairs than the file holds: a warning that names both, then every pair is used
    args = small_overrides(hh_file, tmp_path / "all", "data.n_seed=5000", "data.n_test=10")
    code = cli.main(["-q", "run", str(yaml_path), *args])
    assert code == 0 and "data.n_seed=5000 but the data has" in caplog.text
    args = small_overrides(hh_file, tmp_path / "none", "data.n_test=5000")
    assert cli.main(["-q", "run", str(yaml_path), *args]) == 2
    assert "data.n_test=5000 leaves no seed pairs" in capsys.readouterr().err


def test_run_saves_reward_models_that_load(hh_file: Path, tmp_path: Path, fake_embed: dict) -> None:
    from latentrm.hub.head import load_head
    from latentrm.model import RewardModel

    out = tmp_path / "run"
    cfg = load_config(None, small_overrides(hh_file, out, "methods=[none]"))
    head_dir = Path(run_pipeline(cfg)["results"][0]["head_dir"])
    rm = RewardModel.load(head_dir)  # head + embed config: scores raw text with cfg.embed
    assert rm.embed_cfg == cfg.embed
    x = np.random.default_rng(0).normal(size=(3, rm.head.d)).astype(np.float32)
    np.testing.assert_array_equal(rm.head.score(x), load_head(head_dir).score(x))


class _PlantedEmbedder:
    """Stands in for the embedder when a run head is saved (it is never asked to embed here)."""

    dim = 12  # conftest.PLANTED_DIM


def test_run_heads_record_their_training_and_get_a_real_card(
    hh_file: Path, tmp_path: Path, fake_embed: dict
) -> None:
    """What latentrm.fit records, plus held-out accuracy and the config: the card of a run head
    saved with save_pretrained says what it was trained on and how well it did."""
    from latentrm.model import RewardModel

    out = tmp_path / "run"
    cfg = load_config(None, small_overrides(hh_file, out, "methods=[none,lens]"))
    rows = {r["method"]: r for r in run_pipeline(cfg)["results"]}
    lens = RewardModel.load(rows["lens"]["head_dir"], embedder=_PlantedEmbedder())
    rec = lens.training
    # 120 pairs: 80 seed pairs (64 trained on + 16 validation), 40 held out; ratio 2 adds 128
    assert {
        k: rec[k]
        for k in (
            "data",
            "n_pairs",
            "n_val",
            "n_test",
            "split_seed",
            "method",
            "ratio",
            "pairs_trained",
            "n_synthetic",
            "margin",
            "seed",
        )
    } == {
        "data": str(hh_file),
        "n_pairs": 80,
        "n_val": 16,
        "n_test": 40,
        "split_seed": 0,
        "method": "lens",
        "ratio": 2,
        "pairs_trained": 192,
        "n_synthetic": 128,
        "margin": False,
        "seed": 0,
    }
    m = rec["metrics"]
    assert m["heldout_accuracy"] == round(rows["lens"]["accuracy"], 4)
    assert m["heldout_accuracy_lo"] == round(rows["lens"]["accuracy_lo"], 4)
    assert m["heldout_accuracy_hi"] == round(rows["lens"]["accuracy_hi"], 4)
    assert m["val_accuracy"] == round(rows["lens"]["val_accuracy"], 4)
    assert set(m) >= {"val_bt_loss", "best_epoch"}
    # the config it was trained with: the run's, at this head's ratio
    assert rec["config"]["vae"]["latent_dim"] == 4 and rec["config"]["ratios"] == [2]
    none = RewardModel.load(rows["none"]["head_dir"], embedder=_PlantedEmbedder()).training
    assert (none["method"], none["ratio"], none["pairs_trained"], none["n_synthetic"]) == (
        "none",
        0,
        64,
        0,
    )
    lens.save_pretrained(tmp_path / "card", export="none")
    card = (tmp_path / "card" / "README.md").read_text()
    assert "Not recorded" not in card
    # a card is public: the data file by its name, never this machine's folders
    assert (
        f"Trained on `{hh_file.name}` (80 labelled pairs, 16 of them held out for early "
        "stopping); evaluated on 40 further held-out pairs."
    ) in card
    assert str(tmp_path) not in card
    assert "augmented with `lens` at ratio 2" in card
    assert f"| heldout_accuracy | {m['heldout_accuracy']} |" in card
    assert "```yaml\n" in card and "  latent_dim: 4\n" in card


# --- the run folder is all-or-nothing (issue 16 item 3) -------------------------------------------
def _snapshot(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and "cache" not in p.parts
    }


def _siblings(out: Path) -> list[str]:
    return sorted(p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}."))


@pytest.fixture
def finished_run(hh_file: Path, tmp_path: Path, fake_embed: dict) -> Path:
    out = tmp_path / "run"
    run_pipeline(load_config(None, small_overrides(hh_file, out, "methods=[none,direct]")))
    assert sorted(p.name for p in (out / "heads").iterdir()) == ["direct-r2", "none-r0"]
    return out


def test_failed_run_leaves_the_earlier_run_untouched(
    finished_run: Path, hh_file: Path, tmp_path: Path
) -> None:
    from latentrm.errors import DataError

    before = _snapshot(finished_run)
    cfg = load_config(
        None,
        small_overrides(
            hh_file, finished_run, "methods=[none]", f"data.path={tmp_path / 'missing.jsonl'}"
        ),
    )
    with pytest.raises(DataError, match="file not found"):
        run_pipeline(cfg)
    assert _snapshot(finished_run) == before  # not even config.yaml was replaced
    assert _siblings(finished_run) == []


def test_crash_while_saving_heads_leaves_no_mixed_folder(
    finished_run: Path, hh_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Disk full while the second head is saved: the earlier run stays whole."""
    import errno

    from latentrm.model import RewardModel

    before = _snapshot(finished_run)
    real, calls = RewardModel.save, []

    def save(self: RewardModel, out_dir: Path) -> None:
        calls.append(out_dir)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(self, out_dir)

    monkeypatch.setattr(RewardModel, "save", save)
    cfg = load_config(
        None, small_overrides(hh_file, finished_run, "methods=[none,gaussian]", "seed=1")
    )
    with pytest.raises(OSError, match="No space left"):
        run_pipeline(cfg)
    assert len(calls) == 2 and _snapshot(finished_run) == before
    assert _siblings(finished_run) == []  # the temporary folder is gone too


def test_crash_in_a_fresh_out_dir_leaves_nothing(
    hh_file: Path, tmp_path: Path, fake_embed: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    from latentrm.recipes import run as run_module

    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("killed mid-run")

    monkeypatch.setattr(run_module, "metrics_table", boom)  # after every head is saved
    out = tmp_path / "fresh"
    cfg = load_config(
        None, small_overrides(hh_file, out, "methods=[none]", f"cache_dir={tmp_path}/cache")
    )
    with pytest.raises(RuntimeError, match="killed mid-run"):
        run_pipeline(cfg)
    assert not out.exists() and _siblings(out) == []


def test_rerun_replaces_the_run_and_keeps_what_is_not_its_own(
    finished_run: Path, hh_file: Path
) -> None:
    """Fewer methods: no stale head survives; the embedding cache this config keeps under
    out_dir and a user's notes are carried over."""
    import stat

    (finished_run / "notes.txt").write_text("mine\n")
    cache_files = sorted(p.name for p in (finished_run / "cache").rglob("*"))
    m = run_pipeline(load_config(None, small_overrides(hh_file, finished_run, "methods=[none]")))
    assert sorted(p.name for p in (finished_run / "heads").iterdir()) == ["none-r0"]
    assert [r["head_dir"] for r in m["results"]] == [str(finished_run / "heads" / "none-r0")]
    assert json.loads((finished_run / "metrics.json").read_text())["results"][0]["head_dir"] == (
        str(finished_run / "heads" / "none-r0")
    )
    assert (finished_run / "notes.txt").read_text() == "mine\n"
    assert sorted(p.name for p in (finished_run / "cache").rglob("*")) == cache_files
    assert _siblings(finished_run) == []
    umask = os.umask(0)
    os.umask(umask)  # the folder has the user's permissions, not mkdtemp's 0o700
    assert stat.S_IMODE(finished_run.stat().st_mode) == 0o777 & ~umask


def test_out_dir_that_is_not_a_run_folder_is_refused(
    hh_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from latentrm.errors import ConfigError

    def cfg(out: Path):
        return load_config(None, small_overrides(hh_file, out, f"cache_dir={tmp_path}/c"))

    taken = tmp_path / "taken"
    taken.write_text("a file\n")
    with pytest.raises(ConfigError, match=rf"^{taken}: exists and is not a folder"):
        run_pipeline(cfg(taken))
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("x")
    with pytest.raises(
        ConfigError,
        match=rf"^out_dir={mine} holds files but no latentrm run "
        r"\(thesis\.tex\); give a new or empty folder$",
    ):
        run_pipeline(cfg(mine))
    monkeypatch.chdir(mine)
    with pytest.raises(ConfigError, match=r"^out_dir=\. is the working directory"):
        run_pipeline(cfg(Path(".")))
    assert taken.read_text() == "a file\n" and os.listdir(mine) == ["thesis.tex"]


def test_small_data_warnings_name_the_split_and_head(
    hh_file: Path, tmp_path: Path, fake_embed: dict, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    cfg = load_config(
        None,
        small_overrides(
            hh_file, tmp_path / "run", "methods=[none]", "reward.epochs=2", "reward.patience=5"
        ),
    )
    with caplog.at_level(logging.WARNING, logger="latentrm.recipes"):
        run_pipeline(cfg)
    said = [m for m in caplog.messages if m.startswith(("split 0:", "none ratio 0"))]
    assert said == [
        "split 0: the validation split has 16 pairs (< 50): early stopping and the choices made "
        "on validation are noisy; raise data.n_seed or data.val_fraction",
        "none ratio 0 (split 0): hit its epoch cap reward.epochs=2 before early stopping ended it "
        "(best epoch 1): the validation loss was still improving; raise reward.epochs",
    ]


def test_run_puts_a_margin_column_in_the_loss(
    tmp_path: Path, fake_embed: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    """TRL's margin column reaches every head of `latentrm run` as it does `latentrm.fit`'s
    (it used to be dropped while the heads said margin: false): the original pairs carry their
    record's margin (a record without one: 0), a synthetic pair its seed pair's, and the saved
    head records margin: true."""
    import latentrm.augment.fit as fit_mod
    from latentrm.model import RewardModel

    data = tmp_path / "m.jsonl"
    rows = [
        {"prompt": f"q {i}", "chosen": f"good {i}", "rejected": f"bad {i}"}
        | ({} if i % 2 else {"margin": (i + 2) / 100})
        for i in range(120)
    ]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    seen = []
    real = fit_mod.RewardHeadFitter

    class Spy(real):
        def fit(self, train, val):
            seen.append(train)
            return super().fit(train, val)

    monkeypatch.setattr(fit_mod, "RewardHeadFitter", Spy)
    cfg = load_config(None, small_overrides(data, tmp_path / "out", "methods=[none,lens]"))
    result = {r["method"]: r for r in run_pipeline(cfg)["results"]}
    given = {float(np.float32((i + 2) / 100)) for i in range(0, 120, 2)} | {0.0}
    heads = [a for a in seen if a.margin is not None]  # (the fidelity reference judges plainly)
    for aug in heads:  # the plain head's pairs, then LENS's (originals + 2 per seed)
        assert set(aug.margin.tolist()) <= given
        assert (aug.margin[~aug.synthetic] > 0).any() and (aug.margin[~aug.synthetic] == 0).any()
        np.testing.assert_array_equal(aug.margin, aug.margin[aug.seed_idx])  # seed's margin
    assert {bool(a.synthetic.any()) for a in heads} == {False, True}
    for method in ("none", "lens"):
        assert RewardModel.load(result[method]["head_dir"]).training["margin"] is True


def test_small_data_heads_train_on_the_whole_seed_set(
    hh_file: Path, tmp_path: Path, fake_embed: dict
) -> None:
    # 80 seed pairs < reward.small_data: every method's head is cross-fitted on all 80 (64 + the
    # 16 validation pairs); lens adds 2 x 80 new pairs
    cfg = load_config(
        None,
        small_overrides(hh_file, tmp_path / "run", "methods=[none,lens]", "reward.small_data=1000"),
    )
    rows = {r["method"]: r for r in run_pipeline(cfg)["results"]}
    assert rows["none"]["n_pairs_trained"] == 80 and rows["lens"]["n_pairs_trained"] == 240
    assert rows["none"]["heads"] == 5 and 0 <= rows["none"]["heads_at_epoch0"] <= 5
    assert rows["none"]["accuracy"] >= 0.85
    head = load_head(rows["none"]["head_dir"])
    assert len(head.members) == 5
