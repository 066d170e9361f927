"""The placement search's knapsack (``archsim.hw.placement``): of the persistent tensors that
save time in CMEM, the set within a budget of bytes that saves the most, exactly, as a Pareto
list of sets grown one tensor at a time; and that list made once for every budget of the chips
alike but for their capacities (a sweep's CMEM axis)."""

from __future__ import annotations

import math
from bisect import bisect_right
from operator import itemgetter

from archsim.hw.placement_walk import _Item, _items, _Walk
from archsim.memo import BoundedMemo

# A Pareto list longer than this (a pathological mix of sizes and savings) is thinned to its
# best entries; every bundled workload stays far below it, so the knapsack stays exact.
MAX_PARETO = 4096


def _knapsack(items: list[_Item], budget: float, need: float, latency: float) -> tuple[float, tuple[str, ...]] | None:
    """The set within ``budget`` bytes that saves the most time, a preload's ``latency`` paid
    once by a set with any preloaded tensor, among the sets whose created-on-chip tensors free
    at least ``need`` bytes of HBM: exactly, as a Pareto list of sets grown one tensor at a time
    (in name order, so ties resolve the same way every run). None when no set frees enough.
    Returns the seconds saved and the names."""
    if need > min(budget, sum(i.size for i in items if not i.preloaded)):
        return None  # even every created tensor promoted frees too little: no set can
    return _pick(_front(items, budget, need > 0)[0], need, latency)


def _front(items: list[_Item], budget: float, count_freed: bool) -> tuple[list[tuple], bool]:
    """The Pareto list of the sets of ``items`` within ``budget`` bytes, and whether it was ever
    thinned (``MAX_PARETO``). A set: ((bytes, -saved, -freed, preloaded), saved, freed, names);
    the first is its order (fewer bytes, more saved, more freed, no preload first), negated
    once as it is made."""
    front: list[tuple] = [((0.0, -0.0, -0.0, False), 0.0, 0.0, ())]
    thinned = False
    for item in sorted(items, key=lambda i: i.name):
        size, gain, added, preloaded = item.size, item.gain, (item.name,), item.preloaded
        freed = 0.0 if preloaded else size
        front += [((b + size, -(g2 := g + gain), -(f2 := f + freed), p or preloaded), g2, f2, names + added)
                  for (b, _, _, p), g, f, names in front if b + size <= budget]  # the sets grown by the item
        front = _undominated(front, count_freed)
        if len(front) > MAX_PARETO:
            front = sorted(front, key=lambda e: e[0][1])[:MAX_PARETO]  # the most time saved first
            thinned = True
    return front, thinned


def _pick(front: list[tuple], need: float, latency: float) -> tuple[float, tuple[str, ...]] | None:
    """Of a Pareto list, the set freeing ``need`` bytes of HBM that saves the most time (a
    preload's ``latency`` paid once), then the fewest bytes, then the first (the empty set
    saves 0); None if none frees enough."""
    fitting = [e for e in front if e[2] >= need]
    if not fitting:
        return None
    (_, _, _, p), g, _, names = max(fitting, key=lambda e: (e[1] - (latency if e[0][3] else 0.0), -e[0][0]))
    return g - (latency if p else 0.0), names


def _shared_knapsack(walk: _Walk, index: int, savings: dict[str, float], budget: float, need: float,
                     latency: float) -> tuple[float, tuple[str, ...]] | None:
    """``_knapsack`` at rung ``index`` for ``budget`` > 0, its Pareto list made once for every
    budget: the chips sharing ``walk`` (alike but for capacities) have, at a rung where CMEM has
    room left, the same savings (the walk's, up to the rung). Within ``budget``, the list of
    every budget is the list for ``budget``, entry for entry: a set's entry is kept or dropped
    against sets of fewer bytes, which fit too, and a set within ``budget`` grows from one
    within it, by the same sums. So the pick among its entries within ``budget`` is
    ``_knapsack``'s. A list ever thinned (``MAX_PARETO``) is not shared: each budget's is made."""
    key = (index, need > 0)
    entry = walk.fronts.get(key)
    if entry is None:
        items = _items(walk.analysis, savings, math.inf, need > 0)
        entry = walk.fronts[key] = (items, *_unbounded_front(items, need > 0))
    items, front, thinned, picks = entry
    if thinned:
        return _knapsack(_items(walk.analysis, savings, budget, need > 0), budget, need, latency)
    if need > 0:  # HBM to free (rare): as _knapsack, the items within budget in the same order
        if need > min(budget, sum(i.size for i in items if not i.preloaded and i.size <= budget)):
            return None
        return _pick([e for e in front if e[0][0] <= budget], need, latency)
    # Every set frees enough. The list is in order of bytes, so the sets within budget are a
    # prefix of it, and ``_pick``'s choice among them is the prefix's first best, kept per prefix
    best = picks.get(latency)
    if best is None:
        best = picks[latency] = _prefix_bests(front, latency)
    sizes, firsts = best
    within = bisect_right(sizes, budget)
    if not within:
        return None
    (_, _, _, p), g, _, names = front[firsts[within - 1]]
    return g - (latency if p else 0.0), names


def _unbounded_front(items: list[_Item], count_freed: bool) -> tuple[list[tuple], bool, dict]:
    """``_front(items, math.inf, count_freed)`` and its prefixes' picks by preload latency
    (``_prefix_bests``, made as asked), kept by the items' values: chips whose savings are equal
    share them, and no reader changes the list (on the bundled DiT sweep, a family's member and
    the member of like bandwidth of a family some 12 later, alike in all but units its savings do
    not read: 3 lists in 10). A zero saving is keyed by its text too (0.0 and -0.0 are one key,
    but not one sum)."""
    key = (count_freed, MAX_PARETO, *((i.name, i.size, i.gain if i.gain else repr(i.gain), i.preloaded)
                                      for i in items))
    made = _FRONTS.get(key)
    if made is None:
        made = _FRONTS.put(key, (*_front(items, math.inf, count_freed), {}))
    return made


# Pareto lists by their items: a list is met again some 300 to 400 lists later on the bundled
# DiT sweep (16 families on), within one worker's run of chunks; some 30 kB each
_FRONTS: BoundedMemo[tuple[list[tuple], bool, dict]] = BoundedMemo(size=512)


def clear_fronts() -> None:
    _FRONTS.clear()


def _prefix_bests(front: list[tuple], latency: float) -> tuple[list[float], list[int]]:
    """Per prefix of a Pareto list (in order of bytes), its sets' bytes and the index of the set
    ``_pick`` takes from it with no HBM to free: the first with the most time saved (a preload's
    ``latency`` paid once), then the fewest bytes, as ``max`` takes it."""
    sizes, firsts = [], []
    top, at = None, -1
    for i, ((size, _, _, p), g, _, _) in enumerate(front):
        rank = (g - (latency if p else 0.0), -size)
        if top is None or rank > top:
            top, at = rank, i
        sizes.append(size)
        firsts.append(at)
    return sizes, firsts


_ORDER = itemgetter(0)  # a set's order: (bytes, -saved, -freed, preloaded)


def _undominated(entries, count_freed: bool):
    """Sets no other beats or equals on every count that matters: fewer bytes, more time saved,
    no preload where it has one and, when HBM must be freed, more HBM freed. Whatever is added
    to a dominated set can be added to its better, so dropping it loses no optimum."""
    entries.sort(key=_ORDER)  # stable: earlier sets win ties
    kept = []
    if not count_freed:  # two counts and a flag: one sweep in order of bytes
        keep = kept.append
        best_any = best_unloaded = -math.inf
        for e in entries:
            saved = e[1]
            if e[0][3]:  # preloaded: must beat every set before it (``not <=``: as a NaN compares)
                if not saved <= best_any:
                    best_any = saved
                    keep(e)
            elif not saved <= best_unloaded:  # must beat the sets before it without a preload
                best_unloaded = saved
                if saved > best_any:
                    best_any = saved
                keep(e)
        return kept
    for e in entries:  # HBM to free (rare: a tight HBM): pairwise
        if not any(k[1] >= e[1] and k[2] >= e[2] and (e[0][3] or not k[0][3]) for k in kept):
            kept.append(e)
    return kept
