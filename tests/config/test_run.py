"""latentrm.config.run: the one ratio rule."""

from __future__ import annotations

import pytest

from latentrm.config import check_ratio
from latentrm.errors import ConfigError


@pytest.mark.parametrize("bad", [0, -1, 2.5, "4", True, None])
def test_ratio_must_be_a_positive_int(bad):
    with pytest.raises(ConfigError, match=f"ratio must be an integer >= 1, got {bad!r}"):
        check_ratio(bad)


def test_variants_name_a_method_and_changes_checked_like_overrides():
    from latentrm.config import load_config, method_config

    cfg = load_config(
        None,
        [
            "variants={lens-cross: {method: lens, synth.pairing: cross, vae.gamma: 0.5}}",
            "methods=[none, lens-cross, recipe]",
            "recipe_from=[none, lens-cross]",
        ],
    )
    assert method_config(cfg, "none") == ("none", cfg)
    base, vcfg = method_config(cfg, "lens-cross")
    assert (base, vcfg.synth.pairing, vcfg.vae.gamma, cfg.synth.pairing) == (
        "lens",
        "cross",
        0.5,
        "within_seed",
    )
    # a variant's changes are checked when the config is loaded, not when its turn comes
    with pytest.raises(ConfigError, match="variants.x: unknown config key 'synth.pairng'; did you"):
        load_config(None, ["variants={x: {method: lens, synth.pairng: cross}}"])


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["methods=[lens-x]"], "methods: unknown method 'lens-x'"),
        (["variants={lens: {method: lens}}"], "variants: 'lens' is a method's own name"),
        (["variants={v: {synth.pairing: cross}}"], "variants.v: needs method: one of"),
        (["methods=[recipe]"], "recipe_from names no candidates"),
        (["select_folds=1"], "select_folds must be >= 2"),
        (["select_layer=[top]"], "select_layer: 'top' is not a layer index or 'mean'"),
        (["synth.ratio=4"], "synth.ratio is now `ratios`"),
    ],
)
def test_run_config_checks_name_the_key(overrides, message):
    from latentrm.config import load_config

    with pytest.raises(ConfigError, match=message):
        load_config(None, overrides)


# --- names that become paths (issue 23 item 1) ---------------------------------------------------
UNSAFE_NAMES = [
    "../../../victim",
    "/tmp/victim",
    "a/b",
    "..",
    ".",
    ".hidden",
    "",
    "a\\b",
    "x" * 65,
    "lens cross",
    "-flag",
    "a..b",
    "héllo",
    "a\nb",
]


@pytest.mark.parametrize("name", UNSAFE_NAMES, ids=[repr(n) for n in UNSAFE_NAMES])
def test_a_variant_name_that_could_leave_the_folder_is_refused_at_load(name, tmp_path):
    """A variant's name becomes the folder heads/NAME-rRATIO: checked, with one line, when the
    config is loaded (from a file or an override), before anything is read or written."""
    import json

    from latentrm.config import load_config

    spec = json.dumps({name: {"method": "none"}})
    want = (
        f"variants: {name!r} cannot name a folder: use letters, digits and . _ = + - "
        "(starting with a letter or digit, at most 64, no '..')"
    )
    with pytest.raises(ConfigError) as e:
        load_config(None, [f"variants={spec}", f"methods=[none, {json.dumps(name)}]"])
    assert str(e.value) == want
    p = tmp_path / "c.yaml"
    p.write_text(f"variants: {spec}\nmethods: [none]\n")
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert str(e.value) == f"{p}: {want}"


def test_safe_variant_names_still_load():
    from latentrm.config import load_config

    names = ["lens-cross", "lens_w2sq", "g=0.5", "v+1", "A1.b", "x" * 64]
    cfg = load_config(
        None,
        [
            "variants={" + ", ".join(f"'{n}': {{method: lens}}" for n in names) + "}",
            f"methods=[{', '.join(names)}]",
        ],
    )
    assert cfg.methods == tuple(names)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ["variants=[1]"],
            "variants: expected a mapping of names to {method: ..., key: value}, got [1]",
        ),
        (["variants={1: {method: none}}"], "variants: 1 cannot name a folder"),
        (
            ["variants={v: 1}"],
            "variants.v: needs method: one of none, direct, gaussian, lens, cross-prompt",
        ),
        (
            ["variants={v: {method: lens, synth.pairing: crosss}}", "methods=[v]"],
            "variants.v: synth.pairing must be one of within_seed | cross, got 'crosss'",
        ),
        (
            ["variants={v: {method: lens, vae.divergence: w2_squared, vae.gamma: 0.5}}"],
            "variants.v: vae.divergence=w2_squared needs vae.gamma < vae.beta/4",
        ),
        (["sweep=vae.gamma"], "sweep=vae.gamma needs sweep_values, e.g. sweep_values=[0,0.1,1]"),
        (["sweep_values=[1]"], "sweep_values is set but sweep (the key to sweep) is not"),
        (["sweep=vae.gama", "sweep_values=[1]"], "sweep vae.gama=1: unknown config key 'vae.gama'"),
        (
            ["sweep=vae.gamma", "sweep_values=[0.1, -1]"],
            "sweep vae.gamma=-1: vae.gamma must be >= 0, got -1.0",
        ),
    ],
)
def test_variants_and_sweeps_are_checked_whole_at_load(overrides, message):
    """Every variant and every swept value is built when the config is: a mistake in the last
    one is found before the first one's work (it was found only when its turn came)."""
    from latentrm.config import load_config

    with pytest.raises(ConfigError) as e:
        load_config(None, overrides)
    assert str(e.value).startswith(message) and "\n" not in str(e.value)
