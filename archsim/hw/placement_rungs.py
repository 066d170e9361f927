"""The placement search's estimate at each rung of the activation ladder (``archsim.hw.placement``):
the run's time there without promotions less the most its persistent tensors' savings can save
within the CMEM left (a bound no knapsack of the rung can beat), so the search solves only the
knapsacks of the rungs that can come within a tie of the best."""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from typing import TYPE_CHECKING

from archsim.hw.placement_walk import OpTime, _Walk

if TYPE_CHECKING:
    from archsim.hw.placement import _Analysis, _Rung

# Rungs whose estimated times are this close (relatively) to the best are all timed exactly by
# the engine: the estimates are sums in another order, equal to rounding.
TIE = 1e-9

_NO_ROOM: tuple[dict[str, float], tuple] = ({}, ())  # a rung's savings for a CMEM without room there


def _rungs(walk: _Walk, analysis: _Analysis, capacity: float, hbm_capacity: float, op_time: OpTime) -> list[tuple]:
    """Per rung a CMEM of ``capacity`` admits, in order: the least its estimate can be (its base
    less the most its savings can save within its budget), the rung, its base, its savings, its
    budget and the HBM its plan must free by promoting tensors the workload creates on chip."""
    rungs = []
    for rung in analysis.ladder:
        if rung.reserve > capacity:
            break
        budget = capacity - rung.reserve  # falls rung by rung: once none is left, none comes back
        if budget > 0:  # the run's time there, its savings and the most they can save within the budget
            base, savings, positive, sizes, sums, needed = walk.most.get(rung.index) or _rung_savings(
                walk, analysis, rung, op_time)
            fitting = bisect_right(sizes, budget)  # the tensors within it: those of the smallest sizes
            most = sums.get(fitting)
            if most is None:  # budgets holding the same tensors: the same sum
                most = sums[fitting] = _most_saved(positive, budget)
        else:  # none fits a CMEM without room: whatever they are, nothing is promoted
            base, savings, most = walk.base(rung.index, op_time), _NO_ROOM[0], _most_saved(_NO_ROOM[1], budget)
            needed = analysis.hbm_needed(rung)
        rungs.append((base - most, rung, base, savings, budget, needed - hbm_capacity))
    return rungs


def _member_rungs(walk, analysis: _Analysis, capacity: float, hbm_capacity: float, op_time: OpTime) -> list[tuple]:
    """``_rungs`` of a family member's walk (``placement_walk._MemberWalk``): the rungs a CMEM of
    ``capacity`` admits (reserve at most it) and those with room (below it) found by bisection of
    the ladder's ascending reserves; the most each rung's savings can save within its budget read
    off the member's table (``most_saved``: the same sums), and a rung's savings left to be made
    (None) until its knapsack reads them (most rungs' are never solved). The bases are climbed
    first, as ``_rungs`` climbs them."""
    reserves, ladder = analysis.reserves, analysis.ladder
    if reserves is None:  # not ascending: rung by rung
        return _rungs(walk, analysis, capacity, hbm_capacity, op_time)
    room = bisect_left(reserves, capacity)  # budget = capacity - reserve > 0
    bases = walk.bases(room, op_time)
    budgets = [capacity - reserve for reserve in reserves[:room]]
    rungs = [(base - most, rung, base, None, budget, need - hbm_capacity) for rung, base, most, budget, need
             in zip(ladder, bases, walk.most_saved(budgets, TIE, op_time), budgets, analysis.needs)]
    for rung in ladder[room:bisect_right(reserves, capacity)]:  # none fits a CMEM without room: nothing promoted
        budget = capacity - rung.reserve
        base, most = walk.base(rung.index, op_time), _most_saved(_NO_ROOM[1], budget)
        rungs.append((base - most, rung, base, _NO_ROOM[0], budget, analysis.hbm_needed(rung) - hbm_capacity))
    return rungs


def _rung_savings(walk: _Walk, analysis: _Analysis, rung: _Rung, op_time: OpTime) -> tuple:
    """``walk.base`` and ``walk.savings_at`` the rung, with the distinct sizes of the tensors
    that save time there (in order) and ``_most_saved`` by how many of those sizes a budget
    holds (made as budgets ask), and ``analysis.hbm_needed``: kept with the walk (``walk.most``)
    for the chips sharing it, each with a budget of its own."""
    savings, positive = walk.savings_at(rung.index, op_time)
    held = walk.most[rung.index] = (walk.base(rung.index, op_time), savings, positive,
                                    sorted({size for size, _ in positive}), {}, analysis.hbm_needed(rung))
    return held


def _most_saved(positive: list[tuple[float, float]], budget: float) -> float:
    """More than any set of the tensors within ``budget`` bytes can save (``positive``: the
    (bytes, seconds) of the tensors that save time): the sum of their savings that fit, and a
    margin for the rounding of a knapsack's sums in another order."""
    total = 0.0
    for size, saved in positive:
        if size <= budget:
            total += saved
    return total + total * TIE
