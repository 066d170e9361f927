"""Sweep specs: the ``sweep:`` section of a hardware config, expanded into design points.

    sweep:
      axes:                              # the cross product of these
        mxu.count: [2, 4, 8]
        mxu.cim.grid: [[8, 8], [16, 8]]
        hbm.bandwidth: {from: 300 GB/s, to: 1.2 TB/s, steps: 4}     # or scale: log
      zip:                               # axes that vary together (equal lengths)
        - {vmem.capacity: [8 MiB, 16 MiB], cmem.capacity: [64 MiB, 128 MiB]}
      constraints:                       # points outside are not simulated
        - {key: area, max: 400 mm^2}     # area, or any config key path
      workloads:
        - ../workloads/gpt3_30b_layer_decode.yaml
        - {file: ../workloads/dit_xl_2.yaml, set: {steps: 50}}
      baseline: tpuv4i.yaml              # evaluated too; speedups are against it
      objectives: [latency, energy, area]

Expanding files into points is ``archsim.dse.plan``'s job.
"""

from __future__ import annotations

import itertools
import math
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from archsim import units
from archsim.config.fields import Count, Strict
from archsim.errors import FieldError

OBJECTIVES = {  # name -> (results column, sense)
    "latency": ("latency_s", "min"),
    "energy": ("energy_j", "min"),
    "area": ("area_mm2", "min"),
    "power": ("power_w", "min"),
    "edp": ("edp_js", "min"),
    "throughput": ("throughput_per_s", "max"),
    "tops_per_w": ("tops_per_w", "max"),
    "utilization": ("utilization", "max"),
}


class RangeSpec(Strict):
    start: str | float = Field(alias="from")
    to: str | float
    steps: Count = Field(le=100_000)
    scale: Literal["linear", "log"] = "linear"

    def values(self) -> list[Any]:
        """The range's values, as unit strings in SI when the ends have units."""
        lo, lo_dim = _number(self.start)
        hi, hi_dim = _number(self.to)
        if lo_dim != hi_dim:
            raise FieldError("to", f"'{self.to}' and '{self.start}' have different units")
        if self.scale == "log" and (lo <= 0 or hi <= 0):
            raise FieldError("from", "a log scale needs positive ends")
        n = self.steps
        if n == 1 and lo != hi:
            raise FieldError("steps", "one step cannot reach from 'from' to 'to'; use steps >= 2")
        points = [lo + (hi - lo) * i / (n - 1) if self.scale == "linear" else lo * (hi / lo) ** (i / (n - 1))
                  for i in range(n)] if n > 1 else [lo]
        if lo_dim == units.SIZE:  # bytes are whole
            points = [float(round(p)) for p in points]
        if lo_dim == units.DIMENSIONLESS:
            whole = all(float(p).is_integer() for p in points) and float(lo).is_integer() and float(hi).is_integer()
            return [int(round(p)) for p in points] if whole else points
        return [f"{p!r} {units.si_unit(lo_dim)}" for p in points]


def _number(value: str | float) -> tuple[float, units.Dim]:
    if isinstance(value, str):
        try:
            exact, dim = units.parse_quantity_exact(value)
        except units.UnitError as exc:
            raise FieldError("from", str(exc)) from None
        return float(exact), dim
    return float(value), units.DIMENSIONLESS


Axis = list[Any] | RangeSpec


class WorkloadRef(Strict):
    file: str
    set: dict[str, Any] = {}


class Constraint(Strict):
    key: str = Field(description="'area' (the chip's, in m^2 SI) or a config key path")
    min: str | float | None = None
    max: str | float | None = None

    @model_validator(mode="after")
    def _bounded(self) -> "Constraint":
        if self.min is None and self.max is None:
            raise FieldError("max", "a constraint needs min or max")
        for which in ("min", "max"):
            value = getattr(self, which)
            if self.key == "area" and value is not None and _number(value)[1] != units.AREA:
                raise FieldError(which, f"an area bound needs an area unit, such as '400 mm^2' (got {value!r})")
        return self

    def bound(self, which: str) -> float | None:
        value = getattr(self, which)
        return None if value is None else _number(value)[0]


class SweepSpec(Strict):
    axes: dict[str, Axis] | None = None
    zip: list[dict[str, list[Any]]] = []
    constraints: list[Constraint] = []
    workloads: list[str | WorkloadRef] = []
    baseline: str | None = None
    objectives: list[Literal[tuple(OBJECTIVES)]] = Field(default=["latency", "energy"], min_length=1)  # type: ignore[valid-type]

    @field_validator("axes")
    @classmethod
    def _non_empty_axes(cls, axes):
        for path, values in (axes or {}).items():
            if isinstance(values, list) and not values:
                raise FieldError(path, "a sweep axis needs at least one value")
        return axes

    @model_validator(mode="after")
    def _zips(self) -> "SweepSpec":
        for i, group in enumerate(self.zip):
            lengths = {len(v) for v in group.values()}
            if len(lengths) > 1 or 0 in lengths:
                raise FieldError(f"zip.{i}", "zipped axes need the same, non-zero number of values")
        return self

    def combinations(self) -> list[tuple[tuple[str, Any], ...]]:
        """Every combination of overrides, in a deterministic order."""
        factors = self.factors()
        return [tuple(pair for part in choice for pair in part) for choice in itertools.product(*factors)]

    def factors(self) -> list[list[tuple[tuple[str, Any], ...]]]:
        """Per axis (or zipped group) its options, each a tuple of overrides applied together."""
        factors: list[list[tuple[tuple[str, Any], ...]]] = []
        for path, axis in (self.axes or {}).items():
            values = axis.values() if isinstance(axis, RangeSpec) else axis
            factors.append([((path, v),) for v in values])
        for group in self.zip:
            paths = list(group)
            factors.append([tuple(zip(paths, row)) for row in zip(*group.values())])
        return factors

    @property
    def size(self) -> int:
        sizes = [a.steps if isinstance(a, RangeSpec) else len(a) for a in (self.axes or {}).values()]
        sizes += [len(next(iter(g.values()))) for g in self.zip]
        return math.prod(sizes)


