"""The cost of a matmul (``ops.MatMul``) on a TPU-style chip (``archsim.sim.engine.Simulator``):
the fastest of the matrix units' mappings once its VMEM tiling's traffic is timed
(``archsim.hw.tiling``), with the vector unit converting operands stored narrower than the
MACs' type beside the arrays. The GPU's is ``GpuSimulator._matmul_cost``."""

from __future__ import annotations

import math
from dataclasses import dataclass

from archsim.dtypes import DType
from archsim.hw.matrix import MatmulShape
from archsim.hw.matrix.base import ArrayTiming
from archsim.hw.memory import Placement
from archsim.hw.tiling import tile_matmul
from archsim.hw.timing import channel_times
from archsim.hw.vector import vector_cycles
from archsim.ir import ops
from archsim.memo import BoundedMemo
from archsim.sim.cost import OpCost, busy_of
from archsim.sim.op_rules import UnsupportedOpError, bottleneck, compute_dtype, stored


def tpu_matmul_cost(sim, op: ops.MatMul, placement: Placement, phase: str, repeat: int) -> OpCost:
    """One execution of ``op`` on ``sim``'s chip with its operands at ``placement``'s levels."""
    plan = _plan(sim, op)
    levels = (placement.level(op.a), placement.level(op.b), placement.level(op.out))
    latency = sim._access_latency(levels)
    # The fastest of the units' mappings once memory is counted (ties: fewest bytes moved,
    # then the fewest cycles). Taken by compute time: an op takes at least latency +
    # compute, so once that exceeds the best time no later mapping can win.
    picked = sim.family.matmul_pick(sim, op, levels) if sim.family is not None else None
    if picked is not None:  # the search as a family of chips made it for every member (``archsim.sim.family``)
        mapping, tiling = picked
    else:
        best = None
        for mapping in plan.mappings:
            if best is not None and latency + mapping.compute_s > best[0][0]:
                continue
            array = mapping.array
            tiling = tile_matmul(plan.shape, plan.out_bytes, plan.acc_bytes, levels,
                                 (array.a_reads, array.b_reads, array.out_writes), array.folds, sim.channels,
                                 mapping.compute_s, latency)
            rank = (tiling.time_s, tiling.traffic.moved)
            if best is None or rank < best[0]:
                best = (rank, mapping, tiling)
        _, mapping, tiling = best
    array, convert, array_s, compute_s = mapping.array, mapping.convert, mapping.array_s, mapping.compute_s
    time = tiling.time_s
    unit = "mxu" if array_s >= compute_s else "vpu"  # the conversion can outlast the arrays
    channels = channel_times(sim.hw, tiling.traffic)
    return OpCost.made(
        phase=phase, name=op.name, kind=op.kind, unit=plan.unit, repeat=repeat, copies=op.copies,
        macs=plan.macs, vector_ops=convert.alu + convert.special, compute_cycles=array.compute_cycles,
        compute_s=compute_s, memory_s=tiling.memory_s, latency_s=time, traffic=tiling.traffic,
        energy=sim.energy.op_energy(time, tiling.traffic, plan.macs, plan.dtype, array.weight_write_bytes, convert),
        bottleneck=bottleneck(compute_s, channels, unit),
        peak_macs_per_s=plan.peak_macs_per_s, tiling=tiling.describe(),
        busy=busy_of(("mxu", array_s), ("vpu", compute_s if unit == "vpu" else 0.0), channels=channels),
        # at least 0: SCALE-Sim's count is one cycle short of a lone fold's stream
        fill_s=mapping.fill_s,
    )


@dataclass(frozen=True)
class _Mapping:
    """One of the units' mappings of a matmul, with what it costs beside memory."""

    array: ArrayTiming
    convert: ops.VectorWork  # the vector unit's conversion of narrow operands
    array_s: float  # the arrays' time
    compute_s: float  # the later of the arrays and the conversion
    fill_s: float  # of array_s, not streaming MACs


@dataclass(frozen=True)
class _Plan:
    """What a matmul's cost reads of the matrix units, the vector unit and the clock alone (no
    memory level): made once for design points alike in those (a sweep's bandwidths, memories)."""

    dtype: DType
    shape: MatmulShape
    out_bytes: float
    acc_bytes: float
    macs: int
    unit: str
    peak_macs_per_s: float
    mappings: tuple[_Mapping, ...]  # by compute cycles, fewest first


def _plan(sim, op: ops.MatMul) -> _Plan:
    hw = sim.hw
    key = (sim.unit_texts, op.signature_number)  # the units' sections and the clock
    plan = _MATMUL_PLANS.get(key)
    if plan is None:  # an op refused raises here, naming itself: nothing is kept
        plan = _MATMUL_PLANS.put(key, _planned(sim.matrix_unit, hw.mxu, hw.vpu, hw.clock, op))
    return plan


def _planned(matrix_unit, mxu, vpu, clock: float, op: ops.MatMul) -> _Plan:
    """``_Plan`` of ``op`` from the values it reads, and only those."""
    dtype = compute_dtype(op)
    if not matrix_unit.supports(dtype):
        supported = ", ".join(d.value for d in DType if matrix_unit.supports(d))
        raise UnsupportedOpError(f"op {op.name!r}: the matrix units do not support {dtype} (supported: {supported})")
    # A weight shared by the whole batch is one matrix: fold the batch into m.
    batch, m = (op.batch, op.m) if op.b_batched else (1, op.batch * op.m)
    shape = MatmulShape(batch, m, op.k, op.n, dtype, op.b_batched,
                        stored(op.a.dtype, dtype), stored(op.b.dtype, dtype))
    mappings = []
    for array in sorted(matrix_unit.mappings(shape, op.out.dtype), key=lambda t: t.compute_cycles):
        convert = _conversion(vpu, op, shape, array)
        array_s = array.compute_cycles / clock
        compute_s = max(array_s, vector_cycles(vpu, convert) / clock)
        # at least 0: SCALE-Sim's count is one cycle short of a lone fold's stream
        mappings.append(_Mapping(array, convert, array_s, compute_s,
                                 max(0, array.compute_cycles - array.stream_cycles) / clock))
    return _Plan(dtype, shape, op.out.dtype.bytes, dtype.accumulator.bytes, op.macs, op.unit.value,
                 mxu.count * mxu.macs_per_cycle(dtype) * clock, tuple(mappings))


_MATMUL_PLANS: BoundedMemo[_Plan] = BoundedMemo(size=4096)  # a few hundred bytes each


def clear_matmul_plans() -> None:
    _MATMUL_PLANS.clear()


def _conversion(vpu, op: ops.MatMul, shape: MatmulShape, array) -> ops.VectorWork:
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
    per_element = vpu.convert_ops_per_element
    if per_element is None:
        raise UnsupportedOpError(
            f"op {op.name!r} multiplies {op.a.dtype} by {op.b.dtype} at {shape.dtype}: converting the narrower "
            f"operand needs vpu.convert_ops_per_element in the hardware config (ALU ops per element)")
    return ops.VectorWork(math.ceil(elements * per_element), 0)
