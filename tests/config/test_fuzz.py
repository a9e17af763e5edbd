"""Fuzzing the config loader (issue 23): random bytes as a config file, random YAML-ish mappings
and random key=value overrides give a RunConfig or one LatentrmError line, never another
exception (a traceback for the user)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from latentrm.config import RunConfig, load_config
from latentrm.errors import LatentrmError

FUZZ = settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# Real keys (so the fuzz reaches past "unknown key"), a few near misses and path-like names.
KEYS = [
    "seed",
    "threads",
    "ratios",
    "methods",
    "variants",
    "sweep",
    "sweep_values",
    "out_dir",
    "cache_dir",
    "select_layer",
    "text_baselines",
    "data.path",
    "data.n_seed",
    "data.val_fraction",
    "embed.layer",
    "embed.dtype",
    "embed.device",
    "vae.gamma",
    "vae.hidden",
    "vae.logvar_min",
    "vae.divergence",
    "synth.top_k",
    "synth.sigma2",
    "synth.teacher_tau",
    "reward.hidden",
    "eval.n_bootstrap",
    "method",
    "../x",
    "a.b.c",
    "vae",
    "synth",
]
scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
    | st.sampled_from(["lens", "none", "w2_squared", "../v", "", "[1,", "mean", "-1", "1e400"])
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)
mappings = st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=8), values, max_size=6)


def _one_line_or_config(load) -> None:
    try:
        cfg = load()
    except LatentrmError as e:
        assert str(e) and "\n" not in str(e), repr(str(e))
        return
    assert isinstance(cfg, RunConfig)


@FUZZ
@given(data=st.binary(max_size=300))
def test_random_bytes_as_a_config_file(tmp_path: Path, data: bytes) -> None:
    p = tmp_path / "fuzz.yaml"
    p.write_bytes(data)
    _one_line_or_config(lambda: load_config(p))


@FUZZ
@given(data=mappings)
def test_random_mappings_as_a_config_file(tmp_path: Path, data: dict) -> None:
    p = tmp_path / "fuzz.yaml"
    p.write_text(
        json.dumps(data, allow_nan=True) if data.get("seed") is None else yaml.safe_dump(data)
    )
    _one_line_or_config(lambda: load_config(p))


@FUZZ
@given(
    items=st.lists(
        st.tuples(
            st.sampled_from(KEYS) | st.text(max_size=8),
            st.text(max_size=16) | values.map(json.dumps),
        ),
        max_size=4,
    )
)
def test_random_overrides(items: list[tuple[str, str]]) -> None:
    _one_line_or_config(lambda: load_config(None, [f"{k}={v}" for k, v in items]))


@pytest.mark.parametrize(
    "text",
    [
        "",
        "[]",
        "- 1",
        "x",
        "{a: {b: {c: 1}}}",
        "!!binary aGk=",
        "seed: !!float 1",
        "? [a]\n: 1",
        "*x",
        "&a 1",
        "<<: 1",
        "seed: 0x10",
        "variants: {v: [method, lens]}",
    ],
)
def test_odd_yaml_documents(tmp_path: Path, text: str) -> None:
    p = tmp_path / "odd.yaml"
    p.write_text(text)
    _one_line_or_config(lambda: load_config(p))
