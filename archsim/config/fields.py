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


def _positive(value: float) -> float:
    if not math.isfinite(value) or value <= 0:
        raise UnitError(f"must be a positive finite value, got {value:g} (SI)")
    return value


def _non_negative(value: float) -> float:
    if not math.isfinite(value) or value < 0:
        raise UnitError(f"must be zero or positive and finite, got {value:g} (SI)")
    return value


# Whole numbers: strict (a YAML 'yes' is not 1) and bounded, so no size overflows the models.
MAX_COUNT = 2**40
Count = Annotated[int, Field(strict=True, gt=0, le=MAX_COUNT)]
NonNegativeCount = Annotated[int, Field(strict=True, ge=0, le=MAX_COUNT)]

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
