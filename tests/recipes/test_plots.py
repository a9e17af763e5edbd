"""latentrm.recipes.plots: which plots an experiment gets, their titles (metric, dataset,
embedder, number of splits) and file names that stay inside plots/."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from latentrm.recipes import plots


def _df(sweep: bool = False) -> pd.DataFrame:
    rows = []
    for sv in ["0.1", "x/../../y"] if sweep else [None]:
        for s in (0, 1, 2):
            for method, ratio in (("none", 0), ("lens", 2), ("lens", 4)):
                r: dict[str, Any] = {
                    "method": method,
                    "ratio": ratio,
                    "seed": s,
                    "split_seed": s,
                    "accuracy": 0.6 + 0.01 * s + 0.001 * ratio,
                }
                if sweep:
                    r.update(sweep="vae.gamma", sweep_value=sv)
                rows.append(r)
    return pd.DataFrame(rows)


@pytest.fixture
def titles(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Each plot's title by file name, instead of writing PNGs."""
    seen: dict[str, str] = {}

    def save(fig: Any, path: Path) -> Path:
        seen[path.name] = fig.axes[0].get_title()
        assert path.parent.name == "plots"
        return path

    monkeypatch.setattr(plots, "_save", save)
    return seen


def test_titles_name_data_embedder_and_splits(tmp_path: Path, titles: dict[str, str]) -> None:
    data = tmp_path / "pairs.jsonl"
    data.write_text("")
    plots.write_plots(_df(), tmp_path / "plots", str(data), "minilm")
    assert titles == {
        "accuracy_vs_ratio.png": "accuracy\ndata pairs.jsonl, embedder minilm, 3 splits"
    }
    titles.clear()
    plots.write_plots(_df(True), tmp_path / "plots", "Anthropic/hh-rlhf", None)
    context = "data Anthropic/hh-rlhf, 3 splits"
    assert titles == {
        "accuracy_vs_vae.gamma.png": f"ablation: vae.gamma\n{context}",
        "accuracy_vs_ratio_vae.gamma=0.1.png": f"accuracy, vae.gamma=0.1\n{context}",
        # a value holding '/' and '..' cannot leave plots/
        "accuracy_vs_ratio_vae.gamma=x_______y.png": f"accuracy, vae.gamma=x/../../y\n{context}",
    }


def test_one_split_is_singular() -> None:
    df = _df()
    assert plots.context_line(df[df["seed"] == 0], None, "smollm2") == "embedder smollm2, 1 split"
