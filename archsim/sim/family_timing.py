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

A family's members weigh the same plan without its preload (on the DiT sweep all 25 members of
every family do: one set of homes), so the first member to ask schedules it for every member at
once (``_members_run_times``): each op's schedule parts as arrays over the members, and the
scalar schedule's loop with each ``if a > b`` a ``numpy.where`` of the same comparison and each
resource a member's op lacks left as it was. Every member reads its own run time from it (3%
less CPU a DiT point; ``tests/test_family_timing.py`` compares every member's bits, and random
phases member by member against ``schedule._schedule``).
"""

from __future__ import annotations

from functools import reduce
from typing import TYPE_CHECKING

import numpy as np

from archsim.hw.memory import Level, Placement, Traffic
from archsim.hw.placement import workload_shape
from archsim.hw.tiling import TilingError
from archsim.ir.graph import Phase, Workload
from archsim.ir.ops import Op
from archsim.sim.cost import OpCost
from archsim.sim.family_ops import _at_most_one
from archsim.sim.schedule import SEQUENCER, links, prefetch_bytes, schedule_run
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
    # every member's at once, where the family batched each op reading HBM: a family's members
    # weigh one plan without its preload (the same homes: on the DiT sweep, every one of them)
    key = (sim.dispatch, sim._prefetch_buffer, workload, workload_shape(workload), placement.homes)
    times = family.run_times.get(key, _UNMADE)
    if times is _UNMADE:
        times = family.run_times[key] = _members_run_times(sim, workload, placement)
    if times is not None:
        return times[mine]
    return _member_run_time(sim, workload, placement, mine)


def _member_run_time(sim: Simulator, workload: Workload, placement: Placement, mine: int) -> float | None:
    """``run_time`` of member ``mine`` alone (where the family's arrays cannot have it)."""
    family = sim.family
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


_UNMADE = object()  # no entry yet (None: the members' run times cannot be had at once)


def _members_run_times(sim: Simulator, workload: Workload, placement: Placement) -> list[float] | None:
    """``run_time`` of every member of ``sim``'s family at once: each op reading HBM from the
    family's timings (arrays over the members), each other from its cost (alike for every
    member: no cost at those homes reads HBM), scheduled as arrays (``_scheduled``), the
    scalar schedule's operations element by element (``schedule._schedule``, ``op_parts``,
    ``_prefetch``; ``tests/test_family_timing.py`` compares every member's bits). None if an op
    reading HBM has no timing (its member times it alone) or fits no tiling."""
    family = sim.family
    home, buffer = placement.home, sim._prefetch_buffer
    # an op's parts read its homes alone: kept with the family's plans' runs (``family_runs``),
    # by the op's place and its homes, and so are the phases' schedules to resume from
    kept = family.plan_ops.setdefault((sim.dispatch, buffer, workload, workload_shape(workload)), {})
    phases: dict[str, tuple[int, object]] = {}
    for p, (phase, (order, deps, outside)) in enumerate(zip(workload.phases, links(workload))):
        parts = []
        for i, op in enumerate(order):
            levels = tuple(map(home.__getitem__, op.tensor_names))
            made = kept.get(("parts", p, i, levels))
            if made is None:
                ahead = prefetch_bytes(outside[i], placement, buffer)
                if Level.HBM in levels:
                    timing = family.timings.get((op.signature_number, levels, sim.dispatch, buffer))
                    if timing is None:
                        return None
                    made = _timing_parts(*timing, op.copies, ahead)
                else:
                    try:
                        cost = sim._shared_cost(op, levels)
                    except TilingError:
                        return None
                    made = _cost_parts(cost, op.copies, ahead)
                kept[("parts", p, i, levels)] = made
            parts.append(made)
        if len(order) == 1:  # ``schedule_phase``: a lone op's time, all its copies
            once = parts[0][5]
        else:
            once = reduce(np.maximum, _scheduled(kept.setdefault(("schedules", p), []), parts, deps)[1])
        phases[phase.name] = (phase.repeat, once)
    total = 0.0
    for repeat, once in phases.values():  # ``RunResult.latency_s``: in order
        total = total + repeat * once
    return np.broadcast_to(total, family.hbm.shape).tolist()


def _timing_parts(times, latency, copies: int, ahead: dict) -> tuple:
    """``schedule.op_parts`` and ``_prefetch`` of a batched op's timing (``family_ops._Times`` and its
    latency with dispatch), per member: a resource a member's ``busy`` lacks (its seconds 0) is
    marked absent, as ``cost.busy_of`` leaves it out."""
    unit, held = times.held
    work = [(name, seconds) for name, seconds in times.others.items()]
    work += [(level.value, seconds) for level, seconds in times.ch.items()]
    fetch = []
    for level, seconds in times.ch.items():  # ``_prefetch``: the channels in ``busy`` order
        if level in ahead:
            moved = times.reads[level] + times.writes[level]  # ``Traffic.total``
            if isinstance(moved, np.ndarray):
                with np.errstate(divide="ignore", invalid="ignore"):
                    share = seconds * copies * np.minimum(1.0, ahead[level] / moved)
            elif moved > 0:  # every member's bytes alike (a float): the same operations
                share = seconds * copies * _at_most_one(ahead[level] / moved)
            else:  # no member moves bytes there: marked absent below
                share = 0.0
            present = _mask((np.asarray(seconds) > 0) & (np.asarray(moved) > 0))
            fetch.append((level.value, share if present is True else np.where(present, share, 0.0), present))
    return _parts(unit, held, work, latency, copies, fetch)


def _cost_parts(cost: OpCost, copies: int, ahead: dict) -> tuple:
    """``_timing_parts`` of a cost alike for every member: ``_parts``' operations in Python's
    floats (the same bits as numpy's, without a numpy scalar an operation)."""
    (unit, held), *work = cost.busy if cost.busy else ((cost.unit, 0.0),)
    fetch = []
    for channel, seconds in work:
        if channel in ahead:
            moved = cost.traffic.total(Level(channel))
            if moved > 0:
                fetch.append((channel, seconds * copies * min(1.0, ahead[channel] / moved), True))
    held_s = held * copies
    longest = held_s
    timed = []
    for name, seconds in work:
        seconds = seconds * copies
        if seconds > longest:  # the first longest, as ``op_parts``
            longest = seconds
        timed.append((name, seconds, seconds > 0))
    fixed = cost.latency_s * copies - longest
    if not fixed > 0.0:
        fixed = 0.0
    return unit, held_s, SEQUENCER.get(unit, unit), timed, fixed, cost.latency_s * copies, fetch


def _parts(unit: str, held, work: list, latency, copies: int, fetch: list) -> tuple:
    """``op_parts``: the unit held and its seconds, its instruction stream, the other resources'
    seconds with whether each member has them, its fixed time; then its prefetches and its time
    alone (all copies)."""
    held_s = held * copies
    longest = held_s
    timed = []
    for name, seconds in work:
        seconds = seconds * copies
        longest = np.where(seconds > longest, seconds, longest)  # the first longest, as ``op_parts``
        timed.append((name, seconds, _mask(np.asarray(seconds) > 0)))
    fixed = latency * copies - longest
    fixed = np.where(fixed > 0.0, fixed, 0.0)
    return unit, held_s, SEQUENCER.get(unit, unit), timed, fixed, latency * copies, fetch


def _mask(present: np.ndarray):
    """Which members have a resource: ``True`` where every member has it (the schedule then
    takes the scalar loop's steps as arrays, without a ``numpy.where`` a step), else the mask."""
    return True if np.count_nonzero(present) == present.size else present  # ``.all()``, without its Python wrapper


def _makespan(parts: list, deps) -> object:
    """``schedule._schedule``'s makespan (the latest end) of a phase's ops, for every member at
    once (``PhaseSchedule.makespan``: the largest end)."""
    return reduce(np.maximum, scheduled_arrays(parts, deps)[1])


def scheduled_arrays(parts: list, deps, resumed: tuple | None = None,
                     states: list | None = None) -> tuple[list, list, list]:
    """``schedule._schedule``'s start, end and ``after`` (the op whose end each op's start waited
    for, -1: none) of a phase's ops, for every member at once: each ``if b > a`` of the scalar
    loop taken as it takes it (``_later``: ``numpy.maximum`` on arrays, the same operation on
    floats), where the branch also records, a ``numpy.where`` of the same comparison; a resource
    a member's op lacks left as it was. ``resumed``: (k, start, end, after, free, holder, previous
    start), the loop's state after its first k ops, as these ops' parts left it in an earlier
    schedule (the ops from k on are scheduled from there: the same operations on the same values);
    ``states``, if given, receives the state after each op (its ``free``, ``holder`` and previous
    start; no array is changed in place, so the state holds them as they are)."""
    if resumed is None:
        first, start, end, after, free, holder, previous_start = 0, [], [], [], {}, {}, 0.0
    else:
        first, start, end, after, free, holder, previous_start = resumed
    for i in range(first, len(parts)):
        held, held_s, lane, work, fixed, _, fetch = parts[i]
        begin, waited = 0.0, -1
        for j in (*deps[i], holder.get(lane, -1)):
            if j >= 0:
                later = end[j] > begin
                if later is True or later is False:  # floats: the scalar loop's branch
                    if later:
                        begin, waited = end[j], j
                elif np.count_nonzero(later) == later.size:  # every member takes the branch (on the DiT sweep, every one or none)
                    begin, waited = end[j], j
                elif np.count_nonzero(later):
                    begin, waited = np.where(later, end[j], begin), np.where(later, j, waited)
        fetched: dict[str, object] = {}
        for channel, seconds, present in fetch:  # issued when the op before this one started
            at = _later(free.get(channel, 0.0), previous_start)
            free[channel] = at + seconds if present is True else np.where(present, at + seconds, free.get(channel, 0.0))
            fetched[channel] = seconds  # 0 where absent: ``fetched.get(resource, 0.0)``
        finish = ends = begin + held_s
        for resource, seconds, present in work:
            done = _later(free.get(resource, 0.0), begin) + seconds
            if resource in fetched:  # else ``- 0.0``, which changes no value
                done = done - fetched[resource]
            if present is True:
                free[resource] = done
                finish = _later(finish, done)
            else:
                free[resource] = np.where(present, done, free.get(resource, 0.0))
                finish = np.where(present & (done > finish), done, finish)
        stop = finish + fixed
        free[held] = _later(free.get(held, 0.0), ends)
        free[lane] = stop
        holder[lane] = i
        start.append(begin)
        end.append(stop)
        after.append(waited)
        previous_start = begin
        if states is not None:
            states.append((dict(free), dict(holder), begin))
    return start, end, after


def _scheduled(traces: list, parts: list, deps) -> tuple[list, list, list]:
    """``scheduled_arrays(parts, deps)``, resumed after the longest run of first ops whose parts
    are those (the same objects: ``_entry``'s, kept by the ops' homes) of a schedule of the phase
    made before for another of the family's plans (``traces``: each such schedule, with its loop's
    state after each op). Plans differ in a few tensors' homes, so they share their first ops' parts
    up to the first op touching one (on the DiT sweep some 40% of the ops scheduled). The loop's
    state after an op reads only the ops before it, so the schedule is the one made afresh."""
    k, trace = 0, None
    for held in traces:
        shared = 0
        for mine, theirs in zip(parts, held[0]):
            if mine is not theirs:
                break
            shared += 1
        if shared > k:
            k, trace = shared, held
    resumed = None
    if trace is not None:
        _, start, end, after, states = trace
        free, holder, previous_start = states[k - 1]
        resumed = (k, start[:k], end[:k], after[:k], dict(free), dict(holder), previous_start)
    states = [] if trace is None else trace[4][:k]
    start, end, after = scheduled_arrays(parts, deps, resumed, states)
    if len(traces) >= _TRACES_HELD:
        del traces[0]
    traces.append((parts, start, end, after, states))
    return start, end, after


_TRACES_HELD = 8  # a phase's schedules kept by a family to resume from (it times some 8 plans)


def _later(a, b):
    """``b if b > a else a``, as the scalar schedule writes ``max``: on arrays ``numpy.maximum(a,
    b)``, the same elementwise (it keeps ``a`` where equal, signed zeros too)."""
    if isinstance(a, float) and isinstance(b, float):
        return b if b > a else a
    return np.maximum(a, b)
