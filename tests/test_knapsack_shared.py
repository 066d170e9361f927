"""The placement knapsack's Pareto list made once for every CMEM budget
(``knapsack._shared_knapsack``) picks, for each budget, the set the knapsack solved for that
budget alone picks, to the bit: on random tensors with tied sizes and savings, budgets equal to
sums of sizes, HBM to free, and lists thinned to ``MAX_PARETO``."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import archsim.hw.knapsack as knapsack
from archsim.hw.knapsack import _knapsack, _shared_knapsack
from archsim.hw.placement_walk import _items

MiB = 2**20

tensors = st.lists(st.tuples(st.sampled_from([1, 2, 3, 5, 8]),  # MiB: few sizes, so sums tie
                             st.sampled_from([-0.5, 0.0, 0.25, 1.0, 1.5, 3.0]),  # seconds saved
                             st.booleans()),  # preloaded (else created on chip)
                   min_size=0, max_size=9)


def _walk(spec):
    """A walk's part the knapsack reads: each tensor's bytes and whether the workload creates it."""
    usage = {f"t{i}": SimpleNamespace(tensor=SimpleNamespace(total_bytes=mib * MiB), born_on_chip=not pre)
             for i, (mib, _, pre) in enumerate(spec)}
    savings = {f"t{i}": gain for i, (_, gain, _) in enumerate(spec)}
    return SimpleNamespace(analysis=SimpleNamespace(usage=usage), fronts={}), savings


def _budgets(spec, draw_order):
    """Budgets at sums of sizes (a set fits exactly), just under them, and beyond all."""
    sums = sorted({sum(mib for mib, _, _ in spec[:k]) for k in range(len(spec) + 1)} | {1, 4, 40})
    out = [s * MiB for s in sums if s > 0] + [s * MiB - 1 for s in sums if s > 0]
    return [out[i % len(out)] for i in draw_order]


@settings(max_examples=150, deadline=None, derandomize=True)
@given(tensors, st.lists(st.integers(0, 40), min_size=1, max_size=8),
       st.sampled_from([0.0, 1 * MiB, 3 * MiB]), st.sampled_from([0.0, 0.5, 2.0]))
def test_one_list_for_every_budget_picks_what_each_budget_alone_picks(spec, order, need, latency):
    walk, savings = _walk(spec)
    for budget in _budgets(spec, order):  # one walk: the later budgets read the list made first
        alone = _knapsack(_items(walk.analysis, savings, budget, need > 0), budget, need, latency)
        assert _shared_knapsack(walk, 0, savings, budget, need, latency) == alone


@pytest.mark.parametrize("need", [0.0, 2 * MiB])
def test_a_thinned_list_is_not_shared(monkeypatch, need):
    # thinned to 3 entries, the list for every budget would lose the small sets a small budget
    # needs: each budget's own knapsack decides, as it would alone
    monkeypatch.setattr(knapsack, "MAX_PARETO", 3)
    spec = [(1, 1.0, True), (2, 1.5, False), (3, 2.5, True), (5, 4.0, False), (8, 6.0, True)]
    walk, savings = _walk(spec)
    for budget in (1 * MiB, 3 * MiB, 6 * MiB, 19 * MiB):
        alone = _knapsack(_items(walk.analysis, savings, budget, need > 0), budget, need, 0.0)
        assert _shared_knapsack(walk, 0, savings, budget, need, 0.0) == alone
    assert walk.fronts[(0, need > 0)][2]  # it was thinned


def test_values_by_hand():
    # a (60 MiB, 10 s), b and c (50 MiB, 7 s each), all preloaded: 100 MiB takes b and c (14 s)
    # though a saves the most per byte; 99 MiB only a; 160 MiB all; 49 MiB none
    walk, savings = _walk([(60, 10.0, True), (50, 7.0, True), (50, 7.0, True)])
    got = [_shared_knapsack(walk, 0, savings, mib * MiB, 0.0, 0.0) for mib in (100, 99, 160, 49)]
    assert got == [(14.0, ("t1", "t2")), (10.0, ("t0",)), (24.0, ("t0", "t1", "t2")), (0.0, ())]
    assert len(walk.fronts) == 1  # one list served the four


def test_each_preload_latency_picks_from_the_same_list_by_hand():
    # a preloaded tensor saving 3 s (10 MiB) against one the workload creates saving 2.5 s (10 MiB):
    # with no latency the first; with 1 s of preload latency (3 - 1 = 2 s < 2.5 s) the second
    knapsack.clear_fronts()  # the list's picks are kept with it, by latency: none made before
    walk, savings = _walk([(10, 3.0, True), (10, 2.5, False)])
    assert _shared_knapsack(walk, 0, savings, 10 * MiB, 0.0, 0.0) == (3.0, ("t0",))
    assert _shared_knapsack(walk, 0, savings, 10 * MiB, 0.0, 1.0) == (2.5, ("t1",))
    assert _shared_knapsack(walk, 0, savings, 20 * MiB, 0.0, 1.0) == (4.5, ("t0", "t1"))
    assert _shared_knapsack(walk, 0, savings, 20 * MiB, 0.0, 0.0) == (5.5, ("t0", "t1"))
    assert len(walk.fronts) == 1 and set(walk.fronts[(0, False)][3]) == {0.0, 1.0}


def test_ties_go_to_the_fewest_bytes_then_the_first_by_hand():
    # 1 s of preload latency: t0 (10 MiB preloaded, 3 s) saves 2 s, as t1 (20 MiB, created, 2 s)
    # does: the fewer bytes win; t2 (10 MiB, created, 2 s) ties t0 on both: the first in the list
    walk, savings = _walk([(10, 3.0, True), (20, 2.0, False)])
    assert _shared_knapsack(walk, 0, savings, 20 * MiB, 0.0, 1.0) == (2.0, ("t0",))
    walk, savings = _walk([(10, 3.0, True), (10, 2.0, False)])
    assert _shared_knapsack(walk, 0, savings, 10 * MiB, 0.0, 1.0) == \
        _knapsack(_items(walk.analysis, savings, 10 * MiB, False), 10 * MiB, 0.0, 1.0) == (2.0, ("t0",))


def test_walks_with_equal_savings_share_one_pareto_list_and_others_do_not():
    """``knapsack._unbounded_front``: a second walk whose tensors save the same seconds reads the
    first's list (the same object, the same picks); a saving that differs makes its own, if only
    by a zero's sign (a created tensor saving nothing is an item where HBM must be freed)."""
    knapsack.clear_fronts()
    spec = [(1, 1.5, True), (2, 0.25, False), (3, 3.0, True), (5, 0.0, False)]
    for need in (0.0, 1 * MiB):
        walks = [_walk(spec) for _ in range(2)]
        picks = [_shared_knapsack(walk, 0, savings, 6 * MiB, need, 0.5) for walk, savings in walks]
        first, second = (walk.fronts[(0, need > 0)][1] for walk, _ in walks)
        assert second is first and picks[0] == picks[1]
        other = _walk([*spec[:2], (3, 3.0000001, True), spec[3]])
        _shared_knapsack(other[0], 0, other[1], 6 * MiB, need, 0.5)
        assert other[0].fronts[(0, need > 0)][1] is not first
    signed = _walk([*spec[:3], (5, -0.0, False)])
    _shared_knapsack(signed[0], 0, signed[1], 6 * MiB, 1 * MiB, 0.5)
    assert signed[0].fronts[(0, True)][1] is not first  # first: the list with HBM to free, +0.0
