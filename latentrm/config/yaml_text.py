"""Config files as YAML text: read safely, with one-line errors naming the line.

A config file is UTF-8 and at most :data:`MAX_CONFIG_BYTES` (read no further, so a device or a
pipe cannot hang a command). YAML is read with a safe loader (no Python tags) that refuses
duplicate keys, nesting beyond :data:`MAX_DEPTH` and aliases that expand beyond
:data:`MAX_EXPANDED` values (an alias bomb of 600 bytes can stand for billions), all before any
value is built. Key=value overrides go through the same loader.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from latentrm.errors import ConfigError

MAX_CONFIG_BYTES = 1 << 20  # a config is a few kB; more is a mistake (or /dev/zero)
MAX_DEPTH = 50  # nesting levels of one YAML document (a config uses about 4)
MAX_EXPANDED = 10_000  # values of a YAML document once its aliases are expanded


def quoted(text: Any) -> str:
    """`text` quoted for a one-line message: 'text', or its repr when it holds a line break or
    another unprintable character."""
    text = str(text)
    return f"'{text}'" if text.isprintable() else repr(text)


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


def _check_expansion(root: yaml.Node) -> None:
    """ConfigError naming the line of the first node that, with its aliases expanded, holds more
    than MAX_EXPANDED values (an alias bomb: 600 bytes can stand for billions), or that holds
    itself (a recursive alias). Sizes are memoised per node, so this never expands anything."""
    sizes: dict[int, int] = {}

    def size(node: yaml.Node) -> int:
        if id(node) in sizes:
            if sizes[id(node)] < 0:
                raise ConfigError(
                    f"line {node.start_mark.line + 1}: a YAML alias refers to the "
                    "value it is part of"
                )
            return sizes[id(node)]
        sizes[id(node)] = -1  # being counted
        n = 1
        if isinstance(node, yaml.MappingNode):
            n += sum(size(k) + size(v) for k, v in node.value)
        elif isinstance(node, yaml.SequenceNode):
            n += sum(size(item) for item in node.value)
        if n > MAX_EXPANDED:
            raise ConfigError(
                f"line {node.start_mark.line + 1}: YAML aliases expand to more than "
                f"{MAX_EXPANDED} values; write the values out"
            )
        sizes[id(node)] = n
        return n

    size(root)


class _UniqueKeyLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses a key given twice in one mapping (PyYAML keeps the last; the
    error names the first such key in the document), nesting deeper than MAX_DEPTH and aliases
    that expand to more than MAX_EXPANDED values (both before any value is built)."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth, self._aliases = 0, False

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        self._aliases = self._aliases or self.check_event(yaml.AliasEvent)
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                line = self.peek_event().start_mark.line + 1
                raise ConfigError(f"line {line}: nested more than {MAX_DEPTH} levels deep")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_document(self, node: yaml.Node) -> Any:
        if self._aliases:
            _check_expansion(node)
        found: list[tuple[int, str, int]] = []
        _duplicate_keys(node, found, set())
        if found:
            line, key, first = min(found)
            raise ConfigError(f"line {line}: duplicate key {quoted(key)} (first on line {first})")
        return super().construct_document(node)


def safe_load_yaml(text: str) -> Any:
    """YAML `text` with the safe loader (no Python tags); a duplicate key, nesting deeper than
    MAX_DEPTH or an alias bomb is a ConfigError naming the line."""
    return yaml.load(text, Loader=_UniqueKeyLoader)


def yaml_error_line(e: yaml.YAMLError) -> str:
    """PyYAML's error (several lines, with a caret drawing) as one line: 'line N: problem'."""
    mark = getattr(e, "problem_mark", None)
    problem = getattr(e, "problem", None) or getattr(e, "context", None)
    if mark is not None and problem:
        return f"line {mark.line + 1}: invalid YAML: {' '.join(str(problem).split())}"
    return "invalid YAML: " + " ".join(str(e).split())


def read_config_text(path: str | Path) -> str:
    """The text of config file `path`: UTF-8, at most MAX_CONFIG_BYTES (read no further, so a
    device or a pipe cannot hang the command). ConfigError naming the file otherwise."""
    p = Path(path)
    if p.is_dir():
        raise ConfigError(f"{p}: is a folder; give a YAML config file")
    if not p.exists():
        raise ConfigError(f"config file not found: {p}")
    try:
        with p.open("rb") as f:
            raw = f.read(MAX_CONFIG_BYTES + 1)
    except OSError as e:
        raise ConfigError(f"{p}: cannot read it: {e.strerror or e}") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{p}: over 1 MiB; a config file is at most 1 MiB")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise ConfigError(f"{p}: line {line}: not UTF-8 text (byte 0x{raw[e.start]:02x})") from None
