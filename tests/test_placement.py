"""The placement search: promotions to CMEM by time saved (an exact knapsack), activation
reserves on a workload-only ladder. Values by hand."""

from __future__ import annotations

import math
import random

import pytest

from archsim.api import Simulator, load_hardware, load_workload
from archsim.dtypes import DType
from archsim.hw.memory import Level
from archsim.hw.placement import (_activations_within, _analysis, _Item, _knapsack, _ladder, _Savings,
                                  workload_shape, place)
from archsim.ir.graph import OpGraph, Phase, Workload
from archsim.ir.ops import CacheWrite, Gemm
from archsim.ir.tensor import Role, Tensor
from archsim.hw.placement_walk import _Walk
from conftest import HW, TPUV4I_PLAIN, WORKLOADS

MiB = 2**20


def items(preloaded=True, **mib_and_gain) -> list[_Item]:
    return [_Item(name, mib * MiB, gain, preloaded) for name, (mib, gain) in mib_and_gain.items()]


def test_knapsack_is_exact_where_greedy_by_density_is_not():
    # a saves the most per byte (10/60 > 7/50) but, taken first, leaves no room for b and c
    abc = items(a=(60, 10.0), b=(50, 7.0), c=(50, 7.0))
    assert _knapsack(abc, 100 * MiB, 0.0, 0.0) == (14.0, ("b", "c"))
    assert _knapsack(abc, 99 * MiB, 0.0, 0.0) == (10.0, ("a",))
    assert _knapsack(abc, 160 * MiB, 0.0, 0.0) == (24.0, ("a", "b", "c"))
    assert _knapsack(abc, 49 * MiB, 0.0, 0.0) == (0.0, ())


def test_knapsack_pays_the_preload_latency_once_and_only_for_preloads():
    # created on chip, c needs no preload; w does: with a 2 s latency, w alone nets 1 s, c 1.5 s,
    # both 1.5 + 3 - 2 = 2.5 s
    mixed = items(False, c=(1, 1.5)) + items(w=(2, 3.0))
    assert _knapsack(mixed, 3 * MiB, 0.0, 2.0) == (2.5, ("c", "w"))
    assert _knapsack(mixed, 2 * MiB, 0.0, 2.0) == (1.5, ("c",))  # not w: 3 - 2 < 1.5
    assert _knapsack(items(w=(2, 3.0)), 2 * MiB, 0.0, 4.0) == (0.0, ())  # not worth its latency


def test_knapsack_frees_the_hbm_a_plan_needs():
    # HBM is 1 MiB short unless c, created on chip, is promoted (freeing its HBM copy), though
    # w saves more time; with no room for c at all, no set fits HBM
    mixed = items(False, c=(1, 0.5)) + items(w=(2, 3.0))
    assert _knapsack(mixed, 2 * MiB, 0.0, 0.0) == (3.0, ("w",))
    assert _knapsack(mixed, 2 * MiB, 1 * MiB, 0.0) == (0.5, ("c",))
    assert _knapsack(mixed, 3 * MiB, 1 * MiB, 0.0) == (3.5, ("c", "w"))
    assert _knapsack(items(False, c=(1, -0.1)), 2 * MiB, 1 * MiB, 0.0) == (-0.1, ("c",))  # needed, not worth it
    assert _knapsack(mixed, 0.5 * MiB, 1 * MiB, 0.0) is None


def phases(*gemms: tuple[int, int, int, int]) -> Workload:
    """One phase per (m, k, n, repeat) GEMM, each with its own int8 weight."""
    out = []
    for i, (m, k, n, repeat) in enumerate(gemms):
        x, w = Tensor(f"x{i}", (m, k), DType.INT8), Tensor(f"w{i}", (k, n), DType.INT8, Role.WEIGHT)
        y = Tensor(f"y{i}", (m, n), DType.INT8)
        out.append(Phase(f"p{i}", OpGraph([Gemm(f"g{i}", (x, w), (y,), 1, m, k, n, False)]), repeat))
    return Workload("phases", tuple(out))


def test_a_weight_is_worth_its_ops_time_saved_less_its_preload():
    # 8 MXUs: the decode GEMM's 1024 weight folds take 128 x 128 = 16,384 cycles (15.6 us),
    # less than streaming its 16 MiB weight from HBM (27.3 us): it waits for HBM
    hw = load_hardware(TPUV4I_PLAIN, ["mxu.count=8"])  # HBM at its peak, as the figures below
    sim = Simulator(hw)
    workload = phases((8, 4096, 4096, 100))
    analysis = _analysis(workload, workload_shape(workload))
    (op,) = workload.phases[0].graph.ops()
    far = sim.op_time(op, (Level.HBM, Level.HBM, Level.HBM))
    near = sim.op_time(op, (Level.HBM, Level.CMEM, Level.HBM))
    savings = _Savings(analysis, 1 / 614e9)
    savings.move(0, (Level.HBM,) * 3, far, sim.op_time)
    # 16 MiB preloaded at the slower of HBM (614 GB/s) and CMEM (2.151 TB/s)
    expected = 100 * (far - near) - 16 * MiB / 614e9
    (item,) = savings.items(128 * MiB, False)
    assert (item.name, item.size, item.preloaded) == ("w0", 16 * MiB, True)
    assert item.gain == pytest.approx(expected, rel=1e-12)
    assert savings.items(15 * MiB, False) == []  # it does not fit
    # from HBM the op waits for its weight (16 MiB / 614 GB/s = 27.3 us); from CMEM for its
    # folds (1024 folds / 8 units x 128 cycles at 1.05 GHz = 15.6 us, plus fill and drain)
    assert 16 * MiB / 614e9 < far < 16 * MiB / 614e9 * 1.05
    assert 128 * 128 / 1.05e9 < near < 128 * 128 / 1.05e9 * 1.06


def test_a_weight_read_once_by_a_compute_bound_gemm_is_not_promoted():
    hw = load_hardware(HW / "tpuv4i.yaml")
    (plan,) = place(hw, phases((4096, 4096, 4096, 1)))
    # read once, the weight would save no HBM traffic and its preload would only add time; the
    # activations (2 x 16 MiB) are best in CMEM
    assert plan.home["w0"] is Level.HBM and not plan.preload
    assert plan.home["x0"] is plan.home["y0"] is Level.CMEM


def test_the_decode_weight_wins_the_cmem_over_the_larger_prefill_one():
    # CMEM 48 MiB holds one of: the decode weight (16 MiB, read 100 times, memory-bound) or the
    # prefill weight (32 MiB, read twice by a compute-bound GEMM). Bytes saved would favour
    # neither clearly; the time saved is all the decode weight's.
    hw = load_hardware(HW / "tpuv4i.yaml", ["cmem.capacity=48 MiB", "mxu.count=8"])
    workload = phases((8, 4096, 4096, 100), (4096, 4096, 8192, 2))
    sim = Simulator(hw)
    best = min(place(hw, workload), key=lambda p: sim._latency(workload, p))
    assert best.home["w0"] is Level.CMEM and best.home["w1"] is Level.HBM
    assert [t.name for t in best.preload] == ["w0"]
    # the run is that plan's, and its time the cheap latency's to the bit
    result = sim.run(workload)
    assert result.latency_s == sim._latency(workload, best) == sim.run_with(workload, best).latency_s


def test_activation_rungs_are_every_footprint_of_the_workload():
    workload = phases((8, 1024, 1024, 1), (64, 1024, 1024, 1), (512, 1024, 1024, 1), (4096, 1024, 1024, 1))
    analysis = _analysis(workload, workload_shape(workload))
    # footprints (x + y, int8): 8 x 2048, 64 x 2048, 512 x 2048 and 4096 x 2048 bytes, and none
    assert [r.reserve for r in analysis.ladder] == [0.0, 8 * 2048, 64 * 2048, 512 * 2048, 4096 * 2048]
    rung = analysis.ladder[2]
    assert rung.in_cmem == _activations_within(analysis.op_activations, 64 * 2048) == {"x0", "y0", "x1", "y1"}
    # at that rung the largest op still holds 4096 x 2048 bytes of activations in HBM, and only
    # the second phase's op moved since the last rung
    assert (rung.spilled, rung.moved) == (4096 * 2048, (1,))
    assert analysis.ladder[0].moved == (0, 1, 2, 3)  # the first rung times every op


def _ladder_by_definition(op_activations):
    """The ladder as the module docstring defines it, one rung per distinct footprint, each
    built from scratch: the slow way (rungs x ops) that ``_ladder`` must equal."""
    rungs = []
    for reserve in sorted({0.0} | {sum(a.values()) for a, _ in op_activations}):
        in_cmem = _activations_within(op_activations, reserve)
        last = rungs[-1][1] if rungs else None
        if in_cmem == last:
            continue
        changed = in_cmem - (last or frozenset())
        moved = tuple(i for i, (a, _) in enumerate(op_activations) if last is None or not changed.isdisjoint(a))
        spilled = max((sum(b for n, b in a.items() if n not in in_cmem) for a, _ in op_activations), default=0.0)
        rungs.append((reserve, in_cmem, spilled, moved))
    return rungs


def test_the_ladder_built_in_one_pass_equals_its_definition():
    """Random op/activation mixes, with zero-byte operands (never on chip) and shared tensors."""
    rng = random.Random(7)
    for _ in range(2000):
        names = [f"t{i}" for i in range(rng.randint(0, 7))]
        ops = [({n: float(rng.choice([0, 1, 2, 4, 8, 16])) for n in rng.sample(names, rng.randint(0, len(names)))}, 1)
               for _ in range(rng.randint(0, 6))]
        ladder = _ladder(ops)
        assert [(r.reserve, r.in_cmem, r.spilled, r.moved) for r in ladder] == _ladder_by_definition(ops), ops
        assert all(r.holds(n) == (n in r.in_cmem) for r in ladder for n in names)


def test_the_largest_rung_that_fits_keeps_its_activations_on_chip():
    # a 48 MiB CMEM cannot hold the 64 MiB footprint of the last op but holds the others'
    hw = load_hardware(HW / "tpuv4i.yaml", ["cmem.capacity=48 MiB"])
    workload = phases((256, 4096, 4096, 1), (8192, 4096, 4096, 1))
    (plan,) = place(hw, workload)
    assert plan.home["x0"] is plan.home["y0"] is Level.CMEM
    assert plan.home["x1"] is plan.home["y1"] is Level.HBM


def test_more_cmem_never_slows_the_old_counterexample():
    # bytes-ranked promotions made 64 MiB slower than 48 MiB here (5203 us against 5178 us)
    workload = phases((8, 4096, 4096, 100), (4096, 4096, 4096, 2))
    times = [Simulator(load_hardware(HW / "tpuv4i.yaml", [f"cmem.capacity={c} MiB"])).run(workload).latency_s
             for c in (32, 48, 64, 128, 256)]
    assert times == sorted(times, reverse=True)


def test_a_rung_whose_spilled_activations_do_not_fit_hbm_is_not_chosen():
    # 4096 x 4096 int8: W 16 MiB, X and Y 16 MiB each. A 24 MiB HBM holds W but not W and the
    # 32 MiB of activations spilled: only the rung keeping X and Y in CMEM fits
    hw = load_hardware(HW / "tpuv4i.yaml", ["hbm.capacity=24 MiB"])
    workload = phases((4096, 4096, 4096, 1))
    (plan,) = place(hw, workload)
    assert plan.feasible and plan.home["x0"] is plan.home["y0"] is Level.CMEM
    assert Simulator(hw).run(workload).feasible
    tight = load_hardware(HW / "tpuv4i.yaml", ["hbm.capacity=15 MiB"])  # not even W fits
    (plan,) = place(tight, workload)
    assert not plan.feasible and "16 MiB of HBM" in plan.reason and "1 MiB missing" in plan.reason


def cache_and_weight(cache_repeat: int, weight_repeat: int) -> Workload:
    """A 1 MiB KV cache a prefill writes in full (created on chip), read by a decode GEMM
    ``cache_repeat`` times, and a 2 MiB weight read ``weight_repeat`` times."""
    new, cache = Tensor("new", (1024, 1024), DType.INT8), Tensor("C", (1024, 1024), DType.INT8, Role.KV_CACHE)
    q, s = Tensor("q", (8, 1024), DType.INT8), Tensor("s", (8, 1024), DType.INT8)
    x, w, y = (Tensor("x", (8, 2048), DType.INT8), Tensor("W", (2048, 1024), DType.INT8, Role.WEIGHT),
               Tensor("y", (8, 1024), DType.INT8))
    return Workload("w", (Phase("prefill", OpGraph([CacheWrite("cw", (new,), (cache,))])),
                          Phase("decode", OpGraph([Gemm("att", (q, cache), (s,), 1, 8, 1024, 1024, False)]), cache_repeat),
                          Phase("gemm", OpGraph([Gemm("g", (x, w), (y,), 1, 8, 2048, 1024, False)]), weight_repeat)))


SMALL = ["vmem.capacity=1 MiB", "mxu.count=8"]


def test_more_cmem_never_makes_a_run_that_fit_hbm_infeasible():
    # HBM 2.5 MiB holds W (2 MiB) and the activations only if the cache is promoted (it then
    # lives in CMEM alone); the knapsack alone would rather promote the weight
    workload = cache_and_weight(2, 20)
    for cmem in ("2.875 MiB", "3 MiB", "3.875 MiB", "8 MiB"):
        hw = load_hardware(HW / "tpuv4i.yaml", [*SMALL, "hbm.capacity=2.5 MiB", f"cmem.capacity={cmem}"])
        result = Simulator(hw).run(workload)
        assert result.feasible, (cmem, result.reason)


def test_the_preload_latency_is_weighed_inside_the_knapsack():
    # promoting W (preloaded) besides the created cache saved less than the 555 ns preload
    # latency: 4 MiB of CMEM was slower than 3.875 (10.791 against 10.248 us)
    workload = cache_and_weight(1, 2)
    times = [Simulator(load_hardware(HW / "tpuv4i.yaml", [*SMALL, f"cmem.capacity={c} MiB"])).run(workload).latency_s
             for c in (2, 3, 3.875, 4, 8)]
    assert times == sorted(times, reverse=True)


def test_the_preload_phase_name_is_reserved():
    # results group costs by phase: a workload phase named 'preload' would merge with the CMEM
    # preload's (and take its repeat of 1)
    with pytest.raises(ValueError, match="reserved for the CMEM preload"):
        Workload("w", (Phase("preload", OpGraph([])),))


def test_the_most_a_set_can_save_is_every_positive_saving_with_a_margin():
    from archsim.hw.placement import TIE, _most_saved

    # the tensors that save time, (bytes, seconds): 1 and 2 MiB of int8 weights
    positive = [(1 * MiB, 3.0), (2 * MiB, 0.25)]
    assert _most_saved(positive, 2 * MiB) == 3.25 + 3.25 * TIE
    assert _most_saved(positive, 1.5 * MiB) == 3.0 + 3.0 * TIE  # w1 does not fit
    assert _most_saved([(2 * MiB, 0.25)], 2 * MiB) == 0.25 + 0.25 * TIE
    assert _most_saved([], 2 * MiB) == 0.0


def test_a_walks_savings_at_a_rung_are_its_start_updated_by_each_rungs_changes():
    # the savings a chip's own search held at each rung (its start, updated rung by rung), and of
    # them the (bytes, seconds) of those that save time, in the same order; a loss keeps no place
    workload = load_workload(WORKLOADS / "dit_xl_2_block_512.yaml")
    hw = load_hardware(HW / "cim_tpu.yaml")
    analysis = _analysis(workload, workload_shape(workload))
    op_time = Simulator(hw).op_time
    walk = _Walk(analysis, 1e-12)
    savings = dict(walk.start)
    for rung in analysis.ladder:
        savings.update(walk.changes(rung.index, op_time))
        at, positive = walk.savings_at(rung.index, op_time)
        assert at == savings and list(at) == list(savings)
        assert positive == [(analysis.usage[n].tensor.total_bytes, s) for n, s in savings.items() if s > 0]
    assert len(walk.at) == len(analysis.ladder)


@pytest.mark.parametrize("workload_file", ["llama2_7b_layer_decode.yaml", "dit_xl_2_block_512.yaml"])
def test_skipping_the_rungs_that_cannot_tie_changes_no_plan(monkeypatch, workload_file):
    # every rung's knapsack solved (no bound) against the search that skips the rungs whose
    # base less every positive saving is beyond the best so far: the same plans, in order
    import archsim.hw.placement as placement
    import archsim.hw.placement_rungs as placement_rungs
    from archsim.api import load_workload
    from conftest import WORKLOADS

    workload = load_workload(WORKLOADS / workload_file)
    solved = []
    knapsack = placement._knapsack
    monkeypatch.setattr(placement, "_knapsack", lambda *a: solved.append(a) or knapsack(*a))
    for capacity in ("32 MiB", "64 MiB", "128 MiB", "256 MiB", "1 GiB"):
        hw = load_hardware(HW / "cim_tpu.yaml", [f"cmem.capacity={capacity}"])
        op_time = Simulator(hw).op_time
        solved.clear()
        pruned = place(hw, workload, op_time=op_time)
        skipping = len(solved)
        with monkeypatch.context() as m:
            m.setattr(placement_rungs, "_most_saved", lambda *args: math.inf)
            solved.clear()
            assert place(hw, workload, op_time=op_time) == pruned
            every = len(solved)
        assert skipping <= every
        if capacity == "1 GiB":
            assert skipping < every  # the bound skips rungs


def test_a_rung_s_hbm_need_without_promotions_is_made_once_per_workload(monkeypatch):
    """Every design point's search reads each rung's HBM need before any promotion: it reads
    no capacity, so the workload's analysis keeps it (the same value as made afresh)."""
    import archsim.hw.placement as placement
    from archsim.api import load_workload
    from conftest import WORKLOADS

    workload = load_workload(WORKLOADS / "llama2_7b_layer_decode.yaml")
    analysis = _analysis(workload, placement.workload_shape(workload))
    fresh = [placement._hbm_needed(analysis, rung, ()) for rung in analysis.ladder]
    made = []
    real = placement._hbm_needed
    monkeypatch.setattr(placement, "_hbm_needed", lambda *a: made.append(a[1].index) or real(*a))
    for _ in range(3):
        assert [analysis.hbm_needed(rung) for rung in analysis.ladder] == fresh
    assert sorted(made) == sorted(set(made)) and len(fresh) > 1


def test_a_plans_homes_and_hbm_need_by_their_definitions():
    """``_plan`` starts from the rung's homes (kept per rung) and promotes; its HBM need sums the
    created tensors not promoted: both against their definitions, written out here, on LLaMA-2-7B
    prefill and decode (its KV caches are created on chip) at every rung, with and without
    promotions."""
    import archsim.hw.placement as placement

    workload = load_workload(WORKLOADS / "llama2_7b.yaml")
    analysis = _analysis(workload, workload_shape(workload))
    usage = analysis.usage
    created = [n for n in analysis.persistent if usage[n].born_on_chip]
    assert created and len(created) < len(analysis.persistent)  # caches created, weights not
    for promoted in (frozenset(), frozenset(analysis.persistent[:2]), frozenset(created[:1])):
        for rung in analysis.ladder:
            plan = placement._plan(math.inf, analysis, rung, promoted)
            home = {n: Level.CMEM if rung.holds(n) or n in promoted else Level.HBM for n in usage}
            assert list(plan.home.items()) == list(home.items())  # the same homes, in usage's order
            need = analysis.hbm_floor + rung.spilled + sum(
                usage[n].tensor.total_bytes for n in analysis.persistent if usage[n].born_on_chip and n not in promoted)
            assert placement._hbm_needed(analysis, rung, promoted) == need
            assert [t.name for t in plan.preload] == sorted(n for n in promoted if not usage[n].born_on_chip)
    assert analysis.homes(analysis.ladder[-1]) is analysis.homes(analysis.ladder[-1])  # kept per rung


def test_design_points_making_one_plan_share_it_and_what_is_read_off_it():
    """``_plan`` gives chips that make the same plan (alike in HBM's size) one object, so its
    key (``Placement.homes``: every tensor's level in ``home``'s order, then the preloaded
    tensors' names) and its plan without preload are made once; another HBM size another plan."""
    from archsim.hw import placement as search

    search.clear_placements()
    workload = load_workload(WORKLOADS / "llama2_7b_layer_decode.yaml")
    analysis = _analysis(workload, search.workload_shape(workload))
    rung = analysis.ladder[0]
    promoted = frozenset(name for name, u in analysis.usage.items() if not u.born_on_chip and u.tensor.role.persistent)
    plan = search._plan(64e9, analysis, rung, promoted)
    assert search._plan(64e9, analysis, rung, promoted) is plan
    assert search._plan(32e9, analysis, rung, promoted) is not plan
    assert plan.homes == tuple(plan.home.values()) + tuple(t.name for t in plan.preload)
    assert plan.preload and all(plan.home[t.name] is Level.CMEM for t in plan.preload)
    alone = search.without_preload(plan)
    assert search.without_preload(plan) is alone
    assert alone.preload == () and all(alone.home[t.name] is Level.HBM for t in plan.preload)
    assert {n: lv for n, lv in alone.home.items() if n not in {t.name for t in plan.preload}} == \
        {n: lv for n, lv in plan.home.items() if n not in {t.name for t in plan.preload}}
    search.clear_placements()
