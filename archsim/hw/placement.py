"""Where each tensor lives: which weights, caches and activations CMEM holds for a run.

Weights and caches live in HBM unless promoted to CMEM, where they stay for the whole
workload: loaded once from HBM (the *preload*), unless the workload itself creates them (a
KV cache its prefill writes in full is born on chip and needs no preload). Activations live
in CMEM when every op touching them fits its activation operands in the CMEM reserved for
them, else in HBM.

Policy ``time_knapsack`` (the default; policies are a registry):

1. *Activation levels.* A fixed ladder of reserves taken from the workload alone: none, and
   up to three of the ops' activation footprints (the largest among them). At a reserve,
   the activations whose every op fits within it live in CMEM.
2. *Promotions by time saved.* At each level whose reserve fits, every persistent tensor
   is worth the time it saves: over the ops that touch it, the engine's time for the op with
   the tensor in HBM minus its time with the tensor in CMEM (times the op's executions),
   less its preload (its bytes at the slower of the HBM read and the CMEM write). The set
   promoted is the one saving the most time in the CMEM left over: an exact 0/1 knapsack,
   solved as a Pareto list of (bytes, time saved). A set whose saving does not cover the
   preload's fixed access latency is not worth its preload: the level proposes no promotion.
3. The simulator evaluates each level's plan and keeps the fastest, ties going to less energy.

Why more CMEM never slows a run: the ladder and every tensor's worth depend on the workload
and on the chip's speeds, never on CMEM's capacity; a larger CMEM admits every level and every
set a smaller one admitted, and the knapsack is exact. (Exact as long as an op touches at most
one persistent tensor, which holds for every op archsim lowers but a cache-schedule op reading
two caches; there a tensor's saving is counted with the other one in HBM.) More bandwidth never
slows one either: each plan's time falls, and the best plan is the best of a fixed set.

A plan is infeasible when HBM cannot hold the tensors homed there.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from types import MappingProxyType
from typing import Callable

from archsim.config.schema import HardwareConfig
from archsim.hw.memory import Level, Placement
from archsim.ir.graph import Workload
from archsim.ir.ops import CacheWrite, Op
from archsim.ir.tensor import Tensor
from archsim.units import SIZE, format_quantity

OpTime = Callable[[Op, tuple[Level, ...]], float]  # an op's time with its tensors at these levels
Policy = Callable[[HardwareConfig, Workload, OpTime], tuple[Placement, ...]]
_POLICIES: dict[str, Policy] = {}

# Activation reserves tried besides none: a ladder from the workload's distinct footprints.
LADDER_RUNGS = 3
# A Pareto list longer than this (a pathological mix of sizes and savings) is thinned to its
# best entries; every bundled workload stays far below it, so the knapsack stays exact.
MAX_PARETO = 4096


def register_placement(name: str):
    def decorate(fn: Policy) -> Policy:
        _POLICIES[name] = fn
        return fn

    return decorate


def place(hw: HardwareConfig, workload: Workload, policy: str = "time_knapsack",
          op_time: OpTime | None = None) -> tuple[Placement, ...]:
    """Candidate placements, distinct, in the policy's order of preference. ``op_time`` times
    an op at given levels (default: the engine's own costs for ``hw``)."""
    try:
        chosen = _POLICIES[policy]
    except KeyError:
        raise ValueError(f"unknown placement policy {policy!r}; known: {sorted(_POLICIES)}") from None
    if op_time is None:
        from archsim.sim.engine import Simulator  # the engine times ops; it imports this module

        op_time = Simulator(hw).op_time
    return chosen(hw, workload, op_time)


# -- what the workload does with its tensors (shared by every design point) ----------------

@dataclass
class _Usage:
    tensor: Tensor
    born_on_chip: bool = False  # first touched by a write of the whole tensor
    seen: bool = False
    ops: list[tuple[Op, int]] = field(default_factory=list)  # ops touching it, with their executions


@dataclass(frozen=True)
class _Analysis:
    usage: dict[str, _Usage]
    op_activations: tuple[tuple[dict[str, float], int], ...]  # per op: activation bytes, executions
    # activation rungs, reserve ascending (0 first): (reserve, the activations in CMEM, the
    # peak bytes of the others an op holds in HBM at once), distinct sets only
    ladder: tuple[tuple[float, frozenset[str], float], ...]
    persistent: tuple[str, ...]  # names of the weights, constants and caches
    hbm_floor: float  # HBM every plan needs: the persistent tensors the workload does not create


def _shape_of(workload: Workload) -> tuple[int, ...]:
    """With the workload, the key of the caches below: a graph can still grow (``add``)."""
    return tuple(len(phase.graph) for phase in workload.phases)


@lru_cache(maxsize=16)
def _analysis(workload: Workload, shape: tuple[int, ...]) -> _Analysis:
    """It depends on the workload alone, so every design point of a sweep shares it (read-only)."""
    usage = {name: _Usage(t) for name, t in workload.tensors().items()}
    op_activations = []
    for phase in workload.phases:
        for op in phase.graph.ops():
            count = phase.repeat * op.copies
            for t in op.inputs:
                usage[t.name].seen = True
            for t in op.outputs:
                u = usage[t.name]
                written = op.written_bytes if isinstance(op, CacheWrite) else t.bytes
                if not u.seen and written >= t.bytes and op.copies >= t.copies:  # every copy, in full
                    u.born_on_chip = True
                u.seen = True
            for name in dict.fromkeys(t.name for t in op.tensors if t.role.persistent):
                usage[name].ops.append((op, count))
            activations = {t.name: t.bytes for t in op.tensors if not t.role.persistent}
            op_activations.append((activations, count))
    footprints = sorted({sum(a.values()) for a, _ in op_activations} - {0.0})
    # rungs at even positions of the distinct footprints, the largest last
    picks = {footprints[round((len(footprints) - 1) * (i + 1) / LADDER_RUNGS)]
             for i in range(LADDER_RUNGS)} if footprints else set()
    persistent = tuple(n for n, u in usage.items() if u.tensor.role.persistent)
    floor = sum(usage[n].tensor.total_bytes for n in persistent if not usage[n].born_on_chip)
    ladder, seen = [], set()
    for reserve in (0.0, *sorted(picks)):
        in_cmem = _activations_within(op_activations, reserve)
        if in_cmem not in seen:  # a rung that moves no activation would propose what the last one did
            seen.add(in_cmem)
            spilled = max((sum(b for n, b in a.items() if n not in in_cmem) for a, _ in op_activations),
                          default=0.0)
            ladder.append((reserve, in_cmem, spilled))
    return _Analysis(usage, tuple(op_activations), tuple(ladder), persistent, floor)


def _activations_within(op_activations, reserve: float) -> frozenset[str]:
    """Activations whose every op fits its activation operands within ``reserve``."""
    fits: dict[str, bool] = {}
    for activations, _ in op_activations:
        footprint = sum(activations.values())
        ok = 0 < footprint <= reserve
        for name in activations:
            fits[name] = fits.get(name, True) and ok
    return frozenset(n for n, ok in fits.items() if ok)


# -- the policy -----------------------------------------------------------------------------

@register_placement("time_knapsack")
def time_knapsack(hw: HardwareConfig, workload: Workload, op_time: OpTime) -> tuple[Placement, ...]:
    analysis = _analysis(workload, _shape_of(workload))
    capacity = hw.cmem.capacity if hw.cmem is not None else 0.0
    # a preload reads HBM and writes CMEM at once: its bytes at the slower, after an access latency
    per_byte = 1 / min(hw.hbm.bandwidth, hw.cmem.bandwidth) if hw.cmem is not None else 0.0
    preload_latency = max(hw.hbm.latency, hw.cmem.latency) if hw.cmem is not None else 0.0
    plans: list[Placement] = []
    if analysis.hbm_floor > hw.hbm.capacity:  # no plan fits HBM: say so for the plainest one
        _, no_activations, spilled = analysis.ladder[0]
        return (_plan(hw.hbm.capacity, analysis, no_activations, frozenset(), spilled),)
    saving: dict = {}  # an op's time saved by one tensor in CMEM, by its other tensors' levels
    for reserve, in_cmem, spilled in analysis.ladder:
        if reserve > capacity:
            break
        worth = _worth(analysis, in_cmem, op_time, per_byte, saving, capacity - reserve)
        saved, promoted = _knapsack(worth, analysis.usage, capacity - reserve)
        if saved <= preload_latency and any(not analysis.usage[n].born_on_chip for n in promoted):
            promoted = ()
        plan = _plan(hw.hbm.capacity, analysis, in_cmem, frozenset(promoted), spilled)
        if plan not in plans:
            plans.append(plan)
    return tuple(plans)


def _worth(analysis: _Analysis, in_cmem: frozenset[str], op_time: OpTime, per_byte: float,
           saving: dict, budget: float) -> dict[str, float]:
    """Seconds each persistent tensor that fits ``budget`` saves in CMEM (its ops' time saved,
    less its preload), the other persistent tensors in HBM and the activations at this level's
    homes. ``saving`` keeps each op's saving across rungs (most ops see the same levels)."""
    worth = {}
    for name in analysis.persistent:
        u = analysis.usage[name]
        if u.tensor.total_bytes > budget:  # it cannot be promoted: no need to know its worth
            continue
        saved = 0.0 if u.born_on_chip else -u.tensor.total_bytes * per_byte
        for op, count in u.ops:
            far = tuple(Level.CMEM if n in in_cmem else Level.HBM for n in op.tensor_names)
            key = (op.signature, far, op.tensor_names.index(name))
            once = saving.get(key)
            if once is None:
                near = tuple(Level.CMEM if n == name else lv for n, lv in zip(op.tensor_names, far))
                once = saving[key] = op_time(op, far) - op_time(op, near)
            saved += count * once
        if saved > 0:
            worth[name] = saved
    return worth


def _knapsack(worth: dict[str, float], usage: dict[str, _Usage], budget: float) -> tuple[float, tuple[str, ...]]:
    """The set of tensors saving the most time within ``budget`` bytes, exactly: a Pareto
    list of (bytes, seconds saved, names) grown one tensor at a time (in name order, so ties
    resolve the same way every run), dominated entries dropped."""
    names = sorted(n for n in worth if usage[n].tensor.total_bytes <= budget)
    if sum(usage[n].tensor.total_bytes for n in names) <= budget:  # everything worth it fits
        return sum(worth[n] for n in names), tuple(names)
    front: list[tuple[float, float, tuple[str, ...]]] = [(0.0, 0.0, ())]
    for name in names:
        size, gain = usage[name].tensor.total_bytes, worth[name]
        grown = [(b + size, s + gain, chosen + (name,)) for b, s, chosen in front if b + size <= budget]
        merged = sorted(front + grown, key=lambda e: (e[0], -e[1]))
        front, best = [], -1.0
        for entry in merged:
            if entry[1] > best:  # more bytes only for more time saved
                front.append(entry)
                best = entry[1]
        if len(front) > MAX_PARETO:
            front = sorted(sorted(front, key=lambda e: -e[1])[:MAX_PARETO], key=lambda e: e[0])
    _, saved, chosen = max(front, key=lambda e: (e[1], -e[0]))
    return saved, chosen


def _plan(hbm_capacity: float, analysis: _Analysis, in_cmem: frozenset[str], promoted: frozenset[str],
          spilled: float) -> Placement:
    usage = analysis.usage
    # read-only: placements are shared by every design point with these capacities
    home = MappingProxyType({name: Level.CMEM if name in in_cmem or name in promoted else Level.HBM
                             for name in usage})
    preload = tuple(sorted((usage[n].tensor for n in promoted if not usage[n].born_on_chip), key=lambda t: t.name))
    in_hbm = [usage[n].tensor for n in analysis.persistent if not (n in promoted and usage[n].born_on_chip)]
    needed = sum(t.total_bytes for t in in_hbm) + spilled
    if needed > hbm_capacity:
        missing = needed - hbm_capacity
        reason = (
            f"needs {format_quantity(needed, SIZE)} of HBM (weights, caches and spilled "
            f"activations) but HBM holds {format_quantity(hbm_capacity, SIZE)}: "
            f"{format_quantity(missing, SIZE)} missing"
        )
        return Placement(home, preload, False, reason)
    return Placement(home, preload, True)


def clear_placements() -> None:
    _analysis.cache_clear()
