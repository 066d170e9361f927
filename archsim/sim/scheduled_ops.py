"""A timed run's ops as its schedule takes them, kept for the runs that share them (issue 22).

An overlapped run costs each op (``Simulator.op_cost``: its shared cost, labelled), works out the
op's prefetch from its inputs' homes and what the schedule reads of its cost
(``schedule.scheduled_op``), then schedules the phase. A sweep's points that differ only in
CMEM's capacity promote different sets of tensors, so each times a plan of its own; but their
plans differ in a few tensors' homes, and every other op is the same cost at the same homes. So
those three are kept together, keyed by what they are a function of: the op (its workload's
phase and position), its tensors' homes, the chip's cost fingerprint at those homes, the
dispatch and the prefetch buffer. With them, what the op adds to the run's totals
(``result.op_terms``). A run then looks each op up once, schedules, and sums.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from archsim.hw.memory import Level, Placement
from archsim.hw.placement import workload_shape
from archsim.ir.graph import Phase, Workload
from archsim.ir.ops import Op
from archsim.memo import BoundedMemo
from archsim.sim.cost import OpCost
from archsim.sim.result import op_terms
from archsim.sim.schedule import links, scheduled_op

if TYPE_CHECKING:
    from archsim.sim.engine import Simulator

# an op, its tensors' homes and its phase -> what a schedule reads of its cost, or None
Timed = Callable[[Op, tuple[Level, ...], Phase], "OpCost | None"]


def scheduled_ops(sim: Simulator, workload: Workload, placement: Placement, costs: list[OpCost],
                  terms: list[tuple | None], timed: Timed | None = None) -> list[tuple[list, list]]:
    """Each op's cost (``sim.op_cost``) appended to ``costs`` in run order and its totals' terms
    (``result.op_terms``) to ``terms``, and per phase its ops' prefetches and schedule parts
    (``schedule.schedule_run``'s ``made``). ``timed``: for an op not kept, what its schedule
    reads of its cost, if the caller has it (``family_timing``: None where it has not); such a
    cost is scheduled, not kept, and its terms are None."""
    home = placement.home
    buffer = sim._prefetch_buffer
    fingerprint = sim._fingerprint
    run = (sim.dispatch, buffer, workload, workload_shape(workload))  # hashed once a run, not once an op
    kept = _SCHEDULED.get(run)
    if kept is None:
        kept = _SCHEDULED.put(run, BoundedMemo(size=_OPS_HELD))
    made = []
    for p, (phase, (order, _, outside)) in enumerate(zip(workload.phases, links(workload))):
        ahead, parts = [], []
        for i, op in enumerate(order):
            levels = tuple(map(home.__getitem__, op.tensor_names))
            key = (fingerprint.key(levels), levels, p, i)  # the op: the workload's phase p, op i
            entry = kept.get(key)
            if entry is None and timed is not None and (cost := timed(op, levels, phase)) is not None:
                entry = (cost, *scheduled_op(outside[i], cost, placement, buffer), None)
            elif entry is None:  # as ``op_cost``, and the prefetch of the inputs at these homes
                cost = sim._shared_cost(op, levels).relabeled(phase.name, op.name, phase.repeat, op.copies)
                entry = kept.put(key, (cost, *scheduled_op(outside[i], cost, placement, buffer), op_terms(cost)))
            costs.append(entry[0])
            ahead.append(entry[1])
            parts.append(entry[2])
            terms.append(entry[3])
        made.append((ahead, parts))
    return made


# Per (dispatch, prefetch buffer, workload): its ops' entries, some 20 a timed run of a DiT, each
# a labelled cost (about 1.5 kB) and three small tuples. The runs sharing them are a few design
# points apart: on the bundled sweeps, 1,024 held find as many as 20,000 held, to 1%.
_OPS_HELD = 1024
_SCHEDULED: BoundedMemo[BoundedMemo[tuple[OpCost, tuple, tuple, tuple]]] = BoundedMemo(size=16)


def clear_scheduled_ops() -> None:
    _SCHEDULED.clear()
