"""A chip's static power in its config: one figure, or leakage per area of the die
(``archsim.hw.leakage`` turns it into watts per component)."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from archsim.config.fields import Power, PowerDensity, Strict
from archsim.errors import FieldError


class LeakageConfig(Strict):
    """Static power by mechanism: leakage of the die per square millimetre of each kind of
    silicon (so it follows each component's area, hence SRAM capacity and node), and the power
    drawn whatever the die's size (clocking, PHY bias, DRAM refresh)."""

    logic: PowerDensity = Field(description="leakage per area of logic (matrix and vector units, links, periphery) at the chip's node")
    sram: PowerDensity = Field(description="leakage per area of on-chip SRAM (scratchpads, caches) at the chip's node")
    always_on: Power = Field(description="power drawn independently of the modelled die area (clocks, PHY bias, DRAM refresh)")


def check_static(chip: Any) -> None:
    """A chip's static power is either a flat whole-chip figure or the leakage model, not both."""
    if (chip.static_power is None) == (chip.leakage is None):
        if chip.static_power is not None:
            raise FieldError("static_power", "is given, and so is leakage (inherited or set); give one: to use one "
                             "figure for the whole chip, also set leakage to null (--set leakage=null)")
        raise FieldError("leakage", "missing: give leakage (per-area leakage densities and always-on power) or "
                         "static_power (one figure for the whole chip)")
