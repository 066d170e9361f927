"""Vector-unit timing from an op's element-wise work.

Each pass of an op over its data costs ``pass_cycles_per_vreg`` cycles per register's worth
of it (moving the data through the registers) besides its arithmetic; a reduction pass also
folds each row across its lanes, log2(lane width) steps of ``reduce_step_cycles``. The lanes run simple ops at ``alu_ops_per_lane_per_cycle`` each and transcendentals at their
own cost (``special_cycles`` by function, else ``special_cycles_per_op``). A row laid along the
lanes fills whole vector registers: its length is padded to a multiple of ``lane_width``, in
the registers and in the memory layout (a TPU tiles arrays (8, 128) in HBM as in VMEM).
"""

from __future__ import annotations

import math

from archsim.config.schema import VectorUnitConfig
from archsim.ir.ops import VectorWork


def vector_cycles(config: VectorUnitConfig, work: VectorWork) -> int:
    """Cycles the lanes need: simple ops at the ALU rate, transcendentals at their own rate."""
    alu = work.alu / (config.lanes * config.alu_ops_per_lane_per_cycle)
    named = 0
    special = 0.0
    for function, count in work.functions:
        special += count * config.special_cycles.get(function, config.special_cycles_per_op)
        named += count
    special += (work.special - named) * config.special_cycles_per_op
    return math.ceil(alu + special / config.lanes)


def pass_cycles(config: VectorUnitConfig, work: VectorWork, elements: int) -> int:
    """One pass of an op over ``elements`` (padded) elements: its arithmetic, plus the pass's
    own cost per vector register of data (``pass_cycles_per_vreg``: loads, stores, loop)."""
    return vector_cycles(config, work) + math.ceil(config.pass_cycles_per_vreg * elements / config.lanes)


def reduction_cycles(config: VectorUnitConfig, rows: int) -> int:
    """Folding each row's partial results across its lanes: log2(lane width) steps of
    ``reduce_step_cycles`` per vector register, which holds lanes / lane_width rows."""
    width = config.lane_width or config.lanes
    rows_per_register = max(1, config.lanes // width)
    steps = math.ceil(math.log2(width)) if width > 1 else 0
    return math.ceil(math.ceil(rows / rows_per_register) * steps * config.reduce_step_cycles)


def padded_row(config: VectorUnitConfig, row_length: int) -> int:
    """A row's length as the lanes and the memory layout hold it."""
    width = config.lane_width
    return row_length if width is None else math.ceil(row_length / width) * width
