"""A plan's run time on a member of a family, from the family's op timings alone (issue 22;
docs/design/batched_sweep.md).

With overlap, the engine times each plan that preloads tensors into CMEM twice: as planned, and
with those tensors read from HBM as they are needed (``placement.without_preload``), and keeps
the faster. On a member new to a chunk (a new HBM bandwidth) the second plan's ops that read the
tensors from HBM are costed afresh, one at a time: a fifth of such a point's time, for a plan
that is seldom the faster. Its schedule (``schedule.schedule_run``) reads of each op's cost only
the unit it holds, its busy times, its latency, its copies and its traffic per level. For an op
the family batched (``Family.timings``, made as its members' placement searches weighed the op)
those are arrays over the members, in the scalar models' arithmetic, so the member's values are
the bits of its own cost. Scheduled from them, the plan's run time is the bits of its full
timed run: when it exceeds the time of a plan already timed, the plan can be neither the fastest
nor tie with it, and the engine drops it without costing its ops (``Simulator.run``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from archsim.hw.memory import Level, Placement, Traffic
from archsim.hw.tiling import TilingError
from archsim.ir import ops
from archsim.ir.graph import Workload
from archsim.sim.cost import OpCost
from archsim.sim.schedule import schedule_run

if TYPE_CHECKING:
    from archsim.sim.engine import Simulator


def run_time(sim: Simulator, workload: Workload, placement: Placement) -> float | None:
    """``sim``'s timed run of ``workload`` under ``placement`` (no preload), its ``latency_s``:
    the ops the family batched scheduled from their timings, the others from their costs.
    None where that cannot be had (no family member; an op that fits no tiling)."""
    family = sim.family
    mine = family.member(sim._fingerprint) if family is not None else None
    if mine is None or placement.preload:
        return None
    home = placement.home
    tail = (sim.dispatch, sim._prefetch_buffer)
    costs: list[OpCost] = []
    try:
        for phase in workload.phases:
            for op in phase.graph.ops():
                levels = tuple(map(home.__getitem__, op.tensor_names))
                timing = family.timings.get((op.signature_number, levels, *tail)) if Level.HBM in levels else None
                if timing is None:
                    costs.append(sim.op_cost(op, placement, phase.name, phase.repeat))
                else:
                    costs.append(_timed_only(timing, mine, op, phase.name, phase.repeat))
    except TilingError:  # its full run says why
        return None
    # ``RunResult.latency_s`` of the schedules: each phase's repeats times its makespan, in order
    total = 0.0
    for repeat, once in {s.phase: (s.repeat, s.makespan) for s in schedule_run(sim.hw, workload, placement,
                                                                               costs)}.values():
        total += repeat * once
    return total


def _timed_only(timing: tuple, member: int, op: ops.Op, phase: str, repeat: int) -> OpCost:
    """The member's cost of ``op`` as far as its schedule reads it: the unit held and the
    others' and the channels' busy times (those above 0, as ``cost.busy_of`` keeps them), its
    latency with dispatch, its copies and its traffic. Nothing else in it is the op's."""
    times, latency = timing

    def mine(value) -> float:
        return float(value[member]) if isinstance(value, np.ndarray) else float(value)

    unit, held = times.held
    busy = [(unit, mine(held))]
    for resource, seconds in times.others.items():
        if (s := mine(seconds)) > 0:
            busy.append((resource, s))
    for level, seconds in times.ch.items():
        if (s := mine(seconds)) > 0:
            busy.append((level.value, s))
    traffic = object.__new__(Traffic)  # as Additive's sums make theirs
    traffic.__dict__.update({f"{level.value}_{way}": mine(values[level])
                             for way, values in (("read", times.reads), ("write", times.writes)) for level in Level})
    return OpCost.made(phase=phase, name=op.name, kind=op.kind, unit=unit, repeat=repeat, copies=op.copies, macs=0,
                       vector_ops=0, compute_cycles=0.0, compute_s=0.0, memory_s=0.0, latency_s=mine(latency),
                       traffic=traffic, busy=tuple(busy))
