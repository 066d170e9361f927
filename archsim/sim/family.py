"""Op times for a family of chips at once (issue 22; docs/design/batched_sweep.md, step 1).

A *family* is design points alike in every config value an op's cost reads but HBM's
bandwidth: a sweep's HBM-bandwidth axis (their capacities may differ as well: no op's cost reads
one). The placement search weighs every op it moves by the op's time with prefetch
(``Simulator._overlapped_op_time``), and each member's search asks for the same (op, homes). An
op with a tensor in HBM takes a different time on each member, so each asked afresh, one op cost
at a time. Here the first member to ask makes that time for every member at once, as numpy
arrays over the members' bandwidths (``archsim.sim.family_ops``: each op kind's cost model as
arrays, then ``schedule.prefetched_time`` here), and keeps them with the family: a later
member's search that misses the engine's memo finds its own there (``prefetched_of``), as if its
own search had made it.

The asking member takes its time from the arrays too: a full cost is made only where a run
reads what no bandwidth changes (a plan's run on every member, ``archsim.sim.family_runs``: one
a group of members picking alike; a DMA op or a flash-attention kernel, whose traffic and
units' times the arrays read from it). Every full cost a member makes of an op the family has
timed is compared with the family's latency for it (``check``): a difference raises, never
passes silently; the tests compare every member's time with prefetch. Collectives are left to
each member's own search.
"""

from __future__ import annotations

from functools import lru_cache, reduce
from typing import TYPE_CHECKING, Callable

import numpy as np

from archsim.hw.memory import Level, Placement
from archsim.hw.placement import preload_per_byte
from archsim.hw.placement_walk import _FamilyWalk, _MemberWalk
from archsim.hw.tiling import candidate_tiling
from archsim.ir import ops
from archsim.sim.family_ops import _at_most_one, _op_times
from archsim.sim.fingerprint import CostFingerprint
from archsim.sim.schedule import prefetch_bytes

if TYPE_CHECKING:
    from archsim.config.schema import HardwareConfig
    from archsim.sim.cost import OpCost
    from archsim.sim.engine import Simulator
    from archsim.sim.family_ops import _Times


class Family:
    """Chips alike in every value an op's cost reads but HBM's bandwidth, one per bandwidth
    (``families`` groups a chunk's chips so, by their points' axis values)."""

    def __init__(self, chips: tuple[HardwareConfig, ...]):
        self.chips = chips
        self.hbm = np.array([hw.hbm.achievable_bandwidth for hw in chips], dtype=np.float64)
        self._fingerprints: tuple[CostFingerprint, ...] | None = None
        self._index: dict[str, int] = {}
        self._bandwidths = {repr(hw.hbm.bandwidth): i for i, hw in enumerate(chips)}
        # (op signature, levels, dispatch, prefetch buffer) -> the op's ``_Times`` and latency (its
        # dispatch cost included) on every member, as ``share_prefetched`` made them: what a
        # schedule reads of its cost (``archsim.sim.family_timing``)
        self.timings: dict[tuple, tuple[_Times, object]] = {}
        self.timed_parts: dict[tuple, list] = {}  # the same, per member (``family_timing._members_parts``)
        self.run_times: dict[tuple, list | None] = {}  # a plan without preload's run time per member (``family_timing``)
        self.plan_runs: dict[tuple, object] = {}  # a plan's timed run on every member (``family_runs``)
        self.plan_ops: dict[tuple, dict] = {}  # (dispatch, buffer, workload) -> its ops' entries by homes (the same)
        self.prefetched: dict[tuple, np.ndarray] = {}  # the same key -> every member's time with prefetch
        # (a matmul's signature, its operands' levels) -> its mappings, tables and each member's pick
        self.picks: dict[tuple, tuple] = {}
        # the same key -> its times (``family_ops._matmul``'s): a fused op's main matmul at the same homes as
        # another's, or as the matmul alone, is timed once (a fifth of a DiT sweep's matmuls)
        self.matmuls: dict[tuple, _Times] = {}
        self._walks: dict[tuple, tuple] = {}  # (the workload's analysis, dispatch, buffer) -> its walk
        self._sims: dict[str, list] = {}  # by dispatch, a simulator a member (ops the arrays do not time)

    def fingerprints(self) -> tuple[CostFingerprint, ...]:
        if self._fingerprints is None:
            self._fingerprints = tuple(CostFingerprint.of(hw) for hw in self.chips)
            self._index = {fp.outer[Level.HBM]: i for i, fp in enumerate(self._fingerprints)}
        return self._fingerprints

    def fingerprint_of(self, hw: HardwareConfig) -> CostFingerprint:
        """``CostFingerprint.of(hw)`` for a chip of the family's points: its member's (the same
        text: they differ in no value a cost reads), made once a member, not once a point."""
        i = self._bandwidths.get(repr(hw.hbm.bandwidth))
        return CostFingerprint.of(hw) if i is None else self.fingerprints()[i]

    def member(self, fingerprint: CostFingerprint) -> int | None:
        """The index of the member whose op costs ``fingerprint`` keys (None: not one)."""
        self.fingerprints()
        return self._index.get(fingerprint.outer[Level.HBM])

    def share_prefetched(self, sim: Simulator, op: ops.Op, levels: tuple[Level, ...], homes: Placement,
                         cost_of: Callable[[], OpCost]) -> float | None:
        """Make the time with prefetch of ``op`` at ``levels`` of every member, keep it
        (``prefetched_of`` reads a member's), and return the asking member's (None: an op or a
        chip not batched; the caller costs it alone). ``cost_of()``: the asking member's full
        cost, made only if the arrays need it (a DMA op's traffic)."""
        if sim.dispatch != "program":  # a call's dispatch cost reads its time: not batched
            return None
        mine = self.member(sim._fingerprint)
        if mine is None:
            return None
        timing: list[tuple[_Times, object]] = []
        made: list[OpCost] = []  # the asking member's full cost, if the arrays asked for it
        times = prefetched_times(sim, op, homes, lambda: made.append(cost_of()) or made[-1], self.hbm, timing)
        if times is None:
            return None
        if timing:
            self.timings[(op.signature_number, levels, sim.dispatch, sim._prefetch_buffer)] = timing[0]
        for cost in made:  # made before the timing was kept: compared here
            self.check(sim, op, levels, cost)
        self.prefetched[(op.signature_number, levels, sim.dispatch, sim._prefetch_buffer)] = times
        return times.item(mine)

    def prefetched_of(self, sim: Simulator, op: ops.Op, levels: tuple[Level, ...]) -> float | None:
        """``sim``'s time with prefetch of ``op`` at ``levels`` as its family made it for every
        member (None: not made, or ``sim`` not a member)."""
        times = self.prefetched.get((op.signature_number, levels, sim.dispatch, sim._prefetch_buffer))
        mine = self.member(sim._fingerprint) if times is not None else None
        return None if mine is None else times.item(mine)

    def matmul_pick(self, sim: Simulator, op: ops.MatMul, levels: tuple[Level, Level, Level]):
        """``sim``'s mapping and tiling of ``op`` with its operands at ``levels``, as
        ``matmul_cost.tpu_matmul_cost``'s search picks them, if the family's arrays picked every
        member's (``family_ops._matmul``): None if not, or not a member."""
        entry = self.picks.get((op.signature_number, levels))
        mine = self.member(sim._fingerprint) if entry is not None else None
        if mine is None:
            return None
        plan, tables, chosen, flat, memory, time = entry
        j = chosen[mine]
        return plan.mappings[j], candidate_tiling(tables[j], flat[mine], memory[mine], time[mine])

    def times(self, sim: Simulator, op: ops.Op, levels: tuple[Level, ...]) -> np.ndarray | float:
        """Every member's ``_overlapped_op_time`` of ``op`` at ``levels`` (``sim``: one of them): an
        array over the members, or a float where they are one (no tensor in HBM: no member's
        cost reads its bandwidth)."""
        time = sim._overlapped_op_time(op, levels)  # makes every member's, where the arrays can
        if Level.HBM not in levels:
            return time
        key = (op.signature_number, levels, sim.dispatch, sim._prefetch_buffer)
        times = self.prefetched.get(key)
        if times is None:  # kept by an earlier family of these chips, or an op the arrays do not time
            times = self.prefetched[key] = np.array([member._overlapped_op_time(op, levels)
                                                     for member in self._members(sim)])
        return times

    def _members(self, sim: Simulator) -> list:
        return [self.member_sim(sim, m) for m in range(len(self.chips))]

    def member_sim(self, sim: Simulator, m: int) -> Simulator:
        """A simulator of member ``m`` like ``sim`` (its dispatch), made when first asked for (a
        plan's run asks for one or two members' costs: ``family_runs``)."""
        sims = self._sims.get(sim.dispatch)
        if sims is None:
            sims = self._sims[sim.dispatch] = [None] * len(self.chips)
        made = sims[m]
        if made is None:
            made = sims[m] = type(sim)(self.chips[m], sim.placement_policy, sim.dispatch, family=self)
        return made

    def member_walk(self, sim: Simulator, analysis, per_byte: float) -> _MemberWalk | None:
        """``sim``'s placement walk (``placement_walk._Walk``) read off the family's, climbed once
        for every member; None if ``sim`` is not a member or its preload's cost per byte is not
        the family's for it."""
        mine = self.member(sim._fingerprint)
        if mine is None or sim.dispatch != "program":
            return None
        key = (id(analysis), sim.dispatch, sim._prefetch_buffer)
        held = self._walks.get(key)
        if held is None or held[0] is not analysis:  # held with it: its id is no other's meanwhile
            held = self._walks[key] = (analysis, _FamilyWalk(analysis, np.array([preload_per_byte(hw)
                                                                                 for hw in self.chips])))
        walk = held[1]
        if walk.per_byte[mine] != per_byte:
            return None
        return _MemberWalk(walk, mine, lambda op, levels: self.times(sim, op, levels))

    def check(self, sim: Simulator, op: ops.Op, levels: tuple[Level, ...], cost: OpCost) -> None:
        """Raise if ``cost`` (a member's full cost of ``op`` at ``levels``, its dispatch cost in)
        takes another time than the family's arrays made for that member."""
        timing = self.timings.get((op.signature_number, levels, sim.dispatch, sim._prefetch_buffer))
        mine = self.member(sim._fingerprint) if timing is not None else None
        if mine is None:
            return
        latency = timing[1]
        made = float(latency[mine]) if isinstance(latency, np.ndarray) and latency.ndim else float(latency)
        if made != cost.latency_s:
            raise RuntimeError(f"op {op.name!r}: its time for a family of chips ({made!r} s) differs from its own "
                               f"cost model's ({cost.latency_s!r} s) on {sim.hw.name!r}: a bug in archsim.sim.family")


class _Timer:
    """A member's ``Simulator._overlapped_op_time`` for its placement search, which also reads
    the member's walk off its family's (``placement.time_knapsack`` asks ``member_walk``)."""

    __slots__ = ("sim",)

    def __init__(self, sim: Simulator):
        self.sim = sim

    def __call__(self, op: ops.Op, levels: tuple[Level, ...]) -> float:
        return self.sim._overlapped_op_time(op, levels)

    def member_walk(self, analysis, per_byte: float) -> _MemberWalk | None:
        return self.sim.family.member_walk(self.sim, analysis, per_byte)


def op_timer(sim: Simulator, overlapping: bool) -> Callable[[ops.Op, tuple[Level, ...]], float]:
    """What ``sim``'s placement search times ops by: with overlap, their times with prefetch
    (a family member's reading its family's walk), else their times alone."""
    if not overlapping:
        return sim.op_time
    return _Timer(sim) if sim.family is not None else sim._overlapped_op_time


def family_free(path: str) -> bool:
    """Whether a family's points may differ in the config value at this key path: HBM's
    bandwidth (one member each) and what no op's cost reads (``CostFingerprint.unread``)."""
    return path == "hbm.bandwidth" or CostFingerprint.unread(path)


def families(chips: list[HardwareConfig | None], keys: list[tuple | None]) -> list[Family | None]:
    """Each chip's family (None: alone in its family, or not a chip a family may serve): ``keys``
    name the points alike in everything but HBM's bandwidth and the capacities (None: no family),
    and the members are their distinct HBM sections."""
    keys = [key if hw is not None and key is not None and _eligible(hw) else None for hw, key in zip(chips, keys)]
    groups: dict[tuple, dict[str, HardwareConfig]] = {}
    for hw, key in zip(chips, keys):
        if key is not None:
            groups.setdefault(key, {}).setdefault(repr(hw.hbm.bandwidth), hw)
    made = {key: Family(tuple(members.values())) for key, members in groups.items() if len(members) > 1}
    return [None if key is None else made.get(key) for key in keys]


def _eligible(hw) -> bool:
    """A plain TPU-style chip with HBM (a system of chips, or a GPU, is costed otherwise)."""
    if getattr(hw, "kind", None) != "tpu" or hw.hbm is None:
        return False
    single = _single_chip()
    return hw.system is single or hw.system == single


@lru_cache(maxsize=1)
def _single_chip():
    """The system section of one chip alone (the default; configs are immutable: made once)."""
    from archsim.config.system import SystemConfig

    return SystemConfig()


def prefetched_times(sim: Simulator, op: ops.Op, homes: Placement, cost_of: Callable[[], OpCost], hbm: np.ndarray,
                     timing: list | None = None) -> np.ndarray | None:
    """``prefetched_time(op, <the member's cost>, homes, buffer)`` of every member, by HBM
    bandwidth ``hbm`` (``cost_of()``: the asking member's cost, made only for an op whose traffic
    no bandwidth changes, a DMA: its traffic is every member's). None for an op kind not
    batched. ``timing``, if given, receives the op's ``_Times`` and its latency with dispatch."""
    bw: dict[Level, object] = dict(sim.channels.bandwidth)
    bw[Level.HBM] = hbm
    times = _op_times(sim, op, homes, cost_of, bw)
    if times is None:
        return None
    dispatch_s = sim.hw.dispatch.exposed(sim.dispatch, op.kind, 0.0)  # a program's: fixed
    latency = times.latency + dispatch_s if dispatch_s else times.latency  # OpCost.with_dispatch
    if timing is not None:
        timing.append((times, latency))
    ahead = prefetch_bytes([t for t in op.inputs if t.role.persistent], homes, sim._prefetch_buffer)
    copies = op.copies  # every cost model's copies
    held = times.held[1]
    work = [*times.others.values(), *times.ch.values()]
    fixed = np.maximum(0.0, latency - reduce(np.maximum, work, held))
    after = list(times.others.values())
    for level, seconds in times.ch.items():
        if level in ahead:
            moved = times.reads[level] + times.writes[level]
            if isinstance(moved, np.ndarray):
                with np.errstate(divide="ignore", invalid="ignore"):
                    fetched = seconds * copies * np.minimum(1.0, ahead[level] / moved)
                seconds = np.where(moved > 0, seconds - fetched / copies, seconds)
            elif moved > 0:  # every member's bytes alike (a float): the same operations
                fetched = seconds * copies * _at_most_one(ahead[level] / moved)
                seconds = seconds - fetched / copies
        after.append(seconds)
    times = fixed + reduce(np.maximum, after, held)
    if not isinstance(times, np.ndarray) or times.shape != hbm.shape:  # alike for every member
        times = np.full(hbm.shape, times)
    return times
