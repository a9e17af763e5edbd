"""Configs from YAML and key=value overrides, to YAML, and their help text.

Values are coerced to each field's annotated type (a float must be finite) and checked against
their bounds (:mod:`latentrm.config.bounds`); an unknown key is an error naming the nearest valid
one. YAML is read with a safe loader (no Python tags) that refuses duplicate keys.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from latentrm.config.bounds import check_bounds
from latentrm.config.run import RunConfig, _nearest
from latentrm.errors import ConfigError
from latentrm.io import atomic_write_text

C = TypeVar("C")

# Keys that were replaced: an old config gets told what to write instead.
RENAMED = {"synth.ratio": "`ratios` (one key for every method)"}


def _duplicate_keys(node: yaml.Node, found: list[tuple[int, str, int]], seen: set[int]) -> None:
    """(line, key, first line) of every key given twice in one mapping under `node`."""
    if id(node) in seen:  # an alias of a node already walked
        return
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        first: dict[str, int] = {}
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode) and key.value != "<<":
                line = key.start_mark.line + 1
                if key.value in first:
                    found.append((line, key.value, first[key.value]))
                first.setdefault(key.value, line)
            _duplicate_keys(value, found, seen)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            _duplicate_keys(item, found, seen)


class _UniqueKeyLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses a key given twice in one mapping (PyYAML keeps the last);
    the error names the first such key in the document."""

    def construct_document(self, node: yaml.Node) -> Any:
        found: list[tuple[int, str, int]] = []
        _duplicate_keys(node, found, set())
        if found:
            line, key, first = min(found)
            raise ConfigError(f"line {line}: duplicate key '{key}' (first on line {first})")
        return super().construct_document(node)


def safe_load_yaml(text: str) -> Any:
    """YAML `text` with the safe loader (no Python tags); a duplicate key is a ConfigError."""
    return yaml.load(text, Loader=_UniqueKeyLoader)


def _yaml_error_line(e: yaml.YAMLError) -> str:
    """PyYAML's error (several lines, with a caret drawing) as one line: 'line N: problem'."""
    mark = getattr(e, "problem_mark", None)
    problem = getattr(e, "problem", None) or getattr(e, "context", None)
    if mark is not None and problem:
        return f"line {mark.line + 1}: invalid YAML: {problem}"
    return "invalid YAML: " + " ".join(str(e).split())


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
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: expected an integer, got {value!r}") from None
    if tp is float:
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: expected a number, got {value!r}") from None
        if not math.isfinite(number):
            raise ConfigError(f"{where}: must be a finite number, got {value}")
        return number
    if tp is str:
        return str(value)
    return value


def from_dict(cls: type[C], data: dict[str, Any], prefix: str = "") -> C:
    """Build dataclass `cls` from a (possibly partial) nested dict.

    Unknown keys raise ConfigError naming the nearest valid one.
    """
    hints = typing.get_type_hints(cls)
    names = _field_names(cls)
    kwargs: dict[str, Any] = {}
    for key, value in (data or {}).items():
        if f"{prefix}{key}" in RENAMED:
            raise ConfigError(f"{prefix}{key} is now {RENAMED[f'{prefix}{key}']}")
        if key not in names:
            raise ConfigError(f"unknown config key '{prefix}{key}'{_nearest(key, names, prefix)}")
        kwargs[key] = _coerce(value, hints[key], f"{prefix}{key}")
    out = cls(**kwargs)
    check_bounds(out, prefix)
    return out


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
            raise ConfigError(f"override '{item}' is not of the form key=value")
        key, raw = item.split("=", 1)
        try:
            value = safe_load_yaml(raw) if raw != "" else ""
        except yaml.YAMLError:
            value = raw
        except ConfigError as e:
            raise ConfigError(f"override '{item}': {e}") from None
        if not set_dotted(out, key.strip(), value):
            raise ConfigError(f"override '{item}' conflicts with an earlier override")
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
        if not p.exists():
            raise ConfigError(f"config file not found: {p}")
        try:
            data = safe_load_yaml(p.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{p}: {_yaml_error_line(e)}") from None
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
        saved = from_dict(type(cfg), safe_load_yaml(p.read_text()) or {})
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
    """`cfg` with dotted-key `changes` ({"synth.pairing": "cross"}), checked like any override."""
    nested: dict[str, Any] = {}
    for key, value in changes.items():
        if not set_dotted(nested, str(key), value):
            raise ConfigError(f"{where}{key} conflicts with another change")
    try:
        return from_dict(type(cfg), deep_merge(to_dict(cfg), nested))
    except ConfigError as e:
        raise ConfigError(f"{where}{e}") from None


def method_config(cfg: RunConfig, name: str) -> tuple[str, RunConfig]:
    """(the augmentation method, the config it runs with) of a name in `methods`.

    A method's own name runs with `cfg`; a variant's name with its method and changes applied.
    """
    if name not in cfg.variants:
        return name, cfg
    spec = dict(cfg.variants[name])
    method = spec.pop("method")
    return method, apply_changes(cfg, spec, f"variants.{name}: ")
