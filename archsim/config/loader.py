"""Load hardware configs: resolve ``extends:``, apply ``--set`` overrides, validate.

Each leaf value remembers the file (or ``--set`` option) it came from, so a validation error
names the file where the offending key was written, not only the file the user passed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from types import UnionType
from typing import TYPE_CHECKING, Any, Sequence, TypeVar, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

from archsim.config.schema import HardwareConfig
from archsim.config.yamlio import read_yaml_mapping, read_yaml_text
from archsim.errors import ConfigError, FieldError
from archsim.units import shorten

if TYPE_CHECKING:
    from archsim.config.chips import ChipConfig

Model = TypeVar("Model", bound=BaseModel)

EXTENDS_KEY = "extends"
MAX_EXTENDS_DEPTH = 32  # a documented limit: files in one chain of 'extends:'
MAX_ERROR_LINES = 20  # problems listed for one file; the rest are counted


@dataclass(frozen=True)
class Override:
    """One ``key.path=value`` override (``--set``, ``--wset``, ``--schedule``, a sweep's axis or a
    sweep workload's ``set:``); the value is read as a YAML scalar or list."""

    path: tuple[str, ...]
    value: Any
    text: str
    # How errors name where the override was written; empty: a ``--set`` option. Each source
    # names itself (``--wset batch=x``, ``hw.yaml: sweep.workloads.0.set.steps``), so an error
    # never points the user at an option they did not give.
    source: str = ""

    @property
    def label(self) -> str:
        return self.source or option_label(self.text)


_EXAMPLES = {"--set": "mxu.count=8", "--wset": "batch=16"}  # for the error of a malformed option


def parse_overrides(options: Sequence[str], option: str = "--set") -> list[Override]:
    """``KEY.PATH=VALUE`` texts given with the command-line ``option`` (which errors name)."""
    overrides = []
    for text in options:
        label = option_label(text, option)
        key, sep, raw = text.partition("=")
        key = key.strip()
        if not sep or not key or any(not part for part in key.split(".")):
            raise ConfigError(f"expected KEY.PATH=VALUE, e.g. {option} {_EXAMPLES.get(option, 'key=value')}",
                              file=label)
        value = read_yaml_text(raw, label) if raw.strip() else raw
        overrides.append(Override(tuple(key.split(".")), value, text, label))
    return overrides


def option_label(text: str, option: str = "--set") -> str:
    """How errors name a command-line option and its value: on one line, cut short when long."""
    text = text.replace("\n", "\\n")
    return f"{option} {text if len(text) <= 80 else text[:60] + '...' + text[-15:]}"


@dataclass
class Layered:
    """A merged mapping and, for each dotted key path, the source that set it."""

    data: dict = field(default_factory=dict)
    origin: dict[tuple[str, ...], str] = field(default_factory=dict)
    options: set[str] = field(default_factory=set)  # sources that are overrides, not files

    def merge(self, data: dict, source: str, prefix: tuple[str, ...] = ()) -> None:
        target = self.data
        for part in prefix:
            target = target[part]
        for key, value in data.items():
            path = prefix + (str(key),)
            if isinstance(value, dict) and isinstance(target.get(key), dict) and not _kind_changes(target[key], value):
                target[key] = dict(target[key])  # this mapping's own before writing into it (a copy shares it)
                self.origin.setdefault(path, source)
                self.merge(value, source, path)
            else:
                target[key] = _plain_copy(value)
                self._forget_below(path)
                self.origin[path] = source

    def copy(self, overrides: Sequence[Override] = ()) -> "Layered":
        """An independent copy, with ``overrides`` applied. Sections are shared until one of
        the two writes into them (``set`` and ``merge`` copy a section before writing into
        it): a sweep copies its file for every design point."""
        copy = Layered(dict(self.data), dict(self.origin), set(self.options))
        for override in overrides:
            copy.set(override)
        return copy

    def _own(self, path: tuple[str, ...], source: str = "") -> dict:
        """The section holding ``path``'s last key, each section on the way copied (this
        mapping's own from now on) or created."""
        target = self.data
        for depth, part in enumerate(path[:-1]):
            nxt = target.get(part)
            if not isinstance(nxt, dict):
                if nxt is not None:
                    where = ".".join(path[: depth + 1])
                    raise ConfigError(f"'{where}' is a value, not a section", file=source)
                self.origin[path[: depth + 1]] = source
            nxt = target[part] = dict(nxt or {})
            target = nxt
        return target

    def set(self, override: Override) -> None:
        source = override.label
        self.options.add(source)
        target = self._own(override.path, source)
        old = target.get(override.path[-1], self)
        target[override.path[-1]] = override.value
        # the sources of keys below the path go with the section that held them; a value that
        # replaces a value (not a section) has none below it (``merge`` and this keep it so)
        if old is self or isinstance(old, dict):
            self._forget_below(override.path)
        self.origin[override.path] = source

    def _forget_below(self, path: tuple[str, ...]) -> None:
        for key in [k for k in self.origin if len(k) > len(path) and k[: len(path)] == path]:
            del self.origin[key]

    def directory_of(self, path: tuple[str, ...]) -> Path:
        """The folder a relative path written at ``path`` is relative to: its file's folder
        (the current folder for an override)."""
        source = self.source_of(path, "")
        return Path.cwd() if not source or source in self.options else Path(source).parent

    def source_of(self, path: tuple[str, ...], default: str) -> str:
        for length in range(len(path), 0, -1):
            if path[:length] in self.origin:
                return self.origin[path[:length]]
        return default


def _kind_changes(old: dict, new: dict) -> bool:
    """A section that names another ``kind`` (a CIM MXU replacing a systolic one) replaces the
    inherited section instead of merging into it."""
    return "kind" in new and "kind" in old and new["kind"] != old["kind"]


def _plain_copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain_copy(v) for v in value]
    return value


def _resolve(path: Path, layered: Layered, chain: tuple[Path, ...]) -> None:
    """Merge ``path`` and, first, the files it ``extends:`` (iteratively: a long chain cannot
    exhaust the stack); ``chain`` are the files that extend it."""
    files: list[tuple[Path, dict]] = []
    while True:
        resolved = path.resolve()
        if resolved in chain:
            cycle = " -> ".join(str(p) for p in chain + (resolved,))
            raise ConfigError(f"cyclic 'extends': {cycle}", file=str(path))
        if len(chain) >= MAX_EXTENDS_DEPTH:
            raise ConfigError(f"more than {MAX_EXTENDS_DEPTH} files in a chain of 'extends:' from {files[0][0] if files else path}; "
                              "archsim's limit", file=str(path), key=EXTENDS_KEY)
        data = read_yaml_mapping(path)
        files.append((path, data))
        parent = data.pop(EXTENDS_KEY, None)
        if parent is None:
            break
        if not isinstance(parent, str) or not parent.strip():
            raise ConfigError("expected the path of another YAML file", file=str(path), key=EXTENDS_KEY)
        target = path.parent / parent
        if not target.is_file():
            problem = "is not a file" if target.exists() else "not found"
            raise ConfigError(f"{target} {problem}", file=str(path), key=EXTENDS_KEY)
        path, chain = target, chain + (resolved,)
    for source, data in reversed(files):
        layered.merge(data, str(source))


def _walk(model: type[BaseModel], loc: tuple,
          unions: list[int] | None = None) -> tuple[tuple[str, ...], type[BaseModel] | None]:
    """The user's key path for a pydantic error location, and the model owning its last key.

    Pydantic puts a discriminated union's tag into the location (``mxu.cim.count`` for the
    ``count`` of a ``kind: cim`` unit); the tag is not a key the user wrote, so it is dropped.
    So is the member label of a plain union (``model.str`` for ``model: str | dict``); the
    length of the path where one was dropped is appended to ``unions``.
    """
    path: list[str] = []
    current: Any = model
    parts = [str(p) for p in loc]
    i = 0
    while i < len(parts):
        part = parts[i]
        path.append(part)
        fields = getattr(current, "model_fields", None)
        if not fields or part not in fields:
            path.extend(parts[i + 1:])
            return tuple(path), current if i == len(parts) - 1 else None
        info = fields[part]
        members = [a for a in _flatten(info.annotation) if isinstance(a, type) and issubclass(a, BaseModel)]
        if info.discriminator and i + 1 < len(parts):
            tag = parts[i + 1]
            current = next((m for m in members if tag in get_args(m.model_fields[info.discriminator].annotation)), None)
            i += 2
            continue
        values = _section_table(info.annotation)
        if values is not None and i + 1 < len(parts):  # a table of sections: the next part is its key
            path.append(parts[i + 1])
            current = values
            i += 2
            continue
        if i + 1 < len(parts) and _is_union_label(info.annotation, parts[i + 1]):
            if unions is not None:
                unions.append(len(path))
            current = next((m for m in members if m.__name__ == parts[i + 1]), None)
            i += 2
            continue
        current = members[0] if len(members) == 1 else None
        i += 1
    return tuple(path), None


def _show_key(part: str) -> str:
    """A key as written, quoted when it is empty, padded, has line breaks or is very long."""
    if part == "" or part != part.strip() or not part.isprintable():
        return shorten(part)
    return part if len(part) <= 60 else shorten(part)


def _is_union_label(annotation: Any, part: str) -> bool:
    """Whether ``part`` is pydantic's label for a member of the union ``annotation`` (``str``,
    ``dict[str,any]``, ``list[Forward]``, a model's name) rather than a key."""
    members = [a for a in get_args(annotation) if a is not type(None)]
    if len(members) < 2 or get_origin(annotation) not in (Union, UnionType):
        return False
    names = {getattr(m, "__name__", "") for m in members}
    return "[" in part or part in names or part in ("str", "int", "float", "bool", "bytes")


def _merge_union_errors(entries: list[tuple[tuple[str, ...], int | None, str]]) -> list[tuple[tuple[str, ...], str]]:
    """One line per key for a value that matched no member of a union: the errors of a member
    the value went into (a list's item) when there is one, else the members' expectations in
    one line ('Input should be a valid string or a valid dictionary (got 7)')."""
    slots: list[tuple[tuple[str, ...], str] | tuple[str, ...]] = []  # a problem, or a union's key
    groups: dict[tuple[str, ...], list[tuple[tuple[str, ...], str]]] = {}
    for loc, union_at, message in entries:
        if union_at is None:
            slots.append((loc, message))
            continue
        prefix = loc[:union_at]
        if prefix not in groups:
            groups[prefix] = []
            slots.append(prefix)
        groups[prefix].append((loc, message))
    out: list[tuple[tuple[str, ...], str]] = []
    for slot in slots:
        if slot and isinstance(slot[0], tuple):
            out.append(slot)  # type: ignore[arg-type]
            continue
        members = groups[slot]  # type: ignore[index]
        deeper = [(loc, m) for loc, m in members if len(loc) > len(slot)]
        if deeper:
            out += deeper
            continue
        messages = [m for _, m in members]
        got = messages[-1][messages[-1].rfind(" (got "):] if " (got " in messages[-1] else ""
        parts = [m.removesuffix(got).removeprefix("Input should be ") for m in messages]
        out.append((slot, "Input should be " + " or ".join(dict.fromkeys(parts)) + got))  # type: ignore[arg-type]
    return out


def _section_table(annotation: Any) -> type[BaseModel] | None:
    """The section model of a mapping of keys to sections (``kernels``, ``technology.scaling``),
    or None."""
    for member in (annotation, *get_args(annotation)):
        if get_origin(member) is dict:
            value = get_args(member)[1]
            models = [a for a in _flatten(value) if isinstance(a, type) and issubclass(a, BaseModel)]
            return models[0] if len(models) == 1 else None
    return None


def _flatten(annotation: Any) -> list:
    args = get_args(annotation)
    if not args:
        return [annotation]
    return [leaf for arg in args for leaf in _flatten(arg)]


def _allowed_keys(model: type[BaseModel], loc: tuple) -> list[str] | None:
    """The keys the model accepts at the mapping that holds ``loc``'s last key."""
    _, owner = _walk(model, loc)
    fields = getattr(owner, "model_fields", None)
    return sorted(fields) if fields else None


def _explain(error: dict, model: type[BaseModel], loc: tuple[str, ...]) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        allowed = _allowed_keys(model, error["loc"])
        return "unknown key" + (f"; expected one of: {', '.join(allowed)}" if allowed else "")
    if kind == "missing":
        return "required key is missing"
    message = error["msg"]
    for prefix in ("Value error, ", "Assertion failed, "):
        message = message.removeprefix(prefix)
    value = error.get("input")
    if kind not in ("value_error",) and not isinstance(value, (dict, list)):
        message += f" (got {shorten(value)})"
    return message


class SectionReuse:
    """Sections validated before, kept by their raw content: the design points of a sweep differ
    in a few values, so each distinct section (an ``hbm:`` with one of the swept bandwidths, the
    ``vpu:`` every point shares) is validated once, not once per point. A section validates on
    its own (no validator of a chip config reads a sibling's raw data), so the validated section
    reused is the one validating it again would give. A point that fails is validated again from
    its raw data, so its errors are those of ``validate_layered``."""

    def __init__(self, size: int = 4096):
        from archsim.memo import BoundedMemo

        self._sections: BoundedMemo[BaseModel] = BoundedMemo(size)
        # by the raw section's identity, the section held so its id is no other's: a ``Layered``
        # never writes into a section it shares (it copies it first), so the sections a point's
        # copy shares with its file are the file's, unchanged (the others' content is checked)
        self._same: BoundedMemo[tuple[dict, BaseModel]] = BoundedMemo(size)

    def validate(self, model: type[Model], data: dict) -> Model | None:
        """``model`` validated from ``data`` with its known sections reused; None if it fails."""
        mixed, new = dict(data), []
        for key, value in data.items():
            if isinstance(value, dict):
                same = self._same.get((model, key, id(value)))
                if same is not None and same[0] is value:
                    mixed[key] = same[1]
                    continue
                content = (model, key, repr(value))  # repr tells 1 from 1.0 and True; order as written
                section = self._sections.get(content)
                if section is None:
                    new.append((key, content, value))
                else:
                    mixed[key] = section
                    self._same.put((model, key, id(value)), (value, section))
        try:
            validated = model.model_validate(mixed)
        except ValidationError:
            return None
        for key, content, value in new:
            section = getattr(validated, key, None)
            if isinstance(section, BaseModel):
                self._sections.put(content, section)
                self._same.put((model, key, id(value)), (value, section))
        return validated


def validate_layered(model: type[Model], layered: Layered, default_source: str, key_prefix: tuple[str, ...] = (),
                     reuse: SectionReuse | None = None) -> Model:
    """Validate; each error is one line naming the source that set the key, and the key (with
    ``key_prefix`` before it when the mapping sits inside another file's key). ``reuse``: the
    sections validated before (a sweep's points)."""
    if reuse is not None and (validated := reuse.validate(model, layered.data)) is not None:
        return validated
    try:
        return model.model_validate(layered.data)
    except ValidationError as exc:
        if model is HardwareConfig:
            _not_a_workload(layered, default_source)
        entries = []
        for error in exc.errors():
            unions: list[int] = []
            loc, _ = _walk(model, error["loc"], unions)
            cause = error.get("ctx", {}).get("error")
            if isinstance(cause, FieldError):
                loc = loc + tuple(cause.key.split("."))
            message = _explain(error, model, loc)
            if loc and loc[-1] == "[key]":  # the key itself is wrong, not its value
                loc, message = loc[:-1], f"bad key: {message}"
            entries.append((loc, unions[0] if unions else None, message))
        lines = []
        problems = _merge_union_errors(entries)
        for loc, message in problems[:MAX_ERROR_LINES]:
            source = layered.source_of(loc, default_source)
            key = ".".join(_show_key(part) for part in key_prefix + loc) or "(top level)"
            lines.append(str(ConfigError(message, file=source, key=key)))
        if len(problems) > MAX_ERROR_LINES:
            lines.append(f"{default_source}: ... and {len(problems) - MAX_ERROR_LINES} more problems")
        raise ConfigError("\n".join(lines)) from None


# what tells a hardware config (of any chip kind)
HARDWARE_KEYS = ("clock", "mxu", "vpu", "vmem", "hbm", "technology", "sm", "l2", "nvlink", "gemm")


def _not_a_workload(layered: Layered, source: str) -> None:
    """A workload file given where a hardware config belongs: one line saying so, not a line
    per hardware key it lacks and per workload key it has."""
    kind = layered.data.get("kind")
    if isinstance(kind, str) and not any(key in layered.data for key in HARDWARE_KEYS):
        raise ConfigError(f"this is a workload (kind: {kind}), not a hardware config, which has "
                          f"{', '.join(HARDWARE_KEYS)}, ...", file=layered.source_of(("kind",), source), key="kind")


def load_layered(path: str | Path, overrides: Sequence[Override] = ()) -> Layered:
    layered = Layered()
    _resolve(Path(path), layered, ())
    for override in overrides:
        layered.set(override)
    return layered


def validate_hardware(layered: Layered, default_source: str, reuse: SectionReuse | None = None) -> "ChipConfig":
    """Validate a hardware config as the chip kind its ``kind`` key names (``tpu`` when absent);
    ``reuse``: the sections validated before (``SectionReuse``)."""
    from archsim.config.chips import CHIP_KINDS, chip_class

    kind = layered.data.get("kind")
    model = chip_class(kind)
    if model is None:
        _not_a_workload(layered, default_source)
        raise ConfigError(f"unknown chip kind {shorten(kind)}; expected one of: {', '.join(CHIP_KINDS)}",
                          file=layered.source_of(("kind",), default_source), key="kind")
    return validate_layered(model, layered, default_source, reuse=reuse)


def load_hardware(path: str | Path, overrides: Sequence[Override] | Sequence[str] = ()) -> "ChipConfig":
    """Load, merge and validate a hardware config file.

    ``overrides`` are ``Override`` objects or ``"key.path=value"`` strings.
    """
    parsed = [o if isinstance(o, Override) else parse_overrides([o])[0] for o in overrides]
    layered = load_layered(path, parsed)
    return validate_hardware(layered, str(path))
