"""A plan's timed run on every member of a family at once (issue 22; docs/design/batched_sweep.md).

A family's members (``archsim.sim.family``: chips alike but for HBM's bandwidth) time the same
plans: of a DiT sweep family's 125 points, each times one plan of some 7 to 10, and each plan is
some 18 members' (their CMEM capacities pick it). Timed member by member, each run costs every
op reading HBM afresh (a full cost per op), schedules its phases op by op and sums its ops'
totals: the largest part of a point's time. Here the first member to time a plan times it for
every member at once, and each member reads its own run's totals off the arrays:

- each op reading HBM from the family's arrays (``Family.timings``: its latency, units' and
  channels' times and ``memory_s`` per member) and, for what no bandwidth changes (its unit,
  traffic, dynamic energy, MACs, compute and fill times), from one member's full cost per
  distinct mapping and tiling the members picked (``Family.picks``: one or two a matmul); every
  other op from its cost, which is every member's;
- each phase scheduled as arrays (``family_timing.scheduled_arrays``: the scalar schedule's
  operations element by element), its critical chain followed member by member;
- the run's totals summed as the scalar run sums them (``result.sums_of``: field by field from
  0, op by op), the time by unit and by bound grouped as ``RunResult.latency_by`` groups it.

A member's run is a ``FamilyRun``: a ``RunResult`` holding those totals, which a sweep's row
reads. Its ops and schedules, which a row does not read, are made when first read, by the
member's own timed run; its totals are then compared with that run's and a difference raises
(``tests/test_family_runs.py`` reads every member's of many plans so). One total is not kept:
the ops' static energies (``RunResult._ops_energy.static`` is 0.0 here), which no total reads
(``RunResult.energy`` charges the chip's static power over the run's time instead).
"""

from __future__ import annotations

from functools import reduce
from typing import TYPE_CHECKING

import numpy as np

from archsim.hw.energy import Energy
from archsim.hw.memory import Level, Placement, Traffic
from archsim.hw.placement import workload_shape
from archsim.hw.tiling import TilingError
from archsim.ir import ops
from archsim.ir.fused import Fused
from archsim.ir.graph import PRELOAD_PHASE, Workload
from archsim.memo import cached_property
from archsim.sim.cost import OpCost, bound_of
from archsim.sim.family_ops import _streamed
from archsim.sim.family_timing import _cost_parts, _scheduled, _timing_parts
from archsim.sim.result import RunResult, _made
from archsim.sim.schedule import charge_static, links, prefetch_bytes

if TYPE_CHECKING:
    from archsim.sim.engine import Simulator

_TRAFFIC_FIELDS, _TRAFFIC_VALUES = Traffic._fields()
_ENERGY_FIELDS, _ENERGY_VALUES = Energy._fields()
_STATIC = len(_TRAFFIC_FIELDS) + _ENERGY_FIELDS.index("static")  # in an op's terms (``_Op``)
_UNMADE = object()  # no entry yet (None: the plan's runs cannot be had at once)


def family_run(sim: Simulator, workload: Workload, placement: Placement) -> FamilyRun | None:
    """``sim``'s timed run of ``workload`` under ``placement`` read off its family's runs of the
    plan (made for every member on the first member's asking); None where they cannot be had
    (not a member; an op the family's arrays do not time; an op that fits no tiling: the
    member's own run says why)."""
    family = sim.family
    mine = family.member(sim._fingerprint) if family is not None and sim.dispatch == "program" else None
    if mine is None or not sim.overlaps or all(len(phase.graph) == 1 for phase in workload.phases):
        return None  # a run not scheduled (its ops one after another): the member's own
    key = (sim.dispatch, sim._prefetch_buffer, workload, workload_shape(workload), placement.homes)
    runs = family.plan_runs.get(key, _UNMADE)
    if runs is _UNMADE:
        try:
            runs = _PlanRuns.made(sim, workload, placement)
        except TilingError:
            runs = None
        family.plan_runs[key] = runs
    return None if runs is None else runs.member(sim, mine, workload, placement)


class _Op:
    """One op of the run as the totals read it, per member (lists over the members): its
    executions, copies, unit, bound (``bound_of``), and its totals' terms (its traffic's then its
    energy's fields, times its executions: a row, or one row a member)."""

    __slots__ = ("count", "copies", "units", "bounds", "terms", "macs", "ici", "busy")

    def __init__(self, count: int, copies: int, n: int, costs: list[OpCost], group_of: list[int] | None, memory):
        """``costs``: per group of members (``group_of``: each member's; None: one group)."""
        self.count, self.copies = count, copies
        first = costs[0]
        groups = [0] * n if group_of is None else group_of
        self.units = [costs[g].unit for g in groups]
        if isinstance(memory, float) and group_of is None:  # every member's op alike
            self.bounds = [bound_of(first.dispatch_s, first.compute_s, memory, first.fill_s)] * n
        else:
            self.bounds = [bound_of(costs[g].dispatch_s, costs[g].compute_s, memory_s, costs[g].fill_s)
                           for g, memory_s in zip(groups, _per_member(memory, n))]
        # its traffic's fields, then its energy's, per cost
        rows = np.array([_TRAFFIC_VALUES(c.traffic) + _ENERGY_VALUES(c.energy) for c in costs])
        rows[:, _STATIC] = 0.0  # the ops' static energies: not kept (the module's docstring)
        # as ``op_terms``: each field times the executions (a row, or one row a member)
        self.terms = rows[0 if group_of is None else group_of] * count
        if any((c.macs, c.ici_bytes, c.peak_macs_per_s) != (first.macs, first.ici_bytes, first.peak_macs_per_s)
               for c in costs):
            raise RuntimeError(f"op {first.name!r}: its MACs differ between a family's members: a bug in "
                               f"archsim.sim.family_runs")
        macs = first.macs * count
        self.macs, self.ici = macs, first.ici_bytes * count
        self.busy = macs / first.peak_macs_per_s if first.peak_macs_per_s else None


class _PlanRuns:
    """A plan's timed run on every member: per op (the preload first) its ``_Op`` and its
    ``added_s`` per member, per phase its repeat and time, and the totals over the members."""

    def __init__(self, ops_: list[_Op], added: list[list[float]], phases: dict, n: int, macs: int, ici: float,
                 busy: float, traffic, energy):
        # per op, what ``member`` reads: its executions, units and bounds, and its ``added_s``
        self.rows = [(op.count, op.units, op.bounds, each) for op, each in zip(ops_, added)]
        self.macs, self.ici, self.busy = macs, ici, busy
        latency = 0.0
        for repeat, once in phases.values():  # ``RunResult.latency_s``: in order
            latency = latency + repeat * once
        self.latency = _per_member(latency, n)
        self.traffic = traffic.tolist()  # (members, fields): ``_sums``
        self.energy = energy.tolist()
        self.onces = {name: (repeat, _per_member(once, n)) for name, (repeat, once) in phases.items()}

    @classmethod
    def made(cls, sim: Simulator, workload: Workload, placement: Placement) -> _PlanRuns | None:
        family = sim.family
        n = len(family.chips)
        home, buffer = placement.home, sim._prefetch_buffer
        # an op's entry and schedule parts read its homes alone: kept for the family's other plans
        # (which move a few tensors), by the op's place in the workload and its tensors' homes
        kept = family.plan_ops.setdefault((sim.dispatch, buffer, workload, workload_shape(workload)), {})
        entries: list[_Op] = []
        added: list[list[float]] = []
        phases: dict[str, tuple[int, object]] = {}
        if placement.preload:  # its own phase, one op: its traffic and energy every member's
            entry, once, chain = _preloaded(sim, placement.preload)
            entries.append(entry)
            added += chain
            phases[PRELOAD_PHASE] = (1, once)
        for p, (phase, (order, deps, outside)) in enumerate(zip(workload.phases, links(workload))):
            parts = []
            for i, op in enumerate(order):
                levels = tuple(map(home.__getitem__, op.tensor_names))
                held = kept.get((p, i, levels))
                if held is None:
                    held = kept[(p, i, levels)] = _entry(sim, op, levels, phase.repeat * op.copies,
                                                         prefetch_bytes(outside[i], placement, buffer),
                                                         kept.get(("parts", p, i, levels)))
                    if held:  # its parts, for the run times too (``family_timing._members_run_times``)
                        kept[("parts", p, i, levels)] = held[1]
                if not held:
                    return None
                entries.append(held[0])
                parts.append(held[1])
            if len(order) == 1:  # ``schedule_phase``: a lone op from 0 for its time, all its copies
                start, end, after = [0.0], [parts[0][5]], [-1]
            else:
                start, end, after = _scheduled(kept.setdefault(("schedules", p), []), parts, deps)
            once = reduce(np.maximum, end)
            added += _chain([op.copies for op in order], start, end, after, n)
            phases[phase.name] = (phase.repeat, once)
        return cls(entries, added, phases, n, *_sums(entries, n))

    def member(self, sim: Simulator, m: int, workload: Workload, placement: Placement) -> FamilyRun:
        """Member ``m``'s run (``sim``: its simulator, for its ops and schedules if read)."""
        units: dict[str, float] = {}
        bounds: dict[str, float] = {}
        for count, unit_of, bound_of_, added in self.rows:  # ``RunResult._by_unit_and_bound``, op by op
            seconds = added[m] * count
            unit, bound = unit_of[m], bound_of_[m]
            units[unit] = units.get(unit, 0.0) + seconds
            bounds[bound] = bounds.get(bound, 0.0) + seconds
        latency = self.latency[m]
        run = object.__new__(FamilyRun)
        run.__dict__.update(
            hw=sim.hw, workload=workload, feasible=True, reason="", dispatch=sim.dispatch, _source=(sim, placement),
            _static_w=None, phase_times={name: (repeat, once[m]) for name, (repeat, once) in self.onces.items()},
            latency_s=latency, macs=self.macs, ici_bytes=self.ici, utilization=self.busy / latency if latency else 0.0,
            traffic=_made(Traffic, _TRAFFIC_FIELDS, self.traffic[m]),
            _ops_energy=_made(Energy, _ENERGY_FIELDS, self.energy[m]), _latency_groups={"unit": units, "bound": bounds})
        return run


def _preloaded(sim: Simulator, tensors: tuple) -> tuple[_Op, object, list[list[float]]]:
    """The preload of ``tensors``' ``_Op``, time (every member's) and ``added_s`` per member: a
    lone op in its phase. Its cost's traffic and energies read no bandwidth, so every member's
    are the asking member's; its time is the family's arrays'."""
    family = sim.family
    cost = sim._preload_cost(tensors)
    bw = dict(sim.channels.bandwidth)
    bw[Level.HBM] = family.hbm
    times = _streamed(sim, cost.traffic, "dma", bw)
    n = len(family.chips)
    once = times.latency * 1  # ``schedule_phase``: a lone op from 0 for its time, all its copies
    return _Op(1, 1, n, [cost], None, times.memory), once, _chain([1], [0.0], [once], [-1], n)


def _entry(sim: Simulator, op: ops.Op, levels: tuple[Level, ...], count: int, ahead: dict,
           parts: tuple | None = None) -> tuple | None:
    """The op's ``_Op`` and schedule parts at ``levels`` (its inputs' prefetch ``ahead``): an op
    reading HBM from its family's arrays and one full cost per group of members; another from
    its cost. None where the arrays have no timing of it. ``parts``: its schedule parts, if the
    family's run times made them already (the same values)."""
    if Level.HBM not in levels:
        cost = sim._shared_cost(op, levels)
        return _Op(count, op.copies, len(sim.family.chips), [cost], None, cost.memory_s), \
            parts or _cost_parts(cost, op.copies, ahead)
    family = sim.family
    key = (op.signature_number, levels, sim.dispatch, sim._prefetch_buffer)
    timing = family.timings.get(key)
    if timing is None:  # not weighed by the search: the arrays make it, if they can
        sim._overlapped_op_time(op, levels)
        timing = family.timings.get(key)
    group_of = _groups(family, op, levels) if timing is not None else None
    if group_of is None:
        return None
    firsts = list(dict.fromkeys(group_of))  # each group's first member, in order
    costs = [family.member_sim(sim, m)._shared_cost(op, levels) for m in firsts]
    at = {m: g for g, m in enumerate(firsts)}
    return _Op(count, op.copies, len(group_of), costs, [at[m] for m in group_of] if len(firsts) > 1 else None,
               timing[0].memory), parts or _timing_parts(*timing, op.copies, ahead)


def _groups(family, op: ops.Op, levels: tuple[Level, ...]) -> list[int] | None:
    """Per member, the first member that picked the same mapping and tiling of the op's matmul
    (``Family.picks``): what no bandwidth changes of the op's cost is theirs alike. An op without
    a matmul: one group (its traffic and units' work read no bandwidth)."""
    n = len(family.chips)
    core = op.core if isinstance(op, Fused) else op
    if not isinstance(core, ops.MatMul):
        return [0] * n
    home = dict(zip(op.tensor_names, levels))
    entry = family.picks.get((core.signature_number, (home[core.a.name], home[core.b.name], home[core.out.name])))
    if entry is None:
        return None
    first: dict[tuple, int] = {}
    return [first.setdefault(pick, m) for m, pick in enumerate(zip(entry[2], entry[3]))]


def _chain(copies: list[int], start: list, end: list, after: list, n: int) -> list[list[float]]:
    """Each op's ``RunResult.added_s`` per member: its span over its copies on the member's
    critical chain (``PhaseSchedule.critical_ops``: from the first op ending last, back along
    the ops each start waited for), else 0."""
    if len(end) == 1:  # a lone op: on its chain
        return [_per_member((end[0] - start[0]) / copies[0], n)]
    ends, starts = _rows(end, n, np.float64), _rows(start, n, np.float64)
    on = np.zeros(ends.shape, dtype=bool)
    at = ends.argmax(axis=0)  # the first largest end, as ``max`` takes it
    if all(type(a) is int for a in after):  # every member's op waited for the same one: a chain per start
        for first in dict.fromkeys(at.tolist()):
            chain, i = [], first
            while i >= 0:
                chain.append(i)
                i = after[i]
            members = at == first
            if np.count_nonzero(members) == n:  # every member
                on[chain] = True
            else:
                on[np.ix_(chain, members)] = True
    else:
        waited, columns = _rows(after, n, np.int64), np.arange(n)
        while True:  # back along each member's chain, the members whose chain goes on
            on[at, columns] = True
            at = waited[at, columns]
            going = at >= 0
            if np.count_nonzero(going) != going.size:  # ``not going.all()``, without numpy's Python wrapper
                if not np.count_nonzero(going):
                    break
                at, columns = at[going], columns[going]
    # each op's span over its copies (``e - s``, then ``/ c``, as op by op), 0 off the chain
    return np.where(on, (ends - starts) / np.array(copies, dtype=np.float64)[:, None], 0.0).tolist()


def _per_member(value, n: int) -> list[float]:
    """``numpy.broadcast_to(value, (n,)).tolist()``: a float alike for every member, or an array
    over them (the same floats, without numpy's broadcasting machinery a call)."""
    if type(value) is float:
        return [value] * n
    if isinstance(value, np.ndarray) and value.shape == (n,):
        return value.tolist()
    return np.broadcast_to(value, (n,)).tolist()


def _rows(values: list, n: int, dtype) -> np.ndarray:
    """``values`` (per op: an array over the members, or one value for all) as an array's rows."""
    out = np.empty((len(values), n), dtype=dtype)
    for i, value in enumerate(values):
        out[i] = value
    return out


def _sums(entries: list[_Op], n: int) -> tuple[int, float, float, np.ndarray, np.ndarray]:
    """``result.sums_of`` of the ops' terms, every member's at once: each total from 0, op by op."""
    macs, ici, busy = 0, 0, 0
    total = np.zeros((n, len(_TRAFFIC_FIELDS) + len(_ENERGY_FIELDS)))
    for op in entries:
        macs += op.macs
        ici += op.ici
        if op.busy is not None:
            busy += op.busy
        total = total + op.terms
    return macs, ici, busy, total[:, :len(_TRAFFIC_FIELDS)], total[:, len(_TRAFFIC_FIELDS):]


class FamilyRun(RunResult):
    """A member's timed run read off its family's (``family_run``): the totals a row reads, made
    with the family; its ops and schedules made when first read, by the member's own timed run,
    whose totals must be these (else it raises). ``restated`` for a chip alike (a capacity
    sibling) keeps them so."""

    overlapped = True  # scheduled: with overlap

    @cached_property
    def _own(self) -> RunResult:
        sim, placement = self._source
        own = sim._timed_afresh(self.workload, placement)
        _check(self, own)
        return own

    @cached_property
    def ops(self) -> tuple[OpCost, ...]:
        own = self._own
        return own.ops if self._static_w is None else charge_static(own.ops, own.schedules, self._static_w)

    @cached_property
    def schedules(self):
        return self._own.schedules

    @property
    def _timed_ops(self) -> tuple[OpCost, ...]:
        return self._own.ops

    def restated(self, hw, ops=None, static_power=None) -> RunResult:
        if ops is not None:
            return super().restated(hw, ops, static_power)
        new = object.__new__(FamilyRun)
        new.__dict__.update({name: self.__dict__[name] for name in _KEPT}, hw=hw, _static_w=static_power)
        return new


_KEPT = ("workload", "feasible", "reason", "dispatch", "_source", "phase_times", "latency_s", "macs", "ici_bytes",
         "utilization", "traffic", "_ops_energy", "_latency_groups")


def _check(run: FamilyRun, own: RunResult) -> None:
    """Raise if the member's own timed run's totals are not those its family made for it."""
    made = (run.phase_times, run.latency_s, run.macs, run.ici_bytes, run.utilization, run.traffic,
            run._ops_energy.replaced(static=0.0), run.latency_by("unit"), run.latency_by("bound"))
    truth = (own.phase_times, own.latency_s, own.macs, own.ici_bytes, own.utilization, own.traffic,
             own._ops_energy.replaced(static=0.0), own.latency_by("unit"), own.latency_by("bound"))
    if made != truth or list(made[7]) != list(truth[7]) or list(made[8]) != list(truth[8]):
        raise RuntimeError(f"a timed run on {run.hw.name!r} differs from its family's for it: a bug in "
                           f"archsim.sim.family_runs")
