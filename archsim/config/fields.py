"""Pydantic field types for physical quantities, parsed from unit strings into SI floats."""

from __future__ import annotations

import math
from typing import Annotated

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

from archsim import units
from archsim.errors import UnitError


class Strict(BaseModel):
    """Base of every config model: unknown keys are errors and values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)


def _quantity(dim: units.Dim):
    def parse(value: object) -> float:
        return units.parse_quantity(value, dim)

    return BeforeValidator(parse)


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

Frequency = Annotated[float, _quantity(units.FREQUENCY), AfterValidator(_positive)]
Size = Annotated[float, _quantity(units.SIZE), AfterValidator(_positive)]
Bandwidth = Annotated[float, _quantity(units.BANDWIDTH), AfterValidator(_positive)]
Latency = Annotated[float, _quantity(units.TIME), AfterValidator(_non_negative)]
Length = Annotated[float, _quantity(units.LENGTH), AfterValidator(_positive)]
Energy = Annotated[float, _quantity(units.ENERGY), AfterValidator(_non_negative)]
EnergyPerByte = Annotated[float, _quantity(units.ENERGY_PER_BYTE), AfterValidator(_non_negative)]
Power = Annotated[float, _quantity(units.POWER), AfterValidator(_non_negative)]
Area = Annotated[float, _quantity(units.AREA), AfterValidator(_non_negative)]
AreaPerByte = Annotated[float, _quantity(units.AREA_PER_BYTE), AfterValidator(_non_negative)]
