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
nor tie with it, and the engine drops it without costing its ops (``Simulator.run``). The ops
it shares with the plan already timed (those reading none of the preloaded tensors) are taken
as that run kept them (``scheduled_ops``: their full costs, the same bits).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from archsim.hw.memory import Level, Placement, Traffic
from archsim.hw.tiling import TilingError
from archsim.ir.graph import Phase, Workload
from archsim.ir.ops import Op
from archsim.sim.cost import OpCost
from archsim.sim.schedule import schedule_run
from archsim.sim.scheduled_ops import scheduled_ops

if TYPE_CHECKING:
    from archsim.sim.engine import Simulator


def run_time(sim: Simulator, workload: Workload, placement: Placement) -> float | None:
    """``sim``'s timed run of ``workload`` under ``placement`` (no preload), its ``latency_s``:
    the ops a timed run kept as it kept them, the others the family batched from their timings,
    the rest from their costs. None where that cannot be had (no family member; an op that fits
    no tiling)."""
    family = sim.family
    mine = family.member(sim._fingerprint) if family is not None else None
    if mine is None or placement.preload:
        return None
    tail = (sim.dispatch, sim._prefetch_buffer)

    def timed(op: Op, levels: tuple[Level, ...], phase: Phase) -> OpCost | None:
        """The op's timing from the family's, as its schedule reads it (None: none batched)."""
        key = (op.signature_number, levels, *tail)
        timing = family.timings.get(key) if Level.HBM in levels else None
        if timing is None:
            return None
        parts = family.timed_parts.get(key)
        if parts is None:
            parts = family.timed_parts[key] = _members_parts(timing, len(family.chips))
        busy, latency, traffic = parts[mine]
        return OpCost.made(phase=phase.name, name=op.name, kind=op.kind, unit=busy[0][0], repeat=phase.repeat,
                           copies=op.copies, macs=0, vector_ops=0, compute_cycles=0.0, compute_s=0.0,
                           memory_s=0.0, latency_s=latency, traffic=traffic, busy=busy)

    # the ops kept from the plan's timed runs as they are (the plan with its preload shares
    # every op that reads none of the preloaded tensors); the others from the family's timings
    # where it has them, else from their costs
    costs: list[OpCost] = []
    try:
        made = scheduled_ops(sim, workload, placement, costs, [], timed)
    except TilingError:  # its full run says why
        return None
    # ``RunResult.latency_s`` of the schedules: each phase's repeats times its makespan, in order
    total = 0.0
    for repeat, once in {s.phase: (s.repeat, s.makespan) for s in schedule_run(sim.hw, workload, placement,
                                                                               costs, made)}.values():
        total += repeat * once
    return total


def _members_parts(timing: tuple, members: int) -> list[tuple[tuple, float, Traffic]]:
    """Per member, what its schedule reads of the op's cost beside its labels: the busy times
    (the unit held first, then the others' and the channels' above 0, as ``cost.busy_of`` keeps
    them), its latency with dispatch and its traffic. Made for every member at once (numpy's
    ``tolist``: the same floats), as each member new to the chunk asks for its own."""
    times, latency = timing

    def column(value) -> list[float]:
        return value.tolist() if isinstance(value, np.ndarray) and value.ndim else [float(value)] * members

    unit, held = times.held
    held, latency = column(held), column(latency)
    others = [(resource, column(seconds)) for resource, seconds in times.others.items()]
    channels = [(level.value, column(seconds)) for level, seconds in times.ch.items()]
    fields = [(f"{level.value}_{way}", column(values[level]))
              for way, values in (("read", times.reads), ("write", times.writes)) for level in Level]
    out = []
    for m in range(members):
        busy = ((unit, held[m]), *((r, s[m]) for r, s in others if s[m] > 0), *((c, s[m]) for c, s in channels if s[m] > 0))
        traffic = object.__new__(Traffic)  # as Additive's sums make theirs
        traffic.__dict__.update((name, values[m]) for name, values in fields)
        out.append((busy, latency[m], traffic))
    return out
