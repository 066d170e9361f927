"""Memory levels, traffic accounting per level, and where each tensor lives (``Placement``).

The placement search (which tensors CMEM holds) is ``archsim.hw.placement``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from archsim.additive import Additive
from archsim.config.schema import HardwareConfig
from archsim.ir.graph import Workload
from archsim.ir.tensor import Tensor
from archsim.memo import cached_property


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
        """``read`` and ``write`` bytes at ``level``, 0.0 at the others: its fields set as
        ``__init__`` sets them, without the frozen dataclass's ``object.__setattr__`` per field
        (as ``Additive``'s sums make theirs; a sweep makes millions)."""
        at = _READ_AT.get(level)
        if at is None:
            raise ValueError(f"unknown memory level {level!r}")
        values = [0.0] * len(_TRAFFIC_NAMES)
        values[at], values[at + 1] = read, write
        new = object.__new__(Traffic)
        new.__dict__.update(zip(_TRAFFIC_NAMES, values))
        return new

    def read(self, level: Level) -> float:
        return getattr(self, _READ[level])

    def write(self, level: Level) -> float:
        return getattr(self, _WRITE[level])

    def total(self, level: Level) -> float:
        return getattr(self, _READ[level]) + getattr(self, _WRITE[level])

    @property
    def moved(self) -> float:
        """Bytes read and written at every level together."""
        return (self.vmem_read + self.vmem_write + self.cmem_read + self.cmem_write
                + self.hbm_read + self.hbm_write)


_READ = {level: f"{level.value}_read" for level in Level}
_WRITE = {level: f"{level.value}_write" for level in Level}
_TRAFFIC_NAMES = Traffic._fields()[0]  # vmem_read, vmem_write, cmem_read, ...
_READ_AT = {level: _TRAFFIC_NAMES.index(name) for level, name in _READ.items()}  # its write: the next field


ZERO_TRAFFIC = Traffic()


@dataclass(frozen=True)
class Placement:
    home: Mapping[str, Level]  # tensor name -> level it is read from / written to
    preload: tuple[Tensor, ...]  # persistent tensors loaded from HBM into CMEM once
    feasible: bool
    reason: str = ""

    def level(self, tensor: Tensor) -> Level:
        return self.home[tensor.name]

    @cached_property
    def homes(self) -> tuple[Level, ...]:
        """Every tensor's level, in ``home``'s order: with the preload, what names the plan in the
        keys of the runs timed under it (made once a plan; a sweep's points share their plans)."""
        return tuple(self.home.values()) + tuple(t.name for t in self.preload)


def place(hw: HardwareConfig, workload: Workload, policy: str = "time_knapsack") -> tuple[Placement, ...]:
    """Candidate placements, distinct, in the policy's order of preference (see
    ``archsim.hw.placement``; it times ops with the engine, so it is imported on use)."""
    from archsim.hw.placement import place as search

    return search(hw, workload, policy)
