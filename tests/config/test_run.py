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

    cfg = load_config(None, [
        "variants={lens-cross: {method: lens, synth.pairing: cross, vae.gamma: 0.5}}",
        "methods=[none, lens-cross, recipe]", "recipe_from=[none, lens-cross]",
    ])
    assert method_config(cfg, "none") == ("none", cfg)
    base, vcfg = method_config(cfg, "lens-cross")
    assert (base, vcfg.synth.pairing, vcfg.vae.gamma, cfg.synth.pairing) == (
        "lens", "cross", 0.5, "within_seed")
    bad = load_config(None, ["variants={x: {method: lens, synth.pairng: cross}}"])
    with pytest.raises(ConfigError, match="variants.x: unknown config key 'synth.pairng'; did you"):
        method_config(bad, "x")


@pytest.mark.parametrize(("overrides", "message"), [
    (["methods=[lens-x]"], "methods: unknown method 'lens-x'"),
    (["variants={lens: {method: lens}}"], "variants: 'lens' is a method's own name"),
    (["variants={v: {synth.pairing: cross}}"], "variants.v: needs method: one of"),
    (["methods=[recipe]"], "recipe_from names no candidates"),
    (["select_folds=1"], "select_folds must be >= 2"),
    (["select_layer=[top]"], "select_layer: 'top' is not a layer index or 'mean'"),
    (["synth.ratio=4"], "synth.ratio is now `ratios`"),
])
def test_run_config_checks_name_the_key(overrides, message):
    from latentrm.config import load_config

    with pytest.raises(ConfigError, match=message):
        load_config(None, overrides)
