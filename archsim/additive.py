"""Costs that add up: records of named quantities with +, scaling and a dict view."""

from __future__ import annotations

from dataclasses import fields
from typing import Iterable, TypeVar

T = TypeVar("T", bound="Additive")


class Additive:
    """Mixin for frozen dataclasses of floats: ``a + b``, ``a.scaled(k)``, ``a.as_dict()``."""

    def __add__(self: T, other: T) -> T:
        return type(self)(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))

    def scaled(self: T, factor: float) -> T:
        return type(self)(*(getattr(self, f.name) * factor for f in fields(self)))

    def as_dict(self) -> dict[str, float]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def total_of(cls: type[T], parts: Iterable[T]) -> T:
        result = cls()
        for part in parts:
            result = result + part
        return result
