"""Costs that add up: records of named quantities with +, scaling and a dict view."""

from __future__ import annotations

import operator
from dataclasses import fields
from functools import reduce
from typing import Callable, Iterable, TypeVar

T = TypeVar("T", bound="Additive")


class Additive:
    """Mixin for frozen dataclasses of floats: ``a + b``, ``a.scaled(k)``, ``a.as_dict()``.
    Sums run field by field, left to right from the defaults, so they are the same bits
    however the parts are grouped into calls."""

    @classmethod
    def _fields(cls) -> tuple[tuple[str, ...], Callable]:
        """The field names and a getter of all their values (built once per class: these
        records are added up millions of times in a sweep)."""
        cached = cls.__dict__.get("_additive_fields")
        if cached is None:
            names = tuple(f.name for f in fields(cls))
            getter = operator.attrgetter(*names) if len(names) > 1 else (lambda obj, n=names[0]: (getattr(obj, n),))
            cached = (names, getter)
            cls._additive_fields = cached
        return cached

    def values(self) -> tuple[float, ...]:
        return self._fields()[1](self)

    def __add__(self: T, other: T) -> T:
        cls = type(self)
        names, get = cls.__dict__.get("_additive_fields") or cls._fields()
        # every field set as __init__ sets it, without its object.__setattr__ per field (a frozen
        # dataclass's: half an addition's time); these records check nothing on construction
        new = object.__new__(cls)
        new.__dict__.update(zip(names, map(operator.add, get(self), get(other))))
        return new

    def scaled(self: T, factor: float) -> T:
        cls = type(self)
        names, get = cls.__dict__.get("_additive_fields") or cls._fields()
        new = object.__new__(cls)  # as __add__
        new.__dict__.update(zip(names, [v * factor for v in get(self)]))
        return new

    def replaced(self: T, **changes: float) -> T:
        """``dataclasses.replace(self, **changes)``, without ``__init__``'s per-field setattr."""
        cls = type(self)
        names, get = cls.__dict__.get("_additive_fields") or cls._fields()
        new = object.__new__(cls)  # as __add__
        values = new.__dict__
        values.update(zip(names, get(self)))
        for name, value in changes.items():
            if name not in values:
                raise TypeError(f"{cls.__name__} has no field {name!r}")
            values[name] = value
        return new

    def as_dict(self) -> dict[str, float]:
        names, get = self._fields()
        return dict(zip(names, get(self)))

    @classmethod
    def total_of(cls: type[T], parts: Iterable[T]) -> T:
        return cls._sum_rows(map(cls._fields()[1], parts))

    @classmethod
    def weighted_total(cls: type[T], parts: Iterable[tuple[T, float]]) -> T:
        """``total_of(part.scaled(weight) for part, weight in parts)``, the same bits, without
        the intermediate records."""
        get = cls._fields()[1]
        return cls._sum_rows(tuple(v * w for v in get(part)) for part, w in parts)

    @classmethod
    def _sum_rows(cls: type[T], rows: Iterable[tuple[float, ...]]) -> T:
        """Field by field, left to right, from the defaults."""
        start = cls._fields()[1](cls())
        totals = [reduce(operator.add, column, s) for s, column in zip(start, zip(*rows))]
        return cls(*totals) if totals else cls()
