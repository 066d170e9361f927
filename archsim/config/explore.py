"""Explore specs: the ``explore:`` section of a hardware config, a design space searched by a
multi-objective optimiser (``archsim explore``) instead of enumerated (``archsim sweep``).

    extends: cim_tpu.yaml
    explore:
      axes:                                   # config key path -> values
        mxu.cim.grid: [[8, 8], [16, 8], [16, 16]]            # a list (ordinal, as written)
        mxu.count: {from: 1, to: 16, step: 1}                # a grid: from, from + step, ... to
        vmem.capacity: {from: 4 MiB, to: 64 MiB, step: 4 MiB}
        hbm.bandwidth: {from: 300 GB/s, to: 2 TB/s, scale: log}  # continuous (4 significant digits)
      workload_axes:                          # workload key path -> values (a workload's set:)
        schedule: [none, "icc:period=2", "reuse:period=3"]   # text that is no quantity: categorical
      workloads: [../workloads/dit_xl_2.yaml]
      baseline: tpuv4i.yaml
      objectives: [latency, energy, area]
      constraints: [{key: area, max: 400 mm^2}]
      budget: {evaluations: 2000, seconds: 600}
      seed: 0
      population: 40

A continuous axis is resolved to 4 significant digits (of each value on a log scale, of the
larger end on a linear one), so every axis has a finite, indexed list of values and a design is
one index per axis; a list of values that are not all numbers, quantities or lists (schedule
names, mappings, booleans) is categorical, any other list ordinal in the order written.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from archsim import units
from archsim.config.fields import Count, Strict
from archsim.config.sweep import OBJECTIVES, Constraint, WorkloadRef, _first_error, _number
from archsim.errors import FieldError

MAX_AXIS_VALUES = 10**12  # a documented limit: values of one grid or continuous axis
DIGITS = 4  # significant digits of a continuous axis's values
MAX_POPULATION = 10_000


def _exact(value: str | int | float, key: str) -> tuple[Fraction, units.Dim]:
    """A range end exactly (a Fraction in SI units) and its dimension; errors name ``key``."""
    _number(value, key)  # finite, and a quantity or a number
    if isinstance(value, str):
        return units.parse_quantity_exact(value)
    return Fraction(value), units.DIMENSIONLESS


def _same_dims(pairs: dict[str, tuple[Fraction, units.Dim]], values: dict[str, Any]) -> units.Dim:
    dims = {dim for _, dim in pairs.values()}
    if len(dims) > 1:
        key = next(k for k, (_, d) in pairs.items() if d != pairs["from"][1])
        raise FieldError(key, f"'{values[key]}' and '{values['from']}' have different units")
    return dims.pop()


def _formatted(p: float, dim: units.Dim, whole: bool) -> Any:
    """A value as a sweep range writes it (so that the same design has the same point key)."""
    if dim == units.SIZE:  # bytes are whole
        p = float(round(p))
    if dim == units.DIMENSIONLESS:
        return int(round(p)) if whole else p
    return f"{p!r} {units.si_unit(dim)}"


class StepRange(Strict):
    start: str | int | float = Field(alias="from", description="the first value: a number, or a quantity with its unit")
    to: str | int | float = Field(description="the last value, in the unit of from: from plus a whole number of steps")
    step: str | int | float = Field(description="the difference between neighbouring values, in the unit of from")

    @model_validator(mode="after")
    def _checked(self) -> "StepRange":
        self.size  # noqa: B018 - validated here, so that an error names this key
        return self

    def _ends(self) -> tuple[Fraction, Fraction, Fraction, units.Dim]:
        pairs = {"from": _exact(self.start, "from"), "to": _exact(self.to, "to"), "step": _exact(self.step, "step")}
        dim = _same_dims(pairs, {"from": self.start, "to": self.to, "step": self.step})
        (lo, _), (hi, _), (step, _) = pairs["from"], pairs["to"], pairs["step"]
        if step <= 0:
            raise FieldError("step", f"must be positive, got {self.step!r}")
        if hi < lo:
            raise FieldError("to", f"{self.to!r} is below from ({self.start!r})")
        return lo, hi, step, dim

    @property
    def size(self) -> int:
        lo, hi, step, _ = self._ends()
        n = (hi - lo) / step
        if n.denominator != 1:
            raise FieldError("to", f"{self.to!r} is not from ({self.start!r}) plus a whole number of steps of "
                             f"{self.step!r}")
        if n + 1 > MAX_AXIS_VALUES:
            raise FieldError("step", f"{n + 1:,} values; archsim's limit is {MAX_AXIS_VALUES:,} per axis")
        return int(n) + 1

    def value(self, i: int) -> Any:
        """The i-th value, as a sweep's range {from, to, steps} of the same values gives it."""
        lo, hi, step, dim = self._ends()
        n = self.size
        flo, fhi = float(lo), float(hi)
        p = flo + (fhi - flo) * i / (n - 1) if n > 1 else flo
        whole = lo.denominator == 1 and hi.denominator == 1 and step.denominator == 1
        return _formatted(p, dim, whole)


def _decade(x: Fraction) -> int:
    """floor(log10(x)) of a positive x, exactly."""
    e = math.floor(math.log10(float(x)))
    while Fraction(10) ** (e + 1) <= x:
        e += 1
    while Fraction(10) ** e > x:
        e -= 1
    return e


class ContinuousRange(Strict):
    start: str | int | float = Field(alias="from", description="the lowest value: a number, or a quantity with its unit")
    to: str | int | float = Field(description="the highest value, in the unit of from")
    scale: Literal["linear", "log"] = Field(default="linear", description="linear: values searched evenly; log: "
                                            "by ratio (both ends positive); either resolved to 4 significant digits")

    @model_validator(mode="after")
    def _checked(self) -> "ContinuousRange":
        lo, hi, _ = self._ends()
        if self.size > MAX_AXIS_VALUES:
            raise FieldError("to", f"{self.size:,} values at {DIGITS} significant digits; archsim's limit is "
                             f"{MAX_AXIS_VALUES:,} per axis")
        return self

    def _ends(self) -> tuple[Fraction, Fraction, units.Dim]:
        pairs = {"from": _exact(self.start, "from"), "to": _exact(self.to, "to")}
        dim = _same_dims(pairs, {"from": self.start, "to": self.to})
        lo, hi = pairs["from"][0], pairs["to"][0]
        if hi <= lo:
            raise FieldError("to", f"{self.to!r} must be above from ({self.start!r})")
        if self.scale == "log" and lo <= 0:
            raise FieldError("from", "a log scale needs positive ends")
        return lo, hi, dim

    def _grid(self) -> tuple[int, int, int]:
        """(first index, last index, exponent): a linear range's values are k * 10^e for k in
        [first, last]; a log range's are m * 10^(e + j // 9000), m = 1000 + j % 9000, for j."""
        lo, hi, _ = self._ends()
        span = 9 * 10 ** (DIGITS - 1)  # mantissas per decade
        if self.scale == "linear":
            e = _decade(max(abs(lo), abs(hi))) - (DIGITS - 1)
            res = Fraction(10) ** e
            return math.ceil(lo / res), math.floor(hi / res), e
        e0 = _decade(lo) - (DIGITS - 1)
        first = math.ceil(lo / Fraction(10) ** e0) - 10 ** (DIGITS - 1)
        e1 = _decade(hi) - (DIGITS - 1)
        last = (e1 - e0) * span + math.floor(hi / Fraction(10) ** e1) - 10 ** (DIGITS - 1)
        return first, last, e0

    @property
    def size(self) -> int:
        first, last, _ = self._grid()
        return last - first + 1

    def value(self, i: int) -> Any:
        first, _, e = self._grid()
        _, _, dim = self._ends()
        if self.scale == "linear":
            exact = (first + i) * Fraction(10) ** e
        else:
            span = 9 * 10 ** (DIGITS - 1)
            j = first + i
            exact = (10 ** (DIGITS - 1) + j % span) * Fraction(10) ** (e + j // span)
        return _formatted(float(exact), dim, False)


Axis = list[Any] | StepRange | ContinuousRange


def categorical(values: list[Any]) -> bool:
    """Whether a list axis is categorical: some value is not a number, a quantity or a list."""
    for value in values:
        if isinstance(value, bool) or value is None or isinstance(value, dict):
            return True
        if isinstance(value, str):
            try:
                units.parse_quantity_exact(value)
            except units.UnitError:
                return True
    return False


@dataclass(frozen=True)
class Domain:
    """One axis: its values by index."""

    path: str
    axis: Any  # a list, StepRange or ContinuousRange
    workload: bool  # a workload key path (workload_axes), not a config's

    @property
    def size(self) -> int:
        return len(self.axis) if isinstance(self.axis, list) else self.axis.size

    @property
    def categorical(self) -> bool:
        return isinstance(self.axis, list) and categorical(self.axis)

    def value(self, i: int) -> Any:
        return self.axis[i] if isinstance(self.axis, list) else self.axis.value(i)

    @property
    def where(self) -> str:
        return f"explore.{'workload_axes' if self.workload else 'axes'}.{self.path}"


class Budget(Strict):
    evaluations: Count | None = Field(default=None, description="designs to evaluate (each on every workload), "
                                      "those a constraint excludes included")
    seconds: float | None = Field(default=None, gt=0, description="wall time of one run; the generation running "
                                  "then is finished")

    @model_validator(mode="after")
    def _some(self) -> "Budget":
        if self.evaluations is None and self.seconds is None:
            raise FieldError("evaluations", "a budget needs evaluations or seconds")
        return self


def _axes(axes, what: str):
    """Each axis is a list, a grid {from, to, step} or a continuous range {from, to, scale};
    a range is validated here so that its error names its key."""
    if not isinstance(axes, dict):
        return axes
    checked = {}
    for path, axis in axes.items():
        if isinstance(axis, dict):
            model = StepRange if "step" in axis else ContinuousRange
            try:
                axis = model.model_validate(axis)
            except ValidationError as exc:
                key, message = _first_error(exc)
                raise FieldError(f"{path}.{key}", message) from None
        elif not isinstance(axis, (list, StepRange, ContinuousRange)):
            raise FieldError(str(path), f"{what} is a list of values, {{from, to, step}} or {{from, to, scale}}, "
                             f"not {units.shorten(repr(axis))}")
        elif isinstance(axis, list) and not axis:
            raise FieldError(str(path), f"{what} needs at least one value")
        if not str(path) or any(not part.strip() for part in str(path).split(".")):
            raise FieldError(str(path), f"{path!r} is not a key path such as mxu.count")
        checked[path] = axis
    return checked


class ExploreSpec(Strict):
    axes: dict[str, Axis] = Field(default={}, description="config key path -> a list of values, a grid {from, to, "
                                  "step} or a continuous range {from, to, scale: linear|log}")
    workload_axes: dict[str, Axis] = Field(default={}, description="workload key path -> values, as axes: each "
                                           "design sets them on every workload (schedule: [none, 'icc:period=2'])")
    workloads: list[str | WorkloadRef] = Field(min_length=1, description="workload files, relative to this file, "
                                               "or {file, set}: every design runs each")
    baseline: str | None = Field(default=None, description="a hardware config, relative to this file, evaluated "
                                 "on the same workloads: speedups are against it")
    objectives: list[Literal[tuple(OBJECTIVES)]] = Field(  # type: ignore[valid-type]
        default=["latency", "energy"], min_length=1, description="what the search and the reports compare designs "
        "on (each design's geometric mean over the workloads)")
    constraints: list[Constraint] = Field(default=[], description="bounds on area, power or a numeric config value, "
                                          "as a sweep's: a design outside is infeasible (and not simulated but for "
                                          "power)")
    budget: Budget = Field(default=Budget(evaluations=1000), description="when the search stops: evaluations "
                           "and/or seconds, whichever comes first")
    seed: int = Field(default=0, ge=0, description="the optimiser's seed: the same seed, the same designs")
    population: Count = Field(default=40, le=MAX_POPULATION, description="designs per generation")

    @field_validator("axes", mode="before")
    @classmethod
    def _hardware_axes(cls, axes):
        return _axes(axes, "an explore axis")

    @field_validator("workload_axes", mode="before")
    @classmethod
    def _workload_axes(cls, axes):
        return _axes(axes, "a workload axis")

    @model_validator(mode="after")
    def _checked(self) -> "ExploreSpec":
        if not self.axes and not self.workload_axes:
            raise FieldError("axes", "nothing to explore: give axes or workload_axes")
        if len(set(self.objectives)) != len(self.objectives):
            raise FieldError("objectives", "an objective is listed twice")
        return self

    def domains(self) -> list[Domain]:
        """The hardware axes, then the workload axes, in the order written."""
        return ([Domain(p, a, False) for p, a in self.axes.items()]
                + [Domain(p, a, True) for p, a in self.workload_axes.items()])

    @property
    def size(self) -> int:
        return math.prod(d.size for d in self.domains())
