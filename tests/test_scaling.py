"""Simulation cost grows with the distinct op shapes and phases, not with steps or tokens:
counted as cost-model evaluations (deterministic), not timed."""

from __future__ import annotations

from functools import lru_cache

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from archsim.api import gemm_workload, load_hardware, load_workload, simulate
from archsim.sim.engine import Simulator, clear_caches
from tests.conftest import HW, ROOT, TPUV4I


@pytest.fixture
def evaluations(monkeypatch):
    """Counts the per-op cost-model evaluations (cache misses) of what runs in the test."""
    count = {"n": 0}
    original = Simulator._cost

    def counted(self, *args, **kwargs):
        count["n"] += 1
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Simulator, "_cost", counted)
    return count


def costed(hw, workload, evaluations) -> tuple[int, object]:
    clear_caches()
    before = evaluations["n"]
    result = simulate(hw, workload)
    return evaluations["n"] - before, result


@pytest.mark.parametrize("path, small, large", [
    ("dit_xl_2_512.yaml", ["schedule=icc", "steps=50"], ["schedule=icc", "steps=1000"]),
    ("dit_xl_2.yaml", ["steps=20"], ["steps=1000"]),
    ("llama2_7b.yaml", ["output_len=256"], ["output_len=4096"]),
])
def test_evaluations_do_not_grow_with_steps_or_tokens(path, small, large, evaluations):
    hw = load_hardware(TPUV4I, ["hbm.capacity=64 GiB"])
    few, short = costed(hw, load_workload(ROOT / "workloads" / path, small), evaluations)
    many, long = costed(hw, load_workload(ROOT / "workloads" / path, large), evaluations)
    assert long.latency_s > short.latency_s  # the longer run is longer...
    # ...for about the same evaluations, give or take the ops whose placement the longer run
    # changes (a weight worth promoting to CMEM once it is read 1000 times; the placement
    # search times each op touching a weight or cache at each activation rung it tries), never
    # growing with the steps or tokens (x16 or x50 here)
    assert abs(many - few) <= 0.05 * few, (few, many)


def test_a_recurring_shape_is_costed_once_across_design_points(evaluations):
    """Design points that differ only in capacities share every op's cost."""
    workload = load_workload(ROOT / "workloads" / "gpt3_30b_layer_prefill.yaml")
    clear_caches()
    first = None
    for cmem in ("128 MiB", "192 MiB", "256 MiB"):
        hw = load_hardware(TPUV4I, [f"cmem.capacity={cmem}", "hbm.capacity=64 GiB"])
        before = evaluations["n"]
        simulate(hw, workload)
        first = evaluations["n"] - before if first is None else first
        if cmem != "128 MiB":
            # only placements never seen before cost anything
            assert evaluations["n"] - before < first


def test_caches_change_no_result():
    """Warm (shared costs, timings, tilings, placements) and cold give the same bits."""
    hw = load_hardware(TPUV4I, ["hbm.capacity=64 GiB"])
    for workload in (load_workload(ROOT / "workloads" / "dit_xl_2_512.yaml", ["schedule=icc"]),
                     gemm_workload(300, 5000, 70)):
        clear_caches()
        cold = simulate(hw, workload)
        warm = simulate(hw, workload)
        assert cold.summary() == warm.summary()
        assert cold.table().equals(warm.table())


# Every value an op's cost may read, each with an alternative; capacities too, which decide the
# placement (and so the levels in the key), not the costs.
ALTERNATIVES = [
    "clock=0.94 GHz", "technology.node=22 nm", "mxu.count=2", "mxu.rows=64", "mxu.cols=256", "mxu.dataflow=os",
    "mxu.fold_model=scalesim", "mxu.pe_macs_per_cycle.int8=2", "mxu.mac_energy.int8=0.5 pJ", "mxu.stated_at=7 nm",
    "vpu.lanes=512", "vpu.alu_ops_per_lane_per_cycle=1", "vpu.special_cycles_per_op=4", "vpu.alu_op_energy=1 pJ",
    "vpu.special_op_energy=20 pJ", "vmem.capacity=4 MiB", "vmem.bandwidth=5 TB/s", "vmem.latency=50 ns",
    "vmem.read_energy=3 pJ/B", "vmem.write_energy=3 pJ/B", "cmem.capacity=32 MiB", "cmem.bandwidth=1 TB/s",
    "cmem.latency=500 ns", "cmem.read_energy=5 pJ/B", "cmem.write_energy=6 pJ/B", "hbm.capacity=16 GiB",
    "hbm.bandwidth=1.2 TB/s", "hbm.latency=1 us", "hbm.read_energy=5 pJ/bit", "hbm.write_energy=7 pJ/bit",
    "leakage.always_on=60 W", "ici.link_bandwidth=50 GB/s", "ici.energy_per_byte=10 pJ/bit", "vmem.stated_at=22 nm",
    "hbm.stated_at=22 nm", "vpu.stated_at=22 nm", "cmem=null",
]


@settings(max_examples=25, deadline=None, derandomize=True)
@given(st.sets(st.sampled_from(ALTERNATIVES), max_size=4), st.sets(st.sampled_from(ALTERNATIVES), max_size=4))
def test_shared_costs_never_leak_between_chips(first, second):
    """A chip evaluated after another (their costs shared by content) gives the same bits as
    evaluated alone: the cost key holds every value a cost reads."""
    workload = _LLM_LAYER()
    a = load_hardware(TPUV4I, sorted(first))
    b = load_hardware(TPUV4I, sorted(second))
    clear_caches()
    alone = simulate(b, workload).summary()
    clear_caches()
    simulate(a, workload)
    assert simulate(b, workload).summary() == alone


@pytest.mark.parametrize("workload", ["llama2_7b_layer_decode.yaml", "gpt3_30b_layer_prefill.yaml",
                                      "dit_xl_2_block_512.yaml"])
def test_chips_alike_but_for_the_prefetch_buffer_share_no_prefetched_time(workload):
    """The overlapped placement search weighs ops with their weights prefetched, and shares those
    times by content: a chip whose compiler prefetches into less VMEM, evaluated after one that
    prefetches into more (every other value alike, so every op's cost is shared), gives the same
    bits as evaluated alone."""
    sets = ["vmem.capacity=4 MiB"]
    more = load_hardware(HW / "cim_design_b.yaml", [*sets, "compiler.prefetch=0.5"])
    less = load_hardware(HW / "cim_design_b.yaml", [*sets, "compiler.prefetch=0.01"])
    path = ROOT / "workloads" / workload
    for first, second in ((more, less), (less, more)):
        clear_caches()
        alone = simulate(second, load_workload(path, hw=second))
        clear_caches()
        simulate(first, load_workload(path, hw=first))
        after = simulate(second, load_workload(path, hw=second))
        assert after.summary() == alone.summary() and after.table().equals(alone.table())


def test_an_ops_prefetched_time_is_its_own_buffers():
    # the time the placement search weighs an op by, its weights fetched ahead into the buffer:
    # a 4096 x 4096 int8 weight (16 MiB) fetched ahead into 2 MiB or into 41 KiB of VMEM
    from archsim.hw.memory import Level
    from archsim.passes import compile_for

    more = Simulator(load_hardware(HW / "cim_design_b.yaml", ["vmem.capacity=4 MiB", "compiler.prefetch=0.5"]))
    less = Simulator(load_hardware(HW / "cim_design_b.yaml", ["vmem.capacity=4 MiB", "compiler.prefetch=0.01"]))
    workload = compile_for(more.hw, _LLM_LAYER())
    op = max((o for phase in workload.phases for o in phase.graph.ops()), key=lambda o: o.macs)
    levels = tuple(Level.HBM for _ in op.tensor_names)
    clear_caches()
    alone = less._overlapped_op_time(op, levels)
    clear_caches()
    ahead = more._overlapped_op_time(op, levels)
    assert ahead < alone  # more of the weight's transfer hidden
    assert less._overlapped_op_time(op, levels) == alone


@lru_cache(maxsize=1)
def _LLM_LAYER():
    return load_workload(ROOT / "workloads" / "gpt3_30b_layer_decode.yaml")


def test_a_graph_grown_after_a_run_is_placed_anew():
    """Placements are cached by workload; a graph can still grow, and then it is placed again."""
    from archsim.dtypes import DType
    from archsim.ir.graph import OpGraph, Phase, Workload
    from archsim.ir.ops import Gemm
    from archsim.ir.tensor import Role, Tensor

    def gemm(name, m, k, n):
        a, b = Tensor(f"{name}.a", (m, k), DType.INT8), Tensor(f"{name}.b", (k, n), DType.INT8, Role.WEIGHT)
        return Gemm(name, (a, b), (Tensor(f"{name}.c", (m, n), DType.INT8),), 1, m, k, n, False)

    hw = load_hardware(TPUV4I)
    graph = OpGraph([gemm("g1", 64, 512, 512)])
    workload = Workload("grown", (Phase("p", graph),))
    simulate(hw, workload)
    graph.add(gemm("g2", 128, 256, 1024))
    grown = simulate(hw, workload)
    fresh = simulate(hw, Workload("grown", (Phase("p", OpGraph([gemm("g1", 64, 512, 512), gemm("g2", 128, 256, 1024)])),)))
    assert grown.summary() == fresh.summary()
