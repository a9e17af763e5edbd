"""latentrm.recipes.experiment: `latentrm experiment` over seeds and sweeps (resumable), text
baseline rows, every shipped config.

The embedder is replaced by planted embeddings (the `fake_embed` fixture): each text maps to seeded
noise plus a quality signal, so a reward head that learns anything must rank held-out pairs far
above chance. Everything after embedding is the real code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from latentrm import cli
from latentrm.config import load_config
from latentrm.recipes.experiment import run_experiment, sweep_configs
from latentrm.recipes.prepare import prepare_data
from latentrm.recipes.report import summarize
from latentrm.testing import small_overrides


def test_experiment_two_seeds_with_selection(
    hh_file: Path, tmp_path: Path, fake_embed: dict
) -> None:
    out = tmp_path / "exp"
    cfg = load_config(
        None,
        small_overrides(
            hh_file,
            out,
            "methods=[none,lens]",
            "seeds=[0,1]",
            "select_sigma2=[0.001,0.1]",
            "data.n_test=null",
        ),
    )
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


def test_experiment_sweep_rows_and_ablation_plot(
    hh_file: Path, tmp_path: Path, fake_embed: dict, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "abl"
    args = small_overrides(
        hh_file,
        out,
        "methods=[lens]",
        "seeds=[0,1]",
        "sweep=vae.gamma",
        "sweep_values=[0,0.5]",
        "eval.fidelity=false",
    )
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


def test_text_baseline_rows_use_the_split(
    cand_file: Path, tmp_path: Path, fake_embed: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
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
    cfg = load_config(
        None,
        small_overrides(
            cand_file,
            tmp_path / "t",
            "text_baselines=[full,lora]",
            "data.n_seed=50",
            "data.n_test=null",
            "eval.candidate_pool=6",
            "eval.best_of_n=6",
            "seed=3",
        ),
    )
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


def test_every_config_loads_and_sweeps(repo_root: Path) -> None:
    root = repo_root / "configs"
    names = sorted(p.stem for p in root.glob("*.yaml"))
    assert {
        "demo",
        "hh",
        "alpaca",
        "ablate_gamma",
        "ablate_sigma2",
        "ablate_seed_size",
        "ablate_latent",
        "ablate_embedder",
    } <= set(names)
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


# --- the experiment folder: all-or-nothing, resumes only its own config (issue 16 item 3) ---------
def _snapshot(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and "cache" not in p.parts
    }


def _exp(hh_file: Path, out: Path, *extra: str):
    return load_config(
        None,
        small_overrides(
            hh_file, out, "methods=[none]", "seeds=[0,1]", "eval.fidelity=false", *extra
        ),
    )


def test_failed_experiment_leaves_the_earlier_one_untouched(
    hh_file: Path, tmp_path: Path, fake_embed: dict
) -> None:
    from latentrm.errors import DataError

    out = tmp_path / "exp"
    run_experiment(_exp(hh_file, out))
    before = _snapshot(out)
    assert {"config.yaml", "results.csv", "results.md", "plots/accuracy_vs_ratio.png"} <= set(
        before
    )
    with pytest.raises(DataError, match="file not found"):
        run_experiment(
            _exp(hh_file, out, "methods=[none,direct]", f"data.path={tmp_path / 'later.jsonl'}")
        )
    assert _snapshot(out) == before
    assert not (tmp_path / ".exp.partial").exists()  # nothing finished: nothing kept


def test_experiment_never_resumes_another_configs_rows(
    hh_file: Path, tmp_path: Path, fake_embed: dict
) -> None:
    """A (method none) finishes; B (none + direct) fails once, its data not there yet, then
    succeeds: B's results hold both methods, computed under B's config."""
    import shutil

    from latentrm.errors import DataError
    from latentrm.recipes.experiment import results_key

    out = tmp_path / "exp"
    a = _exp(hh_file, out)
    run_experiment(a)
    later = tmp_path / "later.jsonl.gz"
    b = _exp(hh_file, out, "methods=[none,direct]", f"data.path={later}")
    with pytest.raises(DataError):
        run_experiment(b)
    shutil.copy(hh_file, later)
    df = run_experiment(b)
    csv = pd.read_csv(out / "results.csv")
    assert list(csv["method"]) == ["none", "direct"] * 2 and len(df) == 4
    assert set(csv["config_key"]) == {results_key(b)} != {results_key(a)}
    assert load_config(out / "config.yaml") == b
    # where results are written does not change what they are
    assert results_key(a) == results_key(
        load_config(
            None,
            small_overrides(
                hh_file,
                tmp_path / "elsewhere",
                "methods=[none]",
                "seeds=[0,1]",
                "eval.fidelity=false",
                "embed.show_progress=false",
            ),
        )
    )


def test_killed_experiment_resumes_its_finished_seeds(
    hh_file: Path, tmp_path: Path, fake_embed: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    import latentrm.recipes.experiment as ex

    out = tmp_path / "exp"
    cfg = _exp(hh_file, out)
    reference = run_experiment(_exp(hh_file, tmp_path / "ref"))
    real, seeds = ex.evaluate_seed, []

    def evaluate_seed(*args: Any, **kwargs: Any) -> Any:
        seeds.append(args[3])
        if len(seeds) == 2:
            raise KeyboardInterrupt  # Ctrl-C during seed 1
        return real(*args, **kwargs)

    monkeypatch.setattr(ex, "evaluate_seed", evaluate_seed)
    with pytest.raises(KeyboardInterrupt):
        run_experiment(cfg)
    assert not out.exists()  # nothing finished: no out_dir yet
    kept = pd.read_csv(tmp_path / ".exp.partial" / "results.csv")
    assert list(kept["seed"]) == [0]
    monkeypatch.setattr(ex, "evaluate_seed", real)
    calls = []
    monkeypatch.setattr(ex, "evaluate_seed", lambda *a, **k: calls.append(a[3]) or real(*a, **k))
    df = run_experiment(cfg)
    assert calls == [1]  # seed 0 resumed, not recomputed
    same = [c for c in reference.columns if not c.startswith(("time_", "select_seconds"))]
    pd.testing.assert_frame_equal(df[same], reference[same], check_dtype=False)
    assert not (tmp_path / ".exp.partial").exists()


def test_experiment_clears_what_a_kill_inside_the_swap_left(
    hh_file: Path, tmp_path: Path, fake_embed: dict
) -> None:
    """Killed between swapping in the new folder and moving the earlier out_dir aside: the earlier
    out_dir (a `latentrm run`'s, with heads) sits in .exp.partial, and a displaced folder of a dead
    process next to it. The next experiment keeps none of that run's artifacts (.exp.partial holds
    no rows of its config: cleared) and removes the leftover."""
    import subprocess
    import sys

    from latentrm.recipes.outdir import _owner

    out, stage = tmp_path / "exp", tmp_path / ".exp.partial"
    (stage / "heads" / "none-r0").mkdir(parents=True)
    (stage / "metrics.json").write_text("{}")
    (stage / "config.yaml").write_text("an earlier run\n")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    left = tmp_path / f".exp.old-{dead.pid}@{_owner().split('@')[1]}-0a1b2c3d"
    left.mkdir()
    run_experiment(_exp(hh_file, out))
    assert sorted(p.name for p in out.iterdir()) == [
        "config.yaml",
        "plots",
        "results.csv",
        "results.md",
    ]
    assert load_config(out / "config.yaml") == _exp(hh_file, out)
    assert not left.exists() and not stage.exists()


def test_results_are_current_when_the_saved_config_computes_the_same(tmp_path: Path) -> None:
    """`make reproduce --skip-existing/--collect-only` keeps a finished run whose config differs
    only in where things are written or shown (out_dir spelling, -q's progress bars), not one that
    computes something else, nor one without its results file."""
    from latentrm.config import save_config
    from latentrm.recipes.experiment import results_current

    out = tmp_path / "run"
    out.mkdir()
    cfg = load_config(None, [f"out_dir={out}", "seeds=[0,1]"])
    assert not results_current(cfg)  # nothing saved
    save_config(
        load_config(None, [f"out_dir={out}/", "seeds=[0,1]", "embed.show_progress=false"]),
        out / "config.yaml",
    )
    assert not results_current(cfg)  # config saved, no results.md yet
    (out / "results.md").write_text("table\n")
    assert results_current(cfg)
    assert not results_current(load_config(None, [f"out_dir={out}", "seeds=[0,1,2]"]))
    (out / "config.yaml").write_text("seeds: [0, 1\n")  # unreadable: not current
    assert not results_current(cfg)


def test_experiment_keeps_its_heads_when_asked(
    hh_file: Path, tmp_path: Path, fake_embed: dict
) -> None:
    """keep_heads: one reward model folder per seed x method x ratio, kept across a resume."""
    from latentrm.hub.folder import read_info

    out = tmp_path / "exp"
    cfg = load_config(
        None, small_overrides(hh_file, out, "methods=[none]", "seeds=[0,1]", "data.n_test=null")
    )
    df = run_experiment(cfg, keep_heads=True)
    heads = sorted(str(p.relative_to(out)) for p in (out / "heads").glob("*/*"))
    assert heads == ["heads/seed-0/none-r0", "heads/seed-1/none-r0"]
    assert sorted(df["head_dir"].str.contains("seed-").tolist()) == [True, True]
    info = read_info(out / "heads" / "seed-1" / "none-r0")
    assert info["training"]["seed"] == 1 and "heldout_accuracy" in info["training"]["metrics"]
    csv = pd.read_csv(out / "results.csv")
    csv[csv["seed"] == 0].to_csv(out / "results.csv", index=False)  # seed 1 to redo
    run_experiment(cfg, keep_heads=True)
    assert (out / "heads" / "seed-0" / "none-r0" / "head.safetensors").exists()
    assert not (tmp_path / "plain").exists()
    run_experiment(
        load_config(
            None, small_overrides(hh_file, tmp_path / "plain", "methods=[none]", "seeds=[0]")
        )
    )
    assert not (tmp_path / "plain" / "heads").exists()  # the default keeps none
