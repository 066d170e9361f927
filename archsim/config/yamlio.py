"""Safe YAML reading with clear errors: data only, duplicate keys are errors, and syntax errors
name the file, line and column.

Config and workload files are data, never code. Only plain YAML values are read: mappings,
lists, strings, numbers, booleans and null. Every explicit tag other than the standard ones
for those (``!!python/...``, ``!!binary``, ``!!set``, ``!!timestamp``, custom ``!tags``) is an
error, and dates are read as strings. A file is checked event by event before anything is
built from it, so hostile input fails fast with a clear limit instead of exhausting memory,
the stack or the user's patience (see ``MAX_YAML_*``): aliases are counted as what they expand
to ("billion laughs"), and an alias may not refer to the node that contains it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from archsim.errors import ConfigError

MAX_YAML_BYTES = 2**20  # a documented limit: config and workload files up to 1 MiB
MAX_YAML_NODES = 100_000  # values (keys, scalars, lists, mappings), aliases counted expanded
MAX_YAML_DEPTH = 64  # nesting of lists and mappings, aliases counted expanded
MAX_NUMBER_DIGITS = 1000  # a plain number longer than this is not a value anyone meant

_TAG = "tag:yaml.org,2002:"
# Tags that build plain data; the merge key ``<<`` is standard YAML and builds mappings.
ALLOWED_TAGS = frozenset(_TAG + t for t in ("str", "int", "float", "bool", "null", "seq", "map", "merge"))

# libyaml (when PyYAML was built with it) is much faster and its event parser is iterative;
# its composer recurses in C, which is why nesting is checked on events first.
_Base: type = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _StrictLoader(_Base):  # type: ignore[misc, valid-type]
    """SafeLoader that rejects duplicate mapping keys instead of silently keeping the last, and
    reads unquoted dates and ``=`` as strings (a config has no timestamps)."""


_StrictLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in (_TAG + "timestamp", _TAG + "value")]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    loader.flatten_mapping(node)
    mapping: dict[Any, Any] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if not isinstance(key, (str, int, float, bool)) or key is None:
            raise yaml.constructor.ConstructorError(
                None, None, f"a mapping key must be a plain value, not a {type(key).__name__}", key_node.start_mark
            )
        if key in mapping:
            line = key_node.start_mark.line + 1
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r} (line {line})", key_node.start_mark
            )
        mapping[key] = loader.construct_object(value_node, deep=deep)
    return mapping


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)

_NUMBER_LIKE = re.compile(r"^[-+]?[0-9._]+(?:[eE][-+]?[0-9]+)?$")


def _where(source: str, mark) -> str:
    return f"{source}:{mark.line + 1}:{mark.column + 1}" if mark is not None else source


def _show_tag(tag: str) -> str:
    return "!!" + tag[len(_TAG):] if tag.startswith(_TAG) else tag


def check_events(text: str, source: str) -> None:
    """Walk the YAML events of ``text`` (nothing is built) and reject what is not plain data
    or exceeds the limits: tags, nesting, size with aliases expanded, recursive aliases."""
    expanded: dict[str, tuple[int, int]] = {}  # anchor -> (values, height) of its node, aliases expanded
    stack: list[list] = []  # per open list or mapping: [anchor, values inside, height of its tallest child]
    total = 0

    def node(values: int, height: int, anchor: str | None, mark) -> None:
        """A complete node of ``values`` values, ``height`` levels tall, inside the open ones."""
        if len(stack) + height > MAX_YAML_DEPTH:
            raise ConfigError(f"nested more than {MAX_YAML_DEPTH} levels deep (aliases counted expanded); "
                              "archsim's limit for a config or workload file", file=_where(source, mark))
        if anchor is not None:
            expanded[anchor] = (values, height)
        if stack:
            stack[-1][1] += values
            stack[-1][2] = max(stack[-1][2], height)

    def count(values: int, mark) -> None:
        nonlocal total
        total += values
        if total > MAX_YAML_NODES:
            raise ConfigError(f"more than {MAX_YAML_NODES:,} values (aliases counted expanded); archsim's "
                              "limit for a config or workload file", file=_where(source, mark))

    for event in yaml.parse(text, Loader=_Base):
        mark = event.start_mark
        tag = getattr(event, "tag", None)
        if tag is not None and tag not in ALLOWED_TAGS:
            raise ConfigError(
                f"the YAML tag {_show_tag(tag)} is not allowed: config files are data, written as plain "
                "mappings, lists, strings, numbers, booleans and null", file=_where(source, mark))
        if isinstance(event, yaml.ScalarEvent):
            if tag is None and event.implicit[0] and len(event.value) > MAX_NUMBER_DIGITS \
                    and _NUMBER_LIKE.match(event.value):
                raise ConfigError(f"a number of {len(event.value):,} characters is too long",
                                  file=_where(source, mark))
            count(1, mark)
            node(1, 1, event.anchor, mark)
        elif isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
            count(1, mark)
            node(0, 1, None, mark)  # checks the depth before going deeper
            stack.append([event.anchor, 1, 0])
        elif isinstance(event, (yaml.SequenceEndEvent, yaml.MappingEndEvent)):
            anchor, values, height = stack.pop()
            node(values, height + 1, anchor, mark)
        elif isinstance(event, yaml.AliasEvent):
            if any(frame[0] == event.anchor for frame in stack):
                raise ConfigError(f"the alias *{event.anchor} refers to a node that contains it (a cycle)",
                                  file=_where(source, mark))
            values, height = expanded.get(event.anchor, (1, 1))  # an undefined alias fails when composed
            count(values, mark)
            node(values, height, None, mark)


def read_yaml_text(text: str, source: str) -> Any:
    try:
        check_events(text, source)
        loader = _StrictLoader(text)
        try:
            return loader.get_single_data()
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "malformed YAML"
        raise ConfigError(f"YAML syntax error: {problem}", file=_where(source, mark)) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"YAML error: {exc}", file=source) from None
    except (ValueError, OverflowError, RecursionError) as exc:  # e.g. a value PyYAML cannot convert
        raise ConfigError(f"cannot read a value: {exc}", file=source) from None


def read_yaml_mapping(path: Path) -> dict:
    """Read a YAML file whose top level must be a mapping."""
    try:
        if path.exists() and not path.is_file() and not path.is_dir():
            raise ConfigError("is not a regular file, expected a YAML file", file=str(path))
        size = path.stat().st_size
        if size > MAX_YAML_BYTES and not path.is_dir():
            raise ConfigError(f"file is {size:,} bytes; archsim reads config and workload files of at most "
                              f"{MAX_YAML_BYTES:,} bytes (1 MiB)", file=str(path))
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("file not found", file=str(path)) from None
    except IsADirectoryError:
        raise ConfigError("is a directory, expected a YAML file", file=str(path)) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"not a UTF-8 text file (byte 0x{exc.object[exc.start]:02x} at offset {exc.start})",
                          file=str(path)) from None
    except OSError as exc:
        raise ConfigError(f"cannot read file: {exc.strerror or exc}", file=str(path)) from None
    data = read_yaml_text(text, str(path))
    if data is None:
        raise ConfigError("file is empty, expected a mapping of keys", file=str(path))
    if not isinstance(data, dict):
        raise ConfigError(
            f"top level is a {type(data).__name__}, expected a mapping of keys", file=str(path)
        )
    return data
