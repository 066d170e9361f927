"""Sweep specs: the ``sweep:`` section of a hardware config, expanded into design points.

    sweep:
      axes:                              # the cross product of these
        mxu.count: [2, 4, 8]
        mxu.cim.grid: [[8, 8], [16, 8]]
        hbm.bandwidth: {from: 300 GB/s, to: 1.2 TB/s, steps: 4}     # or scale: log
      zip:                               # axes that vary together (equal lengths)
        - {vmem.capacity: [8 MiB, 16 MiB], cmem.capacity: [64 MiB, 128 MiB]}
      constraints:                       # points outside are not simulated
        - {key: area, max: 400 mm^2}     # area, power (a run's average, checked after it), or a config key path
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

from pydantic import Field, ValidationError, field_validator, model_validator

from archsim import units
from archsim.config.fields import Count, Strict
from archsim.errors import FieldError

# A documented limit: points (designs x workloads) of one file's sweep. A plan holds some 30
# bytes a point (archsim.dse.plan.Points) and a run the finished keys (some 100 bytes a point):
# 10^6 points plan and run in well under 2 GiB; the typed results table of 10^6 rows takes ~1 GiB.
MAX_SWEEP_POINTS = 1_000_000
MAX_RANGE_STEPS = 100_000

OBJECTIVES = {  # name -> (results column, sense)
    "latency": ("latency_s", "min"),
    "energy": ("energy_j", "min"),
    "area": ("area_mm2", "min"),
    "power": ("power_w", "min"),
    "edp": ("edp_js", "min"),
    "throughput": ("throughput_per_s", "max"),
    "tops_per_w": ("tops_per_w", "max"),
    "utilization": ("utilization", "max"),
    # a language model's serving figures (archsim.sim.serving); other workloads' rows are on no front
    "ttft": ("ttft_s", "min"),
    "tpot": ("tpot_s", "min"),
    "tokens_per_s": ("tokens_per_s", "max"),
    "tokens_per_j": ("tokens_per_j", "max"),
}


class RangeSpec(Strict):
    start: str | float = Field(alias="from", description="the first value: a number, or a quantity with its unit")
    to: str | float = Field(description="the last value, in the unit of from")
    steps: Count = Field(le=MAX_RANGE_STEPS, description="values from from to to, both included")
    scale: Literal["linear", "log"] = Field(default="linear", description="linear: equal differences between "
                                            "values; log: equal ratios (both ends positive)")

    @model_validator(mode="after")
    def _checked(self) -> "RangeSpec":
        self._ends()  # here, not when the sweep is planned; in O(1): a config is validated per point
        return self

    def _ends(self) -> tuple[float, float, units.Dim]:
        lo, lo_dim = _number(self.start, "from")
        hi, hi_dim = _number(self.to, "to")
        if lo_dim != hi_dim:
            raise FieldError("to", f"'{self.to}' and '{self.start}' have different units")
        if self.scale == "log" and (lo <= 0 or hi <= 0):
            raise FieldError("from", "a log scale needs positive ends")
        if self.steps == 1 and lo != hi:
            raise FieldError("steps", "one step cannot reach from 'from' to 'to'; use steps >= 2")
        # every value lies between the ends; the computation is finite when the span (or ratio) is
        if not math.isfinite((hi - lo) * self.steps if self.scale == "linear" else hi / lo):
            raise FieldError("to", f"the range from {self.start!r} to {self.to!r} is too wide to compute")
        return lo, hi, lo_dim

    def values(self) -> list[Any]:
        """The range's values, as unit strings in SI when the ends have units."""
        lo, hi, lo_dim = self._ends()
        n = self.steps
        points = [lo + (hi - lo) * i / (n - 1) if self.scale == "linear" else lo * (hi / lo) ** (i / (n - 1))
                  for i in range(n)] if n > 1 else [lo]
        if lo_dim == units.SIZE:  # bytes are whole
            points = [float(round(p)) for p in points]
        if lo_dim == units.DIMENSIONLESS:
            whole = all(float(p).is_integer() for p in points) and float(lo).is_integer() and float(hi).is_integer()
            return [int(round(p)) for p in points] if whole else points
        return [f"{p!r} {units.si_unit(lo_dim)}" for p in points]


def _number(value: str | float, key: str) -> tuple[float, units.Dim]:
    """A bound or a range end in SI units, and its dimension; errors name ``key``."""
    try:
        if isinstance(value, str):
            exact, dim = units.parse_quantity_exact(value)
            number = units.to_float(exact, value)
        else:
            number, dim = float(value), units.DIMENSIONLESS
    except units.UnitError as exc:
        raise FieldError(key, str(exc)) from None
    if not math.isfinite(number):
        raise FieldError(key, f"must be a finite number, got {value!r}")
    return number, dim


def _first_error(exc: ValidationError) -> tuple[str, str]:
    """The dotted key (relative to the validated mapping) and message of a nested model's first
    error, for a validator that validates a nested model itself."""
    error = exc.errors()[0]
    loc = [str(p) for p in error["loc"]]
    cause = error.get("ctx", {}).get("error")
    if isinstance(cause, FieldError):
        loc.append(cause.key)
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "missing":
        message = "required key is missing"
    elif error["type"] == "extra_forbidden":
        message = "unknown key"
    elif error["type"] != "value_error" and not isinstance(error.get("input"), (dict, list)):
        message += f" (got {units.shorten(error.get('input'))})"
    return ".".join(loc), message


Axis = list[Any] | RangeSpec


class WorkloadRef(Strict):
    file: str = Field(description="a workload file, relative to the file that lists it")
    set: dict[str, Any] = Field(default={}, description="the workload's keys to override, by key path (as "
                                "--wset), for this sweep")


def _kind(dim: units.Dim) -> str:
    """'a bandwidth', or 'a plain number'."""
    return "a plain number" if dim == units.DIMENSIONLESS else units.describe(dim).partition(", ")[0]


class Constraint(Strict):
    key: str = Field(description="'area' (the chip's, in m^2 SI), 'power' (a run's average power, in W: "
                     "checked after the run, a point over it reported infeasible) or a config key path")
    # int too: an error shows 400 as written, not 400.0
    min: str | int | float | None = Field(default=None, description="the lowest value admitted, in the unit of "
                                          "what it bounds ('300 mm^2'; a plain number for a count)")
    max: str | int | float | None = Field(default=None, description="the highest value admitted, in the unit of "
                                          "what it bounds ('400 mm^2', '175 W')")

    @model_validator(mode="after")
    def _bounded(self) -> "Constraint":
        if self.min is None and self.max is None:
            raise FieldError("max", "a constraint needs min or max")
        if self.key == "area":  # a config key's unit is checked by the config, which knows its fields
            self.check_unit(units.AREA)
        if self.key == "power":
            self.check_unit(units.POWER)
        return self

    def check_unit(self, expected: units.Dim) -> None:
        """Each bound must be in the unit of the value it bounds (a bandwidth's in B/s, a count's
        a plain number): compared across units, a bound would silently exclude every point, or
        none."""
        for which in ("min", "max"):
            value = getattr(self, which)
            if value is None:
                continue
            dim = _number(value, which)[1]
            if dim != expected:
                example = units.describe(expected).partition(", ")[2]
                raise FieldError(which, f"{value!r} is {_kind(dim)}; a bound on {self.key} ({_kind(expected)}) must "
                                 "be one too" + (f", {example}" if example and expected != units.DIMENSIONLESS else ""))

    def bound(self, which: str) -> float | None:
        value = getattr(self, which)
        return None if value is None else _number(value, which)[0]


class SweepSpec(Strict):
    axes: dict[str, Axis] | None = Field(default=None, description="config key path -> a list of values, or a "
                                         "range {from, to, steps}; the design points are their cross product")
    zip: list[dict[str, list[Any]]] = Field(default=[], description="groups of axes that vary together: each a "
                                            "mapping of key path -> values, all of one length")
    constraints: list[Constraint] = Field(default=[], description="bounds on a point's area, power or a numeric "
                                          "config value: points outside are not simulated (power: reported "
                                          "infeasible after the run)")
    workloads: list[str | WorkloadRef] = Field(default=[], description="workload files, relative to this file, or "
                                               "{file, set}: every design point runs each")
    baseline: str | None = Field(default=None, description="a hardware config, relative to this file, evaluated "
                                 "on the same workloads: speedups are against it")
    objectives: list[Literal[tuple(OBJECTIVES)]] = Field(  # type: ignore[valid-type]
        default=["latency", "energy"], min_length=1, description="what the Pareto front and the reports compare "
        "the points on (lower or higher is better, by objective)")

    @field_validator("axes", mode="before")
    @classmethod
    def _lists_or_ranges(cls, axes):
        """Each axis is a list or a range; a range is validated here so that its error names
        its key rather than listing why it is neither a list nor a range."""
        if not isinstance(axes, dict):
            return axes
        checked = {}
        for path, axis in axes.items():
            if isinstance(axis, dict):
                try:
                    axis = RangeSpec.model_validate(axis)
                except ValidationError as exc:
                    key, message = _first_error(exc)
                    raise FieldError(f"{path}.{key}", message) from None
            elif not isinstance(axis, (list, RangeSpec)):
                raise FieldError(str(path), "a sweep axis is a list of values or a range {from: A, to: B, steps: N}, "
                                 f"not {units.shorten(repr(axis))}")
            checked[path] = axis
        return checked

    @field_validator("axes")
    @classmethod
    def _non_empty_axes(cls, axes):
        for path, values in (axes or {}).items():
            if isinstance(values, list) and not values:
                raise FieldError(path, "a sweep axis needs at least one value")
        return axes

    @model_validator(mode="after")
    def _zips(self) -> "SweepSpec":
        seen = set(self.axes or {})
        for i, group in enumerate(self.zip):
            lengths = {len(v) for v in group.values()}
            if len(lengths) != 1 or 0 in lengths:
                raise FieldError(f"zip.{i}", "zipped axes need the same, non-zero number of values")
            for path in group:
                if path in seen:
                    raise FieldError(f"zip.{i}.{path}", "is swept twice (in axes or another zip group)")
                seen.add(path)
        for path in seen:
            if not path or any(not part.strip() for part in path.split(".")):
                raise FieldError("axes", f"{path!r} is not a key path such as mxu.count")
        return self

    @model_validator(mode="after")
    def _not_too_large(self) -> "SweepSpec":
        """Checked on the sizes, without enumerating the combinations."""
        workloads = max(1, len(self.workloads))
        if self.size * workloads > MAX_SWEEP_POINTS:
            sizes = " x ".join(str(n) for n in self._sizes() + ([workloads] if workloads > 1 else []))
            what = "design points x workloads" if workloads > 1 else "design points"
            raise FieldError("axes" if self.axes else "zip" if self.zip else "workloads",
                             f"{sizes} = {self.size * workloads:,} {what}; archsim's limit is {MAX_SWEEP_POINTS:,} "
                             "per file: use fewer values, or split the space over several files")
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

    def _sizes(self) -> list[int]:
        sizes = [a.steps if isinstance(a, RangeSpec) else len(a) for a in (self.axes or {}).values()]
        return sizes + [len(next(iter(g.values()))) for g in self.zip]

    @property
    def size(self) -> int:
        """The number of combinations, computed without enumerating them."""
        return math.prod(self._sizes())


