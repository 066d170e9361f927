"""Memory levels, traffic accounting, and where each tensor lives (placement).

Placement policy ``capacity_greedy`` (the default, and the only one so far; policies are a
registry so others can join):

- Activations live in CMEM when the op that touches them fits its activation operands there,
  else in HBM. CMEM keeps room for the largest such op.
- Persistent tensors (weights, KV and feature caches) live in HBM. Those read more than once
  over the whole workload (phase repeats included) are promoted to CMEM in order of reads
  until the remaining CMEM is full; each promoted tensor is loaded from HBM once (the
  *preload*), so later reads cost CMEM rather than HBM traffic.
- The workload is infeasible when HBM cannot hold every persistent tensor plus the activations
  placed there.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, fields
from enum import StrEnum
from typing import Callable

from archsim.config.schema import HardwareConfig
from archsim.ir.graph import Workload
from archsim.ir.tensor import Tensor
from archsim.units import SIZE, format_quantity


class Level(StrEnum):
    VMEM = "vmem"
    CMEM = "cmem"
    HBM = "hbm"


@dataclass(frozen=True)
class Traffic:
    """Bytes read from and written to each memory level."""

    vmem_read: float = 0.0
    vmem_write: float = 0.0
    cmem_read: float = 0.0
    cmem_write: float = 0.0
    hbm_read: float = 0.0
    hbm_write: float = 0.0

    @staticmethod
    def of(level: Level, read: float = 0.0, write: float = 0.0) -> "Traffic":
        return Traffic(**{f"{level.value}_read": read, f"{level.value}_write": write})

    def __add__(self, other: "Traffic") -> "Traffic":
        return Traffic(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))

    def scaled(self, factor: float) -> "Traffic":
        return Traffic(*(getattr(self, f.name) * factor for f in fields(self)))

    def total(self, level: Level) -> float:
        return getattr(self, f"{level.value}_read") + getattr(self, f"{level.value}_write")

    def as_dict(self) -> dict[str, float]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


ZERO_TRAFFIC = Traffic()


@dataclass(frozen=True)
class Placement:
    home: dict[str, Level]  # tensor name -> level it is read from / written to
    preload: tuple[Tensor, ...]  # persistent tensors loaded from HBM into CMEM once
    feasible: bool
    reason: str = ""

    def level(self, tensor: Tensor) -> Level:
        return self.home[tensor.name]


_POLICIES: dict[str, Callable[[HardwareConfig, Workload], Placement]] = {}


def register_placement(name: str):
    def decorate(fn):
        _POLICIES[name] = fn
        return fn

    return decorate


def place(hw: HardwareConfig, workload: Workload, policy: str = "capacity_greedy") -> Placement:
    try:
        return _POLICIES[policy](hw, workload)
    except KeyError:
        raise ValueError(f"unknown placement policy {policy!r}; known: {sorted(_POLICIES)}") from None


@register_placement("capacity_greedy")
def capacity_greedy(hw: HardwareConfig, workload: Workload) -> Placement:
    cmem_capacity = hw.cmem.capacity if hw.cmem is not None else 0.0
    tensors = workload.tensors()
    reads: dict[str, int] = defaultdict(int)
    act_in_cmem: dict[str, bool] = {}
    reserve = 0.0
    for phase in workload.phases:
        for op in phase.graph.ops():
            activations = {t.name: t for t in op.tensors if not t.role.persistent}
            footprint = sum(t.bytes for t in activations.values())
            fits = 0 < footprint <= cmem_capacity
            if fits:
                reserve = max(reserve, footprint)
            for name in activations:
                act_in_cmem[name] = act_in_cmem.get(name, True) and fits
            for t in op.inputs:  # reads of each copy
                reads[t.name] += phase.repeat * max(1, op.copies // t.copies)

    home: dict[str, Level] = {n: Level.CMEM if ok else Level.HBM for n, ok in act_in_cmem.items()}
    persistent = sorted(
        (t for t in tensors.values() if t.role.persistent), key=lambda t: (-reads[t.name], t.name)
    )
    budget = cmem_capacity - reserve
    preload = []
    for t in persistent:
        if reads[t.name] > 1 and t.total_bytes <= budget:
            home[t.name] = Level.CMEM
            budget -= t.total_bytes
            preload.append(t)
        else:
            home[t.name] = Level.HBM

    needed = sum(t.total_bytes for t in persistent) + _peak_hbm_activations(workload, home)
    if needed > hw.hbm.capacity:
        missing = needed - hw.hbm.capacity
        reason = (
            f"needs {format_quantity(needed, SIZE)} of HBM (weights, caches and spilled "
            f"activations) but HBM holds {format_quantity(hw.hbm.capacity, SIZE)}: "
            f"{format_quantity(missing, SIZE)} missing"
        )
        return Placement(home, tuple(preload), False, reason)
    return Placement(home, tuple(preload), True)


def _peak_hbm_activations(workload: Workload, home: dict[str, Level]) -> float:
    peak = 0.0
    for phase in workload.phases:
        for op in phase.graph.ops():
            spilled = {t.name: t.bytes for t in op.tensors if not t.role.persistent and home[t.name] is Level.HBM}
            peak = max(peak, sum(spilled.values()))
    return peak
