"""Pydantic field types for physical quantities, parsed from unit strings into SI floats."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from types import UnionType
from typing import Annotated, Any, Sequence, Union, get_args, get_origin

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

from archsim import units
from archsim.errors import UnitError


def checked_once(check):
    """A section's ``model_validator(mode="after")``, run once an instance. Pydantic runs a
    section's after-validators again each time a config holding the instance is validated, and
    a sweep's points share their sections as objects (``archsim.dse.point_config``): a check of
    an immutable instance answers the same every time, so an instance that passed is not checked
    again (one that fails raises every time)."""
    passed: dict[int, object] = {}  # id -> the instance, held: no other has its id meanwhile

    @functools.wraps(check)
    def once(self):
        if passed.get(id(self)) is self:
            return self
        result = check(self)
        if len(passed) >= _PASSED_HELD:
            passed.clear()
        passed[id(self)] = self
        return result

    return once


_PASSED_HELD = 4096  # instances a check remembers (a sweep's sections: a few per axis value)


class Strict(BaseModel):
    """Base of every config model: unknown keys are errors and values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=False, defer_build=True)


# What a quantity looks like in a file, as a JSON Schema pattern: a number, then a unit made of
# the characters units.parse_quantity reads (letters, powers, '/', '*', '·'). Its form only: the
# dimension (a bandwidth, not a frequency) is checked by archsim, not by the pattern.
QUANTITY_PATTERN = r"^\s*[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?\s*[A-Za-zµμ/*·][A-Za-zµμ0-9^/*·+\-\s]*$"


@dataclass(frozen=True)
class Unit:
    """Marks a field as a quantity of ``dim`` (pydantic keeps it in the field's metadata), so
    that what refers to a field by its key (a sweep constraint) can check its unit."""

    dim: units.Dim

    def __get_pydantic_json_schema__(self, core_schema: Any, handler: Any) -> dict[str, Any]:
        """In a file a quantity is a string, a number and its unit, not the SI float it is
        validated into: the JSON Schema (``archsim schema``) says so."""
        name, example = units.DIM_NAMES[self.dim]
        return {"type": "string", "pattern": QUANTITY_PATTERN, "examples": [example],
                "description": f"{name} with its unit, such as '{example}' (SI unit {units.si_unit(self.dim)})",
                # the message VS Code's schema support shows for a value not matching the pattern
                "patternErrorMessage": f"expected a number and its unit: {units.describe(self.dim)}"}


def _quantity(dim: units.Dim):
    def parse(value: object) -> float:
        return units.parse_quantity(value, dim)

    return BeforeValidator(parse)


def value_dims(annotation: Any, metadata: Sequence[Any] = ()) -> set[units.Dim]:
    """The dimensions a field of this annotation (and pydantic's ``metadata``) holds: a
    quantity's, DIMENSIONLESS for a plain number, none for anything else (a section, a name)."""
    marks = [m.dim for m in metadata if isinstance(m, Unit)]
    if marks:
        return set(marks)
    if get_origin(annotation) is Annotated:
        base, *extra = get_args(annotation)
        return value_dims(base, extra)
    if get_origin(annotation) in (Union, UnionType):
        return {d for arg in get_args(annotation) if arg is not type(None) for d in value_dims(arg)}
    return {units.DIMENSIONLESS} if annotation in (int, float) else set()


# Physical values are bounded (in SI units) so that no product or quotient of them the models
# form (energy = power x time, time = bytes / bandwidth, ...) overflows or underflows a double:
# anything physical is far inside, and absurd values are errors rather than inf or nan results.
MAX_MAGNITUDE = 1e40
MIN_MAGNITUDE = 1e-40


def _in_range(value: float) -> None:
    if value != 0 and not MIN_MAGNITUDE <= abs(value) <= MAX_MAGNITUDE:
        raise UnitError(f"{value:g} (SI) is outside archsim's range for physical values, "
                        f"{MIN_MAGNITUDE:g} to {MAX_MAGNITUDE:g} in SI units")


def _positive(value: float) -> float:
    if not math.isfinite(value) or value <= 0:
        raise UnitError(f"must be a positive finite value, got {value:g} (SI)")
    _in_range(value)
    return value


def _non_negative(value: float) -> float:
    if not math.isfinite(value) or value < 0:
        raise UnitError(f"must be zero or positive and finite, got {value:g} (SI)")
    _in_range(value)
    return value


# Whole numbers: strict (a YAML 'yes' is not 1) and bounded, so no size overflows the models.
# The bound is a validator rather than a ``le`` constraint so that a field's own tighter
# ``Field(le=...)`` still applies (pydantic keeps only the last ``le`` it is given).
MAX_COUNT = 2**40


def _at_most_max_count(value: int) -> int:
    if value > MAX_COUNT:
        shown = f"{value:,}" if value < 10**20 else f"about 2^{value.bit_length() - 1}"
        raise ValueError(f"{shown} is above archsim's limit for a count, 2^40 = {MAX_COUNT:,}")
    return value


Count = Annotated[int, Field(strict=True, gt=0), AfterValidator(_at_most_max_count)]
NonNegativeCount = Annotated[int, Field(strict=True, ge=0), AfterValidator(_at_most_max_count)]
# A finite, bounded plain number (a scaling factor, an acceptance rate).
Factor = Annotated[float, Field(allow_inf_nan=False, ge=-MAX_MAGNITUDE, le=MAX_MAGNITUDE)]
PositiveFactor = Annotated[float, Field(allow_inf_nan=False, gt=0, le=MAX_MAGNITUDE)]
NonNegativeFactor = Annotated[float, Field(allow_inf_nan=False, ge=0, le=MAX_MAGNITUDE)]
# A ratio that divides others (a node's relative energy or area): within archsim's range, so
# that no quotient of two of them overflows.
ScaleFactor = Annotated[float, Field(allow_inf_nan=False, ge=MIN_MAGNITUDE, le=MAX_MAGNITUDE)]
# A share of a whole, 0 to 1 (an achievable fraction of a peak, an overlap).
Fraction = Annotated[float, Field(allow_inf_nan=False, ge=0, le=1)]
# An achievable share of a peak: a rate is divided by it, so it is at least 0.1%.
Efficiency = Annotated[float, Field(allow_inf_nan=False, ge=1e-3, le=1)]

def _quantity_type(dim: units.Dim, check) -> Any:
    """A float field read from a quantity of ``dim`` in SI units and checked by ``check``."""
    return Annotated[float, _quantity(dim), Unit(dim), AfterValidator(check)]


Frequency = _quantity_type(units.FREQUENCY, _positive)
Size = _quantity_type(units.SIZE, _positive)
Bandwidth = _quantity_type(units.BANDWIDTH, _positive)
Latency = _quantity_type(units.TIME, _non_negative)
Length = _quantity_type(units.LENGTH, _positive)
Energy = _quantity_type(units.ENERGY, _non_negative)
EnergyPerByte = _quantity_type(units.ENERGY_PER_BYTE, _non_negative)
Power = _quantity_type(units.POWER, _non_negative)
Area = _quantity_type(units.AREA, _non_negative)
AreaPerByte = _quantity_type(units.AREA_PER_BYTE, _non_negative)
PowerDensity = _quantity_type(units.POWER_DENSITY, _non_negative)
