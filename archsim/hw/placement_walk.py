"""The placement search's climb up the activation ladder (``archsim.hw.placement``): each rung's
run time without promotions and what each persistent tensor would save in CMEM there. None of
it reads a capacity, so chips alike but for their capacities climb once (``_Walk``)."""

from __future__ import annotations

import threading
from bisect import bisect_right
from typing import TYPE_CHECKING, Callable, NamedTuple

import numpy as np

from archsim.hw.memory import Level
from archsim.ir.ops import Op

if TYPE_CHECKING:
    from archsim.hw.placement import _Analysis, _Rung

OpTime = Callable[[Op, tuple[Level, ...]], float]  # an op's time with its tensors at these levels


class _Walk:
    """The ladder climbed rung by rung, as far as a CMEM has needed so far: at each rung the
    run's time without promotions (``base``) and the savings of the persistent tensors whose
    ops moved (``_Savings``), every op timed once. It reads no capacity, so chips alike but for
    their capacities share one (a sweep's CMEM axis), each reading the rungs its CMEM admits:
    the same sums in the same order as its own climb. A rung's savings move only once a CMEM
    has room left at it (a chip without CMEM times no op with a tensor there)."""

    def __init__(self, analysis: _Analysis, per_byte: float):
        self.analysis = analysis
        self.times = [0.0] * len(analysis.ops)
        self.total = 0.0
        self.savings = _Savings(analysis, per_byte)
        self.start = tuple(self.savings.total.items())
        self.bases: list[float] = []  # per rung climbed
        self.timed: list[tuple | None] = []  # per rung climbed, its ops' (index, levels, time) until their savings move
        self.changed: list[tuple[tuple[str, float], ...]] = []  # per rung whose savings moved: (tensor, new saving)
        # per rung whose savings moved: the savings there, and of them the (bytes, seconds) of those
        # saving time, in order (``savings_at``)
        self.at: list[tuple[dict[str, float], list[tuple[float, float]]]] = []
        self.most: dict[int, tuple] = {}  # per rung: base, savings, sums (``placement_rungs._rung_savings``)
        self.climbing = threading.RLock()  # a Dask worker's threads may share a walk
        # per (rung, whether HBM must be freed), the knapsack's Pareto list for every budget
        # (``knapsack._shared_knapsack``): its items, its entries, whether it was thinned, and
        # its prefixes' picks by the preload's latency
        self.fronts: dict[tuple[int, bool], tuple] = {}

    def base(self, index: int, op_time: OpTime) -> float:
        """The run's time at the rung without promotions."""
        if len(self.bases) > index:
            return self.bases[index]
        with self.climbing:
            return self._climb(index, op_time)

    def _climb(self, index: int, op_time: OpTime) -> float:
        analysis = self.analysis
        while len(self.bases) <= index:
            rung = analysis.ladder[len(self.bases)]
            timed = []
            for i in rung.moved:
                op, count = analysis.ops[i]
                far = analysis.far(rung, i)
                now = op_time(op, far)
                self.total += count * (now - self.times[i])
                self.times[i] = now
                timed.append((i, far, now))
            self.bases.append(self.total)
            self.timed.append(tuple(timed))
        return self.bases[index]

    def changes(self, index: int, op_time: OpTime) -> tuple[tuple[str, float], ...]:
        """The savings the rung's moves change: (tensor, its saving from this rung on)."""
        if len(self.changed) > index:
            return self.changed[index]
        with self.climbing:
            return self._move(index, op_time)

    def savings_at(self, index: int, op_time: OpTime) -> tuple[dict[str, float], list[tuple[float, float]]]:
        """What each persistent tensor saves in CMEM at the rung, for a CMEM with room left there
        (and so at every rung below): the walk's start updated by each rung's ``changes`` up to
        it, as a chip's own search would update it; and of them, those that save time, as
        (bytes, seconds) in the same order. Kept: the chips sharing the walk read them."""
        if len(self.at) > index:
            return self.at[index]
        with self.climbing:
            sizes = self.analysis.sizes
            while len(self.at) <= index:
                savings = dict(self.at[-1][0] if self.at else self.start)
                savings.update(self.changes(len(self.at), op_time))
                self.at.append((savings, [(sizes[n], s) for n, s in savings.items() if s > 0]))
            return self.at[index]

    def _move(self, index: int, op_time: OpTime) -> tuple[tuple[str, float], ...]:
        self._climb(index, op_time)
        while len(self.changed) <= index:
            k = len(self.changed)
            names: dict[str, None] = {}
            for i, far, now in self.timed[k]:
                self.savings.move(i, far, now, op_time)
                names.update(dict.fromkeys(self.analysis.op_persistent[i]))
            self.timed[k] = None
            self.changed.append(tuple((name, self.savings.total[name]) for name in names))
        return self.changed[index]


def _items(analysis: _Analysis, savings: dict[str, float], budget: float, created_too: bool) -> list["_Item"]:
    """The tensors that fit ``budget`` and save time (``savings``: tensor -> seconds saved); with
    ``created_too`` also those the workload creates on chip that do not (promoting them frees
    their HBM)."""
    usage = analysis.usage
    return [_Item(n, usage[n].tensor.total_bytes, s, not usage[n].born_on_chip)
            for n, s in savings.items() if usage[n].tensor.total_bytes <= budget
            and (s > 0 or (created_too and usage[n].born_on_chip))]


class _Savings:
    """What each persistent tensor saves in CMEM at the current rung: over the ops touching it,
    the op's time with it in HBM minus its time with it in CMEM (the other persistent tensors
    in HBM, the activations at the rung's homes), times the op's executions, less its preload
    (its bytes at ``per_byte``). Kept up to date op by op as the rungs move activations."""

    def __init__(self, analysis: _Analysis, per_byte: float):
        self.analysis = analysis
        usage = analysis.usage
        self.total = {n: 0.0 if usage[n].born_on_chip else -usage[n].tensor.total_bytes * per_byte
                      for n in analysis.persistent}
        self.once: dict[tuple[int, str], float] = {}  # (op index, tensor): one execution's saving

    def move(self, i: int, far: tuple[Level, ...], now: float, op_time: OpTime) -> None:
        """Op ``i`` now takes ``now`` seconds at levels ``far``."""
        op, count = self.analysis.ops[i]
        for name in self.analysis.op_persistent[i]:
            near = self.analysis.near(i, name, far)
            saved = now - op_time(op, near)
            self.total[name] += count * (saved - self.once.get((i, name), 0.0))
            self.once[(i, name)] = saved

    def items(self, budget: float, created_too: bool) -> list["_Item"]:
        """The tensors that fit ``budget`` and save time; with ``created_too`` also those the
        workload creates on chip that do not (promoting them frees their HBM)."""
        return _items(self.analysis, self.total, budget, created_too)


class _Item(NamedTuple):  # a tuple: made some 13 at a time for each Pareto list, as fast as a tuple
    name: str
    size: float  # bytes of CMEM it takes
    gain: float  # seconds it saves, its preload's transfer counted
    preloaded: bool  # loaded from HBM (else created on chip: promoting it frees its HBM)


class _FamilyWalk:
    """``_Walk`` for every member of a family of chips at once (``archsim.sim.family``: alike but
    for HBM's bandwidth and the capacities): each op time an array over the members (a float
    where all members' are one), each of a rung's sums made for every member in a few array
    operations, in the order each member's own walk adds (``numpy.add.accumulate`` down the
    rung's ops for its time, ``numpy.add.at`` down its (op, tensor) pairs for the savings: one
    addition after another, elementwise), so a member reads the bits its own walk makes
    (``_MemberWalk``). Where 25 walks looked each op up 25 times, one looks it up once."""

    def __init__(self, analysis: _Analysis, per_byte: np.ndarray):
        self.analysis = analysis
        self.per_byte = per_byte
        members = per_byte.shape[0]
        self.members = members
        self.times: list = [0.0] * len(analysis.ops)  # per op: its time at the last rung, each member's
        self.total = np.zeros(members)
        usage = analysis.usage
        self.rows = {n: k for k, n in enumerate(analysis.persistent)}
        self.totals = np.zeros((len(analysis.persistent), members))  # as ``_Savings.total``, a row a tensor
        for k, n in enumerate(analysis.persistent):
            if not usage[n].born_on_chip:
                self.totals[k] = -usage[n].tensor.total_bytes * per_byte
        # per rung moved, the savings there (``totals`` after its changes): [rung, tensor, member]
        self.saved = np.empty((len(analysis.ladder), len(analysis.persistent), members))
        self.sizes = np.array([usage[n].tensor.total_bytes for n in analysis.persistent], dtype=np.float64)
        self.thresholds = sorted(set(self.sizes.tolist()))  # the tensors' distinct sizes, ascending
        self.tables: list[list[list[float]]] = []  # per rung, per member, the most saved by budget
        self.once: dict[tuple[int, str], object] = {}  # as ``_Savings.once``
        self.bases: list[list[float]] = []  # per rung climbed, per member
        self.timed: list[tuple | None] = []
        self.changed: list[tuple[str, ...]] = []  # per rung moved: the tensors whose savings it changed
        self.climbing = threading.RLock()

    def _rows(self, values: list) -> np.ndarray:
        """``values`` (arrays over the members, or floats) as the rows of one array."""
        out = np.empty((len(values), self.members))
        for r, value in enumerate(values):
            out[r] = value
        return out

    def base(self, index: int, times: OpTime) -> list[float]:
        if len(self.bases) > index:
            return self.bases[index]
        with self.climbing:
            analysis = self.analysis
            while len(self.bases) <= index:
                rung = analysis.ladder[len(self.bases)]
                timed, now, before, counts = [], [], [], []
                for i in rung.moved:
                    op, count = analysis.ops[i]
                    far = analysis.far(rung, i)
                    time = times(op, far)
                    now.append(time)
                    before.append(self.times[i])
                    counts.append(count)
                    self.times[i] = time
                    timed.append((i, far, time))
                if timed:  # ``total += count * (now - before)``, op by op
                    added = np.array(counts, dtype=np.float64)[:, None] * (self._rows(now) - self._rows(before))
                    self.total = np.add.accumulate(np.concatenate([self.total[None], added]), axis=0)[-1]
                self.bases.append(self.total.tolist())
                self.timed.append(tuple(timed))
            return self.bases[index]

    def changes(self, index: int, times: OpTime) -> tuple[str, ...]:
        """``_Walk.changes`` of every member: the tensors whose savings the rung changes; their
        savings there, every member's, are ``saved[index]`` (with every other tensor's)."""
        if len(self.changed) > index:
            return self.changed[index]
        with self.climbing:
            self.base(index, times)
            analysis = self.analysis
            while len(self.changed) <= index:
                k = len(self.changed)
                names: dict[str, None] = {}
                pairs, now, near, before, counts = [], [], [], [], []
                for i, far, time in self.timed[k]:  # as ``_Savings.move``, pair by pair
                    op, count = analysis.ops[i]
                    for name in analysis.op_persistent[i]:
                        pairs.append((i, name))
                        now.append(time)
                        near.append(times(op, analysis.near(i, name, far)))
                        before.append(self.once.get((i, name), 0.0))
                        counts.append(count)
                    names.update(dict.fromkeys(analysis.op_persistent[i]))
                self.timed[k] = None
                if pairs:  # ``total[name] += count * (saved - once)``, pair by pair
                    saved = self._rows(now) - self._rows(near)
                    added = np.array(counts, dtype=np.float64)[:, None] * (saved - self._rows(before))
                    np.add.at(self.totals, [self.rows[name] for _, name in pairs], added)
                    for pair, row in zip(pairs, saved):
                        self.once[pair] = row
                self.saved[k] = self.totals
                self.changed.append(tuple(names))
            return self.changed[index]

    def most_tables(self, rungs: int, tie: float, times: OpTime) -> list[list[list[float]]]:
        """``placement_rungs._most_saved`` of each member's savings at each of the first ``rungs``
        rungs, for every budget at once: per rung, per member, a column per how many of the
        tensors' distinct sizes (``thresholds``) a budget holds (none, the smallest, ...). A sum
        adds the savings above 0 of the tensors within the budget one after another in the
        savings' order (``numpy.add.accumulate`` down the tensors: a tensor left out adds 0.0 to a
        sum at least 0, which changes nothing); then its margin (``tie`` of it). Made for every
        member at once, for the rungs not made before (under the climb's lock: a Dask worker's
        threads may share the family)."""
        if len(self.tables) >= rungs:
            return self.tables
        with self.climbing:
            self.changes(rungs - 1, times)
            saved = self.saved[len(self.tables):rungs].swapaxes(1, -1)  # [rung, member, tensor]
            if saved.shape[-1]:
                # [rung, size, member, tensor]: whether the tensor saves time and fits a budget of the size
                fits = (self.sizes <= np.array(self.thresholds)[:, None])[:, None, :]
                within = (saved[:, None] > 0) & fits
                total = np.add.accumulate(np.where(within, saved[:, None], 0.0), axis=-1)[..., -1]  # [rung, size, member]
                most = total + total * tie
            else:  # no persistent tensor: nothing saves anything
                most = np.zeros((saved.shape[0], len(self.thresholds), self.members))
            for rung in most.swapaxes(1, -1).tolist():  # [member, size]; a budget holding no tensor saves 0.0
                self.tables.append([[0.0, *row] for row in rung])
        return self.tables


class _MemberWalk:
    """One member's ``_Walk``, read off its family's (``_FamilyWalk``): the same rungs' times and
    savings, the same bits; its knapsacks' Pareto lists its own (its savings are its own)."""

    def __init__(self, family: _FamilyWalk, member: int, times: OpTime):
        self.family = family
        self.member = member
        self.analysis = family.analysis
        self.times = times  # every member's op time at given levels (``_FamilyWalk``'s ``times``)
        self.at: dict[int, tuple[dict[str, float], list[tuple[float, float]]]] = {}  # by rung, as read
        self.climbed: list[float] = []  # per rung read so far, its base (``bases``)
        self.most: dict[int, tuple] = {}  # as ``_Walk.most`` (``placement_rungs._rungs``, where it reads a member's)
        self.fronts: dict[tuple[int, bool], tuple] = {}
        self.reading = threading.RLock()

    def base(self, index: int, op_time: OpTime) -> float:
        return self.family.base(index, self.times)[self.member]

    def bases(self, count: int, op_time: OpTime) -> list[float]:
        """``base`` of each of the first ``count`` rungs (kept as they are climbed)."""
        if len(self.climbed) < count:
            self.family.base(count - 1, self.times)
            self.climbed = [rung[self.member] for rung in self.family.bases[:count]]
        return self.climbed[:count]

    def most_saved(self, budgets: list[float], tie: float, op_time: OpTime) -> list[float]:
        """``placement_rungs._most_saved`` at each of the first rungs (one a budget), read off the table
        of every budget's (``_FamilyWalk.most_tables``), made for every member at once as the rungs
        are asked for: the chips sharing the walk (alike but for their capacities) each read theirs."""
        if not budgets:
            return []
        tables, sizes, m = self.family.most_tables(len(budgets), tie, self.times), self.family.thresholds, self.member
        return [tables[k][m][bisect_right(sizes, budget)] for k, budget in enumerate(budgets)]

    def savings_at(self, index: int, op_time: OpTime) -> tuple[dict[str, float], list[tuple[float, float]]]:
        """As ``_Walk.savings_at``: the start updated by each rung's changes up to the rung, which
        is the family's savings after the rung's changes (``_FamilyWalk.saved``: each tensor's
        last changed value, the same float), in the start's order; made for the rungs read."""
        held = self.at.get(index)
        if held is None:
            with self.reading:
                self.family.changes(index, self.times)
                sizes = self.analysis.sizes
                savings = dict(zip(self.analysis.persistent, self.family.saved[index, :, self.member].tolist()))
                held = self.at[index] = (savings, [(sizes[n], s) for n, s in savings.items() if s > 0])
        return held
