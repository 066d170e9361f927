"""A validated config's dump as text (``repr`` of ``model_dump()``, or the sorted JSON of
``model_dump(mode="json")``) assembled from its sections' texts, each made once per section
object, and its other fields' texts, each made once per value. A sweep's points share most of
their sections (``config.loader.SectionReuse``), so the texts that key the shared costs
(``sim.fingerprint``) and name a design (a results row's ``config_hash``) cost a join a point,
not a walk of the whole config. The texts equal those of the whole dump
(tests/test_section_reuse.py compares them on every bundled config)."""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Mapping

from pydantic import BaseModel

_SIZE = 8192  # section texts kept (a few kB each); the oldest half goes when full
_TEXTS: dict[tuple, tuple[BaseModel, str]] = {}


# json.dumps(value, sort_keys=True, default=str), without making an encoder at every call
_json = json.JSONEncoder(sort_keys=True, default=str).encode


def _section_text(section: BaseModel, as_json: bool, drop: frozenset[str]) -> str:
    key = (id(section), as_json, drop)
    entry = _TEXTS.get(key)
    if entry is None or entry[0] is not section:  # held, so its id is no other's meanwhile
        if len(_TEXTS) >= _SIZE:
            for old in list(_TEXTS)[:_SIZE // 2]:
                _TEXTS.pop(old, None)
        data = section.model_dump(mode="json" if as_json else "python", exclude=set(drop) or None)
        entry = _TEXTS[key] = (section, _json(data) if as_json else repr(data))
    return entry[1]


def section_text(section: BaseModel | None, drop: frozenset[str] = frozenset()) -> str:
    """``repr(section.model_dump(exclude=drop))`` (``'None'`` for no section)."""
    return repr(None) if section is None else _section_text(section, False, drop)


def dump_text(model: BaseModel, as_json: bool, exclude: frozenset[str] = frozenset(),
              drop: Mapping[str, frozenset[str]] | None = None) -> str:
    """``json.dumps(model.model_dump(mode="json", exclude=exclude), sort_keys=True, default=str)``
    if ``as_json``, else ``repr(model.model_dump(exclude=exclude))``, with the keys ``drop[name]``
    left out of section ``name`` (pydantic's nested ``exclude``)."""
    parts = ["{"]  # each field's label (after the first, with the separator before it) and its text
    dropping = tuple(sorted(drop.items())) if drop else ()
    values = model.__dict__
    for name, label, dropped, held in _fields(type(model), as_json, exclude, dropping):
        value = values[name]
        # a field's label and text, kept by its value as an object (held with it: its id is no
        # other's meanwhile): a sweep's points share their sections and most scalars as objects
        entry = held.get(id(value))
        if entry is not None and entry[0] is value:
            parts.append(entry[1])
            continue
        if type(value) in _MUTABLE:  # a list's or a mapping's items may change: its text made afresh
            parts.append(label + _field_text(model, name, value, as_json, dropped))
            continue
        if len(held) >= _SIZE:
            held.clear()
        text = label + _field_text(model, name, value, as_json, dropped)
        held[id(value)] = (value, text)
        parts.append(text)
    parts.append("}")
    return "".join(parts)


_MUTABLE = frozenset({list, dict, set})


def _field_text(model: BaseModel, name: str, value: object, as_json: bool, dropped: frozenset[str]) -> str:
    """A field's text: a section's (``_section_text``), or a scalar's (``_scalar_text``)."""
    if _is_section(type(value)):
        return _section_text(value, as_json, dropped)
    return _scalar_text(model, name, value, as_json)


@lru_cache(maxsize=256)
def _is_section(cls: type) -> bool:
    """``isinstance(value, BaseModel)`` by the value's type (pydantic's metaclass makes the
    check itself cost as much as the rest of a field's text)."""
    return issubclass(cls, BaseModel)


def _scalar_text(model: BaseModel, name: str, value: object, as_json: bool) -> str:
    """The text of a field that is not a section (a name, the clock), kept by its value: a
    sweep's points share most of theirs. A field dumps alone as it does among the others."""
    try:  # the type tells 1 from 1.0 and True; a zero's repr tells 0.0 from -0.0
        key = (type(model), name, as_json, type(value), repr(value) if type(value) is float and value == 0.0 else value)
        text = _SCALARS.get(key)
    except TypeError:  # an unhashable value (a list): made afresh
        key, text = None, None
    if text is None:
        data = model.model_dump(mode="json" if as_json else "python", include={name})[name]
        text = _json(data) if as_json else repr(data)
        if key is not None:
            if len(_SCALARS) >= _SIZE:
                _SCALARS.clear()
            _SCALARS[key] = text
    return text


_SCALARS: dict[tuple, str] = {}


@lru_cache(maxsize=64)
def _fields(cls: type[BaseModel], as_json: bool, exclude: frozenset[str],
            drop: tuple[tuple[str, frozenset[str]], ...]) -> tuple[tuple[str, str, frozenset[str]], ...]:
    """The fields a dump writes, in its order (sorted by name as JSON, declared otherwise): each
    with its text's ``'name': `` (after the first field's, the separator ``, `` before it), the
    keys dropped from it, and its texts with that label by value (``dump_text``)."""
    names = [name for name in cls.model_fields if name not in exclude]
    dropped = dict(drop)
    return tuple((name, f"{', ' if i else ''}{_json(name) if as_json else repr(name)}: ",
                  dropped.get(name, frozenset()), {}) for i, name in enumerate(sorted(names) if as_json else names))
