"""A timed run's ops kept with their prefetches and schedule parts (``archsim.sim.scheduled_ops``):
a run made from kept entries is the run made afresh, field for field; ``schedule.op_parts`` and
``scheduled_op`` pinned against sums worked out by hand."""

from __future__ import annotations

from pathlib import Path
from types import MappingProxyType

import pytest

from archsim import api
from archsim.hw.memory import Level, Placement, Traffic
from archsim.dtypes import DType
from archsim.ir.tensor import Role, Tensor
from archsim.hw.placement import workload_shape
from archsim.passes import compile_for
from archsim.sim import engine, scheduled_ops
from archsim.sim.cost import OpCost
from archsim.sim.engine import Simulator
from archsim.sim.schedule import op_parts, scheduled_op

ROOT = Path(__file__).resolve().parent.parent
CAPACITIES = ("64 MiB", "256 MiB", "1 GiB")
BANDWIDTHS = ("400 GB/s", "819 GB/s", "2 TB/s")


def _runs(workload: str, sets: list[str], kept: bool) -> list:
    """The timed runs of each design point's plans, in order: the points alike but for HBM's
    bandwidth and CMEM's capacity (a sweep's), on one workload; ``kept``: the kept entries
    shared, else none kept before each run (the op costs shared, as before them)."""
    graph = api.load_workload(ROOT / "workloads" / workload)
    out = []
    for bandwidth in BANDWIDTHS:
        for capacity in CAPACITIES:
            hw = api.load_hardware(ROOT / "hw_configs" / "cim_tpu.yaml",
                                   [f"cmem.capacity={capacity}", f"hbm.bandwidth={bandwidth}", *sets])
            sim = Simulator(hw)
            work = compile_for(hw, graph)
            for plan in sim._placements(work, True):
                if plan.feasible:
                    if not kept:
                        scheduled_ops.clear_scheduled_ops()
                    out.append(sim._timed_afresh(work, plan))
    return out


@pytest.mark.parametrize("workload, sets", [
    ("dit_xl_2.yaml", []), ("llama2_7b_layer_decode.yaml", []), ("llada_8b_fast_dllm.yaml", ["hbm.capacity=32 GiB"]),  # two phases
    ("dit_xl_2.yaml", ["compiler.prefetch=0.05"]), ("sd3_medium_1024.yaml", ["dispatch.program.default=3 us"]),
])
def test_a_run_from_kept_ops_is_the_run_made_afresh(workload, sets):
    engine.clear_caches()
    shared = _runs(workload, sets, kept=True)
    kept = sum(len(ops) for ops in scheduled_ops._SCHEDULED._items.values())
    made = sum(len(s.costs) for r in shared for s in r.schedules if s.phase != "preload" and len(s.costs) > 1)
    assert 0 < kept < made / 2  # the points' runs shared most of their ops' entries
    engine.clear_caches()
    alone = _runs(workload, sets, kept=False)
    assert len(alone) == len(shared)
    for a, b in zip(shared, alone):
        assert a.ops == b.ops  # every field of every cost
        assert a.latency_s == b.latency_s
        for s, t in zip(a.schedules, b.schedules):
            assert (s.phase, s.repeat, s.deps, s.prefetch, s.start, s.end, s.after) == \
                   (t.phase, t.repeat, t.deps, t.prefetch, t.start, t.end, t.after)
    engine.clear_caches()


def _cost(busy, latency_s: float, copies: int, traffic: Traffic = Traffic()) -> OpCost:
    return OpCost(phase="p", name="op", kind="matmul", unit="mxu", repeat=1, copies=copies, macs=0, vector_ops=0,
                  compute_cycles=0.0, compute_s=0.0, memory_s=0.0, latency_s=latency_s, traffic=traffic, busy=busy)


def test_op_parts_by_hand():
    # 3 copies: the MXUs 2 s each (6 s), the VPU 3 s (9 s), HBM 5 s (15 s); the latency 6 s a
    # copy (18 s): fixed 18 - 15 = 3 s, on the core's instruction stream
    assert op_parts(_cost((("mxu", 2.0), ("vpu", 3.0), ("hbm", 5.0)), 6.0, 3)) == \
        ("mxu", 6.0, "core", (("vpu", 9.0), ("hbm", 15.0)), 3.0)
    # a latency below the longest work: no fixed time; a DMA runs on its own queue
    assert op_parts(_cost((("dma", 1.0), ("hbm", 4.0)), 3.5, 2)) == ("dma", 2.0, "dma", (("hbm", 8.0),), 0.0)
    # nothing busy: the op's unit held for 0 s, its whole latency fixed
    assert op_parts(_cost((), 0.25, 4)) == ("mxu", 0.0, "core", (), 1.0)


def test_scheduled_op_prefetches_the_share_of_its_transfer_by_hand():
    weight = Tensor("w", (1024, 1024), DType.BF16, Role.WEIGHT)  # 2 MiB
    act = Tensor("x", (1024, 1024), DType.BF16)
    placement = Placement(MappingProxyType({"w": Level.HBM, "x": Level.VMEM}), (), True)
    # 8 MiB read from HBM in 4 s a copy, 2 copies; 1 MiB of buffer: 1/8 of the 8 s fetched ahead
    traffic = Traffic(hbm_read=8 * 2**20)
    cost = _cost((("mxu", 1.0), ("hbm", 4.0)), 4.5, 2, traffic)
    ahead, parts = scheduled_op((weight, act), cost, placement, 2**20)
    assert ahead == (("hbm", 1.0),)
    assert parts == ("mxu", 2.0, "core", (("hbm", 8.0),), 1.0)
    # the whole weight fits the buffer: 2 MiB of 8, a quarter of 8 s
    assert scheduled_op((weight, act), cost, placement, 2**30)[0] == (("hbm", 2.0),)
    # no buffer: nothing ahead
    assert scheduled_op((weight, act), cost, placement, 0.0)[0] == ()


def test_workloads_alike_in_shape_keep_their_own_entries():
    # DiT-XL/2 at 256 and at 512 pixels: the same graph, other token counts
    hw = api.load_hardware(ROOT / "hw_configs" / "cim_tpu.yaml")
    works = [compile_for(hw, api.load_workload(ROOT / "workloads" / name)) for name in ("dit_xl_2.yaml", "dit_xl_2_512.yaml")]
    assert workload_shape(works[0]) == workload_shape(works[1])
    engine.clear_caches()
    sim = Simulator(hw)
    together = [sim._timed_afresh(w, plan) for w in works for plan in sim._placements(w, True) if plan.feasible]
    alone = []
    for w in works:
        engine.clear_caches()
        sim = Simulator(hw)
        alone += [sim._timed_afresh(w, plan) for plan in sim._placements(w, True) if plan.feasible]
    assert [r.ops for r in together] == [r.ops for r in alone]
    assert [r.latency_s for r in together] == [r.latency_s for r in alone]
    engine.clear_caches()


def test_an_op_timed_by_the_caller_is_scheduled_not_kept_and_a_kept_one_comes_first():
    hw = api.load_hardware(ROOT / "hw_configs" / "cim_tpu.yaml")
    work = compile_for(hw, api.load_workload(ROOT / "workloads" / "dit_xl_2.yaml"))
    engine.clear_caches()
    sim = Simulator(hw)
    plan = next(p for p in sim._placements(work, True) if p.feasible)
    asked = []

    def timed(op, levels, phase):  # the op's own cost, as a family's timings would give its bits
        asked.append(op.name)
        return sim.op_cost(op, plan, phase.name, phase.repeat)

    ops = sum(len(phase.graph) for phase in work.phases)
    costs, terms = [], []
    made = scheduled_ops.scheduled_ops(sim, work, plan, costs, terms, timed)
    assert len(asked) == ops and terms == [None] * ops  # every op timed by the caller, none kept
    assert sum(len(kept) for kept in scheduled_ops._SCHEDULED._items.values()) == 0
    kept_costs, kept_terms = [], []
    assert scheduled_ops.scheduled_ops(sim, work, plan, kept_costs, kept_terms) == made  # the same parts
    assert kept_costs == costs and None not in kept_terms
    asked.clear()
    scheduled_ops.scheduled_ops(sim, work, plan, [], [], timed)
    assert asked == []  # every op kept now: the kept entries come first
    engine.clear_caches()
