"""Configs from YAML and key=value overrides, to YAML, and their help text.

Values are coerced to each field's annotated type (a float must be finite, a string key takes no
list) and checked against their bounds and choices (:mod:`latentrm.config.bounds`); an unknown
key is an error naming the nearest valid one. A run config is checked whole when it is built:
every variant and every swept value is built too, and LENS's ratios checked against its samples,
so a mistake anywhere in it is found before any work. Files and override values are read as
YAML by :mod:`latentrm.config.yaml_text` (safe loader, limits, one-line errors).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from latentrm.config.bounds import check_bounds, check_lens_ratio
from latentrm.config.run import RunConfig, _nearest
from latentrm.config.yaml_text import quoted, read_config_text, safe_load_yaml, yaml_error_line
from latentrm.errors import ConfigError
from latentrm.io import atomic_write_text

C = TypeVar("C")

# Keys that were replaced: an old config gets told what to write instead.
RENAMED = {"synth.ratio": "`ratios` (one key for every method)"}
# Tuple-of-string keys whose elements are YAML text: a list or mapping given there is kept as
# its text (sweep_values: [[64], [64, 64]] sweeps reward.hidden), not refused.
_YAML_TEXT = {"sweep_values"}


def _field_names(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Convert a YAML/override value to the field's annotated type, or raise ConfigError."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, where)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"{where}: bad value {value!r}")
    if origin is tuple:
        if isinstance(value, str):
            value = [v for v in value.strip("()[] ").split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            value = [value]
        if where in _YAML_TEXT:  # each element is YAML text: a collection stays one element
            value = [str(v) if isinstance(v, list | dict) else v for v in value]
        return tuple(_coerce(v, args[0], where) for v in value)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return from_dict(tp, value, prefix=f"{where}.")
    if tp is bool:
        if isinstance(value, bool):
            return value
        truthy, falsy = ("true", "1", "yes", "on"), ("false", "0", "no", "off")
        if isinstance(value, str) and value.lower() in truthy + falsy:
            return value.lower() in truthy
        raise ConfigError(f"{where}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        try:
            return int(value)
        except (TypeError, ValueError, OverflowError):
            raise ConfigError(f"{where}: expected an integer, got {value!r}") from None
    if tp is float:
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        try:
            number = float(value)
        except (TypeError, ValueError, OverflowError):
            raise ConfigError(f"{where}: expected a number, got {value!r}") from None
        if not math.isfinite(number):
            raise ConfigError(f"{where}: must be a finite number, got {value}")
        return number
    if tp is str:
        if isinstance(value, list | dict | set | bytes):  # str() would make "['a', 'b']" a path
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return str(value)
    return value


def from_dict(cls: type[C], data: dict[str, Any], prefix: str = "") -> C:
    """Build dataclass `cls` from a (possibly partial) nested dict.

    Unknown keys raise ConfigError naming the nearest valid one. A RunConfig is checked whole
    (:func:`check_run_config`).
    """
    return _build(cls, data, prefix)


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)  # slow (it evaluates the annotations): once per class


def _build(cls: type[C], data: dict[str, Any], prefix: str = "", whole: bool = True) -> C:
    hints = _hints(cls)
    names = _field_names(cls)
    kwargs: dict[str, Any] = {}
    for key, value in (data or {}).items():
        if f"{prefix}{key}" in RENAMED:
            raise ConfigError(f"{prefix}{key} is now {RENAMED[f'{prefix}{key}']}")
        if key not in names:
            raise ConfigError(
                f"unknown config key {quoted(f'{prefix}{key}')}{_nearest(str(key), names, prefix)}"
            )
        kwargs[key] = _coerce(value, hints[key], f"{prefix}{key}")
    out = cls(**kwargs)
    check_bounds(out, prefix)
    if whole and isinstance(out, RunConfig):
        check_run_config(out)
    return out


def check_run_config(cfg: RunConfig, sweeps: bool = True) -> None:
    """What a RunConfig's own checks cannot see, because it needs other configs built: every
    variant's config, every swept value's config (with `sweeps`), and that LENS can make each
    ratio it is asked for. ConfigError naming the variant or the swept value."""
    resolved = {name: _variant(cfg, name) for name in cfg.variants}
    for name in dict.fromkeys((*cfg.methods, *cfg.recipe_from)):
        method, mcfg = resolved.get(name, (name, cfg))
        if method == "lens":
            where = f"variants.{name}: " if name in resolved else ""
            for ratio in mcfg.ratios:
                try:
                    check_lens_ratio(mcfg.synth, ratio)
                except ConfigError as e:
                    raise ConfigError(f"{where}{e}") from None
    if not sweeps:
        return
    if cfg.sweep is None:
        if cfg.sweep_values:
            raise ConfigError("sweep_values is set but sweep (the key to sweep) is not")
        return
    if not cfg.sweep_values:
        raise ConfigError(f"sweep={cfg.sweep} needs sweep_values, e.g. sweep_values=[0,0.1,1]")
    base = to_dict(cfg)
    for v in cfg.sweep_values:
        try:
            swept = _build(
                RunConfig, deep_merge(base, parse_overrides([f"{cfg.sweep}={v}"])), whole=False
            )
            check_run_config(swept, sweeps=False)
        except ConfigError as e:
            raise ConfigError(f"sweep {cfg.sweep}={v}: {e}") from None


def _variant(cfg: RunConfig, name: str) -> tuple[str, RunConfig]:
    """(method, config) of variant `name`: `cfg` with the variant's changes."""
    spec = dict(cfg.variants[name])
    method = spec.pop("method")
    return method, _changed(cfg, spec, f"variants.{name}: ")


def to_dict(cfg: Any) -> dict[str, Any]:
    """Plain nested dict (tuples become lists) suitable for YAML/JSON."""

    def conv(v: Any) -> Any:
        if isinstance(v, tuple):
            return [conv(x) for x in v]
        if isinstance(v, dict):
            return {k: conv(x) for k, x in v.items()}
        return v

    return conv(dataclasses.asdict(cfg))


def parse_overrides(overrides: list[str]) -> dict[str, Any]:
    """['vae.gamma=0.5', 'ratios=[2,4]'] -> nested dict with YAML-parsed values."""
    out: dict[str, Any] = {}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {quoted(item)} is not of the form key=value")
        key, raw = item.split("=", 1)
        try:
            value = safe_load_yaml(raw) if raw != "" else ""
        except yaml.YAMLError as e:
            if raw.lstrip().startswith(("[", "{")):  # a list or mapping left unclosed
                raise ConfigError(f"override {quoted(item)}: {yaml_error_line(e)}") from None
            value = raw  # any other text that is not YAML (a path with '#: ', ...) is a string
        except ConfigError as e:
            raise ConfigError(f"override {quoted(item)}: {e}") from None
        if not set_dotted(out, key.strip(), value):
            raise ConfigError(f"override {quoted(item)} conflicts with an earlier override")
    return out


def set_dotted(tree: dict[str, Any], key: str, value: Any) -> bool:
    """tree[a][b][c] = value for key "a.b.c", creating the dicts on the way; False (tree left
    as it was below the conflict) when a prefix already holds a value that is not a dict."""
    node = tree
    parts = key.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            return False
    node[parts[-1]] = value
    return True


def deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def load_config(
    path: str | Path | None = None, overrides: list[str] | None = None, cls: type[C] = RunConfig
) -> C:
    """Load `cls` from a YAML file (optional) with key=value overrides applied on top."""
    data: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        text = read_config_text(p)
        try:
            data = safe_load_yaml(text) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{p}: {yaml_error_line(e)}") from None
        except ConfigError as e:
            raise ConfigError(f"{p}: {e}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{p}: top level must be a mapping of config keys")
    data = deep_merge(data, parse_overrides(overrides or []))
    try:
        return from_dict(cls, data)
    except ConfigError as e:
        where = f"{path}: " if path is not None else ""
        raise ConfigError(f"{where}{e}") from None


def save_config(cfg: Any, path: str | Path) -> None:
    atomic_write_text(Path(path), yaml.safe_dump(to_dict(cfg), sort_keys=False))


def saved_config_matches(path: str | Path, cfg: Any) -> bool:
    """Whether the config saved at `path` resolves to `cfg` (an unreadable/absent file: False).

    The saved YAML is read through the current dataclasses, so keys added since it was written
    take their defaults: a run is not invalidated by a new option it did not know about, only by a
    value that differs (or a key that no longer exists).
    """
    p = Path(path)
    if not p.exists():
        return False
    try:
        saved = from_dict(type(cfg), safe_load_yaml(read_config_text(p)) or {})
    except (ConfigError, yaml.YAMLError, TypeError):
        return False
    return to_dict(saved) == to_dict(cfg)


def help_lines(cls: type, prefix: str = "") -> list[str]:
    """One line per (nested) config key with its default and help text, for --help output."""
    lines = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            lines.extend(help_lines(tp, f"{prefix}{f.name}."))
            continue
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        lines.append(f"  {prefix}{f.name}={default!r}: {f.metadata.get('help', '')}")
    return lines


def apply_changes(cfg: RunConfig, changes: dict[str, Any], where: str = "") -> RunConfig:
    """`cfg` with dotted-key `changes` ({"synth.pairing": "cross"}), checked like any override.

    What needs other configs built (:func:`check_run_config`) is not checked again: `cfg` was
    when it was loaded, and the recipes change it often (a seed, a layer, a grid point)."""
    return _changed(cfg, changes, where)


def _changed(cfg: RunConfig, changes: dict[str, Any], where: str, whole: bool = False) -> RunConfig:
    nested: dict[str, Any] = {}
    for key, value in changes.items():
        if not set_dotted(nested, str(key), value):
            raise ConfigError(f"{where}{key} conflicts with another change")
    try:
        return _build(type(cfg), deep_merge(to_dict(cfg), nested), whole=whole)
    except ConfigError as e:
        raise ConfigError(f"{where}{e}") from None


def method_config(cfg: RunConfig, name: str) -> tuple[str, RunConfig]:
    """(the augmentation method, the config it runs with) of a name in `methods`.

    A method's own name runs with `cfg`; a variant's name with its method and changes applied.
    """
    return _variant(cfg, name) if name in cfg.variants else (name, cfg)
