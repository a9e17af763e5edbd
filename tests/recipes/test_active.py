"""The active-selection study (latentrm.recipes.active): its rounds, and its report by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from latentrm.config import load_config
from latentrm.errors import ConfigError
from latentrm.recipes.active import check_active, pool_rows, run_strategy, sizes
from latentrm.recipes.active_report import active_markdown
from latentrm.recipes.prepare import PreparedData, Split

pytestmark = pytest.mark.usefixtures("one_thread")


def planted(n: int = 140, d: int = 4, n_test: int = 40) -> PreparedData:
    """Pairs whose chosen side is the one with the larger first coordinate."""
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(n, d)).astype(np.float32), rng.normal(size=(n, d)).astype(np.float32)
    win = a[:, 0] > b[:, 0]
    chosen, rejected = np.where(win[:, None], a, b), np.where(win[:, None], b, a)
    test = np.arange(n - n_test, n)
    split = Split(0, np.zeros(0, np.int64), np.zeros(0, np.int64), test, np.zeros(0, np.int64))
    return PreparedData("pairs", None, chosen, rejected, [], [], {0: split})  # type: ignore[arg-type]


def small_cfg(*extra: str):
    return load_config(
        None,
        [
            "active.start=10",
            "active.step=10",
            "active.budget=30",
            "reward.ensemble=2",
            "reward.epochs=5",
            "reward.hidden=[4]",
            "data.val_fraction=0.2",
            "seeds=[0]",
            *extra,
        ],
    )


def test_sizes_and_checks() -> None:
    assert sizes(small_cfg()) == [10, 20, 30]
    with pytest.raises(ConfigError, match="include random"):
        check_active(small_cfg("active.strategies=[bald]"))
    with pytest.raises(ConfigError, match="reward.ensemble"):
        check_active(small_cfg("reward.ensemble=1"))
    with pytest.raises(ConfigError, match="choose from"):
        check_active(small_cfg("active.strategies=[random,coreset]"))
    with pytest.raises(ConfigError, match="budget >= start"):
        sizes(small_cfg("active.budget=5"))


def test_rounds_share_the_start_and_differ_after() -> None:
    """Every strategy starts from the same 10 random labels and fit seed, so the first head (and
    its held-out accuracy) is the same for all; then each buys its own batches."""
    data, cfg = planted(), small_cfg()
    runs = {
        s: run_strategy(cfg, data, 0, s)
        for s in ("random", "bald", "entropy", "diversity", "hybrid")
    }
    for rows in runs.values():
        assert [r["n_labels"] for r in rows] == [10, 20, 30]
        assert 0.0 <= rows[-1]["accuracy"] <= 1.0
        assert "next_bald" in rows[0] and "next_bald" not in rows[-1]  # no purchase after last
    first = {s: rows[0]["accuracy"] for s, rows in runs.items()}
    assert len(set(first.values())) == 1
    # BALD buys the pairs of largest disagreement: their mean BALD is at least the pool's.
    assert runs["bald"][0]["next_bald"] >= runs["bald"][0]["pool_bald"]
    assert runs["random"][0]["next_score"] is None


def _df() -> pd.DataFrame:
    acc = {
        ("random", 0): (0.50, 0.60),
        ("random", 1): (0.54, 0.62),
        ("bald", 0): (0.50, 0.66),
        ("bald", 1): (0.54, 0.66),
    }
    return pd.DataFrame(
        [
            {"seed": s, "strategy": st, "n_labels": n, "accuracy": a}
            for (st, s), pair in acc.items()
            for n, a in zip((50, 100), pair, strict=True)
        ]
    )


def test_report_by_hand() -> None:
    """Two splits. At 100 labels bald - random = 0.06 and 0.04: mean 5.0 points, 95% half width
    t(0.975, 1) * sd / sqrt(2) = 12.706 * 0.01414 / 1.414 = 12.7 points.
    Goal at n = 50: bald(50) - random(100) = -0.10, -0.08: -9.0 points, not met.
    Effective labels: random's means 0.52 (50), 0.61 (100); bald at 100 (0.66) is beyond: >100;
    bald at 50 (0.52) is random at 50 (1.00x).
    Labels bald needs for random's 0.61 at 100: t = (0.61 - 0.52) / (0.66 - 0.52) = 0.6429,
    50 * 2^0.6429 = 78, a saving of 22%. Its bootstrap over the 2 splits: split 0 twice
    (random 0.60; bald 0.50, 0.66): t = 0.625, 50 * 2^0.625 = 77; split 1 twice (random 0.62;
    bald 0.54, 0.66): t = 0.6667, 79; each a quarter of the resamples: 77 to 79."""
    md = active_markdown(_df())
    assert "| 100 | 0.610 ± 0.127 | 0.660 ± 0.000 | +5.0 ± 12.7 pts |" in md
    # the mean over the bought sizes (here only 100) is the 100 row again
    assert "| mean 100-100 | 0.610 ± 0.127 | 0.660 ± 0.000 | +5.0 ± 12.7 pts |" in md
    assert "| 50 | bald | 50 | 1.00x | -9.0 ± 12.7 pts | 0/2 | not met |" in md
    assert "| 100 | bald | >100 | >1.00x | - | - | - |" in md
    assert "| bald | 78 | 77 to 79 | 22% |" in md


def test_methods_train_on_the_labels_bought_by_methods_at() -> None:
    """active.methods=[none] at 20 labels: one more row, after the rounds, for the 20 labels the
    round's head at 20 was trained on (method none: ratio 0)."""
    cfg = small_cfg("active.methods=[none]", "active.methods_at=20")
    data = planted()
    rows = run_strategy(cfg, data, 0, "bald")
    assert [(r["head"], r["n_labels"]) for r in rows] == [
        ("round", 10),
        ("round", 20),
        ("round", 30),
        ("none", 20),
    ]
    assert rows[3]["ratio"] == 0
    with pytest.raises(ConfigError, match="methods_at must be one of"):
        check_active(small_cfg("active.methods=[none]", "active.methods_at=25"))
    with pytest.raises(ConfigError, match="not methods or variants"):
        check_active(small_cfg("active.methods=[lense]"))


def test_latentrm_active_end_to_end_and_resume(
    hh_file, tmp_path, fake_embed, monkeypatch, capsys
) -> None:
    """`latentrm active` on 120 planted HH pairs (80 in the pool, 40 held out), 2 splits x 2
    strategies x 3 label counts; a rerun of the same config recomputes nothing."""
    import latentrm.recipes.active as active
    from latentrm.cli import main
    from latentrm.testing import small_overrides

    argv = [
        "active",
        *small_overrides(
            hh_file,
            tmp_path / "a",
            "active.start=10",
            "active.step=10",
            "active.budget=30",
            "reward.ensemble=2",
            "seeds=[0,1]",
            "active.strategies=[random,bald]",
        ),
    ]
    assert main(argv) == 0
    df = pd.read_csv(tmp_path / "a" / "results.csv")
    assert len(df) == 2 * 2 * 3 and set(df.n_labels) == {10, 20, 30}
    assert "Labels each strategy needs to match random at 30" in capsys.readouterr().out
    assert (tmp_path / "a" / "config.yaml").exists()

    def fail(*a, **k):
        raise AssertionError("recomputed a finished (split, strategy)")

    monkeypatch.setattr(active, "run_strategy", fail)
    assert main(argv) == 0
    assert pd.read_csv(tmp_path / "a" / "results.csv").equals(df)


def candidates_data() -> PreparedData:
    """8 instructions x 4 candidates (gold 0, 1, 2, 3; the embedding's first coordinate is the
    gold plus noise), binarised into every pair (6 an instruction, group = the instruction).
    Instructions 6 and 7 are held out (Best-of-N); split.test holds only instruction 6's pairs,
    as when data.n_test cuts the held-out pairs."""
    from latentrm.data.types import CandidateSet

    rng = np.random.default_rng(0)
    gold = np.arange(4, dtype=np.float64)
    sets, emb, chosen, rejected, groups = [], [], [], [], []
    for i in range(8):
        e = rng.normal(scale=0.3, size=(4, 3)).astype(np.float32)
        e[:, 0] += gold
        sets.append(CandidateSet(f"s{i}", f"p{i}", tuple("abcd"), tuple(gold)))  # type: ignore[arg-type]
        emb.append(e)
        for c in range(4):
            for r in range(c):
                chosen.append(e[c])
                rejected.append(e[r])
                groups.append(i)
    g = np.array(groups, np.int64)
    test = np.flatnonzero(g == 6)
    split = Split(0, np.zeros(0, np.int64), np.zeros(0, np.int64), test, np.array([6, 7]))
    return PreparedData(
        "candidates",
        None,  # type: ignore[arg-type]
        np.stack(chosen),
        np.stack(rejected),
        sets,
        emb,
        {0: split},
        groups=g,
    )


def test_candidates_pool_is_the_training_instructions() -> None:
    """6 pairs an instruction: the pool is instructions 0-5, rows 0-35; instruction 7's pairs
    (36-47 are 6's and 7's) are held out although split.test leaves them out. Pairs data: every
    row outside split.test."""
    data = candidates_data()
    assert pool_rows(data, data.splits[0]).tolist() == list(range(36))
    assert pool_rows(planted(), planted().splits[0]).tolist() == list(range(100))


def test_candidates_rounds_buy_training_pairs_and_measure_best_of_n(monkeypatch) -> None:
    """Every label bought is a training instruction's pair, and each round's head is measured
    by Best-of-4 on the 2 held-out instructions: all 4 candidates drawn, gold 0-3, so floor
    = 1.5, ceiling = 3 and gap closed = (picked - 1.5) / 1.5."""
    import latentrm.recipes.active as active

    seen: list[np.ndarray] = []
    fit = active._fit

    def spy(cfg, data, labelled, split_seed, fit_seed):
        seen.append(labelled)
        return fit(cfg, data, labelled, split_seed, fit_seed)

    monkeypatch.setattr(active, "_fit", spy)
    cfg = small_cfg("eval.best_of_n=4", "eval.candidate_pool=4")
    for strategy in ("random", "hybrid"):
        rows = run_strategy(cfg, candidates_data(), 0, strategy)
        assert [r["n_labels"] for r in rows] == [10, 20, 30]
        for r in rows:
            assert r["bon_floor"] == 1.5 and r["bon_ceiling"] == 3.0
            assert r["bon_gap_closed"] == pytest.approx((r["bon_picked"] - 1.5) / 1.5)
    assert [len(s) for s in seen] == [10, 20, 30] * 2
    assert all(s.max() < 36 for s in seen)


def test_report_of_candidates_data_by_hand() -> None:
    """Rows with Best-of-N: the gap-closed tables first (gap = accuracy - 0.5 here, so the same
    differences as test_report_by_hand: +5.0 ± 12.7 points at 100), then the accuracy tables."""
    df = _df().assign(bon_gap_closed=lambda d: d.accuracy - 0.5)
    md = active_markdown(df)
    gap = md.index("Best-of-N gold gap closed on the held-out instructions")
    acc = md.index("Accuracy on the held-out pairs")
    assert gap < acc
    assert "| 100 | 0.110 ± 0.127 | 0.160 ± 0.000 | +5.0 ± 12.7 pts |" in md[gap:acc]
    assert "| 100 | 0.610 ± 0.127 | 0.660 ± 0.000 | +5.0 ± 12.7 pts |" in md[acc:]
    assert md[gap:acc].count("| bald | 78 | 77 to 79 | 22% |") == 1
    assert md[acc:].count("| bald | 78 | 77 to 79 | 22% |") == 1
    assert active_markdown(_df()) == active_markdown(_df().assign(bon_gap_closed=np.nan))
