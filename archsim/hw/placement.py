"""Where each tensor lives: which weights, caches and activations CMEM holds for a run.

Weights and caches live in HBM unless promoted to CMEM, where they stay for the whole
workload: loaded once from HBM (the *preload*), unless the workload itself creates them (a
KV cache its prefill writes in full is born on chip and needs no preload). Activations live
in CMEM when every op touching them fits its activation operands in the CMEM reserved for
them, else in HBM.

Policy ``time_knapsack`` (the default; policies are a registry):

1. *Activation rungs.* A rung at every distinct footprint of the ops' activations, and none:
   at a rung, the activations whose every op fits within its footprint live in CMEM, and the
   rest of CMEM is left for promotions. The rungs come from the workload alone.
2. *Promotions by time saved.* At each rung that fits, every persistent tensor is worth the
   time it saves: over the ops that touch it, the engine's time for the op with the tensor in
   HBM minus its time with the tensor in CMEM (times the op's executions), less its preload
   (its bytes at the slower of the HBM read and the CMEM write). The set promoted is the one
   saving the most time in the CMEM left over: an exact 0/1 knapsack, solved as a Pareto list
   of (bytes, time saved). A set whose saving does not cover the preload's fixed access
   latency is not worth its preload: the rung proposes no promotion.
3. Each rung's run time is estimated without building it (its time without promotions,
   updated op by op from the last rung's, less the saving); the rungs whose estimates tie
   with the best become plans, which the simulator times exactly, keeping the fastest and
   then the one of least energy. A rung whose time less every positive saving cannot tie
   with the best found so far needs no knapsack (most rungs: they are solved in the order
   of that bound).

Why more CMEM never slows a run: the rungs and every tensor's worth depend on the workload and
on the chip's speeds, never on CMEM's capacity; a larger CMEM admits every rung and every set a
smaller one admitted, and the knapsack is exact. (Exact as long as an op touches at most one
persistent tensor, which holds for every op archsim lowers but a cache-schedule op reading two
caches; there a tensor's saving is counted with the other one in HBM.) More bandwidth never
slows one either: each plan's time falls, and the best plan is the best of a fixed family.

A plan is infeasible when HBM cannot hold the tensors homed there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache
from operator import itemgetter
from types import MappingProxyType
from typing import Callable, Hashable, Mapping

import numpy as np

from archsim.config.schema import HardwareConfig
from archsim.hw.memory import Level, Placement
from archsim.ir.graph import Workload
from archsim.ir.ops import CacheWrite, Op
from archsim.ir.tensor import Tensor
from archsim.hw.knapsack import _knapsack, _shared_knapsack, clear_fronts
from archsim.hw.placement_walk import OpTime, _Item, _items, _Savings, _Walk  # noqa: F401 (tests read _Savings)
from archsim.hw.placement_rungs import TIE, _NO_ROOM, _member_rungs, _most_saved, _rungs  # noqa: F401 (tests read them)
from archsim.memo import BoundedMemo, cached_property
from archsim.units import SIZE, format_quantity

Policy = Callable[[HardwareConfig, Workload, OpTime, Hashable | None], tuple[Placement, ...]]
_POLICIES: dict[str, Policy] = {}



def register_placement(name: str):
    def decorate(fn: Policy) -> Policy:
        _POLICIES[name] = fn
        return fn

    return decorate


def place(hw: HardwareConfig, workload: Workload, policy: str = "time_knapsack",
          op_time: OpTime | None = None, share: Hashable | None = None) -> tuple[Placement, ...]:
    """Candidate placements, distinct, in the policy's order of preference. ``op_time`` times
    an op at given levels (default: the engine's own costs for ``hw``). ``share``, when given,
    names all that ``op_time`` and the chip's speeds are (not its capacities): calls alike in it
    may share the policy's work that reads no capacity."""
    try:
        chosen = _POLICIES[policy]
    except KeyError:
        raise ValueError(f"unknown placement policy {policy!r}; known: {sorted(_POLICIES)}") from None
    if op_time is None:
        from archsim.chips import build_chip  # the engines time ops; they import this module

        op_time = build_chip(hw).op_time
    return chosen(hw, workload, op_time, share)


# -- what the workload does with its tensors (shared by every design point) ----------------

@dataclass
class _Usage:
    tensor: Tensor
    born_on_chip: bool = False  # first touched by a write of the whole tensor
    seen: bool = False


@dataclass(frozen=True)
class _Rung:
    """Activations held in CMEM: those whose every op fits its activations within ``reserve``.

    The ladder's rungs share one map of the rung at which each activation enters CMEM (a set
    per rung would cost rungs x activations: ToCa's runs have thousands of each)."""

    reserve: float
    index: int  # its place on the ladder
    entered: Mapping[str, int] = field(repr=False, compare=False)  # activation -> first rung holding it
    spilled: float  # the most activation bytes an op holds in HBM at once
    moved: tuple[int, ...]  # ops (indices into ``_Analysis.ops``) whose activations moved from the last rung

    def holds(self, name: str) -> bool:
        return self.entered.get(name, self.index + 1) <= self.index

    @property
    def in_cmem(self) -> frozenset[str]:
        return frozenset(n for n, i in self.entered.items() if i <= self.index)


@dataclass(frozen=True)
class _Analysis:
    usage: dict[str, _Usage]
    ops: tuple[tuple[Op, int], ...]  # every op, with its executions
    op_persistent: tuple[tuple[str, ...], ...]  # per op, the persistent tensors it touches
    op_activations: tuple[tuple[dict[str, float], int], ...]  # per op: activation bytes, executions
    ladder: tuple[_Rung, ...]  # reserve ascending (0 first), one rung per distinct set of activations
    persistent: tuple[str, ...]  # names of the weights, constants and caches
    hbm_floor: float  # HBM every plan needs: the persistent tensors the workload does not create
    # levels of an op's tensors, made once per workload however many design points search it:
    # (rung, op) -> at the rung, persistent tensors in HBM; (op, tensor, far) -> that tensor in CMEM
    _levels: dict = field(default_factory=dict, compare=False, repr=False)
    _needs: dict = field(default_factory=dict, compare=False, repr=False)  # rung index -> its HBM need
    _homes: dict = field(default_factory=dict, compare=False, repr=False)  # rung index -> ``homes``

    @cached_property
    def reserves(self) -> list[float] | None:
        """The rungs' reserves, in order, to bisect (None if they do not ascend)."""
        reserves = [rung.reserve for rung in self.ladder]
        ordered = all(a <= b for a, b in zip(reserves, reserves[1:])) and \
            all(rung.index == k for k, rung in enumerate(self.ladder))
        return reserves if ordered else None

    @cached_property
    def sizes(self) -> dict[str, float]:
        """Every tensor's bytes in CMEM (``tensor.total_bytes``), looked up by the walks' savings."""
        return {name: u.tensor.total_bytes for name, u in self.usage.items()}

    def homes(self, rung: "_Rung") -> dict[str, Level]:
        """Every tensor's home at the rung promoting nothing, in ``usage``'s order (a plan's
        ``home`` before its promotions: every design point's plans start from it). Read-only."""
        home = self._homes.get(rung.index)
        if home is None:
            home = self._homes[rung.index] = {name: Level.CMEM if rung.holds(name) else Level.HBM
                                              for name in self.usage}
        return home

    @cached_property
    def created(self) -> tuple[tuple[str, float], ...]:
        """The persistent tensors the workload creates on chip, in ``persistent``'s order, with
        their bytes (``_hbm_needed`` sums those not promoted)."""
        return tuple((n, self.usage[n].tensor.total_bytes) for n in self.persistent if self.usage[n].born_on_chip)

    @cached_property
    def needs(self) -> list[float]:
        """``hbm_needed`` of every rung, in order (a family member's search reads them all)."""
        return [self.hbm_needed(rung) for rung in self.ladder]

    def hbm_needed(self, rung: "_Rung") -> float:
        """``_hbm_needed`` of the rung's plan promoting nothing: every design point's search
        reads it at every rung, and it reads no capacity."""
        need = self._needs.get(rung.index)
        if need is None:
            need = self._needs[rung.index] = _hbm_needed(self, rung, ())
        return need

    def far(self, rung: "_Rung", i: int) -> tuple[Level, ...]:
        """Op ``i``'s levels at ``rung``: its activations where the rung holds them, every
        persistent tensor in HBM."""
        key = (rung.index, i)
        levels = self._levels.get(key)
        if levels is None:
            names = self.ops[i][0].tensor_names
            levels = self._levels[key] = tuple(Level.CMEM if rung.holds(n) else Level.HBM for n in names)
        return levels

    def near(self, i: int, name: str, far: tuple[Level, ...]) -> tuple[Level, ...]:
        """``far`` with the persistent tensor ``name`` of op ``i`` in CMEM."""
        key = (i, name, far)
        levels = self._levels.get(key)
        if levels is None:
            names = self.ops[i][0].tensor_names
            levels = self._levels[key] = tuple(Level.CMEM if n == name else lv for n, lv in zip(names, far))
        return levels


def workload_shape(workload: Workload) -> tuple[int, ...]:
    """With the workload, the key of the caches below: a graph can still grow (``add``)."""
    return tuple(len(phase.graph) for phase in workload.phases)


@lru_cache(maxsize=16)
def _analysis(workload: Workload, shape: tuple[int, ...]) -> _Analysis:
    """It depends on the workload alone, so every design point of a sweep shares it (read-only)."""
    usage = {name: _Usage(t) for name, t in workload.tensors().items()}
    ops, op_activations = [], []
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
            ops.append((op, count))
            op_activations.append(({t.name: t.bytes for t in op.tensors if not t.role.persistent}, count))
    persistent = tuple(n for n, u in usage.items() if u.tensor.role.persistent)
    floor = sum(usage[n].tensor.total_bytes for n in persistent if not usage[n].born_on_chip)
    op_persistent = tuple(tuple(dict.fromkeys(t.name for t in op.tensors if t.role.persistent)) for op, _ in ops)
    return _Analysis(usage, tuple(ops), op_persistent, tuple(op_activations), _ladder(op_activations), persistent,
                     floor)


def _ladder(op_activations) -> tuple[_Rung, ...]:
    """A rung at every distinct footprint of the ops' activations (and none): the family is
    the workload's alone, so a larger CMEM can try every rung a smaller one could.

    An activation lives in CMEM from the largest footprint of the ops touching it on (its
    *need*), so the sets change exactly at the distinct needs: a rung at 0 and one per need,
    built in one pass over the ops rather than one per rung (ToCa's runs have thousands)."""
    need: dict[str, float] = {}
    never: set[str] = set()  # an operand of an op whose activations take no bytes stays in HBM
    touching: dict[str, list[int]] = {}
    spill = np.zeros(len(op_activations))
    for i, (activations, _) in enumerate(op_activations):
        footprint = sum(activations.values())
        spill[i] = footprint
        for name in activations:
            need[name] = max(need.get(name, footprint), footprint)
            touching.setdefault(name, []).append(i)
            if footprint <= 0:
                never.add(name)
    by_need: dict[float, list[str]] = {}
    for name, reserve in need.items():
        if name not in never:
            by_need.setdefault(reserve, []).append(name)
    entered: dict[str, int] = {}
    rungs = [_Rung(0.0, 0, entered, float(spill.max(initial=0.0)), tuple(range(len(op_activations))))]
    for index, reserve in enumerate(sorted(by_need), start=1):
        changed = by_need[reserve]
        entered.update(dict.fromkeys(changed, index))
        moved = sorted({i for name in changed for i in touching[name]})
        for i in moved:  # the bytes each moved op still holds in HBM, summed afresh (exact, any order)
            spill[i] = sum(b for n, b in op_activations[i][0].items() if n not in entered)
        rungs.append(_Rung(reserve, index, entered, float(spill.max()), tuple(moved)))
    return tuple(rungs)


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
def time_knapsack(hw: HardwareConfig, workload: Workload, op_time: OpTime,
                  share: Hashable | None = None) -> tuple[Placement, ...]:
    analysis = _analysis(workload, workload_shape(workload))
    capacity = hw.cmem.capacity if hw.cmem is not None else 0.0
    # a preload reads HBM and writes CMEM at once: its bytes at the slower, after an access latency
    per_byte = preload_per_byte(hw)
    preload_latency = max(hw.hbm.latency, hw.cmem.latency) if hw.cmem is not None else 0.0
    if analysis.hbm_floor > hw.hbm.capacity:  # no plan fits HBM: say so for the one spilling least
        rung = [r for r in analysis.ladder if r.reserve <= capacity][-1]
        return (_plan(hw.hbm.capacity, analysis, rung, frozenset()),)
    # Each rung's run time without promotions, updated op by op from the last rung's (only the
    # ops whose activations moved change), less what its best promotions save: an estimate
    # exact to rounding (and to ops touching two persistent tensors), so the engine need time
    # only the rungs that tie with the best. The walk up the ladder reads no capacity: chips
    # alike but for their capacities (``share``) climb it once.
    walk = _WALKS.get((share, per_byte)) if share is not None else None
    if walk is None:  # a family's member reads its family's walk (``op_time.member_walk``), if it can
        member_walk = getattr(op_time, "member_walk", None)
        walk = member_walk(analysis, per_byte) if member_walk is not None else None
        walk = walk or _Walk(analysis, per_byte)
        if share is not None:
            _WALKS.put((share, per_byte), walk)
    # per rung that fits: (the least its estimate can be, rung, base, savings, budget, need)
    rungs = _member_rungs(walk, analysis, capacity, hw.hbm.capacity, op_time) if hasattr(walk, "most_saved") \
        else _rungs(walk, analysis, capacity, hw.hbm.capacity, op_time)
    # The knapsacks in order of the least each rung's estimate can be (its base less every
    # positive saving): a rung that cannot come within the tie of the best so far cannot be
    # among the plans, so its knapsack is skipped (most rungs' are). The same estimates as
    # solving every rung's, in rung order.
    found: dict[int, tuple] = {}
    best = math.inf
    for least, rung, base, saving, budget, need in sorted(rungs, key=_LEAST):
        if least > best + TIE * abs(best):
            break
        if saving is None:  # made as its knapsack reads it (``_member_rungs``)
            saving = walk.savings_at(rung.index, op_time)[0]
        if share is not None and budget > 0:  # its Pareto list shared by the chips alike but for CMEM
            chosen = _shared_knapsack(walk, rung.index, saving, budget, need, preload_latency)
        else:
            chosen = _knapsack(_items(analysis, saving, budget, need > 0), budget, need, preload_latency)
        if chosen is not None:  # else no promotion frees enough HBM: the rung does not fit
            saved, promoted = chosen
            found[rung.index] = (base - saved, rung, promoted)
            best = min(best, base - saved)
    estimates = [found[r[1].index] for r in rungs if r[1].index in found]
    if not estimates:  # HBM holds no rung's plan: say so for the one spilling least
        rung = [r for r in analysis.ladder if r.reserve <= capacity][-1]
        return (_plan(hw.hbm.capacity, analysis, rung, frozenset()),)
    best = min(e[0] for e in estimates)
    plans: list[Placement] = []
    for estimate, rung, promoted in estimates:
        if estimate <= best + TIE * abs(best):
            plan = _plan(hw.hbm.capacity, analysis, rung, frozenset(promoted))
            if plan not in plans:
                plans.append(plan)
    return tuple(plans)


def preload_per_byte(hw: HardwareConfig) -> float:
    """Seconds a byte of the preload takes: it reads HBM and writes CMEM at once, so the slower."""
    return 1 / min(hw.hbm.achievable_bandwidth, hw.cmem.achievable_bandwidth) if hw.cmem is not None else 0.0


def _hbm_needed(analysis: _Analysis, rung: _Rung, promoted) -> float:
    """HBM a plan needs: every persistent tensor but those promoted that the workload creates
    (the others keep their HBM copy), and the activations an op spills at once."""
    return analysis.hbm_floor + rung.spilled + sum(size for n, size in analysis.created if n not in promoted)


_LEAST = itemgetter(0)


def _plan(hbm_capacity: float, analysis: _Analysis, rung: _Rung, promoted: frozenset[str]) -> Placement:
    """The rung's plan with ``promoted`` in CMEM: one object for the design points that make
    it (a family's members and capacity siblings: some 18 a plan on the DiT sweep), so what is
    read off a plan (``Placement.homes``, ``without_preload``) is made once."""
    key = (hbm_capacity, id(analysis), rung.index, promoted)  # an analysis hashes its every field: by id
    held = _PLANS_MADE.get(key)
    if held is None or held[0] is not analysis:  # held with it: its id is no other's meanwhile
        held = _PLANS_MADE.put(key, (analysis, _made_plan(hbm_capacity, analysis, rung, promoted)))
    return held[1]


def _made_plan(hbm_capacity: float, analysis: _Analysis, rung: _Rung, promoted: frozenset[str]) -> Placement:
    usage = analysis.usage
    home = dict(analysis.homes(rung))  # the rung's, in usage's order; then the promoted tensors
    for name in promoted:
        if name in home:
            home[name] = Level.CMEM
    home = MappingProxyType(home)  # read-only: a plan is shared by the results built on it
    preload = tuple(sorted((usage[n].tensor for n in promoted if not usage[n].born_on_chip), key=lambda t: t.name))
    needed = _hbm_needed(analysis, rung, promoted)
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
    clear_fronts()
    _PLANS_MADE.clear()
    _WITHOUT_PRELOAD.clear()
    _WALKS.clear()


# ladders climbed, by what their op times read (``place``'s ``share``) and the preload's cost per byte.
# The chips sharing one are a sweep's capacity siblings, which come one after another
# (``Points.grouped``): 4 walks held find as many as 64 did on the bundled sweeps, and a walk
# dropped is freed while its memory is still in cache, for the next to reuse (held 64, a walk
# was freed some 300 points later, cold: 16 held gave no gain, 4 with ``engine._TIMED`` 3 to 4%)
_WALKS: BoundedMemo[_Walk] = BoundedMemo(size=4)


def without_preload(plan: Placement) -> Placement:
    """``plan`` with its preloaded tensors read from HBM, where they are anyway (made once a
    plan object: ``_plan``'s are shared)."""
    held = _WITHOUT_PRELOAD.get(id(plan))
    if held is None or held[0] is not plan:  # held with it: its id is no other's meanwhile
        moved = {t.name for t in plan.preload}
        home = {name: Level.HBM if name in moved else level for name, level in plan.home.items()}
        held = _WITHOUT_PRELOAD.put(id(plan), (plan, Placement(MappingProxyType(home), (), True)))
    return held[1]


# the plans made (``_plan``) and their plans without preload: a plan's points come within a few
# families of one another (a family's 125 points time some 8 plans)
_PLANS_MADE: BoundedMemo[tuple] = BoundedMemo(size=256)
_WITHOUT_PRELOAD: BoundedMemo[tuple] = BoundedMemo(size=256)
