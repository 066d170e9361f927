"""The cost of a vector op (``ops.VectorOp``) on a TPU-style chip (``archsim.sim.engine.Simulator``):
its passes (``op.passes``) one after another, each streaming its data through VMEM with the
lanes' work overlapped; rows are padded to whole lane widths. What the passes move and compute
reads only the vector unit, the clock and where the op's tensors live (``_VectorPlan``, made
once for design points alike in those: a sweep's bandwidths and memories); their times read the
memory levels' speeds."""

from __future__ import annotations

import math
from dataclasses import dataclass

from archsim.hw.memory import Placement, Traffic
from archsim.hw.timing import access_latency, channel_times, overlapped_seconds
from archsim.hw.vector import padded_row, pass_cycles, reduction_cycles
from archsim.ir import ops
from archsim.memo import BoundedMemo
from archsim.sim.cost import OpCost, busy_of
from archsim.sim.op_rules import bottleneck


def tpu_vector_cost(sim, op: ops.VectorOp, placement: Placement, phase: str, repeat: int) -> OpCost:
    """One execution of ``op`` on ``sim``'s chip with its tensors at ``placement``'s levels."""
    hw = sim.hw
    plan = _plan(sim, op, placement)
    clock, steps = hw.clock, plan.steps
    times: dict = {}
    memory_s = latency = 0.0
    for moved, cycles_here in plan.passes:
        pass_times = channel_times(hw, moved)
        pass_memory = max(pass_times.values(), default=0.0)
        latency += overlapped_seconds(pass_memory, cycles_here / clock, steps, access_latency(hw, pass_times))
        memory_s += pass_memory
        for level, t in pass_times.items():
            times[level] = times.get(level, 0.0) + t
    work, compute_s = plan.work, plan.compute_s
    return OpCost.made(
        phase=phase, name=op.name, kind=op.kind, unit="vpu", repeat=repeat, copies=op.copies, macs=0,
        vector_ops=work.alu + work.special, compute_cycles=plan.cycles, compute_s=compute_s, memory_s=memory_s,
        latency_s=latency, traffic=plan.traffic, energy=sim.energy.op_energy(latency, plan.traffic, vector=work),
        bottleneck=bottleneck(compute_s, times, "vpu"), busy=busy_of(("vpu", compute_s), channels=times),
    )


@dataclass(frozen=True)
class _VectorPlan:
    """A vector op's passes as the vector unit runs them, without memory's speeds."""

    passes: tuple[tuple[Traffic, int], ...]  # per pass: the traffic it streams, its cycles
    steps: int  # the row blocks each pass streams in
    traffic: Traffic  # of every pass, summed in order
    work: ops.VectorWork
    cycles: int
    compute_s: float  # each pass's cycles over the clock, summed in order


def _plan(sim, op: ops.VectorOp, placement: Placement) -> _VectorPlan:
    hw = sim.hw
    levels = tuple(placement.level(t) for t in op.inputs) + tuple(placement.level(t) for t in op.outputs)
    key = (sim.unit_texts[1:], op.signature_number, levels)  # the vector unit's section and the clock
    plan = _VECTOR_PLANS.get(key)
    if plan is None:
        plan = _VECTOR_PLANS.put(key, _planned(sim._stream_traffic, hw.vpu, hw.clock, op, placement))
    return plan


def _planned(stream_traffic, vpu, clock: float, op: ops.VectorOp, placement: Placement) -> _VectorPlan:
    """``_VectorPlan`` of ``op`` from what it reads: the vector unit, the clock and the levels of
    the op's tensors (``stream_traffic``: ``Simulator._stream_traffic``, which reads only those)."""
    row = padded_row(vpu, op.row_length)
    scale = row / op.row_length
    elements = op.rows * row
    # The stream advances a row block at a time: at least one full vector of lanes, and
    # whole rows (a reduction needs its row resident).
    steps = math.ceil(elements / max(vpu.lanes, row))
    traffic, work = Traffic(), ops.VectorWork(0, 0)
    cycles = 0
    compute_s = 0.0
    passes = []
    last = len(op.passes) - 1
    for i, step in enumerate(op.passes):
        inputs, outputs = (op.inputs, op.outputs) if i == last else (op.inputs[:1], ())
        moved = stream_traffic(inputs, outputs, placement, through_vmem=True, scale=scale)
        done = step.work(elements, op.rows)
        cycles_here = pass_cycles(vpu, done, elements)
        if i != last:  # a reduction: each row's lanes folded into one value
            cycles_here += reduction_cycles(vpu, op.rows)
        passes.append((moved, cycles_here))
        traffic, work, cycles = traffic + moved, work + done, cycles + cycles_here
        compute_s += cycles_here / clock
    return _VectorPlan(tuple(passes), steps, traffic, work, cycles, compute_s)


_VECTOR_PLANS: BoundedMemo[_VectorPlan] = BoundedMemo(size=4096)  # a few hundred bytes each


def clear_vector_plans() -> None:
    _VECTOR_PLANS.clear()
