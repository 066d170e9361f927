"""Overlap between units: a list schedule of a phase's ops over the chip's resources.

Each op's cost says what it occupies (``OpCost.busy``): the unit it holds from start to end (the
MXUs, the vector unit, a DMA queue, the ICI; a GPU's SMs), other units' work, and each memory
channel's transfer time. Its latency is at least each of those; the rest of it, ``fixed``, is
what no other op can use either (pipeline fill, access latency, launch).

The schedule takes the ops in the phase's order (a topological order) and gives each

- a start: when its inputs' producers have ended and the unit it holds is free;
- its transfers: one block per channel, from when the channel is free (or the op starts) on,
  so another op's transfers queue behind them but a compute-bound op leaves the channel idle
  for the next;
- its prefetch: the bytes of its inputs no op of the phase produces (weights, caches), up to the
  compiler's prefetch buffer, fetched from when the op before it started [XLA-MSA]; the rest of
  its transfers start with it;
- an end: its ``fixed`` time after the later of its own unit's work and its transfers.

With nothing to overlap (every op waiting for the one before, no prefetch) an op ends ``latency``
after it starts. So the schedule is never longer than the ops one after another and never
shorter than any resource's busy time (a unit's ops, and a channel's transfers, never overlap
each other); its critical chain (``critical_ops``: each op back to the one whose end it waited
for) adds up to it. It is linear in ops. An op standing for ``copies`` layers is scheduled as one op of ``copies`` times the work:
the layers of a stack repeat the same chain, so their overlap is the one layer's, ``copies``
times; a stack's next layer's weights prefetch as a single op's would.

**One core issues the compute.** A TPU core's MXUs and vector unit are driven by one
instruction stream that runs a program's fused ops one after another; they overlap inside an op
(its cost says how), not across ops [TPU-CORE]. So ops holding the MXUs or the vector unit share
one sequencer (``SEQUENCER``: the ``core``) and run in order; what overlaps across ops is the
DMA engines' copies (prefetches, cache writes, gathers) and the ICI's collectives. A GPU's
kernels hold its SMs (``sm``) the same way.

Sources: docs/sources/compiler.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Sequence

from archsim.hw.memory import Level
from archsim.hw.placement import workload_shape
from archsim.ir.graph import PRELOAD_PHASE
from archsim.memo import cached_property
from archsim.sim.cost import OpCost, busy_totals

# Units driven by one instruction stream: an op holding any of them holds the stream [TPU-CORE].
SEQUENCER = {"mxu": "core", "vpu": "core"}


@dataclass(frozen=True)
class PhaseSchedule:
    """One execution of a phase, its ops in order: start and end of each (seconds from the
    phase's start), the makespan, the critical path and each resource's busy time."""

    phase: str
    repeat: int
    costs: tuple[OpCost, ...]
    deps: tuple[tuple[int, ...], ...]  # per op, the ops (indices) producing its inputs
    prefetch: tuple[tuple[tuple[str, float], ...], ...]  # per op, (channel, seconds) fetched ahead
    start: tuple[float, ...]
    end: tuple[float, ...]
    after: tuple[int, ...]  # per op, the op whose end its start waited for (-1: none)

    @property
    def makespan(self) -> float:
        return max(self.end, default=0.0)

    @property
    def critical_path(self) -> float:
        """The critical chain's scheduled spans summed (``critical_ops``): the makespan, as a sum
        you can check op by op."""
        total = 0.0
        for i in self.critical_ops:
            total += self.end[i] - self.start[i]
        return total

    @cached_property
    def busy(self) -> dict[str, float]:
        """Seconds each resource works in one execution of the phase."""
        return busy_totals((cost, cost.copies) for cost in self.costs)

    @cached_property
    def windows(self) -> tuple[tuple[tuple[str, float, float], ...], ...]:
        """Per op, when each resource works for it: (resource, start, end), its prefetches
        first (for the trace)."""
        return _schedule(self.costs, self.deps, self.prefetch, record=True)[2]

    @cached_property
    def critical_ops(self) -> tuple[int, ...]:
        """The chain of ops that sets the makespan, first to last: the op ending last, the op
        whose end its start waited for (an input's producer or its unit's previous holder), and
        so on back to an op starting at 0. Their scheduled spans (end - start, which include
        waiting for a memory channel another op holds) add up to the makespan."""
        if not self.end:
            return ()
        chain = [max(range(len(self.end)), key=self.end.__getitem__)]
        while self.after[chain[-1]] >= 0:
            chain.append(self.after[chain[-1]])
        return tuple(reversed(chain))


def schedule_phase(phase: str, repeat: int, costs: Sequence[OpCost], deps: Sequence[tuple[int, ...]],
                   prefetch: Sequence[tuple[tuple[str, float], ...]], parts: Sequence[tuple] | None = None
                   ) -> PhaseSchedule:
    """The phase's ops overlapped as the module docstring says. ``deps[i]``: the indices of the
    ops producing op i's inputs (all below i); ``prefetch[i]``: (channel, seconds) of op i's
    transfers that may run ahead (of all its copies, at most its transfer time on the channel);
    ``parts``, if the caller has them: each op's ``op_parts``."""
    costs, deps, prefetch = tuple(costs), tuple(deps), tuple(prefetch)
    if len(costs) == 1:  # nothing to overlap: the op alone (its prefetch could only start with it)
        return PhaseSchedule(phase, repeat, costs, deps, ((),), (0.0,), (costs[0].latency_s * costs[0].copies,), (-1,))
    start, end, _, after = _schedule(costs, deps, prefetch, record=False, parts=parts)
    return PhaseSchedule(phase, repeat, costs, deps, prefetch, start, end, after)


def _schedule(costs, deps, prefetch, record: bool, parts: Sequence[tuple] | None = None):
    """``parts``: each op's ``op_parts``, if the caller has them."""
    free: dict[str, float] = {}  # resource -> the time it is committed up to
    holder: dict[str, int] = {}  # unit -> the last op that held it
    start: list[float] = []
    end: list[float] = []
    after: list[int] = []  # per op, the op whose end its start waited for (-1: none)
    windows: list[tuple] = []
    previous_start = 0.0
    # ``max(a, b)`` is written out below as ``a`` unless ``b > a`` (what ``max`` returns, to the
    # sign of a zero): the loop runs once per op of every timed plan of a sweep
    for i, ((held, held_s, lane, work, fixed), needs, ahead) in enumerate(
            zip(parts or [op_parts(cost) for cost in costs], deps, prefetch)):
        begin, waited = 0.0, -1
        for j in (*needs, holder.get(lane, -1)):
            if j >= 0 and end[j] > begin:
                begin, waited = end[j], j
        spans: list[tuple[str, float, float]] = []
        fetched: dict[str, float] = {}
        for channel, seconds in ahead:  # issued when the op before this one started
            at = free.get(channel, 0.0)
            if previous_start > at:
                at = previous_start
            free[channel] = at + seconds
            fetched[channel] = seconds
            if record:
                spans.append((channel, at, at + seconds))
        finish = begin + held_s
        for resource, seconds in work:
            at = free.get(resource, 0.0)
            if begin > at:
                at = begin
            done = at + seconds - fetched.get(resource, 0.0)
            free[resource] = done
            if done > finish:
                finish = done
            if record:
                spans.append((resource, at, done))
        stop = finish + fixed
        previous, ends = free.get(held, 0.0), begin + held_s
        free[held] = ends if ends > previous else previous
        free[lane] = stop
        holder[lane] = i
        start.append(begin)
        end.append(stop)
        after.append(waited)
        if record:
            windows.append(((held, begin, stop), *spans))
        previous_start = begin
    return tuple(start), tuple(end), tuple(windows), tuple(after)


def op_parts(cost: OpCost) -> tuple[str, float, str, tuple[tuple[str, float], ...], float]:
    """What the schedule reads of an op's cost, all its copies: the unit it holds and that
    unit's seconds, the instruction stream it runs on (``SEQUENCER``), the other resources'
    seconds, and its ``fixed`` time (its latency beyond the longest of those)."""
    copies = cost.copies
    busy = cost.busy
    held, held_s = busy[0] if busy else (cost.unit, 0.0)
    held_s *= copies
    work = []
    longest = held_s  # the first longest of the unit's and the others' times
    for resource, seconds in busy[1:]:
        seconds *= copies
        work.append((resource, seconds))
        if seconds > longest:  # max(), written out: as the schedule's loop, it runs once an op
            longest = seconds
    fixed = cost.latency_s * copies - longest
    if not fixed > 0.0:  # max(0.0, fixed)
        fixed = 0.0
    return held, held_s, SEQUENCER.get(held, held), tuple(work), fixed


def scheduled_op(inputs, cost: OpCost, placement, buffer: float) -> tuple[tuple, tuple]:
    """What ``schedule_run`` makes of an op before scheduling it: its prefetch (``_prefetch`` of
    ``inputs``, its inputs no earlier op of its phase produces) and its ``op_parts``. A function of
    the cost, those inputs' homes and the buffer alone, so the engine keeps it with the cost."""
    return _prefetch(inputs, cost, placement, buffer), op_parts(cost)


def schedule_run(hw, workload, placement, costs: Sequence[OpCost],
                 made: Sequence[tuple[list, list]] | None = None) -> tuple[PhaseSchedule, ...]:
    """Every phase of a run scheduled (``costs`` as ``run_with`` lists them: the preload's
    first, if any, then each phase's ops in order). ``made``, if the caller has them: per phase,
    its ops' prefetches and ``op_parts`` (``scheduled_op``'s, as two lists)."""
    buffer = hw.prefetch_buffer
    out: list[PhaseSchedule] = []
    at = 0
    if costs and costs[0].phase == PRELOAD_PHASE:
        out.append(schedule_phase(PRELOAD_PHASE, 1, costs[:1], ((),), ((),)))
        at = 1
    for p, (phase, (order, deps, outside)) in enumerate(zip(workload.phases, links(workload))):
        mine = costs[at:at + len(order)]
        at += len(order)
        parts = None
        if len(order) == 1:  # a lone op's prefetch could only start with it
            ahead = [()]
        elif made is not None:
            ahead, parts = made[p]
        else:
            ahead = [_prefetch(outside[i], mine[i], placement, buffer) for i in range(len(order))]
        out.append(schedule_phase(phase.name, phase.repeat, mine, deps, ahead, parts))
    return tuple(out)


def links(workload) -> tuple[tuple[tuple, tuple[tuple[int, ...], ...], tuple], ...]:
    """Per phase of ``workload``: its ops in order, the ops (indices) producing each op's inputs,
    and each op's inputs no earlier op of the phase produces."""
    return _links(workload, workload_shape(workload))


@lru_cache(maxsize=16)
def _links(workload, shape: tuple[int, ...]) -> tuple[tuple[tuple, tuple[tuple[int, ...], ...], tuple], ...]:
    """Per phase: its ops in order, the ops (indices) producing each op's inputs, and each op's
    inputs no earlier op of the phase produces. The workload's alone (``shape`` with it: a graph
    can still grow), so every design point of a sweep shares them."""
    out = []
    for phase in workload.phases:
        order = tuple(phase.graph.ops())
        producer: dict[str, int] = {}
        deps, outside = [], []
        for i, op in enumerate(order):
            deps.append(tuple(sorted({producer[t.name] for t in op.inputs if t.name in producer})))
            outside.append(tuple(t for t in op.inputs if t.name not in producer))
            for t in op.outputs:
                producer[t.name] = i
        out.append((order, tuple(deps), tuple(outside)))
    return tuple(out)


def _prefetch(inputs, cost: OpCost, placement, buffer: float) -> tuple[tuple[str, float], ...]:
    """(channel, seconds) of the op's transfers that may run ahead: of its ``inputs`` no op of the
    phase produces (weights, caches, cached features), those off-chip or in CMEM, up to ``buffer``
    bytes a copy, as a share of the op's transfer time on that channel."""
    by_level = prefetch_bytes(inputs, placement, buffer)
    if not by_level:
        return ()
    out = []
    traffic = cost.traffic
    for channel, seconds in cost.busy[1:]:
        if channel in by_level:
            moved = traffic.total(channel)
            if moved > 0:
                out.append((channel, seconds * cost.copies * min(1.0, by_level[channel] / moved)))
    return tuple(out)


def prefetch_bytes(inputs, placement, buffer: float) -> dict[Level, float]:
    """Of ``inputs``, the bytes that may be fetched ahead per level (``_prefetch``): those off-chip
    or in CMEM, in order, up to ``buffer`` bytes."""
    by_level: dict[Level, float] = {}  # by the level (a StrEnum: its value, the channel's name, finds it)
    if buffer <= 0:
        return by_level
    room = buffer
    home = placement.home
    for t in inputs:
        level = home.get(t.name)
        if level is None or level is Level.VMEM:
            continue
        if room <= 0:
            break
        fetched = min(t.bytes, room)
        room -= fetched
        by_level[level] = by_level.get(level, 0.0) + fetched
    return by_level


def charge_static(costs: Sequence[OpCost], schedules: Sequence[PhaseSchedule], static_power: float) -> tuple[OpCost, ...]:
    """The costs with the chip's static power charged by the time each op adds to the run: an op
    on its phase's critical chain draws it over its scheduled span, an op hidden beside others
    draws none. So the ops' static energies add up to static power times the run's time, as
    they do without overlap (where each op's span is its latency)."""
    out: list[OpCost] = []
    for schedule in schedules:
        chain = set(schedule.critical_ops)
        for i, cost in enumerate(schedule.costs):
            span = (schedule.end[i] - schedule.start[i]) / cost.copies if i in chain else 0.0
            energy = object.__new__(type(cost.energy))  # dataclasses.replace, without re-running __init__
            energy.__dict__.update(cost.energy.__dict__, static=static_power * span)
            new = object.__new__(type(cost))  # as OpCost.relabeled: every field copied
            new.__dict__.update(cost.__dict__, energy=energy)
            out.append(new)
    if len(out) != len(costs):
        raise ValueError("the schedules do not cover the run's ops")
    return tuple(out)


def charge_serial(costs: Sequence[OpCost], static_power: float) -> tuple[OpCost, ...]:
    """The costs with the chip's static power charged over each op's latency: ops run one after
    another. (A cost is shared by chips that differ only in capacities, whose static power
    differs: the static energy it carries is charged here, for this chip.)"""
    out: list[OpCost] = []
    for cost in costs:
        energy = object.__new__(type(cost.energy))  # as charge_static
        energy.__dict__.update(cost.energy.__dict__, static=static_power * cost.latency_s)
        new = object.__new__(type(cost))
        new.__dict__.update(cost.__dict__, energy=energy)
        out.append(new)
    return tuple(out)


def prefetched_time(op, cost: OpCost, placement, buffer: float) -> float:
    """What the op takes once its weights' and caches' reads are fetched ahead (up to ``buffer``
    bytes, as the schedule prefetches): its fixed time after its unit's work and its channels'
    remaining transfers. An optimistic estimate, for the placement search to weigh ops as an
    overlapped run pays for them (a preload into CMEM buys little when prefetch hides the HBM
    reads anyway)."""
    ahead = dict(_prefetch([t for t in op.inputs if t.role.persistent], cost, placement, buffer))
    held_s = cost.busy[0][1] if cost.busy else 0.0
    work = [(r, s) for r, s in cost.busy[1:]]
    fixed = max(0.0, cost.latency_s - max([held_s, *(s for _, s in work)]))
    return fixed + max([held_s, *(s - ahead.get(r, 0.0) / cost.copies for r, s in work)])


def clear_schedules() -> None:
    _links.cache_clear()
