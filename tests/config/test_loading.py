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


# --- bounds: one ConfigError naming the key, at load time -----------------------------------------
BOUNDS = [
    ("reward.lr=-0.001", "reward.lr must be > 0, got -0.001"),
    ("vae.lr=0", "vae.lr must be > 0, got 0.0"),
    ("text.lr=-1e-5", "text.lr must be > 0, got -1e-05"),
    ("reward.weight_decay=-0.1", "reward.weight_decay must be >= 0, got -0.1"),
    ("vae.weight_decay=-0.1", "vae.weight_decay must be >= 0, got -0.1"),
    ("text.weight_decay=-0.1", "text.weight_decay must be >= 0, got -0.1"),
    ("threads=0", "threads must be >= 1, got 0"),
    ("threads=-2", "threads must be >= 1, got -2"),
    ("embed.threads=0", "embed.threads must be >= 1, got 0"),
    ("seed=-1", "seed must be >= 0, got -1"),
    (f"seed={2**32}", f"seed must be < 2^32, got {2**32}"),
    ("data.split_seed=-1", "data.split_seed must be >= 0, got -1"),
    (f"data.split_seed={2**32 + 1}", f"data.split_seed must be < 2^32, got {2**32 + 1}"),
    ("seeds=[0,-3]", "seeds must be >= 0, got -3 in [0, -3]"),
    (f"eval.bon_seed={2**40}", f"eval.bon_seed must be < 2^32, got {2**40}"),
    ("text.seed=-7", "text.seed must be >= 0, got -7"),
    ("synth.chunk_size=0", "synth.chunk_size must be >= 1, got 0"),
    ("embed.chunk_size=0", "embed.chunk_size must be >= 1, got 0"),
    ("eval.n_bootstrap=0", "eval.n_bootstrap must be >= 1, got 0"),
    ("eval.n_bootstrap=-5", "eval.n_bootstrap must be >= 1, got -5"),
    ("reward.dropout=1", "reward.dropout must be < 1, got 1.0"),
    ("reward.hidden=[64,0]", "reward.hidden must be >= 1, got 0 in [64, 0]"),
]


@pytest.mark.parametrize(("override", "message"), BOUNDS, ids=[b[0] for b in BOUNDS])
def test_out_of_bounds_values_name_the_key(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=f"^{re.escape(message)}$"):
        load_config(None, [override])


def test_bounds_hold_for_a_section_built_alone_and_name_real_keys() -> None:
    from latentrm.config import EmbedConfig, from_dict
    from latentrm.config.bounds import BOUNDS as TABLE
    from latentrm.config.bounds import bounded_keys

    with pytest.raises(ConfigError, match=r"^embed\.threads must be >= 1, got 0$"):
        from_dict(EmbedConfig, {"threads": 0}, prefix="embed.")  # `latentrm embed --threads 0`
    assert set(TABLE) <= set(bounded_keys(RunConfig))
    load_config(None, ["threads=1", f"seed={2**32 - 1}", "reward.dropout=0", "text.lr=null"])


def _float_keys(cls: type = RunConfig, prefix: str = "") -> list[tuple[str, bool]]:
    import dataclasses
    import typing

    out = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            out += _float_keys(tp, f"{prefix}{f.name}.")
        elif tp is float or float in typing.get_args(tp):
            out.append((f"{prefix}{f.name}", False))
        elif typing.get_origin(tp) is tuple and typing.get_args(tp)[0] is float:
            out.append((f"{prefix}{f.name}", True))
    return out


FLOAT_KEYS = _float_keys()


@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf", "nan"])
@pytest.mark.parametrize(("key", "is_tuple"), FLOAT_KEYS, ids=[k for k, _ in FLOAT_KEYS])
def test_non_finite_floats_name_the_key(key: str, is_tuple: bool, value: str) -> None:
    override = f"{key}=[0.5,{value}]" if is_tuple else f"{key}={value}"
    with pytest.raises(ConfigError, match=f"^{re.escape(key)}: must be a finite number, got "):
        load_config(None, [override])


def test_float_keys_cover_every_section() -> None:
    keys = {k for k, _ in FLOAT_KEYS}
    assert {
        "reward.lr",
        "vae.gamma",
        "synth.sigma2",
        "data.val_fraction",
        "text.lr",
        "self_rewarding.top_p",
        "select_gamma",
        "eval.heldout_prompts",
    } <= keys


def test_duplicate_yaml_keys_are_an_error(tmp_path: Path) -> None:
    p = tmp_path / "c.yaml"
    p.write_text("seed: 1\nreward:\n  lr: 0.001\n  epochs: 3\n  lr: 0.1\n")
    with pytest.raises(
        ConfigError,
        match=rf"^{re.escape(str(p))}: line 5: duplicate key 'lr' "
        r"\(first on line 3\)$",
    ):
        load_config(p)
    p.write_text("seed: 1\nratios: [2]\nseed: 2\n")
    with pytest.raises(ConfigError, match=r"line 3: duplicate key 'seed' \(first on line 1\)"):
        load_config(p)
    with pytest.raises(
        ConfigError,
        match=r"override 'variants=\{a: 1, a: 2\}': line 1: "
        "duplicate key 'a'",
    ):
        load_config(None, ["variants={a: 1, a: 2}"])


def test_yaml_python_tags_are_refused_in_one_line_naming_the_line(tmp_path: Path) -> None:
    """The safe loader: a config file cannot run code (the tag is refused, the command never
    runs); the error, like every other config error, is one line naming the file and line."""
    marker = tmp_path / "ran"
    p = tmp_path / "c.yaml"
    p.write_text(f'seed: 1\nreward: !!python/object/apply:os.system ["touch {marker}"]\n')
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert str(e.value) == (
        f"{p}: line 2: invalid YAML: could not determine a constructor for the "
        "tag 'tag:yaml.org,2002:python/object/apply:os.system'"
    )
    assert not marker.exists()
    p.write_text("seed: 1\nreward: {lr: 0.1\n")  # a syntax error: PyYAML's message spans 6 lines
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert "\n" not in str(e.value)
    assert str(e.value).startswith(f"{p}: line 3: invalid YAML: ")


# --- files and overrides that used to be tracebacks or to cost a lot (issue 23 items 2, 5) --------
def _levels(first: str, line: str) -> str:
    """Eight anchors a..h, each level holding its predecessor 9 times: 9^8 = 43 million values
    once expanded."""
    out = first
    for p, c in zip("abcdefg", "bcdefgh", strict=True):
        out += line.format(c=c, refs=",".join([f"*{p}"] * 9))
    return out


# Valid keys only, so that nothing refuses them before they expand: the string key's elements
# are turned into text (str() of a 43-million-value list), the variants copied by to_dict.
BOMBS = {
    "lists": "text:\n  lora_target_modules: ["
    + _levels("&a [x,x,x,x,x,x,x,x,x]", ", &{c} [{refs}]")
    + "]\n",
    "mappings": "variants:\n"
    + _levels(
        "  a: &a {method: none, k: [x,x,x,x,x,x,x,x,x]}\n",
        "  {c}: &{c} {{method: none, k: [{refs}]}}\n",
    ),
}


@pytest.mark.parametrize("name", sorted(BOMBS))
def test_yaml_alias_bombs_are_refused_before_they_expand(tmp_path: Path, name: str) -> None:
    p = tmp_path / "bomb.yaml"
    p.write_text(BOMBS[name])
    assert p.stat().st_size < 600
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert str(e.value).startswith(f"{p}: line ") and "\n" not in str(e.value)
    assert "aliases expand to more than 10000 values" in str(e.value)


def test_a_few_yaml_aliases_are_fine(tmp_path: Path) -> None:
    p = tmp_path / "c.yaml"
    p.write_text(
        "variants:\n  a: &lens {method: lens, synth.pairing: cross}\n  b: *lens\nmethods: [a, b]\n"
    )
    cfg = load_config(p)
    assert cfg.variants["a"] == cfg.variants["b"] == {"method": "lens", "synth.pairing": "cross"}


def test_unreadable_config_files_are_one_line(tmp_path: Path) -> None:
    deep = tmp_path / "deep.yaml"
    deep.write_text("seed: " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(ConfigError) as e:
        load_config(deep)
    assert str(e.value) == f"{deep}: line 1: nested more than 50 levels deep"
    deep.write_text("a:\n" + "".join(" " * i + f"k{i}:\n" for i in range(1, 200)))
    with pytest.raises(ConfigError, match=r": line 50: nested more than 50 levels deep$"):  # k49:
        load_config(deep)
    latin = tmp_path / "latin.yaml"
    latin.write_bytes(b"seed: 1\ndata:\n  path: caf\xe9.jsonl\n")
    with pytest.raises(ConfigError) as e:
        load_config(latin)
    assert str(e.value) == f"{latin}: line 3: not UTF-8 text (byte 0xe9)"
    folder = tmp_path / "configs"
    folder.mkdir()
    with pytest.raises(ConfigError) as e:
        load_config(folder)
    assert str(e.value) == f"{folder}: is a folder; give a YAML config file"
    big = tmp_path / "big.yaml"
    big.write_text("seed: 1\n" + "#" * (1 << 20) + "\n")
    with pytest.raises(ConfigError) as e:
        load_config(big)
    assert str(e.value) == f"{big}: over 1 MiB; a config file is at most 1 MiB"
    with pytest.raises(ConfigError, match=r"^/dev/zero: over 1 MiB"):  # read, never to the end
        load_config("/dev/zero")


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("ratios=[2,4", "override 'ratios=[2,4': line 1: invalid YAML: "),
        (
            "variants={a: {method: none}",
            "override 'variants={a: {method: none}': line 1: invalid YAML: ",
        ),
        ("data.path=[a,b]", "data.path: expected a string, got ['a', 'b']"),
        ("embed.model={x: 1}", "embed.model: expected a string, got {'x': 1}"),
        ("cache_dir=[]", "cache_dir: expected a string, got []"),
        ("data.path=!!binary aGk=", "data.path: expected a string, got b'hi'"),
    ],
)
def test_overrides_that_were_sent_on_mangled_are_refused(override: str, message: str) -> None:
    """An unclosed list was read as the string '[2,4' (and then as [2, 4]); a list given for a
    string key became the string "['a', 'b']" and was sent to the Hub as a dataset id."""
    with pytest.raises(ConfigError) as e:
        load_config(None, [override])
    assert str(e.value).startswith(message) and "\n" not in str(e.value)


def test_scalars_still_become_strings_and_sweep_values_may_be_lists() -> None:
    cfg = load_config(
        None,
        [
            "embed.model=123",
            "data.path=@odd",
            "sweep=reward.hidden",
            "sweep_values=[[64], [64, 64]]",
        ],
    )
    assert (cfg.embed.model, cfg.data.path) == ("123", "@odd")
    assert cfg.sweep_values == ("[64]", "[64, 64]")


def test_small_data_head_keys_load_and_are_bounded():
    assert load_config(None, ["reward.l2=cv", "reward.hidden=[]"]).reward.l2 == "cv"
    assert load_config(None, ["reward.l2=0.5", "reward.hidden=[]"]).reward.l2 == 0.5
    # the rules between head keys are checked at load too, not when the head is trained
    with pytest.raises(ConfigError, match=r"^reward.l2=cv fits a linear head: set reward.hidden"):
        load_config(None, ["reward.l2=cv"])
    with pytest.raises(ConfigError, match="^reward.cross_fit and reward.ensemble > 1 are two"):
        load_config(None, ["reward.cross_fit=5", "reward.ensemble=5"])
    cfg = load_config(None, ["reward.cross_fit=5", "reward.min_epochs=10", "reward.average=true"])
    assert (cfg.reward.cross_fit, cfg.reward.min_epochs, cfg.reward.average) == (5, 10, True)
    for key in ("reward.min_epochs", "reward.cross_fit", "reward.l2", "reward.small_data"):
        with pytest.raises(ConfigError, match=f"^{re.escape(key)} must be >= 0, got -1"):
            load_config(None, [f"{key}=-1"])
    with pytest.raises(ConfigError, match="^reward.l2: must be a finite number, got often"):
        load_config(None, ["reward.l2=often"])
