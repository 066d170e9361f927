"""Static power: what a chip draws whatever it computes, by component.

With a ``leakage`` section, each component of the die leaks in proportion to its area (``chip_area``:
already scaled to the chip's node, and for the scratchpads and caches proportional to their
capacity) at the density of its kind of silicon, SRAM or logic; ``always_on`` adds what does not
follow the modelled area. A chip given one measured ``static_power`` has it all as ``always_on``.
The densities are per area at the chip's node: a node sweep shrinks the area and so the leakage,
at the density the config gives for that node.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from archsim.additive import Additive
from archsim.hw.area import Area, chip_area
from archsim.memo import BoundedMemo

# The area components built of SRAM arrays; the others are logic (``Area``'s fields).
SRAM_COMPONENTS = frozenset({"vmem", "cmem"})


@dataclass(frozen=True)
class StaticPower(Additive):
    """Watts per component (``Area``'s components, plus ``always_on``)."""

    mxu: float = 0.0
    vpu: float = 0.0
    vmem: float = 0.0
    cmem: float = 0.0
    ici: float = 0.0
    periphery: float = 0.0
    always_on: float = 0.0

    @property
    def total(self) -> float:
        return sum(self.values())  # field by field, in order


_AREA_FIELDS = tuple(f.name for f in fields(Area))


def static_breakdown(hw) -> StaticPower:
    """The chip's static power per component (``hw`` of any chip kind)."""
    if hw.leakage is None:
        return StaticPower(always_on=hw.static_power)
    area = chip_area(hw)
    leak = hw.leakage
    per_area = {name: getattr(area, name) * (leak.sram if name in SRAM_COMPONENTS else leak.logic)
                for name in _AREA_FIELDS}
    return StaticPower(**per_area, always_on=leak.always_on)


def static_power(hw) -> float:
    """The chip's static power in watts. The last config's is kept: a design point's
    simulation reads it twice (its energy model, its result's static energy)."""
    global _LAST
    last = _LAST
    if last[0] is hw:  # the config itself, held here: no other object can have its id meanwhile
        return last[1]
    leak = hw.leakage
    if leak is None:
        watts = static_breakdown(hw).total
    else:  # a function of the area and the leakage section alone: kept by them (the area is
        # one object for the designs alike in what it reads, ``tpu_area``)
        area = chip_area(hw)
        key = (id(area), id(leak))
        entry = _BY_AREA.get(key)
        if entry is None or entry[0] is not area or entry[1] is not leak:  # held: no other has their ids
            entry = _BY_AREA.put(key, (area, leak, static_breakdown(hw).total))
        watts = entry[2]
    _LAST = (hw, watts)
    return watts


_LAST: tuple = (None, 0.0)  # (config, its static power): configs are immutable
_BY_AREA: BoundedMemo[tuple] = BoundedMemo(size=256)  # (area's id, leakage's id) -> (area, leakage, watts)


def clear_static_powers() -> None:
    _BY_AREA.clear()
