"""Simulation cost grows with the distinct op shapes and phases, not with steps or tokens:
counted as cost-model evaluations (deterministic), not timed."""

from __future__ import annotations

import pytest

from archsim.api import gemm_workload, load_hardware, load_workload, simulate
from archsim.sim.engine import Simulator, clear_caches
from tests.conftest import ROOT, TPUV4I


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
    # ...for the same evaluations, give or take an op whose placement the longer run changes
    # (a weight worth promoting to CMEM once it is read 1000 times)
    assert abs(many - few) <= 2, (few, many)


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
