"""Costs are values that add up: one per op, summed (times phase repeats) into a run's totals."""

from __future__ import annotations

from dataclasses import MISSING, dataclass, field, fields

from archsim.hw.energy import ZERO_ENERGY, Energy
from archsim.hw.memory import ZERO_TRAFFIC, Traffic


# An op is 'array-fill' bound when its units spend more than this share of their time not
# streaming MACs (a definition: the larger part names the bound).
FILL_BOUND = 0.5


def busy_of(held: tuple[str, float], *others: tuple[str, float], channels: dict | None = None) -> tuple:
    """An op's ``busy``: the held unit, other units with work, then each memory channel's time
    (``channels``: level -> seconds)."""
    out = [held, *(o for o in others if o[1] > 0)]
    for level, seconds in (channels or {}).items():
        if seconds > 0:
            out.append((getattr(level, "value", level), seconds))
    return tuple(out)


def busy_totals(weighted) -> dict[str, float]:
    """Seconds each resource works over ``weighted``: (cost, executions) pairs."""
    out: dict[str, float] = {}
    for cost, times in weighted:
        for resource, seconds in cost.busy:
            out[resource] = out.get(resource, 0.0) + seconds * times
    return out


@dataclass(frozen=True)
class OpCost:
    """The cost of one execution of one op."""

    phase: str
    name: str
    kind: str
    unit: str  # mxu, vpu, dma or ici
    repeat: int  # its phase's repeat count
    copies: int  # identical copies of the op in one run of the phase (layers of a stack)
    macs: int
    vector_ops: int
    compute_cycles: float  # cycles the op's unit is busy, memory stalls excluded
    compute_s: float
    memory_s: float  # the busiest memory channel's time
    latency_s: float  # the op's time with compute and transfers overlapped
    traffic: Traffic = field(default=ZERO_TRAFFIC)
    energy: Energy = field(default=ZERO_ENERGY)  # of one execution, per component
    bottleneck: str = ""  # the unit or memory level that bounds the op
    peak_macs_per_s: float = 0.0  # of the matrix units at this op's dtype (0 for non-matrix ops)
    ici_bytes: float = 0.0  # bytes this chip sends to others (collectives)
    tiling: str = ""
    # Of compute_s, the time the busiest matrix unit spends loading stationary operands,
    # filling and draining rather than streaming MACs (0 for other ops).
    fill_s: float = 0.0
    # Of latency_s, the fixed cost of launching the op (``hw.dispatch``): nothing else runs.
    dispatch_s: float = 0.0
    # What the op occupies and for how long, one execution: (resource, seconds), the unit it
    # holds from start to end first, then other units' work and each memory channel's transfer
    # time. The overlap scheduler (``archsim.sim.schedule``) reads it; latency_s is at least each.
    busy: tuple[tuple[str, float], ...] = ()

    @classmethod
    def made(cls, **fields) -> "OpCost":
        """``OpCost(**fields)`` without ``__init__``'s ``object.__setattr__`` per field (a frozen
        dataclass's: 1.5 us of the 2.4 us a cost took to make); OpCost checks nothing on
        construction. The cost models make theirs so: a sweep makes millions."""
        new = object.__new__(cls)
        values = new.__dict__
        values.update(_DEFAULTS, **fields)
        if len(values) != len(_DEFAULTS) + len(_REQUIRED) or not _REQUIRED <= fields.keys():
            unknown, missing = fields.keys() - _DEFAULTS.keys() - _REQUIRED, _REQUIRED - fields.keys()
            raise TypeError(f"OpCost.made: unknown fields {sorted(unknown)}, missing {sorted(missing)}")
        return new

    def relabeled(self, phase: str, name: str, repeat: int, copies: int) -> "OpCost":
        """The same cost for another op alike but for its labels. (``dataclasses.replace``
        re-runs ``__init__`` on every field, a large share of a sweep point's time.)"""
        new = object.__new__(type(self))  # every field is copied; OpCost caches nothing derived
        new.__dict__.update(self.__dict__, phase=phase, name=name, repeat=repeat, copies=copies)
        return new

    def replaced(self, **changes) -> "OpCost":
        """``dataclasses.replace`` without re-running ``__init__`` (OpCost validates nothing and
        caches nothing derived): the fields in ``changes`` set, every other copied."""
        if not changes.keys() <= _FIELDS:
            raise TypeError(f"OpCost has no field {sorted(changes.keys() - _FIELDS)[0]!r}")
        new = object.__new__(type(self))
        new.__dict__.update(self.__dict__, **changes)
        return new

    def with_dispatch(self, dispatch_s: float, static_power_w: float) -> "OpCost":
        """The op with its launch cost in front: the units idle, the time added to the latency
        and the chip's static power drawn over it (so the ops' energies still sum to the run's)."""
        if not dispatch_s:
            return self
        new = object.__new__(type(self))
        new.__dict__.update(self.__dict__, latency_s=self.latency_s + dispatch_s, dispatch_s=self.dispatch_s + dispatch_s,
                            energy=self.energy + Energy(static=static_power_w * dispatch_s))
        return new

    @property
    def bound(self) -> str:
        """What the op's time is mostly spent on: ``dispatch`` (its fixed launch cost outlasts its
        work), ``memory`` (transfers outlast the unit),
        ``array-fill`` (the matrix units are the bottleneck but spend most of their time
        loading weights, filling and draining: a decode GEMM at a few % utilisation), else
        ``compute``."""
        return bound_of(self.dispatch_s, self.compute_s, self.memory_s, self.fill_s)

    @property
    def utilization(self) -> float:
        """Matrix-unit utilisation over the op's whole latency."""
        if not self.peak_macs_per_s or not self.latency_s:
            return 0.0
        return self.macs / (self.latency_s * self.peak_macs_per_s)

    @property
    def count(self) -> int:
        """Times the op runs in the whole workload."""
        return self.repeat * self.copies

    @property
    def total_latency_s(self) -> float:
        return self.latency_s * self.count


def bound_of(dispatch_s: float, compute_s: float, memory_s: float, fill_s: float) -> str:
    """``OpCost.bound`` of an op with these times (a family's members' ops: ``archsim.sim.family_runs``)."""
    if dispatch_s > max(compute_s, memory_s):
        return "dispatch"
    if compute_s < memory_s:
        return "memory"
    return "array-fill" if fill_s > FILL_BOUND * compute_s else "compute"


_DEFAULTS = {f.name: f.default for f in fields(OpCost) if f.default is not MISSING}  # ``made``'s
_REQUIRED = frozenset(f.name for f in fields(OpCost) if f.default is MISSING)
_FIELDS = frozenset(f.name for f in fields(OpCost))
