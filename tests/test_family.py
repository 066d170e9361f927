"""A family's op times (``archsim.sim.family``): each member's time, made for the whole family at
once as arrays, is the bits its own scalar cost model gives, for every op kind the family
batches, on several chips and workloads; a sweep's rows are the same with families as point by
point; a difference raises."""

from __future__ import annotations

import dataclasses
import json
import random
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from archsim import api
from archsim.dse.evaluate import _family_key, evaluate_chunk, evaluate_point, hardware
from archsim.dse.plan import plan_sweep
from archsim.dse.chunks import default_chunk_size
from archsim.hw.memory import Level
from archsim.ir import ops
from archsim.ir.fused import Fused
from archsim.passes import compile_for
from archsim.sim import engine
from archsim.sim import family as family_module
from archsim.sim import family_ops
from archsim.sim.engine import Simulator
from archsim.sim.family import Family, families, prefetched_times
from archsim.sim.fingerprint import CostFingerprint
from archsim.sim.schedule import prefetched_time

ROOT = Path(__file__).resolve().parent.parent
BANDWIDTHS = ("300 GB/s", "819 GB/s", "1.2 TB/s", "3.3 TB/s", "2 TB/s")


def _chips(config: str, *sets: str) -> tuple:
    return tuple(api.load_hardware(ROOT / "hw_configs" / config, [f"hbm.bandwidth={b}", *sets]) for b in BANDWIDTHS)


def _kind(op) -> str:
    return f"fused/{type(op.core).__name__}" if isinstance(op, Fused) else type(op).__name__


def _homes_to_try(op, levels: tuple[Level, ...], rng: random.Random) -> list[tuple[Level, ...]]:
    """Every tensor in HBM, and a few random mixes with at least one in HBM."""
    names = op.tensor_names
    out = [tuple(Level.HBM for _ in names)]
    for _ in range(4):
        mix = [rng.choice(levels) for _ in names]
        mix[rng.randrange(len(names))] = Level.HBM
        out.append(tuple(mix))
    return out


CASES = [("cim_tpu.yaml", "llama2_7b_layer_decode.yaml"), ("cim_tpu.yaml", "dit_xl_2.yaml"),
         ("tpuv4i.yaml", "gpt3_30b_layer_prefill.yaml"), ("tpuv3.yaml", "llama2_7b_layer_decode.yaml")]


@pytest.mark.parametrize("config, workload", CASES)
def test_every_members_time_is_its_own_cost_models(config, workload):
    engine.clear_caches()
    chips = _chips(config)
    family = Family(chips)
    sims = [Simulator(hw) for hw in chips]
    graph_ops = [op for phase in compile_for(chips[0], api.load_workload(ROOT / "workloads" / workload, hw=chips[0])).phases
                 for op in phase.graph.ops()]
    levels = tuple(lv for lv in Level if getattr(chips[0], lv.value) is not None)
    rng = random.Random(22)
    batched, left = Counter(), Counter()
    for op in graph_ops:
        for placed in _homes_to_try(op, levels, rng):
            homes = engine._homes(op, placed)
            try:  # the asking member's scalar cost first, as the engine makes it (a table's first use)
                own = sims[0]._shared_cost(op, placed, homes)
            except Exception:  # a tiling that fits no VMEM at these homes: no time to share
                continue
            timing: list = []
            times = prefetched_times(sims[0], op, homes, lambda: own, family.hbm, timing)
            if times is None:
                left[_kind(op)] += 1
                continue
            memory = np.broadcast_to(timing[0][0].memory, family.hbm.shape).tolist()  # each member's memory_s
            for sim, time, memory_s in zip(sims, times.tolist(), memory):
                cost = sim._shared_cost(op, placed, homes)
                assert time == prefetched_time(op, cost, homes, sim._prefetch_buffer), (op.name, placed, sim.hw.hbm)
                assert memory_s == cost.memory_s, (op.name, placed, sim.hw.hbm)
            batched[_kind(op)] += 1
    assert batched, "no op batched"
    assert not left, left  # every kind met is batched
    engine.clear_caches()


def test_random_families_match_their_members():
    """Random chips (VMEM, units, HBM efficiency), bandwidths (close ones, for ties in the
    tiling and mapping choices), workloads (weight-only int8: a conversion on the vector unit)."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    bandwidth = st.sampled_from([100e9, 299.99e9, 300e9, 300.01e9, 819e9, 1.2e12, 2.4e12, 8e12])

    compared = []

    @settings(max_examples=60, deadline=None)
    @given(st.sampled_from(["cim_tpu.yaml", "tpuv4i.yaml"]), st.sampled_from(["4 MiB", "16 MiB", "64 MiB"]),
           st.sampled_from([1, 4]), st.sampled_from([0.6, 0.9]), st.lists(bandwidth, min_size=2, max_size=5, unique=True),
           st.sampled_from([("llama2_7b_layer_decode.yaml", ()), ("llama2_7b_layer_decode.yaml", ("precision.weights=int8",)),
                            ("gpt3_30b_layer_prefill.yaml", ()), ("dit_xl_2_block_512.yaml", ())]),
           st.randoms(use_true_random=False))
    def check(config, vmem, count, efficiency, bandwidths, workload, rng):
        engine.clear_caches()
        chips = tuple(api.load_hardware(ROOT / "hw_configs" / config, [
            f"hbm.bandwidth={b!r} B/s", f"vmem.capacity={vmem}", f"mxu.count={count}", f"hbm.efficiency={efficiency}"])
            for b in bandwidths)
        family, sims = Family(chips), [Simulator(hw) for hw in chips]
        name, sets = workload
        graph = compile_for(chips[0], api.load_workload(ROOT / "workloads" / name, list(sets), hw=chips[0]))
        levels = tuple(lv for lv in Level if getattr(chips[0], lv.value) is not None)
        for op in rng.sample([op for phase in graph.phases for op in phase.graph.ops()], 6):
            placed = _homes_to_try(op, levels, rng)[rng.randrange(5)]
            homes = engine._homes(op, placed)
            try:
                own = sims[0]._shared_cost(op, placed, homes)
            except Exception:
                continue
            times = prefetched_times(sims[0], op, homes, lambda: own, family.hbm)
            if times is not None:
                assert times.tolist() == [prefetched_time(op, sim._shared_cost(op, placed, homes), homes,
                                                          sim._prefetch_buffer) for sim in sims], (op.name, placed)
                compared.append(op.name)

    check()
    assert len(compared) > 100
    engine.clear_caches()


def test_the_batched_kinds_are_all_met():
    """The cases above meet every kind the family batches (so a kind's formula is tested)."""
    engine.clear_caches()
    met = set()
    for config, workload in CASES:
        hw = api.load_hardware(ROOT / "hw_configs" / config)
        for phase in compile_for(hw, api.load_workload(ROOT / "workloads" / workload, hw=hw)).phases:
            met |= {_kind(op) for op in phase.graph.ops()}
    assert {"Gemm", "AttentionScore", "AttentionContext", "RMSNorm", "Softmax", "CacheWrite", "EmbeddingLookup",
            "fused/Gemm", "fused/LayerNorm", "FlashAttention"} <= met, met


def _spec(tmp: Path, workload: str, extra: str = "") -> list:
    spec = tmp / "sweep.yaml"
    spec.write_text(f"""
extends: {ROOT / 'hw_configs' / 'cim_tpu.yaml'}
sweep:
  baseline: null
  axes:
    mxu.cim.grid: [[16, 8]]
    mxu.count: [2, 4]
    cmem.capacity: [64 MiB, 256 MiB, 1 GiB]
    hbm.bandwidth: [300 GB/s, 819 GB/s, 1.6 TB/s, 3 TB/s]{extra}
  workloads: [{ROOT / 'workloads' / workload}]
""")
    return list(plan_sweep([spec]).points)


@pytest.mark.parametrize("workload", ["llama2_7b_layer_decode.yaml", "dit_xl_2.yaml"])
def test_a_chunks_rows_are_each_points_own(tmp_path, workload):
    points = _spec(tmp_path, workload)
    engine.clear_caches()
    alone = [evaluate_point(p) for p in points]
    engine.clear_caches()
    together = evaluate_chunk(points)
    assert [json.dumps(r, sort_keys=True) for r in together] == [json.dumps(r, sort_keys=True) for r in alone]
    assert all(r["status"] == "ok" for r in together)
    grouped = families([hardware(p) for p in points], [_family_key(p) for p in points])
    assert all(f is not None and len(f.chips) == 4 for f in grouped)  # one family per count: 4 bandwidths
    assert len({id(f) for f in grouped}) == 2


def test_families_are_points_alike_but_for_hbm_bandwidth_and_capacities(tmp_path):
    points = _spec(tmp_path, "llama2_7b_layer_decode.yaml", "\n    vmem.capacity: [8 MiB, 16 MiB]")
    keys = [_family_key(p) for p in points]
    grouped = families([hardware(p) for p in points], keys)
    for p, f in zip(points, grouped):  # the members: one chip per bandwidth, alike in the rest
        assert [hw.vmem.capacity for hw in f.chips] == [hardware(p).vmem.capacity] * 4
        assert [hw.mxu.count for hw in f.chips] == [hardware(p).mxu.count] * 4
        assert sorted(hw.hbm.bandwidth for hw in f.chips) == [300e9, 819e9, 1.6e12, 3e12]
        mine, own = f.fingerprint_of(hardware(p)), CostFingerprint.of(hardware(p))  # a member's, the same texts
        assert (mine.core, mine.outer) == (own.core, own.outer)
    assert len({id(f) for f in grouped}) == 4  # 2 counts x 2 VMEMs
    # one bandwidth, a failed config, or a GPU: no family
    assert families([hardware(points[0])], keys[:1]) == [None]
    assert families([None, hardware(points[0])], keys[:2]) == [None, None]
    gpu = api.load_hardware(ROOT / "hw_configs" / "a100_80gb.yaml")
    assert families([gpu, gpu], [("g",), ("g",)]) == [None, None]


def test_a_time_the_family_gets_wrong_raises(monkeypatch):
    """A member's full cost of an op the family timed (its timed run's) is compared with the
    family's latency for it: one ulp apart raises. The members' latencies are the same arrays
    their times with prefetch come from."""
    engine.clear_caches()
    chips = _chips("cim_tpu.yaml")
    workload = api.load_workload(ROOT / "workloads" / "llama2_7b_layer_decode.yaml", hw=chips[0])
    made = family_ops._matmul

    def off_by_an_ulp(*args):
        times = made(*args)
        return dataclasses.replace(times, latency=np.nextafter(times.latency, np.inf))

    monkeypatch.setattr(family_ops, "_matmul", off_by_an_ulp)
    family = Family(chips)
    with pytest.raises(RuntimeError, match="a bug in archsim.sim.family"):
        Simulator(chips[0], family=family).run(workload)
    assert family.timings  # the member's search took its times from the arrays before its timed run
    engine.clear_caches()


def test_a_member_takes_its_search_times_from_the_arrays_and_costs_only_what_it_times(monkeypatch):
    """The asking member makes no full cost of a batched op for its search (its time with
    prefetch is the arrays'): only the ops its timed runs schedule are costed in full, each
    compared with the arrays' latency; the run is the one a chip alone gives."""
    engine.clear_caches()
    chips = _chips("cim_tpu.yaml")
    workload = api.load_workload(ROOT / "workloads" / "llama2_7b_layer_decode.yaml", hw=chips[0])
    checked, real = [], Family.check

    def check(self, sim, op, levels, cost):
        if (op.signature_number, levels, sim.dispatch, sim._prefetch_buffer) in self.timings:  # else nothing to compare
            checked.append((op.signature_number, levels))
        real(self, sim, op, levels, cost)

    monkeypatch.setattr(Family, "check", check)
    family = Family(chips)
    last = Simulator(chips[-1], family=family)  # not the first member: its own index in the arrays
    result = last.run(workload)
    batched = {(sig, levels) for sig, levels, _, _ in family.timings}
    assert checked and set(checked) <= batched and len(set(checked)) < len(batched)
    # what its search read for each op is its own scalar time with prefetch
    graph = compile_for(chips[-1], workload)
    by_number = {op.signature_number: op for phase in graph.phases for op in phase.graph.ops()}
    for sig, levels, dispatch, buffer in family.timings:
        op, homes = by_number[sig], engine._homes(by_number[sig], levels)
        key = (last._fingerprint.key(levels), dispatch, sig, levels, buffer)
        own = prefetched_time(op, last._shared_cost(op, levels, homes), homes, buffer)
        assert engine._PREFETCHED.get(key) == own
        # and what the arrays hand the asking member is its own entry
        cost_of = lambda: last._shared_cost(op, levels, homes)  # noqa: E731 (a DMA op reads its traffic)
        assert family.share_prefetched(last, op, levels, homes, cost_of) == own
        assert family.prefetched_of(last, op, levels) == own
    engine.clear_caches()
    assert result.latency_s == Simulator(chips[-1]).run(workload).latency_s
    engine.clear_caches()


def test_the_family_fills_the_other_members_times():
    """After one member's run, the others' searches ask for no op time afresh."""
    engine.clear_caches()
    chips = _chips("cim_tpu.yaml")
    workload = api.load_workload(ROOT / "workloads" / "llama2_7b_layer_decode.yaml", hw=chips[0])
    family = Family(chips)
    first = Simulator(chips[0], family=family).run(workload)
    asked = []
    original = family_module.prefetched_times
    try:
        family_module.prefetched_times = lambda *args: asked.append(args) or original(*args)
        rest = [Simulator(hw, family=family).run(workload) for hw in chips[1:]]
    finally:
        family_module.prefetched_times = original
    assert not asked
    engine.clear_caches()
    assert [r.latency_s for r in [first, *rest]] == [Simulator(hw).run(workload).latency_s for hw in chips]
    engine.clear_caches()


def test_chunks_hold_a_family():
    assert default_chunk_size(10_000, 2) == 512  # the DiT sweep: a chunk holds whole families
    assert default_chunk_size(1_000, 2) == 125  # four chunks a worker
    assert default_chunk_size(10_000_000, 2) == 4883  # at most some 2,000 parts


def _walk_family(config: str, workload: str):
    """A family of ``config``'s chips (CMEM of 1 GiB on the CIM chip), each member's simulator and
    the workload's placement analysis, the caches cleared first."""
    from archsim.hw.placement import _analysis, workload_shape

    engine.clear_caches()
    chips = _chips(config, "cmem.capacity=1 GiB") if config == "cim_tpu.yaml" else _chips(config)
    family = Family(chips)
    sims = [Simulator(hw, family=family) for hw in chips]
    work = compile_for(chips[0], api.load_workload(ROOT / "workloads" / workload, hw=chips[0]))
    return chips, family, sims, _analysis(work, workload_shape(work))


@pytest.mark.parametrize("config, workload", [("cim_tpu.yaml", "dit_xl_2.yaml"), ("cim_tpu.yaml", "llama2_7b_layer_decode.yaml"),
                                              ("tpuv4i.yaml", "gpt3_30b_layer_prefill.yaml")])
def test_a_members_walk_read_off_its_familys_is_its_own(config, workload):
    """Every rung's time and every tensor's savings there, for every member, the bits the
    member's own walk (``placement_walk._Walk``, timing each op itself) makes; and the walk is
    climbed for all members at once (each op timed once, not once a member)."""
    from archsim.hw.placement import preload_per_byte
    from archsim.hw.placement_walk import _MemberWalk, _Walk

    chips, family, sims, analysis = _walk_family(config, workload)
    rungs = range(len(analysis.ladder))
    asked = Counter()
    real_times = family.times

    def counted(sim, op, levels):
        asked[(op.signature_number, levels)] += 1
        return real_times(sim, op, levels)

    family.times = counted
    walks = [family.member_walk(sim, analysis, preload_per_byte(sim.hw)) for sim in sims]
    assert all(isinstance(w, _MemberWalk) for w in walks)
    order = [3, 0, 4, 1, 2]  # members asking in another order than their own
    for rung in rungs:
        for m in order:
            walks[m].base(rung, None)
            walks[m].savings_at(rung, None)
    for m, sim in enumerate(sims):
        own, asked_own = _Walk(analysis, preload_per_byte(sim.hw)), Counter()

        def own_time(op, levels, sim=sim):
            asked_own[(op.signature_number, levels)] += 1
            return sim._overlapped_op_time(op, levels)

        for rung in rungs:
            assert walks[m].base(rung, None) == own.base(rung, own_time), (m, rung)
            mine, theirs = walks[m].savings_at(rung, None), own.savings_at(rung, own_time)
            assert list(mine[0].items()) == list(theirs[0].items()) and mine[1] == theirs[1], (m, rung)
        assert asked == asked_own  # the family's walk asks what one member's asks, not once a member
    # a chip whose preload costs another time per byte than its member's is not read off it
    assert family.member_walk(sims[0], analysis, preload_per_byte(sims[0].hw) * 2) is None
    engine.clear_caches()


@pytest.mark.parametrize("config, workload", [("cim_tpu.yaml", "dit_xl_2.yaml"), ("cim_tpu.yaml", "llama2_7b_layer_decode.yaml"),
                                              ("tpuv4i.yaml", "gpt3_30b_layer_prefill.yaml")])
def test_a_members_rungs_and_their_most_saved_by_budget_are_its_own_walks(config, workload):
    """``placement_rungs._member_rungs`` of a member's walk (the most each rung saves read off a table
    over every budget, made from the family's savings) against ``placement_rungs._rungs`` of the member's
    own walk (``_most_saved`` of its savings, rung by rung), for capacities at, just below and just
    above every rung's reserve plus every tensor's size: the same estimates, bases, budgets and
    needs, to the bit; a rung with room leaves its savings to be made, and they are the own walk's."""
    from archsim.hw.placement import TIE, _member_rungs, _most_saved, _rungs, preload_per_byte
    from archsim.hw.placement_walk import _Walk

    chips, family, sims, analysis = _walk_family(config, workload)
    sizes = sorted({u.tensor.total_bytes for n, u in analysis.usage.items() if n in analysis.persistent})
    capacities = sorted({max(0.0, r.reserve + size * f) for r in analysis.ladder for size in [0.0, *sizes]
                         for f in (0.999, 1.0, 1.001)})
    capacities = capacities[::max(1, len(capacities) // 40)] + [capacities[-1] * 2]
    checked = 0
    for m in (0, len(chips) - 1):
        sim = sims[m]
        walk = family.member_walk(sim, analysis, preload_per_byte(sim.hw))
        own = _Walk(analysis, preload_per_byte(sim.hw))
        for capacity in capacities:
            mine = _member_rungs(walk, analysis, capacity, 1e12, None)
            theirs = _rungs(own, analysis, capacity, 1e12, sim._overlapped_op_time)
            assert [(e[0], e[1].index, e[2], e[4], e[5]) for e in mine] == \
                [(e[0], e[1].index, e[2], e[4], e[5]) for e in theirs], (m, capacity)
            for e, t in zip(mine, theirs):
                if e[4] > 0:  # room left: its savings made as its knapsack reads them
                    assert e[3] is None and walk.savings_at(e[1].index, None)[0] == t[3]
                    checked += 1
                else:  # none: nothing to promote, no op timed with a tensor in CMEM there
                    assert e[3] == t[3] == {}
        for rung in analysis.ladder:  # the table's every budget against the own walk's sums
            positive = own.savings_at(rung.index, sim._overlapped_op_time)[1]
            for budget in [1.0, *sizes, *(s * 1.5 for s in sizes)]:
                got = walk.most_saved([budget] * (rung.index + 1), TIE, None)[rung.index]
                assert got == _most_saved(positive, budget), (m, rung.index, budget)
    assert checked
    engine.clear_caches()


@pytest.mark.parametrize("config, workload", [("cim_tpu.yaml", "dit_xl_2.yaml"), ("tpuv4i.yaml", "gpt3_30b_layer_prefill.yaml"),
                                              ("cim_tpu.yaml", "llama2_7b_layer_decode.yaml")])
def test_a_members_full_matmul_cost_from_its_familys_pick_is_its_own(config, workload):
    """A member's full cost of a matmul, or of a fused op around one, made with the mapping and
    tiling the family's arrays picked for it (``Family.matmul_pick``, no search of its own), is
    its cost alone, every field."""
    engine.clear_caches()
    chips = _chips(config)
    family = Family(chips)
    sims = [Simulator(hw, family=family) for hw in chips]
    graph_ops = [op for phase in compile_for(chips[0], api.load_workload(ROOT / "workloads" / workload, hw=chips[0])).phases
                 for op in phase.graph.ops() if isinstance(op, ops.MatMul) or isinstance(getattr(op, "core", None), ops.MatMul)]
    levels = tuple(lv for lv in Level if getattr(chips[0], lv.value) is not None)
    rng, made = random.Random(7), []
    for op in graph_ops:
        for placed in _homes_to_try(op, levels, rng)[:3]:
            homes = engine._homes(op, placed)
            try:
                prefetched_times(sims[0], op, homes, lambda: sims[0]._shared_cost(op, placed, homes), family.hbm)
            except Exception:  # a tiling that fits no VMEM at these homes
                continue
            made.append((op, placed, homes))
    assert family.picks and made
    picked = [[sim._cost(op, homes, "p", 3) for op, _, homes in made] for sim in sims]
    engine.clear_caches()
    for hw, costs in zip(chips, picked):
        alone = Simulator(hw)
        assert costs == [alone._cost(op, homes, "p", 3) for op, _, homes in made], hw.hbm.bandwidth
    engine.clear_caches()
