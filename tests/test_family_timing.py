"""A plan's run time from its family's op timings (``archsim.sim.family_timing``) is its full timed
run's ``latency_s``, to the bit, on every member; the engine drops a plan by it only when slower
than a plan it timed, and a sweep's rows are the same bits as when it times every plan."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from archsim import api
from archsim.dse.evaluate import evaluate_chunk
from archsim.hw.placement import without_preload
from archsim.passes import compile_for
from archsim.sim import engine
from archsim.sim.engine import Simulator
from archsim.sim.family import families
from archsim.sim.family_timing import run_time
from test_family import _spec

ROOT = Path(__file__).resolve().parent.parent
BANDWIDTHS = ("300 GB/s", "819 GB/s", "1.2 TB/s", "3.3 TB/s")


@pytest.mark.parametrize("workload, sets, chip", [
    ("dit_xl_2.yaml", [], []), ("sd3_medium_1024.yaml", [], []),
    # a fixed cost per op in a program, and weights the vector unit converts beside the arrays
    ("dit_xl_2.yaml", ["precision.weights=int8"], ["dispatch.program.default=3 us"]),
])
def test_a_plans_time_from_the_family_is_its_full_runs(workload, sets, chip):
    engine.clear_caches()
    chips = [api.load_hardware(ROOT / "hw_configs" / "cim_tpu.yaml",
                               [f"hbm.bandwidth={b}", f"cmem.capacity={c}", *chip])
             for b in BANDWIDTHS for c in ("128 MiB", "1 GiB")]
    grouped = families(chips, [("one family",)] * len(chips))
    checked = 0
    for hw, family in zip(chips, grouped):
        sim = Simulator(hw, family=family)
        work = compile_for(hw, api.load_workload(ROOT / "workloads" / workload, sets, hw=hw))
        for plan in sim._placements(work, True):  # the search fills the family's timings
            if not (plan.feasible and plan.preload):
                continue
            variant = without_preload(plan)
            quick = run_time(sim, work, variant)
            assert quick is not None
            assert quick == sim._timed_afresh(work, variant).latency_s  # the bits
            checked += 1
            assert run_time(Simulator(hw), work, variant) is None  # no family: nothing to read
    assert checked >= len(chips) // 2
    assert grouped[0].timed_parts  # the ops the family batched were scheduled from its timings
    engine.clear_caches()


def _dit_points(tmp_path: Path) -> list:
    return _spec(tmp_path, "dit_xl_2.yaml")  # 2 MXU counts x 3 CMEMs x 4 bandwidths


def test_rows_are_the_same_as_when_every_plan_is_timed(tmp_path, monkeypatch):
    points = _dit_points(tmp_path)
    dropped = []
    original = engine.Simulator._slower
    monkeypatch.setattr(engine.Simulator, "_slower", lambda *args: dropped.append(original(*args)) or dropped[-1])
    engine.clear_caches()
    quick = evaluate_chunk(points)
    assert any(dropped)  # some plans dropped by their time from the family's timings
    monkeypatch.setattr(engine.Simulator, "_slower", lambda *args: False)  # every plan timed in full
    engine.clear_caches()
    full = evaluate_chunk(points)
    assert [json.dumps(r, sort_keys=True) for r in quick] == [json.dumps(r, sort_keys=True) for r in full]
    assert all(r["status"] == "ok" for r in quick)
    engine.clear_caches()


def test_a_plan_not_slower_is_timed_in_full(tmp_path, monkeypatch):
    # told every plan is as fast as the fastest (not slower), the engine times each: the rows
    # are those of timing every plan, and none is dropped
    points = _dit_points(tmp_path)[:9]
    timed = []
    original = engine.Simulator._timed
    monkeypatch.setattr(engine, "run_time", lambda *args: 0.0)
    monkeypatch.setattr(engine.Simulator, "_timed", lambda self, w, p: timed.append(p) or original(self, w, p))
    engine.clear_caches()
    rows = evaluate_chunk(points)
    assert sum(not p.preload for p in timed) == sum(bool(p.preload) for p in timed)  # each plan's variant too
    monkeypatch.setattr(engine.Simulator, "_slower", lambda *args: False)
    engine.clear_caches()
    assert rows == evaluate_chunk(points)
    engine.clear_caches()


def test_a_members_cost_keeps_the_busy_times_above_zero_as_busy_of_does():
    # member 0 moves nothing over CMEM and has no vector work; member 1 does both
    import numpy as np

    from archsim.hw.memory import Level, Traffic
    from archsim.sim.cost import busy_of
    from archsim.sim.family import _Times
    from archsim.sim.family_timing import _members_parts

    zero = {lv: np.zeros(2) for lv in Level}
    reads = dict(zero, cmem=np.array([0.0, 64.0]), hbm=np.array([128.0, 128.0]))
    times = _Times(latency=np.array([3.0, 4.0]), compute=1.0, held=("mxu", np.array([1.0, 1.0])),
                   others={"vpu": np.array([0.0, 0.5])},
                   ch={Level.CMEM: np.array([0.0, 2.0]), Level.HBM: np.array([2.5, 3.5])}, reads=reads, writes=zero)
    parts = _members_parts((times, times.latency + 0.25), 2)
    for member, others, channels in ((0, [], {Level.HBM: 2.5}), (1, [("vpu", 0.5)], {Level.CMEM: 2.0, Level.HBM: 3.5})):
        busy, latency, traffic = parts[member]
        assert busy == busy_of(("mxu", 1.0), *others, channels=channels)
        assert latency == [3.25, 4.25][member]
        assert traffic == Traffic(cmem_read=[0.0, 64.0][member], hbm_read=128.0)
