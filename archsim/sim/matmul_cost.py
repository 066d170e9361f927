"""The cost of a matmul (``ops.MatMul``) on a TPU-style chip (``archsim.sim.engine.Simulator``):
the fastest of the matrix units' mappings once its VMEM tiling's traffic is timed
(``archsim.hw.tiling``), with the vector unit converting operands stored narrower than the
MACs' type beside the arrays. The GPU's is ``GpuSimulator._matmul_cost``."""

from __future__ import annotations

import math

from archsim.dtypes import DType
from archsim.hw.matrix import MatmulShape
from archsim.hw.memory import Placement
from archsim.hw.tiling import tile_matmul
from archsim.hw.timing import channel_times
from archsim.hw.vector import vector_cycles
from archsim.ir import ops
from archsim.sim.cost import OpCost, busy_of
from archsim.sim.op_rules import UnsupportedOpError, bottleneck, compute_dtype, stored


def tpu_matmul_cost(sim, op: ops.MatMul, placement: Placement, phase: str, repeat: int) -> OpCost:
    """One execution of ``op`` on ``sim``'s chip with its operands at ``placement``'s levels."""
    dtype = compute_dtype(op)
    if not sim.matrix_unit.supports(dtype):
        supported = ", ".join(d.value for d in DType if sim.matrix_unit.supports(d))
        raise UnsupportedOpError(f"op {op.name!r}: the matrix units do not support {dtype} (supported: {supported})")
    # A weight shared by the whole batch is one matrix: fold the batch into m.
    batch, m = (op.batch, op.m) if op.b_batched else (1, op.batch * op.m)
    shape = MatmulShape(batch, m, op.k, op.n, dtype, op.b_batched,
                        stored(op.a.dtype, dtype), stored(op.b.dtype, dtype))
    levels = (placement.level(op.a), placement.level(op.b), placement.level(op.out))
    latency = sim._access_latency(levels)
    # The fastest of the units' mappings once memory is counted (ties: fewest bytes moved,
    # then the fewest cycles). Taken by compute time: an op takes at least latency +
    # compute, so once that exceeds the best time no later mapping can win.
    best = None
    for array in sorted(sim.matrix_unit.mappings(shape, op.out.dtype), key=lambda t: t.compute_cycles):
        convert = _conversion(sim.hw, op, shape, array)
        array_s = array.compute_cycles / sim.hw.clock
        compute_s = max(array_s, vector_cycles(sim.hw.vpu, convert) / sim.hw.clock)
        if best is not None and latency + compute_s > best[0][0]:
            continue
        tiling = tile_matmul(shape, op.out.dtype.bytes, dtype.accumulator.bytes, levels,
                             (array.a_reads, array.b_reads, array.out_writes), array.folds, sim.channels,
                             compute_s, latency)
        rank = (tiling.time_s, tiling.traffic.moved)
        if best is None or rank < best[0]:
            best = (rank, array, convert, array_s, compute_s, tiling)
    _, array, convert, array_s, compute_s, tiling = best
    time = tiling.time_s
    unit = "mxu" if array_s >= compute_s else "vpu"  # the conversion can outlast the arrays
    channels = channel_times(sim.hw, tiling.traffic)
    return OpCost(
        phase=phase, name=op.name, kind=op.kind, unit=op.unit.value, repeat=repeat, copies=op.copies,
        macs=op.macs, vector_ops=convert.alu + convert.special, compute_cycles=array.compute_cycles,
        compute_s=compute_s, memory_s=tiling.memory_s, latency_s=time, traffic=tiling.traffic,
        energy=sim.energy.op_energy(time, tiling.traffic, op.macs, dtype, array.weight_write_bytes, convert),
        bottleneck=bottleneck(compute_s, channels, unit),
        peak_macs_per_s=sim.hw.peak_macs_per_second(dtype), tiling=tiling.describe(),
        busy=busy_of(("mxu", array_s), ("vpu", compute_s if unit == "vpu" else 0.0), channels=channels),
        # at least 0: SCALE-Sim's count is one cycle short of a lone fold's stream
        fill_s=max(0, array.compute_cycles - array.stream_cycles) / sim.hw.clock,
    )


def _conversion(hw, op: ops.MatMul, shape: MatmulShape, array) -> ops.VectorWork:
    """The vector unit's work converting operands stored narrower than the MACs' type
    (weight-only quantisation) as the arrays read them from VMEM: every element read,
    ``vpu.convert_ops_per_element`` ALU ops each (unpack, scale). It runs beside the arrays."""
    elements = 0.0
    if shape.a_stored is not None:
        elements += array.a_reads / shape.a_dtype.bytes
    if shape.b_stored is not None:
        elements += array.b_reads / shape.b_dtype.bytes
    if not elements:
        return ops.VectorWork(0, 0)
    per_element = hw.vpu.convert_ops_per_element
    if per_element is None:
        raise UnsupportedOpError(
            f"op {op.name!r} multiplies {op.a.dtype} by {op.b.dtype} at {shape.dtype}: converting the narrower "
            f"operand needs vpu.convert_ops_per_element in the hardware config (ALU ops per element)")
    return ops.VectorWork(math.ceil(elements * per_element), 0)
