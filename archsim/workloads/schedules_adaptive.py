"""TeaCache and MagCache: training-free caching of the whole block stack's residual, decided
step by step at run time (docs/sources/schedules.md).

Both keep one persistent tensor, the residual of the blocks (their output minus their input)
from the last step that ran them, and in every other step add it to the blocks' input instead
of running the blocks. What decides differs, and is charged as ops of its own every step:

- TeaCache (teacache_flux.py) clones the blocks' input, computes block 0's timestep-modulated
  input (its adaLN, norm1 and modulate) and, except in the first and last steps, the relative L1
  distance to the previous step's; a polynomial rescales it, the rescaled distances accumulate,
  and the blocks run once the sum reaches ``rel_l1_thresh`` (the first and last steps always).
- MagCache (magcache_flux.py) reads a calibrated per-step magnitude ratio of the residuals; from
  ``retention_ratio`` of the run on it multiplies the ratios, accumulates |1 - product| and skips
  while that error is within ``thresh`` and at most ``max_skips`` steps in a row.

The decisions are a per-step trace: recorded (``decisions``, a CSV of step,compute) or modelled
by the method's rule from a per-step curve given as data (TeaCache's measured distance, MagCache's
magnitude ratios), nearest-interpolated to the run's steps as MagCache's code does.
"""

from __future__ import annotations

from abc import abstractmethod

import csv
import io
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar

import numpy as np
from pydantic import Field

from archsim.config.fields import Count, Factor, Fraction, NonNegativeCount, NonNegativeFactor
from archsim.dtypes import DType
from archsim.errors import ConfigError
from archsim.ir import ops
from archsim.ir.ops import Pass
from archsim.ir.tensor import Role, Tensor
from archsim.workloads.inputs import read_text, whole_number
from archsim.workloads.schedules import (FULL, STEP_KINDS, Schedule, StepPlan, SubsetBuilder, _mask_path,
                                         register_schedule)
from archsim.workloads.schedules_ops import ScheduleWork

MAX_TABLE_BYTES = 16 * 2**20  # a documented limit: a decision trace, curve or router table of at most 16 MiB
MAX_TABLE_ROWS = 1_000_000  # a documented limit: its rows
_DECIMAL = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")

# TeaCache4FLUX/teacache_flux.py: the rescaling polynomial's coefficients (np.poly1d, highest
# power first) fitted for FLUX.1-dev, and its threshold (0.6: "2.0x speedup").
FLUX_COEFFICIENTS = (4.98651651e+02, -2.83781631e+02, 5.58554382e+01, -3.82021401e+00, 2.64230861e-01)


@dataclass(frozen=True)
class AdaptiveWork(ScheduleWork):
    """The deciding work of the adaptive schedules, per element, from their code."""

    PASSES: ClassVar[dict[str, tuple[Pass, ...]]] = {
        **ScheduleWork.PASSES,
        # TeaCache: (m - p).abs().mean() / p.abs().mean(): two sibling means, two passes: |p| summed
        # (abs, add), then |m - p| summed (sub, abs, add); the one division of the two scalars is
        # not counted.
        "rel_l1_mean": (Pass(2), Pass(3)),
        # MagCache's host-side scalars (magcache_flux.py, magcache_forward): ratio *= r; steps += 1;
        # err += abs(1 - ratio); err <= thresh; steps <= K; round(cnt x 27 / (n - 1)) != 11 (a
        # multiply, a round, a compare): 10 operations on one element.
        "magcache_decide": (Pass(10),),
        # HarmoniCa's load_ranking: STE(sigmoid(prob), thres).nonzero(): the sigmoid (negate, add,
        # exp, reciprocal), the compare and the compaction's count: 4 operations, exp and
        # reciprocal per router value.
        "router_rank": (Pass(4, (("exp", 1), ("reciprocal", 1))),),
    }


# -- data: per-step tables -----------------------------------------------------------------

def data_path(path: str) -> Path:
    """A table's path: as given, or under workloads/ (the bundled ones, schedules/...)."""
    return _mask_path(path)


def whole_cell(text: str, column: str, where: str) -> int:
    value = whole_number(text)
    if value is None:
        raise ConfigError(f"expected a whole number from 0, got {text!r}", file=where, key=column)
    return value


def decimal_cell(text: str, column: str, where: str) -> float:
    """A decimal number in ASCII (``float`` would also read '1_0', 'inf', 'nan')."""
    if not _DECIMAL.fullmatch(text.strip()):
        raise ConfigError(f"expected a decimal number, got {text!r}", file=where, key=column)
    value = float(text)
    if not math.isfinite(value):
        raise ConfigError(f"expected a finite number, got {text!r}", file=where, key=column)
    return value


def read_table(path: Path, what: str, columns: tuple[str, ...],
               cell: Callable[[str, str, str], Any], optional: tuple[str, ...] = ()) -> list[tuple[int, dict[str, Any]]]:
    """The rows of a CSV whose header names exactly ``columns`` (in any order) and any of
    ``optional``, as (line, values); ``cell(text, column, where)`` reads a cell. Errors name the
    file, the line and the column."""
    text = read_text(path, what, "schedule tables", MAX_TABLE_BYTES, "16 MiB")
    expected = f"expected the columns {', '.join(columns)}" + (f" and optionally {', '.join(optional)}" if optional
                                                                else "")
    reader = csv.reader(io.StringIO(text, newline=""))
    rows: list[tuple[int, dict[str, Any]]] = []
    try:
        header = next(reader, None)
        if header is None:
            raise ConfigError(f"the file is empty; expected a header row {','.join(columns)}", file=str(path))
        header = [c.strip() for c in header]
        for column in header:
            known = column in columns or column in optional
            if not known or header.count(column) > 1:
                raise ConfigError(f"{'repeated' if known else 'unknown'} column {column!r}; {expected}",
                                  file=f"{path}:1")
        missing = [c for c in columns if c not in header]
        if missing:
            raise ConfigError(f"missing column {missing[0]!r}; {expected}", file=f"{path}:1")
        for cells in reader:
            if not cells:  # a blank line
                continue
            where = f"{path}:{reader.line_num}"
            if len(rows) == MAX_TABLE_ROWS:
                raise ConfigError(f"more than {MAX_TABLE_ROWS:,} rows; archsim's limit for a schedule table",
                                  file=where)
            if len(cells) != len(header):
                raise ConfigError(f"the row has {len(cells)} cells, expected {len(header)} ({', '.join(header)})",
                                  file=where)
            rows.append((reader.line_num, {col: cell(v, col, where) for col, v in zip(header, cells)}))
    except csv.Error as exc:
        raise ConfigError(f"cannot read the CSV: {exc}", file=f"{path}:{reader.line_num}") from None
    return rows


def unique(path: Path, rows: list[tuple[int, dict[str, Any]]], keys: tuple[str, ...]) -> dict[tuple, dict]:
    """Rows by their key columns; a second row for a key is an error naming both lines."""
    out: dict[tuple, dict] = {}
    first: dict[tuple, int] = {}
    for line, row in rows:
        key = tuple(row[k] for k in keys)
        if key in first:
            named = ", ".join(f"{k} {v}" for k, v in zip(keys, key))
            raise ConfigError(f"a second row for {named} (the first is at line {first[key]}); expected one row "
                              f"per {' and '.join(keys)}", file=f"{path}:{line}")
        first[key] = line
        out[key] = row
    return out


def read_curve(path: Path, what: str, column: str, positive: bool = False) -> list[float]:
    """A per-step curve (columns step and ``column``), one row for each step 0 .. L-1."""
    def cell(text: str, col: str, where: str) -> float:
        if col == "step":
            return whole_cell(text, col, where)
        value = decimal_cell(text, col, where)
        if value < 0 or (positive and value == 0):
            raise ConfigError(f"expected a number {'above' if positive else 'from'} 0, got {text!r}",
                              file=where, key=col)
        return value

    rows = unique(path, read_table(path, what, ("step", column), cell), ("step",))
    if not rows:
        raise ConfigError("the curve has no rows; expected one per step, from step 0", file=str(path))
    for step in range(len(rows)):
        if (step,) not in rows:
            raise ConfigError(f"no row for step {step}; a curve has one row for each step from 0 to its last "
                              f"({max(k[0] for k in rows)})", file=str(path), key="step")
    return [rows[(step,)][column] for step in range(len(rows))]


def nearest_interp(curve: list[float], steps: int) -> list[float]:
    """MagCache's nearest_interp (magcache_flux.py): a curve of L points read at n steps, point
    round(k (L - 1) / (n - 1)) at step k (half to even, as numpy rounds); the last point for one
    step; the curve itself when L = n."""
    if len(curve) == steps:
        return list(curve)
    if steps == 1:
        return [curve[-1]]
    index = np.round(np.arange(steps) * ((len(curve) - 1) / (steps - 1))).astype(int)
    return [curve[i] for i in index]


def read_decisions(path: Path, steps: int) -> list[bool]:
    """A recorded trace: per step, 1 (the blocks run) or 0 (the residual is reused); a row for
    every step of the run (rows for later steps are checked, then ignored)."""
    def cell(text: str, col: str, where: str) -> int:
        value = whole_cell(text, col, where)
        if col == "compute" and value not in (0, 1):
            raise ConfigError(f"expected 1 (the blocks run) or 0 (the cached residual is added), got {text!r}",
                              file=where, key=col)
        return value

    rows = unique(path, read_table(path, "a decision trace CSV", ("step", "compute"), cell), ("step",))
    for step in range(steps):
        if (step,) not in rows:
            raise ConfigError(f"no row for step {step}; a decision trace has a row for every step of the run "
                              f"(0 to {steps - 1})", file=str(path), key="step")
    if not rows[(0,)]["compute"]:
        raise ConfigError("step 0 reuses the residual, but no step before it ran the blocks to cache one",
                          file=str(path), key="compute")
    return [bool(rows[(step,)]["compute"]) for step in range(steps)]


# -- the schedules ---------------------------------------------------------------------------

class _ResidualCaching(Schedule):
    decisions: str | None = Field(default=None, description="a recorded trace: CSV step,compute (1: the blocks run, "
                                  "0: the cached residual is added); the modelled rule's parameters are then unused")
    WRITES_MODULATED: ClassVar[bool] = False

    @abstractmethod
    def modelled(self, steps: int) -> list[bool]:
        """Per step, whether the blocks run, by the method's rule (each subclass's)."""

    @abstractmethod
    def decides(self, step: int, steps: int) -> bool:
        """Whether the step runs the metric's ops (TeaCache's distance, MagCache's scalars)."""

    def computes(self, steps: int) -> list[bool]:
        if self.decisions is not None:
            return read_decisions(data_path(self.decisions), steps)
        return self.modelled(steps)

    def plans(self, steps: int, depth: int | None = None, tokens: int | None = None) -> list[StepPlan]:
        return self.plans_from(self.computes(steps), [self.decides(k, steps) for k in range(steps)])

    def plans_from(self, compute: list[bool], decide: list[bool]) -> list[StepPlan]:
        """Plans from per-step decisions and deciding steps (a hook for another model's code's
        rule, kind: diffusion_transformer's Wan 2.1)."""
        steps = len(compute)
        plans = []
        for k in range(steps):
            writes = []
            # TeaCache keeps the modulated input for the next step's distance (steps 1 .. n-2 take one)
            if self.WRITES_MODULATED and k + 1 < steps - 1:
                writes.append("modulated")
            # the residual, when the next step adds it (skipped steps keep the same tensor)
            if compute[k] and k + 1 < steps and not compute[k + 1]:
                writes.append("residual")
            plans.append(StepPlan(self.NAME, tuple(writes), extra=(("compute", compute[k]), ("decide", decide[k]))))
        return plans


@register_schedule
class TeaCache(_ResidualCaching):
    """TeaCache (Liu et al., CVPR 2025), as TeaCache4FLUX's teacache_forward decides and runs
    steps. Defaults: FLUX.1-dev's coefficients and threshold 0.6; the metric curve bundled is
    illustrative (workloads/schedules/README.md)."""

    NAME = "teacache"
    WRITES_MODULATED: ClassVar[bool] = True
    rel_l1_thresh: NonNegativeFactor = 0.6
    coefficients: list[Factor] = Field(default=list(FLUX_COEFFICIENTS), min_length=1, max_length=8,
                                       description="the rescaling polynomial, highest power first (np.poly1d)")
    metric: str = Field(default="schedules/teacache_flux_dev_28_illustrative.csv",
                        description="CSV step,rel_l1: the relative L1 distance of block 0's modulated input to the "
                        "previous step's, per step (path as given or under workloads/)")

    def decides(self, step: int, steps: int) -> bool:
        return 0 < step < steps - 1

    def modelled(self, steps: int) -> list[bool]:
        # ali-vilab/TeaCache TeaCache4FLUX/teacache_flux.py, teacache_forward: cnt 0 and
        # num_steps - 1 compute and reset; otherwise accumulated += rescale(distance), skip while
        # accumulated < rel_l1_thresh, else compute and reset.
        distance = nearest_interp(read_curve(data_path(self.metric), "a TeaCache metric CSV", "rel_l1"), steps)
        rescale = np.poly1d(self.coefficients)
        out, accumulated = [], 0.0
        for k in range(steps):
            if k == 0 or k == steps - 1:
                compute, accumulated = True, 0.0
            else:
                accumulated += float(rescale(distance[k]))
                compute = accumulated >= self.rel_l1_thresh
                accumulated = 0.0 if compute else accumulated
            out.append(compute)
        return out


@register_schedule
class MagCache(_ResidualCaching):
    """MagCache (Ma et al., 2025), as MagCache4FLUX's magcache_forward decides and runs steps.
    Defaults are that script's (thresh 0.24, K 5, retention 0.1) with its published FLUX.1-dev
    magnitude ratios (28 steps) and its forced step 11 of 28."""

    NAME = "magcache"
    thresh: NonNegativeFactor = Field(default=0.24, description="magcache_thresh: the accumulated error allowed")
    max_skips: Count = Field(default=5, description="K: steps skipped in a row at most")
    retention_ratio: Fraction = Field(default=0.1, description="the first int(ratio x n + 0.5) steps run in full")
    mag_ratios: str = Field(default="schedules/magcache_flux_dev_28.csv",
                            description="CSV step,mag_ratio: the calibrated residual magnitude ratio per step")
    keep_full: list[NonNegativeCount] = Field(default=[11], max_length=64, description="points of the ratio curve "
                                              "never skipped (the FLUX code's step 11 of 28); [] for none")

    def retained(self, steps: int) -> int:
        return int(self.retention_ratio * steps + 0.5)

    def decides(self, step: int, steps: int) -> bool:
        return step >= self.retained(steps)

    def modelled(self, steps: int) -> list[bool]:
        # Zehong-Ma/MagCache MagCache4FLUX/magcache_flux.py, magcache_forward: from cnt >=
        # int(retention_ratio x num_steps + 0.5): accumulated_ratio *= mag_ratios[cnt];
        # accumulated_steps += 1; accumulated_err += |1 - accumulated_ratio|; skip if err <=
        # thresh and steps <= K and round(cnt x (28 - 1) / (num_steps - 1)) != 11, else reset.
        curve = read_curve(data_path(self.mag_ratios), "a MagCache ratio CSV", "mag_ratio", positive=True)
        ratios = nearest_interp(curve, steps)
        ratio, skipped, error, out = 1.0, 0, 0.0, []
        for k in range(steps):
            skip = False
            if k >= self.retained(steps) and k > 0:  # step 0: no residual yet (the code would fail)
                ratio *= ratios[k]
                skipped += 1
                error += abs(1 - ratio)
                point = int(np.round(k * ((len(curve) - 1) / (steps - 1))))
                skip = error <= self.thresh and skipped <= self.max_skips and point not in self.keep_full
                if not skip:
                    ratio, skipped, error = 1.0, 0, 0.0
            out.append(not skip)
        return out


# -- lowering --------------------------------------------------------------------------------

class ResidualKind:
    """Labels and lowers a TeaCache or MagCache step: the deciding ops, then the blocks in full
    and their residual, or the cached residual added."""

    def __init__(self, name: str):
        self.name = name

    def label(self, plan: StepPlan) -> str:
        flags = dict(plan.extra)
        what = "full" if flags["compute"] else "reuse"
        if not flags["decide"]:
            what += " (no distance)" if self.name == "teacache" else " (retained)"
        return f"{self.name} {what}" + (f" +{'+'.join(plan.writes)} cache" if plan.writes else "")

    def lower(self, plan: StepPlan, graph, precision, depth: int, scope: str, shape, b: int, t: int, x: Tensor,
              c: Tensor, tp: int) -> Tensor:
        from archsim.workloads import dit  # the DiT's own block lowering (dit.py imports this package first)

        flags = dict(plan.extra)
        d, rows = shape.hidden, b * t
        g = SubsetBuilder(graph, self.name, precision, copies=1, scope=scope, tp=tp, depth=depth)
        residual = Tensor(f"{self.name}.residual", (rows, d), precision.kv, Role.FEATURE_CACHE)
        if self.name == "teacache":
            _teacache_probe(g, plan, flags["decide"], precision, b, t, d, x, c)
        elif flags["decide"]:
            table = Tensor("magcache.mag_ratios", (1, 1), DType.FP32, Role.CONSTANT)  # this step's ratio
            g.add(AdaptiveWork, "decide", (table,), (g.act("decision", 1, dtype=DType.FP32),), 1, 1, "magcache_decide")
        if not flags["compute"]:  # hidden_states + previous_residual
            return g.binary("residual_add", "add", (x, residual), rows, d)
        # TeaCache clones the blocks' input; MagCache keeps a reference to it
        start = g.binary("residual_input_clone", "copy", (x,), rows, d) if self.name == "teacache" else x
        blocks = dit._block_builder(FULL, graph, precision, depth, scope, tp)
        out = dit._block(blocks, FULL, shape, b, t, x, dit._adaln(blocks, c, b, d))
        fresh = g.binary("residual", "sub", (out, start), rows, d)  # every computing step, as the code
        if "residual" in plan.writes:
            g.add(ops.CacheWrite, "residual.write", (fresh,), (residual,))
        return out


def _teacache_probe(g: SubsetBuilder, plan: StepPlan, measure: bool, precision, b: int, t: int, d: int, x: Tensor,
                    c: Tensor) -> None:
    """teacache_forward before the blocks: inp = hidden_states.clone(), temb_ = temb.clone(),
    block 0's norm1 on them (adaLN on block 0's weights, LayerNorm, modulate); the distance to
    the previous step's modulated input; that input kept for the next step."""
    rows = b * t
    inp = g.binary("input_clone", "copy", (x,), rows, d)
    temb = g.binary("temb_clone", "copy", (c,), b, d)
    ada = g.linear("adaLN", g.pointwise("adaLN.act", "silu", temb, b, d), b, d, 6 * d, split="gathered")
    modulated = g.binary("modulate1", "modulate", (g.norm("norm1", "layernorm", inp, rows, d), ada), rows, d)
    previous = Tensor("teacache.previous_modulated", (rows, d), precision.kv, Role.FEATURE_CACHE)
    if measure:
        g.add(AdaptiveWork, "rel_l1", (modulated, previous), (g.act("rel_l1", 1, dtype=DType.FP32),), rows, d,
              "rel_l1_mean")
    if "modulated" in plan.writes:
        g.add(ops.CacheWrite, "previous_modulated.write", (modulated,), (previous,))


STEP_KINDS["teacache"] = ResidualKind("teacache")
STEP_KINDS["magcache"] = ResidualKind("magcache")
