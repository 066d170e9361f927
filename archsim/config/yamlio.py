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


_MERGE = _TAG + "merge"


class _BadValue(yaml.constructor.ConstructorError):
    """A value archsim refuses to read; ``path`` gathers the keys above it as the error rises
    through the mappings and lists being built, so the message can name the key."""

    def __init__(self, problem: str, mark):
        super().__init__(None, None, problem, mark)
        self.path: list[str] = []


def _entries(loader: _StrictLoader, node: yaml.MappingNode) -> tuple[list, list]:
    """The (key, value) nodes a mapping gets through merge keys (``<<: *anchor``), in the order
    a later one overrides an earlier, and those written in it, which override them all (YAML
    1.1's merge spec). PyYAML's own flattening is not used: it rewrites nodes in place and, in
    6.0, lets a merged anchor's inherited key beat the anchor's own."""
    cache = loader.__dict__.setdefault("_merge_entries", {})
    if id(node) in cache:
        return cache[id(node)]
    merged: list = []
    written = [(k, v) for k, v in node.value if k.tag != _MERGE]
    for key_node, value_node in node.value:
        if key_node.tag != _MERGE:
            continue
        sources = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
        for source in reversed(sources):  # the first mapping listed wins: it comes last
            if not isinstance(source, yaml.MappingNode):
                raise yaml.constructor.ConstructorError(
                    None, None, f"a merge key (<<) takes a mapping or a list of mappings, not a {source.id}",
                    source.start_mark)
            inherited, own = _entries(loader, source)
            merged += inherited + own
    cache[id(node)] = merged, written
    return merged, written


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    """A mapping whose keys are plain values, each written once in it (``<<`` too); a key
    written in it overrides one it merges."""
    merges = [k for k, _ in node.value if k.tag == _MERGE]
    if len(merges) > 1:
        raise yaml.constructor.ConstructorError(
            None, None, f"duplicate merge key '<<' (line {merges[1].start_mark.line + 1}); merge several "
            "mappings with one key: <<: [*a, *b]", merges[1].start_mark)
    merged, written = _entries(loader, node)
    mapping: dict[Any, Any] = {}
    own: set[Any] = set()
    for i, (key_node, value_node) in enumerate(merged + written):
        key = loader.construct_object(key_node, deep=deep)
        if not isinstance(key, (str, int, float, bool)) or key is None:
            raise yaml.constructor.ConstructorError(
                None, None, f"a mapping key must be a plain value, not a {type(key).__name__}", key_node.start_mark
            )
        if i >= len(merged):  # written here: once only
            if key in own:
                line = key_node.start_mark.line + 1
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (line {line})", key_node.start_mark
                )
            own.add(key)
        try:
            mapping[key] = loader.construct_object(value_node, deep=deep)
        except _BadValue as exc:
            exc.path.insert(0, str(key))
            raise
    return mapping


def _construct_sequence(loader: _StrictLoader, node: yaml.SequenceNode, deep: bool = False) -> list:
    """A list, built at once (not deferred as PyYAML does) so that an error names its index."""
    items = []
    for i, child in enumerate(node.value):
        try:
            items.append(loader.construct_object(child, deep=deep))
        except _BadValue as exc:
            exc.path.insert(0, str(i))
            raise
    return items


def _plain_number(node: yaml.ScalarNode) -> None:
    """Refuse what YAML 1.1 reads as a number though few writers mean it: digits other than
    ASCII 0-9 (an explicit ``!!int '１６'`` would be 16), a leading zero (``010`` is octal, 8)
    and colons (``1:30`` is base 60, 90)."""
    text = node.value
    digits = text.replace("_", "").lstrip("+-")
    if not text.isascii():
        raise _BadValue(f"{text!r} has characters other than ASCII; write numbers with the digits 0-9",
                        node.start_mark)
    if ":" in digits:
        raise _BadValue(f"{text} is a base-60 number in YAML 1.1; write it in decimal, or quote it if it is text",
                        node.start_mark)
    if node.tag == _TAG + "int" and len(digits) > 1 and digits[0] == "0" and digits[1].isdigit():
        raise _BadValue(f"{text} has a leading zero, which YAML 1.1 reads as an octal number; ambiguous, so "
                        f"refused: write the decimal integer without leading zeros (e.g. {int(digits)}), "
                        "or quote it if it is text", node.start_mark)


def _construct_int(loader: _StrictLoader, node: yaml.ScalarNode) -> int:
    _plain_number(node)
    return yaml.constructor.SafeConstructor.construct_yaml_int(loader, node)


def _construct_float(loader: _StrictLoader, node: yaml.ScalarNode) -> float:
    _plain_number(node)
    return yaml.constructor.SafeConstructor.construct_yaml_float(loader, node)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_sequence)
_StrictLoader.add_constructor(_TAG + "int", _construct_int)
_StrictLoader.add_constructor(_TAG + "float", _construct_float)

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
    except _BadValue as exc:
        raise ConfigError(exc.problem, file=_where(source, exc.problem_mark), key=".".join(exc.path) or None) from None
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
