"""latentrm.config.loading: key=value overrides, YAML round trips, errors that name the key."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from latentrm.config import RunConfig, load_config, parse_overrides, save_config
from latentrm.errors import ConfigError


def test_overrides_nest_and_coerce() -> None:
    overrides = ["vae.gamma=0.5", "ratios=[2,4]", "embed.threads=2", "reward.hidden=[]"]
    cfg = load_config(None, overrides)
    assert cfg.vae.gamma == 0.5 and cfg.ratios == (2, 4) and cfg.embed.threads == 2
    assert cfg.reward.hidden == ()
    assert parse_overrides(["a.b=1", "a.c=x"]) == {"a": {"b": 1, "c": "x"}}


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("vae.gama=1", "unknown config key 'vae.gama'; did you mean 'vae.gamma'?"),
        ("ratio=[2]", "unknown config key 'ratio'; did you mean 'ratios'?"),
        ("ratios=[0]", "ratios must be an integer >= 1, got 0"),
        ("ratios=[two]", "ratios: expected an integer, got 'two'"),
        ("ratios=[1.5]", "ratios: expected an integer, got 1.5"),
        ("synth.ratio=4", "synth.ratio is now `ratios` (one key for every method)"),
        ("methods=[lense]", "unknown method 'lense'; did you mean 'lens'?"),
        ("embed.show_progress=maybe", "embed.show_progress: expected true/false"),
        ("data.val_fraction=1.5", "data.val_fraction must be in (0, 1)"),
    ],
)
def test_bad_values_name_the_key(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(None, [override])


def test_yaml_round_trip_and_file_errors(tmp_path: Path) -> None:
    cfg = load_config(None, ["vae.latent_dim=8", "methods=[none,lens]"])
    save_config(cfg, tmp_path / "c.yaml")
    assert load_config(tmp_path / "c.yaml") == cfg
    (tmp_path / "bad.yaml").write_text("vae:\n  latnt_dim: 3\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: unknown config key 'vae.latnt_dim'"):
        load_config(tmp_path / "bad.yaml")
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "missing.yaml")
    assert isinstance(load_config(), RunConfig)


def test_saved_config_matches_fills_new_keys_with_defaults(tmp_path):
    import yaml

    from latentrm.config import save_config, saved_config_matches, to_dict

    cfg = load_config(None, ["vae.gamma=0.5", "seeds=[0,1]"])
    path = tmp_path / "config.yaml"
    assert not saved_config_matches(path, cfg)  # absent
    save_config(cfg, path)
    assert saved_config_matches(path, cfg)
    old = to_dict(cfg)
    del old["text"]  # written before the section existed: its defaults are what ran
    path.write_text(yaml.safe_dump(old))
    assert saved_config_matches(path, cfg)
    assert not saved_config_matches(path, load_config(None, ["vae.gamma=0.1", "seeds=[0,1]"]))
    old["vae"]["no_such_key"] = 1  # a key that no longer exists: not the same config
    path.write_text(yaml.safe_dump(old))
    assert not saved_config_matches(path, cfg)
    path.write_text("[unclosed")
    assert not saved_config_matches(path, cfg)
