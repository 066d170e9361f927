"""Memory levels, traffic accounting, and where each tensor lives (placement).

Placement policy ``capacity_greedy`` (the default; policies are a registry):

- Weights and caches live in HBM unless promoted to CMEM, where they stay for the whole
  workload: loaded once from HBM (the *preload*), unless the workload itself creates them
  (a KV cache its prefill writes in full is born on chip and needs no preload).
- A tensor's value for promotion is the HBM traffic it saves (the bytes its reads and writes
  actually move, so an embedding lookup counts only the gathered rows, minus the preload)
  per byte of CMEM; tensors are promoted in that order while they fit.
- Activations live in CMEM when every op touching them fits its activation operands in the
  CMEM left over, else in HBM.
- Three plans are proposed: activations first, weights first, and no promotion (a promoted
  tensor saves HBM traffic but its preload is exposed, which does not pay when the op is
  compute-bound anyway). The simulator evaluates each and keeps the fastest, ties going to
  less energy. The plans rank promotions by bytes saved, not time, so more CMEM can (rarely)
  give a slightly slower run: tests/test_properties.py keeps a counterexample (a known defect).
- A plan is infeasible when HBM cannot hold the tensors homed there.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache
from types import MappingProxyType
from typing import Callable

from archsim.additive import Additive
from archsim.config.schema import HardwareConfig
from archsim.ir.graph import Workload
from archsim.ir.ops import CacheWrite, EmbeddingLookup
from archsim.ir.tensor import Tensor
from archsim.units import SIZE, format_quantity


class Level(StrEnum):
    VMEM = "vmem"
    CMEM = "cmem"
    HBM = "hbm"


@dataclass(frozen=True)
class Traffic(Additive):
    """Bytes read from and written to each memory level."""

    vmem_read: float = 0.0
    vmem_write: float = 0.0
    cmem_read: float = 0.0
    cmem_write: float = 0.0
    hbm_read: float = 0.0
    hbm_write: float = 0.0

    @staticmethod
    def of(level: Level, read: float = 0.0, write: float = 0.0) -> "Traffic":
        if level == Level.VMEM:
            return Traffic(read, write)
        if level == Level.CMEM:
            return Traffic(0.0, 0.0, read, write)
        if level == Level.HBM:
            return Traffic(0.0, 0.0, 0.0, 0.0, read, write)
        raise ValueError(f"unknown memory level {level!r}")

    def read(self, level: Level) -> float:
        return getattr(self, _READ[level])

    def write(self, level: Level) -> float:
        return getattr(self, _WRITE[level])

    def total(self, level: Level) -> float:
        return getattr(self, _READ[level]) + getattr(self, _WRITE[level])


_READ = {level: f"{level.value}_read" for level in Level}
_WRITE = {level: f"{level.value}_write" for level in Level}


ZERO_TRAFFIC = Traffic()


@dataclass(frozen=True)
class Placement:
    home: Mapping[str, Level]  # tensor name -> level it is read from / written to
    preload: tuple[Tensor, ...]  # persistent tensors loaded from HBM into CMEM once
    feasible: bool
    reason: str = ""

    def level(self, tensor: Tensor) -> Level:
        return self.home[tensor.name]


_POLICIES: dict[str, Callable[[HardwareConfig, Workload], tuple[Placement, ...]]] = {}


def register_placement(name: str):
    def decorate(fn):
        _POLICIES[name] = fn
        return fn

    return decorate


def place(hw: HardwareConfig, workload: Workload, policy: str = "capacity_greedy") -> tuple[Placement, ...]:
    """Candidate placements, distinct, in the policy's order of preference."""
    try:
        return _POLICIES[policy](hw, workload)
    except KeyError:
        raise ValueError(f"unknown placement policy {policy!r}; known: {sorted(_POLICIES)}") from None


@dataclass
class _Usage:
    tensor: Tensor
    moved: float = 0.0  # bytes its reads and writes move over the workload
    born_on_chip: bool = False  # first touched by a write of the whole tensor
    seen: bool = False


def _shape_of(workload: Workload) -> tuple[int, ...]:
    """With the workload, the key of the caches below: a graph can still grow (``add``)."""
    return tuple(len(phase.graph) for phase in workload.phases)


@lru_cache(maxsize=16)
def _usage(workload: Workload, shape: tuple[int, ...]) -> tuple[dict[str, _Usage], list[tuple[dict[str, float], int]]]:
    """Per-tensor traffic, and per op its activation bytes and execution count. It depends on
    the workload alone, so every design point of a sweep shares it (read-only)."""
    tensors = workload.tensors()
    usage = {name: _Usage(t) for name, t in tensors.items()}
    op_activations = []
    for phase in workload.phases:
        for op in phase.graph.ops():
            count = phase.repeat * op.copies
            for t in op.inputs:
                u = usage[t.name]
                u.seen = True
                per_access = op.outputs[0].elements * t.dtype.bytes if isinstance(op, EmbeddingLookup) and t is op.inputs[0] else t.bytes
                u.moved += per_access * count
            for t in op.outputs:
                u = usage[t.name]
                written = op.written_bytes if isinstance(op, CacheWrite) else t.bytes
                if not u.seen and written >= t.bytes and op.copies >= t.copies:  # every copy, in full
                    u.born_on_chip = True
                u.seen = True
                u.moved += written * count
            activations = {t.name: t.bytes for t in op.tensors if not t.role.persistent}
            op_activations.append((activations, count))
    return usage, op_activations


def _promote(usage: dict[str, _Usage], budget: float) -> set[str]:
    def saving(u: _Usage) -> float:
        return u.moved - (0.0 if u.born_on_chip else u.tensor.total_bytes)

    candidates = [u for u in usage.values() if u.tensor.role.persistent and saving(u) > 0]
    # by saving per CMEM byte, then by saving (on equal density the bigger saves more), then name
    candidates.sort(key=lambda u: (-saving(u) / u.tensor.total_bytes, -saving(u), u.tensor.name))
    promoted = set()
    for u in candidates:
        if u.tensor.total_bytes <= budget:
            promoted.add(u.tensor.name)
            budget -= u.tensor.total_bytes
    return promoted


def _activations_in(op_activations, budget: float) -> tuple[set[str], float]:
    """Activations whose every op fits them in ``budget``, and the largest such footprint."""
    fits: dict[str, bool] = {}
    reserve = 0.0
    for activations, _ in op_activations:
        footprint = sum(activations.values())
        ok = 0 < footprint <= budget
        if ok:
            reserve = max(reserve, footprint)
        for name in activations:
            fits[name] = fits.get(name, True) and ok
    return {n for n, ok in fits.items() if ok}, reserve


@register_placement("capacity_greedy")
def capacity_greedy(hw: HardwareConfig, workload: Workload) -> tuple[Placement, ...]:
    # the plans read nothing of the chip but its two capacities: design points share them
    return _capacity_greedy(workload, _shape_of(workload), hw.cmem.capacity if hw.cmem is not None else 0.0,
                            hw.hbm.capacity)


@lru_cache(maxsize=128)
def _capacity_greedy(workload: Workload, shape: tuple[int, ...], capacity: float,
                     hbm_capacity: float) -> tuple[Placement, ...]:
    usage, op_activations = _usage(workload, shape)

    acts_a, reserve = _activations_in(op_activations, capacity)
    promoted_a = _promote(usage, capacity - reserve)
    promoted_b = _promote(usage, capacity)
    acts_b, _ = _activations_in(op_activations, capacity - sum(usage[n].tensor.total_bytes for n in promoted_b))
    plans = []
    for acts, promoted in ((acts_a, promoted_a), (acts_b, promoted_b), (acts_a, set())):
        plan = _plan(hbm_capacity, usage, op_activations, acts, promoted)
        if plan not in plans:
            plans.append(plan)
    return tuple(plans)


def _plan(hbm_capacity: float, usage, op_activations, in_cmem: set[str], promoted: set[str]) -> Placement:
    # read-only: placements are shared by every design point with these capacities
    home = MappingProxyType({name: Level.CMEM if name in in_cmem or name in promoted else Level.HBM for name in usage})
    preload = tuple(sorted((usage[n].tensor for n in promoted if not usage[n].born_on_chip), key=lambda t: t.name))
    in_hbm = [u.tensor for u in usage.values() if u.tensor.role.persistent
              and not (u.tensor.name in promoted and u.born_on_chip)]
    needed = sum(t.total_bytes for t in in_hbm) + _peak_hbm_activations(op_activations, home)
    if needed > hbm_capacity:
        missing = needed - hbm_capacity
        reason = (
            f"needs {format_quantity(needed, SIZE)} of HBM (weights, caches and spilled "
            f"activations) but HBM holds {format_quantity(hbm_capacity, SIZE)}: "
            f"{format_quantity(missing, SIZE)} missing"
        )
        return Placement(home, preload, False, reason)
    return Placement(home, preload, True)


def _peak_hbm_activations(op_activations, home: dict[str, Level]) -> float:
    peak = 0.0
    for activations, _ in op_activations:
        peak = max(peak, sum(size for name, size in activations.items() if home[name] is Level.HBM))
    return peak


def clear_placements() -> None:
    _usage.cache_clear()
    _capacity_greedy.cache_clear()
