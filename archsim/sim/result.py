"""A run's result: per-op costs, totals that are their sums, and a pandas table."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from archsim.config.schema import HardwareConfig
from archsim.hw.area import Area, chip_area
from archsim.hw.energy import COMPONENTS, Energy
from archsim.hw.leakage import static_power
from archsim.hw.memory import Level, Traffic
from archsim.ir.graph import Workload
from archsim.memo import cached_property
from archsim.sim.cost import OpCost, busy_totals
from archsim.sim.schedule import charge_static
from archsim.sim.serving import serving

if TYPE_CHECKING:
    from archsim.sim.schedule import PhaseSchedule

if TYPE_CHECKING:
    import pandas as pd

TABLE_COLUMNS = [
    "phase", "op", "kind", "unit", "repeat", "copies", "count", "macs", "vector_ops", "compute_cycles",
    "compute_s", "memory_s", "dispatch_s", "latency_s", "total_latency_s", "start_s", "end_s", "added_s", "utilization", "bound",
    "bottleneck", "tiling", "vmem_bytes", "cmem_bytes", "hbm_bytes", "ici_bytes", "energy_j",
    *(f"energy_{c}_j" for c in COMPONENTS),
]


class Rates:
    """Figures derived from a result's totals (``latency_s``, ``energy``, ``macs``)."""

    @cached_property
    def energy_total_j(self) -> float:
        """``energy.total``: the run's energy in joules, summed once (a results row reads it, its
        power and its TOPS/W)."""
        return self.energy.total

    @property
    def power_w(self) -> float:
        """Average power over the run."""
        return self.energy_total_j / self.latency_s if self.latency_s else 0.0

    @property
    def tdp_w(self) -> float | None:
        """The thermal design power of the chips the result covers (none: not given)."""
        return self.hw.tdp * self.chips if self.hw.tdp is not None else None

    @property
    def over_tdp(self) -> bool:
        """Whether the average power exceeds the TDP: a real chip would throttle, or the
        config's energy figures are off."""
        return self.tdp_w is not None and self.power_w > self.tdp_w

    @property
    def tops_per_w(self) -> float:
        """Achieved tera-operations (2 per MAC) per joule."""
        return 2 * self.macs / self.energy_total_j / 1e12 if self.energy_total_j else 0.0


@dataclass(frozen=True)
class RunResult(Rates):
    hw: HardwareConfig
    workload: Workload
    ops: tuple[OpCost, ...]
    feasible: bool = True
    reason: str = ""
    # With the compiler's overlap, each phase's schedule (archsim.sim.schedule), in run order;
    # without, None: the ops run one after another.
    schedules: "tuple[PhaseSchedule, ...] | None" = None
    # how the ops were launched: "program" (compiled by hw.compiler) or "call" (one by one, as
    # per-op benchmarks: nothing compiled or overlapped)
    dispatch: str = "program"
    chips: ClassVar[int] = 1  # one chip (a SystemResult covers several)

    @classmethod
    def infeasible(cls, hw: HardwareConfig, workload: Workload, reason: str) -> "RunResult":
        return cls(hw, workload, (), False, reason)

    # -- totals: every one is the sum of the per-op values times their repeats ------------

    @cached_property
    def phase_times(self) -> dict[str, tuple[int, float]]:
        """Per phase, in run order (the preload first): its repeat count and the time of one
        execution (its schedule's makespan with overlap, else its ops one after another)."""
        if self.schedules is not None:
            return {s.phase: (s.repeat, s.makespan) for s in self.schedules}
        out: dict[str, tuple[int, float]] = {}
        for c in self.ops:
            repeat, once = out.get(c.phase, (c.repeat, 0.0))
            out[c.phase] = (repeat, once + c.latency_s * c.copies)
        return out

    @cached_property
    def phase_wall_s(self) -> dict[str, float]:
        """Per phase, in run order, its wall time in the run: every execution."""
        return {phase: repeat * once for phase, (repeat, once) in self.phase_times.items()}

    @cached_property
    def latency_s(self) -> float:
        total = 0.0
        for repeat, once in self.phase_times.values():
            total += repeat * once
        return total

    @cached_property
    def cycles(self) -> float:
        return self.latency_s * self.hw.clock

    @cached_property
    def macs(self) -> int:
        return self._sums[0]

    @cached_property
    def traffic(self) -> Traffic:
        return self._sums[1]

    @cached_property
    def energy(self) -> Energy:
        """The ops' dynamic energy, and static power over the run's time (the ops' static
        shares add up to it)."""
        return self._ops_energy.replaced(static=static_power(self.hw) * self.latency_s)

    @cached_property
    def _ops_energy(self) -> Energy:
        """The ops' energies summed, component by component (``energy`` keeps their dynamic
        components and replaces their static one)."""
        return self._sums[2]

    @cached_property
    def ici_bytes(self) -> float:
        """Bytes this chip sends to other chips."""
        return self._sums[3]

    @cached_property
    def _sums(self) -> tuple[int, Traffic, Energy, float, float]:
        """Over the ops, each times its executions, in one pass: MACs, traffic, energy, bytes sent
        to other chips, and seconds of matrix-unit work at peak (``utilization``): ``sums_of``
        each op's ``op_terms``."""
        return sums_of([op_terms(c) for c in self.ops])

    @cached_property
    def area(self) -> Area:
        return chip_area(self.hw)

    @cached_property
    def utilization(self) -> float:
        """Matrix-unit utilisation over the whole run (MAC slots used / available)."""
        return self._sums[4] / self.latency_s if self.latency_s else 0.0

    @cached_property
    def busy(self) -> dict[str, float]:
        """Seconds each resource (unit or memory channel, ``OpCost.busy``) works in the run."""
        return busy_totals((c, c.count) for c in self.ops)

    @cached_property
    def perfect_overlap_s(self) -> float:
        """A bound no schedule beats: per phase, its busiest resource's time (every unit and
        channel working all the time, dependencies ignored), times its repeats."""
        phases: dict[str, list[OpCost]] = {}
        for c in self.ops:
            phases.setdefault(c.phase, []).append(c)
        return sum(costs[0].repeat * max(busy_totals((c, c.copies) for c in costs).values(), default=0.0)
                   for costs in phases.values())

    @property
    def overlapped(self) -> bool:
        return self.schedules is not None

    @cached_property
    def added_s(self) -> tuple[float, ...]:
        """Per op, the time one execution adds to the run: its latency when ops run one after
        another; with overlap, its scheduled span (per copy) when it is on its phase's critical
        chain, else 0 (it ran beside others). Times ``count``, they add up to ``latency_s``."""
        if self.schedules is None:
            return tuple(c.latency_s for c in self.ops)
        out: list[float] = []
        for s in self.schedules:
            chain = set(s.critical_ops)
            out += [(s.end[i] - s.start[i]) / c.copies if i in chain else 0.0 for i, c in enumerate(s.costs)]
        return tuple(out)

    @property
    def _timed_ops(self) -> tuple[OpCost, ...]:
        """The ops as far as their times, units and bounds go (a _ChargedRun's before their
        static energies are charged)."""
        return self.ops

    def latency_by(self, column: str) -> dict[str, float]:
        """The run's time by an op attribute: 'phase', 'unit', 'kind', 'bound' (each op's
        ``added_s``: with overlap, the ops on the critical chain; the groups add up to the run's
        time). ``busy`` says what each unit and channel worked."""
        groups = self._latency_groups.get(column)
        if groups is None:
            if column in _PAIRED:  # a results row reads both: one pass (each group's sums the same)
                self._latency_groups.update(zip(_PAIRED, self._by_unit_and_bound()))
                return dict(self._latency_groups[column])
            groups = {}
            for c, added in zip(self._timed_ops, self.added_s):
                key = getattr(c, column)
                groups[key] = groups.get(key, 0.0) + added * c.count
            self._latency_groups[column] = groups
        return dict(groups)  # the caller's own

    def _by_unit_and_bound(self) -> tuple[dict[str, float], dict[str, float]]:
        """``latency_by('unit')`` and ``latency_by('bound')``'s groups, made together."""
        units: dict[str, float] = {}
        bounds: dict[str, float] = {}
        for c, added in zip(self._timed_ops, self.added_s):
            seconds = added * (c.repeat * c.copies)  # c.count
            unit, bound = c.unit, c.bound
            units[unit] = units.get(unit, 0.0) + seconds
            bounds[bound] = bounds.get(bound, 0.0) + seconds
        return units, bounds

    @cached_property
    def _latency_groups(self) -> dict[str, dict[str, float]]:
        """``latency_by``'s groups by column, as they are first asked for: the runs ``restated``
        from this one share them (their ops' times, units and bounds are these)."""
        return {}

    # The totals that read neither the chip's config nor the ops' static energies (``energy``
    # keeps the ops' dynamic components alone): ``restated`` carries them over.
    _CARRIED = ("phase_times", "latency_s", "macs", "traffic", "_ops_energy", "ici_bytes", "utilization", "added_s",
                "_latency_groups")

    def restated(self, hw: HardwareConfig, ops: tuple[OpCost, ...] | None = None,
                 static_power: float | None = None) -> "RunResult":
        """This run on ``hw``, a chip alike in every value its ops' costs and its schedule read
        (design points differing only in capacities), its ops ``ops`` (these ops, or these ops
        with other static energies), or, given ``static_power``, these ops with that power
        charged by their spans (``charge_static``) when they are first read: a sweep's row reads
        totals alone, whose static energy is the power over the run's time. The totals
        ``_CARRIED`` are computed once, here, and shared."""
        carried = {name: getattr(self, name) for name in self._CARRIED}
        if static_power is None:
            new = RunResult(hw, self.workload, self.ops if ops is None else ops, self.feasible, self.reason,
                            self.schedules, self.dispatch)
        else:  # RunResult's fields but ``ops``, which _ChargedRun makes when it is read
            new = object.__new__(_ChargedRun)
            new.__dict__.update(hw=hw, workload=self.workload, feasible=self.feasible, reason=self.reason,
                                schedules=self.schedules, dispatch=self.dispatch, uncharged=self.ops,
                                static_w=static_power)
        new.__dict__.update(carried)
        return new

    # -- views ----------------------------------------------------------------------------

    def table(self) -> "pd.DataFrame":
        """One row per op: costs of one execution; ``count`` executions in all
        (phase repeat x copies), included in ``total_latency_s``."""
        import pandas as pd  # imported on use: it doubles the CLI's start-up time

        spans = self.spans()
        rows = [
            {
                "start_s": spans[i][0], "end_s": spans[i][1], "added_s": self.added_s[i],
                "phase": c.phase, "op": c.name, "kind": c.kind, "unit": c.unit, "repeat": c.repeat,
                "copies": c.copies, "count": c.count,
                "macs": c.macs, "vector_ops": c.vector_ops, "compute_cycles": c.compute_cycles,
                "compute_s": c.compute_s, "memory_s": c.memory_s, "dispatch_s": c.dispatch_s, "latency_s": c.latency_s,
                "total_latency_s": c.total_latency_s, "utilization": c.utilization, "bound": c.bound,
                "bottleneck": c.bottleneck, "tiling": c.tiling,
                **{f"{lv.value}_bytes": c.traffic.total(lv) for lv in Level},
                "ici_bytes": c.ici_bytes, "energy_j": c.energy.total,
                **{f"energy_{name}_j": value for name, value in c.energy.as_dict().items()},
            }
            for i, c in enumerate(self.ops)
        ]
        return pd.DataFrame(rows, columns=TABLE_COLUMNS)

    def spans(self) -> list[tuple[float, float]]:
        """Per op, when it starts and ends within one execution of its phase (all its copies):
        the schedule's times with overlap, else the ops one after another."""
        if self.schedules is not None:
            return [(a, b) for s in self.schedules for a, b in zip(s.start, s.end)]
        out, clock, phase = [], 0.0, None
        for c in self.ops:
            if c.phase != phase:
                clock, phase = 0.0, c.phase
            out.append((clock, clock + c.latency_s * c.copies))
            clock += c.latency_s * c.copies
        return out

    def summary(self) -> dict:
        """Totals as plain JSON-ready values (SI units)."""
        return totals_summary(self)


class _ChargedRun(RunResult):
    """A run ``restated`` with a static power: its ops' static energies charged by their
    spans (``charge_static``) when ``ops`` is first read, from the ops ``uncharged``."""

    uncharged: tuple[OpCost, ...]
    static_w: float  # the chip's static power, W

    @cached_property
    def ops(self) -> tuple[OpCost, ...]:
        return charge_static(self.uncharged, self.schedules, self.static_w)

    @property
    def _timed_ops(self) -> tuple[OpCost, ...]:
        return self.uncharged


def totals_summary(result) -> dict:
    """A chip's or a system's totals as plain JSON-ready values (SI units)."""
    base = {"hardware": result.hw.name, "workload": result.workload.name, "feasible": result.feasible}
    if not result.feasible:
        return base | {"reason": result.reason, "area_mm2": result.area.total * 1e6}
    return base | {
        "latency_s": result.latency_s,
        "cycles": result.cycles,
        "macs": result.macs,
        "utilization": result.utilization,
        "traffic_bytes": result.traffic.as_dict(),
        "ici_bytes": result.ici_bytes,
        "energy_j": result.energy.total,
        "energy_breakdown": result.energy.as_dict(),
        "area_mm2": result.area.total * 1e6,
        "area_breakdown_mm2": {k: v * 1e6 for k, v in result.area.as_dict().items()},
        "power_w": result.power_w,
        "tdp_w": result.tdp_w,
        "over_tdp": result.over_tdp,
        "tops_per_w": result.tops_per_w,
        "latency_by_phase_s": result.latency_by("phase"),
        "latency_by_unit_s": result.latency_by("unit"),
        "latency_by_bound_s": result.latency_by("bound"),
        "overlapped": result.overlapped,
        "busy_s": result.busy,
        "serving": figures.as_dict() if (figures := serving(result)) is not None else None,
    }


_PAIRED = ("unit", "bound")  # the columns ``latency_by`` groups in one pass


def op_terms(c: OpCost) -> tuple:
    """What an op adds to its run's totals (``RunResult._sums``), times its executions: MACs,
    bytes sent to other chips, matrix-unit seconds at peak (None: no matrix unit), and its
    traffic's and its energy's fields. A function of the cost alone: a run's ops' terms may be
    kept with them (``archsim.sim.scheduled_ops``)."""
    count = c.repeat * c.copies
    macs = c.macs * count
    return (macs, c.ici_bytes * count, macs / c.peak_macs_per_s if c.peak_macs_per_s else None,
            tuple(v * count for v in _TRAFFIC_VALUES(c.traffic)), tuple(v * count for v in _ENERGY_VALUES(c.energy)))


def sums_of(terms) -> tuple[int, Traffic, Energy, float, float]:
    """``op_terms`` summed in order: ``RunResult._sums``. Each total is the same additions in the
    same order as its own sum would be: ``sum(...)`` from the integer 0, ``Traffic``/``Energy``'s
    weighted totals field by field from 0.0 (so the same bits)."""
    macs = 0
    ici = 0
    busy = 0
    terms = list(terms)  # each op's ``op_terms``
    if not terms:
        return macs, _made(Traffic, _TRAFFIC_FIELDS, [0.0] * len(_TRAFFIC_FIELDS)), \
            _made(Energy, _ENERGY_FIELDS, [0.0] * len(_ENERGY_FIELDS)), ici, busy
    # column by column (a list a field, not a list an op: a third of the time), each from 0 in op order
    op_macs, op_ici, op_busy, op_traffic, op_energy = zip(*terms)
    for value in op_macs:
        macs += value
    for value in op_ici:
        ici += value
    for value in op_busy:
        if value is not None:
            busy += value
    return macs, _made(Traffic, _TRAFFIC_FIELDS, _column_sums(op_traffic)), \
        _made(Energy, _ENERGY_FIELDS, _column_sums(op_energy)), ici, busy


def _column_sums(rows) -> list[float]:
    """Each field's sum over ``rows`` (tuples of one record's fields), from 0.0 in order."""
    out = []
    for column in zip(*rows):
        total = 0.0
        for value in column:
            total += value
        out.append(total)
    return out


def scheduled_run(hw: HardwareConfig, workload: Workload, ops: tuple[OpCost, ...],
                  schedules: "tuple[PhaseSchedule, ...]", terms: list[tuple]) -> RunResult:
    """``RunResult(hw, workload, ops, schedules=schedules)``, its ``_sums`` made from ``terms``
    (each op's ``op_terms``, kept with it: the same values)."""
    run = RunResult(hw, workload, ops, schedules=schedules)
    run.__dict__["_sums"] = sums_of(terms)
    return run


def _made(cls, names: tuple[str, ...], values: list[float]):
    """``cls(*values)`` without the frozen dataclass's ``object.__setattr__`` per field (as
    ``Additive.__add__`` makes its sums)."""
    new = object.__new__(cls)
    new.__dict__.update(zip(names, values))
    return new


_TRAFFIC_FIELDS, _TRAFFIC_VALUES = Traffic._fields()
_ENERGY_FIELDS, _ENERGY_VALUES = Energy._fields()
