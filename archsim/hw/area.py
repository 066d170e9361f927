"""Die area per component, from per-PE or per-core areas, SRAM area per byte, and fixed blocks,
each scaled to the chip's node like the energies (``archsim.hw.energy.scale_factor``)."""

from __future__ import annotations

from dataclasses import dataclass

from archsim.additive import Additive

from archsim.config.schema import HardwareConfig
from archsim.hw.energy import scaled
from archsim.memo import BoundedMemo


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
    global _KINDS
    if _KINDS is None:  # the registry imports every kind's model, which import this: read on first use
        from archsim.chips import KINDS
        _KINDS = KINDS
    area = _KINDS[hw.kind].area(hw)  # ``chips.chip_kind(hw).area``
    _LAST = (hw, area)
    return area


_LAST: tuple = (None, None)  # (config, its area): configs are immutable
_KINDS = None  # ``archsim.chips.KINDS``


def tpu_area(hw: HardwareConfig) -> Area:
    """A TPU-style chip's area, kept by the sections it reads: a sweep's points share them as
    objects, so designs differing only in what the area does not read (HBM) share one."""
    parts = (hw.technology, hw.mxu, hw.vpu, hw.vmem, hw.cmem, hw.ici)
    key = (*map(id, parts), hw.periphery_area)
    entry = _AREAS.get(key)
    if entry is None or entry[0] != parts:  # held: no other has their ids (``!=`` of tuples: ``is`` first)
        entry = _AREAS.put(key, (parts, _tpu_area(*parts, hw.periphery_area)))
    return entry[1]


def _tpu_area(technology, mxu, vpu, vmem, cmem, ici, periphery_area: float) -> Area:
    def sram(cfg) -> float:
        if cfg is None or cfg.area_per_byte is None:
            return 0.0
        return cfg.capacity * cfg.area_per_byte * scaled(technology, cfg.stated_at, "area")

    return Area(
        mxu=mxu.count * mxu.unit_area * scaled(technology, mxu.stated_at, "area"),
        vpu=vpu.area * scaled(technology, vpu.stated_at, "area"),
        vmem=sram(vmem),
        cmem=sram(cmem),
        ici=ici.area * scaled(technology, ici.stated_at, "area"),
        periphery=periphery_area,
    )


# (the sections' ids, periphery) -> (the sections, held, and the area): a few per sweep chunk
_AREAS: BoundedMemo[tuple[tuple, Area]] = BoundedMemo(size=256)


def clear_areas() -> None:
    _AREAS.clear()
