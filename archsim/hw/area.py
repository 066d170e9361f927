"""Die area per component, from per-PE or per-core areas, SRAM area per byte, and fixed blocks,
each scaled to the chip's node like the energies (``archsim.hw.energy.scale_factor``)."""

from __future__ import annotations

from dataclasses import dataclass

from archsim.additive import Additive

from archsim.config.schema import HardwareConfig
from archsim.hw.energy import scale_factor
from archsim.hw.memory import Level


@dataclass(frozen=True)
class Area(Additive):
    """Square metres per component."""

    mxu: float = 0.0
    vpu: float = 0.0
    vmem: float = 0.0
    cmem: float = 0.0
    ici: float = 0.0
    periphery: float = 0.0

    @property
    def total(self) -> float:
        return sum(self.values())  # field by field, in order


def chip_area(hw) -> Area:
    """The die area of one chip of ``hw``'s kind (``archsim.chips``). The last config's is kept:
    a design point's simulation reads it three times (its energy model's static power, its
    result's static energy and its area)."""
    global _LAST
    last = _LAST
    if last[0] is hw:  # the config itself, held here: no other object can have its id meanwhile
        return last[1]
    from archsim.chips import chip_kind  # the registry imports every kind's model, which import this

    area = chip_kind(hw).area(hw)
    _LAST = (hw, area)
    return area


_LAST: tuple = (None, None)  # (config, its area): configs are immutable


def tpu_area(hw: HardwareConfig) -> Area:
    def sram(level: Level) -> float:
        cfg = getattr(hw, level.value)
        if cfg is None or cfg.area_per_byte is None:
            return 0.0
        return cfg.capacity * cfg.area_per_byte * scale_factor(hw, cfg.stated_at, "area")

    return Area(
        mxu=hw.mxu.count * hw.mxu.unit_area * scale_factor(hw, hw.mxu.stated_at, "area"),
        vpu=hw.vpu.area * scale_factor(hw, hw.vpu.stated_at, "area"),
        vmem=sram(Level.VMEM),
        cmem=sram(Level.CMEM),
        ici=hw.ici.area * scale_factor(hw, hw.ici.stated_at, "area"),
        periphery=hw.periphery_area,
    )
