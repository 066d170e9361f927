"""Vector-unit timing from an op's element-wise work."""

from __future__ import annotations

import math

from archsim.config.schema import VectorUnitConfig
from archsim.ir.ops import VectorWork


def vector_cycles(config: VectorUnitConfig, work: VectorWork) -> int:
    """Cycles the lanes need: simple ops at the ALU rate, transcendentals at their own rate."""
    alu = work.alu / (config.lanes * config.alu_ops_per_lane_per_cycle)
    special = work.special * config.special_cycles_per_op / config.lanes
    return math.ceil(alu + special)
