"""Checks of a chip config's ``sweep:`` section against the config's own keys: each swept key
path names a config key, and each constraint bounds a number in its unit. The chip config
classes (``archsim.config.schema``, ``archsim.config.gpu``) derive from ``SweepChecks``."""

from __future__ import annotations

from types import UnionType
from typing import Annotated, Any, Sequence, Union, get_args, get_origin

from pydantic import BaseModel, model_validator

from archsim import units
from archsim.config.fields import Strict, value_dims
from archsim.errors import FieldError


class SweepChecks(Strict):
    """Checks of a chip config's ``sweep:`` section against the config's own keys (any kind)."""

    @model_validator(mode="after")
    def _swept_keys_exist(self) -> "SweepChecks":
        """Each swept key path names a config key (of any kind of a section, as an axis may
        switch kinds), so a misspelt axis is reported against this file before any work."""
        if self.sweep is None:
            return self
        where = [(f"axes.{path}", path) for path in self.sweep.axes or {}]
        where += [(f"zip.{i}.{path}", path) for i, group in enumerate(self.sweep.zip) for path in group]
        for key, path in where:
            problem = _unknown_key(path, type(self))
            if problem:
                raise FieldError(f"sweep.{key}", problem)
        return self

    @model_validator(mode="after")
    def _constraints_name_numbers(self) -> "SweepChecks":
        """A sweep constraint bounds a number: 'area' or a numeric config value. A key this
        config lacks (a section a sweep axis adds) is left to the sweep's planning."""
        for i, constraint in enumerate(self.sweep.constraints if self.sweep else ()):
            if constraint.key == "area":
                continue
            value: object = self
            for part in constraint.key.split("."):
                value = value.get(part) if isinstance(value, dict) else getattr(value, part, None)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
                raise FieldError(f"sweep.constraints.{i}.key", f"{constraint.key} is not a number "
                                 f"(it is a {type(value).__name__}); a constraint bounds 'area' or a numeric key")
            dims = _value_dims(constraint.key, type(self))
            if len(dims) == 1:  # in the value's unit; a key of no known field is left to the planning
                try:
                    constraint.check_unit(dims.pop())
                except FieldError as exc:
                    raise FieldError(f"sweep.constraints.{i}.{exc.key}", str(exc)) from None
        return self


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    args = get_args(annotation)
    if not args:
        return [annotation] if isinstance(annotation, type) and issubclass(annotation, BaseModel) else []
    return [m for arg in args for m in _models_in(arg)]


def _value_dims(path: str, root: type[BaseModel]) -> set[units.Dim]:
    """The dimensions of the config value at ``path`` (dotted; ``mxu.mac_energy.int8`` reads a
    mapping's value) over every kind of its sections: empty when no field is there."""
    fields: list[tuple[Any, Sequence[Any]]] = [(root, ())]
    for part in path.split("."):
        deeper: list[tuple[Any, Sequence[Any]]] = []
        for annotation, _ in fields:
            for member in _members(annotation):
                if get_origin(member) is dict:
                    deeper.append((get_args(member)[1], ()))
                elif isinstance(member, type) and issubclass(member, BaseModel) and part in member.model_fields:
                    info = member.model_fields[part]
                    deeper.append((info.annotation, info.metadata))
        fields = deeper
    return {dim for annotation, metadata in fields for dim in value_dims(annotation, metadata)}


def _members(annotation: Any) -> list[Any]:
    """A union's members (an Annotated union's too), or the annotation itself."""
    if get_origin(annotation) is Annotated:
        return _members(get_args(annotation)[0])
    if get_origin(annotation) in (Union, UnionType):
        return [m for arg in get_args(annotation) for m in _members(arg)]
    return [annotation]


def _unknown_key(path: str, root: type[BaseModel]) -> str | None:
    """Why ``path`` (dotted) names no key of a hardware config, or None. Below a free-form
    mapping (``mxu.pe_macs_per_cycle.int8``) any key is accepted here and checked with the
    value it is given."""
    models: list[type[BaseModel]] = [root]
    parts = path.split(".")
    i = 0
    while i < len(parts):
        part = parts[i]
        fields = [m.model_fields[part] for m in models if part in m.model_fields]
        if not fields:
            allowed = sorted({name for m in models for name in m.model_fields})
            which = "" if i == len(parts) - 1 else f" {'.'.join(parts[: i + 1])}"
            return f"unknown key{which}; expected one of: {', '.join(allowed)}"
        sections, tables = [], []
        for info in fields:
            for member in _members(info.annotation):
                if get_origin(member) is dict:  # a table of sections: the next part is its key
                    tables += _models_in(get_args(member)[1])
                else:
                    sections += _models_in(member)
        if tables and i + 1 < len(parts):
            models, i = tables, i + 2
            continue
        models, i = sections or tables, i + 1
        if not models:
            return None
    return None
