"""End-to-end `latentrm run` / `latentrm experiment` on tiny fixture data.

The embedder is replaced by planted embeddings (monkeypatched `embed_pairs`/`embed_candidates`):
each text maps to seeded noise plus a quality signal along one direction, so a reward head that
learns anything must rank held-out pairs far above chance, and Best-of-N must beat a random pick.
Everything after embedding (splits, augmenters, heads, metrics, artifacts) is the real code.
"""

from __future__ import annotations

import gzip
import json
import re
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import latentrm.embed.cached
from latentrm import cli
from latentrm.config import load_config
from latentrm.embed.cache import PairEmbeddings
from latentrm.evaluate import pairwise_accuracy
from latentrm.recipes.experiment import run_experiment, sweep_configs
from latentrm.recipes.prepare import pool_candidates, prepare_data
from latentrm.recipes.report import summarize
from latentrm.recipes.run import run_pipeline
from latentrm.reward import load_head

D = 12


def planted(text: str) -> np.ndarray:
    """Seeded noise + quality along dim 0: +1 'helpful', -1 'rude', or 2*(gold-0.5) 'gold=x'."""
    v = np.random.default_rng(zlib.crc32(text.encode())).normal(0, 0.3, D)
    m = re.search(r"gold=([0-9.]+)", text)
    v[0] += 2 * (float(m.group(1)) - 0.5) if m else (1.0 if "helpful" in text else -1.0)
    return v.astype(np.float32)


@pytest.fixture
def fake_embed(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    calls = {"pairs": 0, "candidates": 0, "texts": 0}

    def embed_pairs(ds: Any, cfg: Any, cache_root: Any, embedder: Any = None) -> PairEmbeddings:
        calls["pairs"] += 1
        calls["texts"] += 2 * len(ds)
        return PairEmbeddings(ds.ids, np.stack([planted(p.chosen) for p in ds]),
                              np.stack([planted(p.rejected) for p in ds]), {"fake": True})

    def embed_candidates(sets: Any, cfg: Any, cache_root: Any, embedder: Any = None) -> list:
        calls["candidates"] += 1
        calls["texts"] += sum(len(s.responses) for s in sets)
        return [np.stack([planted(r) for r in s.responses]) for s in sets]

    monkeypatch.setattr(latentrm.embed.cached, "embed_pairs", embed_pairs)
    monkeypatch.setattr(latentrm.embed.cached, "embed_candidates", embed_candidates)
    return calls


@pytest.fixture
def hh_file(tmp_path: Path) -> Path:
    p = tmp_path / "hh.jsonl.gz"
    lines = [json.dumps({"chosen": f"\n\nHuman: question {i}?\n\nAssistant: helpful answer {i}",
                         "rejected": f"\n\nHuman: question {i}?\n\nAssistant: rude reply {i}"})
             for i in range(120)]
    p.write_bytes(gzip.compress("\n".join(lines).encode()))
    return p


@pytest.fixture
def cand_file(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    p = tmp_path / "cands.jsonl"
    with p.open("w") as f:
        for i in range(40):
            gold = np.round(rng.uniform(0, 1, 8), 2)
            cands = [{"generator": f"m{j}", "output": f"answer {i}.{j} gold={g:.2f}", "gold": g}
                     for j, g in enumerate(gold.tolist())]
            f.write(json.dumps({"instruction": f"task {i}", "candidates": cands}) + "\n")
    return p


def small(path: Path, out: Path, *extra: str) -> list[str]:
    return [f"data.path={path}", "data.n_seed=80", "data.n_test=40", "data.val_fraction=0.2",
            f"out_dir={out}", f"cache_dir={out}/cache", "ratios=[2]", "vae.epochs=20",
            "vae.hidden=[16]", "vae.latent_dim=4", "vae.batch_size=16", "reward.hidden=[32]",
            "reward.epochs=25", "reward.batch_size=16", "reward.lr=1e-3", "reward.dropout=0.1",
            "eval.n_bootstrap=200", "threads=1", *extra]


def test_run_pipeline_pairs_writes_every_artifact(hh_file: Path, tmp_path: Path,
                                                  fake_embed: dict) -> None:
    out = tmp_path / "run"
    cfg = load_config(None, small(hh_file, out))
    m = run_pipeline(cfg)
    # only the 80 seed + 40 test pairs of the 120 are embedded
    assert fake_embed["texts"] == 2 * 120 and m["data"]["pairs_embedded"] == 120
    assert m["split"] == {"split_seed": 0, "n_train": 64, "n_val": 16, "n_test": 40,
                          "bon_prompts": 0}
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
    strict = json.loads((out / "metrics.json").read_text(),
                        parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))
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


def test_candidates_split_by_instruction_with_best_of_n(cand_file: Path, tmp_path: Path,
                                                        fake_embed: dict) -> None:
    out = tmp_path / "alpaca"
    cfg = load_config(None, small(
        cand_file, out, "data.n_seed=60", "data.n_test=null", "data.min_gold_gap=0.3",
        "eval.candidate_pool=6", "eval.best_of_n=4", "eval.bon_draws=3", "methods=[none,lens]"))
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


def test_pool_candidates_fixed_subsets() -> None:
    from latentrm.data import CandidateSet

    sets = [CandidateSet(f"s{i}", ({"role": "user", "content": "q"},),
                         tuple(f"r{j}" for j in range(9)), tuple(float(j) for j in range(9)))
            for i in range(10)]
    a = pool_candidates(sets, pool=4, max_prompts=6, seed=1)
    b = pool_candidates(sets, pool=4, max_prompts=6, seed=1)
    assert a == b and len(a) == 6 and all(len(s.responses) == 4 for s in a)
    for s in a:  # gold stays aligned with its response
        assert [float(r[1:]) for r in s.responses] == list(s.gold)
    assert pool_candidates(sets, None, None, 0) == sets


def test_cli_run_json(hh_file: Path, tmp_path: Path, fake_embed: dict,
                      capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli"
    yaml_path = tmp_path / "c.yaml"
    yaml_path.write_text("methods: [none, gaussian]\n")
    code = cli.main(["-q", "run", str(yaml_path), *small(hh_file, out), "--json"])
    assert code == 0
    printed = json.loads(capsys.readouterr().out)
    assert [r["method"] for r in printed["results"]] == ["none", "gaussian"]
    assert printed == json.loads((out / "metrics.json").read_text())
    code = cli.main(["-q", "run", str(yaml_path), *small(hh_file, out), "data.n_seed=500"])
    assert code == 2 and "500 seed" in capsys.readouterr().err


def test_experiment_two_seeds_with_selection(hh_file: Path, tmp_path: Path,
                                             fake_embed: dict) -> None:
    out = tmp_path / "exp"
    cfg = load_config(None, small(hh_file, out, "methods=[none,lens]", "seeds=[0,1]",
                                  "select_sigma2=[0.001,0.1]", "data.n_test=null"))
    df = run_experiment(cfg)
    # embedded once for both seeds, the whole dataset
    assert fake_embed["pairs"] == 1 and fake_embed["texts"] == 240
    assert len(df) == 4 and sorted(df["seed"]) == [0, 0, 1, 1]
    assert (df["n_test"] == 40).all()
    csv = pd.read_csv(out / "results.csv")
    assert list(csv["method"]) == ["none", "lens", "none", "lens"]
    lens = csv[csv["method"] == "lens"]
    assert set(lens["sigma2"]) <= {0.001, 0.1} and (lens["select_grid"] == 2).all()
    assert (csv["accuracy"] >= 0.85).all()
    summ = summarize(df)
    acc = df[df["method"] == "lens"]["accuracy"].to_numpy()
    assert summ.loc[summ["method"] == "lens", "accuracy"].item() == pytest.approx(acc.mean())
    md = (out / "results.md").read_text()
    assert "| lens | 2 | 2 |" in md and "±" in md and "selected on the validation" in md
    png = out / "plots" / "accuracy_vs_ratio.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # rerun in the same out_dir: every (seed) is finished, so nothing is prepared or trained again
    again = run_experiment(cfg)
    assert fake_embed["pairs"] == 1
    pd.testing.assert_frame_equal(again[df.columns], df, check_dtype=False)
    # an interrupted run (only seed 0 written) resumes with seed 1 alone
    csv[csv["seed"] == 0].to_csv(out / "results.csv", index=False)
    resumed = run_experiment(cfg)
    assert fake_embed["pairs"] == 2 and sorted(resumed["seed"]) == [0, 0, 1, 1]
    same = [c for c in df.columns if not c.startswith(("time_", "select_seconds"))]
    pd.testing.assert_frame_equal(resumed[same], df[same], check_dtype=False)  # deterministic


def test_experiment_sweep_rows_and_ablation_plot(hh_file: Path, tmp_path: Path, fake_embed: dict,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "abl"
    args = small(hh_file, out, "methods=[lens]", "seeds=[0,1]", "sweep=vae.gamma",
                 "sweep_values=[0,0.5]", "eval.fidelity=false")
    assert [c.vae.gamma for _, c in sweep_configs(load_config(None, args))] == [0.0, 0.5]
    yaml_path = tmp_path / "abl.yaml"
    yaml_path.write_text("ratios: [2]\n")
    assert cli.main(["-q", "experiment", str(yaml_path), *args]) == 0
    assert capsys.readouterr().out.startswith("Data: ")  # results.md is printed
    df = pd.read_csv(out / "results.csv", dtype={"sweep_value": str})
    assert fake_embed["pairs"] == 1  # the sweep leaves data/embed alone: prepared once
    assert list(df["sweep_value"]) == ["0", "0", "0.5", "0.5"]
    assert (df["sweep"] == "vae.gamma").all()
    assert (out / "plots" / "accuracy_vs_vae.gamma.png").exists()
    assert "fidelity" not in df.columns


def test_sweep_value_errors_name_the_key() -> None:
    from latentrm.errors import ConfigError

    with pytest.raises(ConfigError, match="sweep vae.gamma=abc"):
        sweep_configs(load_config(None, ["sweep=vae.gamma", "sweep_values=[abc]"]))
    with pytest.raises(ConfigError, match="needs sweep_values"):
        sweep_configs(load_config(None, ["sweep=vae.gamma"]))


def test_text_baseline_rows_use_the_split(cand_file: Path, tmp_path: Path, fake_embed: dict,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    import latentrm.recipes.experiment as ex
    import latentrm.text.reward_model as tb
    from latentrm.recipes.experiment import _text_baseline_rows

    seen = []

    class FakeTextRM:  # reads the gold written into each text: a perfect text reward model
        n_trainable_, train_seconds_ = 7, 1.5

        def score(self, prompts: Any, responses: Any) -> np.ndarray:
            assert len(prompts) == len(responses)
            return np.array([float(r.rsplit("gold=", 1)[1]) for r in responses])

    def fake_fit(cfg: Any, mode: str, train: Any, val: Any, seed: int, ratio: Any) -> FakeTextRM:
        seen.append((mode, len(train), len(val), seed))
        return FakeTextRM()

    monkeypatch.setattr(tb, "text_reward_model", fake_fit)
    monkeypatch.setattr(ex, "text_baselines_available", lambda: True)
    cfg = load_config(None, small(cand_file, tmp_path / "t", "text_baselines=[full,lora]",
                                  "data.n_seed=50", "data.n_test=null", "eval.candidate_pool=6",
                                  "eval.best_of_n=6", "seed=3"))
    data = prepare_data(cfg)
    split = data.splits[0]
    rows = _text_baseline_rows(cfg, data, split)
    assert seen == [("full", 40, 10, 3), ("lora", 40, 10, 3)]
    assert [(r["method"], r["ratio"]) for r in rows] == [("text-full", 0), ("text-lora", 0)]
    # scores = gold: every held-out pair is ordered right, every pick is the best candidate
    r = rows[0]
    assert r["accuracy"] == 1.0 and r["n_test"] == len(split.test) and r["params_head"] == 7
    assert r["bon_prompts"] == 20 and r["bon_picked"] == pytest.approx(r["bon_ceiling"])
    assert r["bon_gap_closed"] == pytest.approx(1.0) and r["spearman_prompt"] == pytest.approx(1)
    assert r["time_head_s"] == 1.5


def test_every_config_loads_and_sweeps() -> None:
    root = Path(__file__).resolve().parents[1] / "configs"
    names = sorted(p.stem for p in root.glob("*.yaml"))
    assert {"demo", "hh", "alpaca", "ablate_gamma", "ablate_sigma2", "ablate_seed_size",
            "ablate_latent", "ablate_embedder"} <= set(names)
    for name in names:
        cfg = load_config(root / f"{name}.yaml")
        values = sweep_configs(cfg)
        if name.startswith("ablate_"):
            assert len(values) >= 2 and cfg.sweep is not None
        if name in ("hh", "alpaca") or name.startswith("ablate_"):
            assert len(cfg.seeds) >= 5
    sizes = sweep_configs(load_config(root / "ablate_seed_size.yaml"))
    seed_sizes = [c.data.n_seed for _, c in sizes]
    assert seed_sizes == [100, 250, 1000, 2000]


def test_reproduce_update_report_keeps_prose(tmp_path: Path) -> None:
    from latentrm.recipes import report as mod

    report = tmp_path / "REPORT.md"
    report.write_text("# Report\n\nProse before.\n\n<!-- BEGIN TABLE hh -->\nold\n"
                      "<!-- END TABLE hh -->\n\nProse after.\n")
    mod.update_report(report, {"hh": "| new | table |\n", "demo": "demo table\n"})
    text = report.read_text()
    assert "Prose before." in text and "Prose after." in text and "old" not in text
    assert "<!-- BEGIN TABLE hh -->\n| new | table |\n<!-- END TABLE hh -->" in text
    assert text.rstrip().endswith("<!-- BEGIN TABLE demo -->\ndemo table\n<!-- END TABLE demo -->")
    mod.update_report(report, {"demo": "v2\n"})  # idempotent: replaced, not appended again
    assert report.read_text().count("BEGIN TABLE demo") == 1 and "v2" in report.read_text()


def test_candidates_data_with_another_bon_file_is_refused(cand_file: Path, tmp_path: Path,
                                                          fake_embed: dict) -> None:
    from latentrm.errors import ConfigError

    cfg = load_config(None, small(cand_file, tmp_path / "x", "eval.candidates=other.jsonl"))
    with pytest.raises(ConfigError, match="must be null or the same file"):
        prepare_data(cfg)


def test_run_saves_reward_models_that_load(hh_file: Path, tmp_path: Path, fake_embed: dict) -> None:
    from latentrm.model import RewardModel
    from latentrm.reward import load_head

    out = tmp_path / "run"
    cfg = load_config(None, small(hh_file, out, "methods=[none]"))
    head_dir = Path(run_pipeline(cfg)["results"][0]["head_dir"])
    rm = RewardModel.load(head_dir)  # head + embed config: scores raw text with cfg.embed
    assert rm.embed_cfg == cfg.embed
    x = np.random.default_rng(0).normal(size=(3, rm.head.d)).astype(np.float32)
    np.testing.assert_array_equal(rm.head.score(x), load_head(head_dir).score(x))
