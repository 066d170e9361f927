"""A plan's timed run on every member of a family at once (``archsim.sim.family_runs``): each
member's run, read off its family's, has the totals its own timed run has, to the bit, on
several chips and workloads, capacity siblings among them; its ops, made when read, are its own
run's; a critical chain followed for every member at once is each one's; a total the family
gets wrong raises."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from archsim import api
from archsim.sim import engine
from archsim.sim import family_runs as runs_module
from archsim.sim.engine import Simulator
from archsim.sim.family import Family
from archsim.sim.family_runs import FamilyRun, _chain
from archsim.sim.schedule import PhaseSchedule

ROOT = Path(__file__).resolve().parent.parent
BANDWIDTHS = ("40 GB/s", "300 GB/s", "819 GB/s", "2 TB/s", "40 TB/s")  # ops memory-bound on some, not others


def _totals(result) -> tuple:
    """What a sweep's row reads of a run, with the order of the unit and bound groups."""
    units, bounds = result.latency_by("unit"), result.latency_by("bound")
    return (result.feasible, result.latency_s, result.phase_times, result.macs, result.utilization, result.traffic,
            result.energy, result.ici_bytes, result.power_w, units, list(units), bounds, list(bounds))


CASES = [("cim_tpu.yaml", "dit_xl_2.yaml", ("cmem.capacity=64 MiB", "cmem.capacity=512 MiB")),
         ("cim_tpu.yaml", "llama2_7b_layer_decode.yaml", ("cmem.capacity=16 MiB", "cmem.capacity=256 MiB")),
         ("tpuv4i.yaml", "gpt3_30b_layer_prefill.yaml", ("cmem.capacity=32 MiB", "cmem.capacity=128 MiB"))]


@pytest.mark.parametrize("config, workload, capacities", CASES)
def test_every_members_run_read_off_its_familys_is_its_own(config, workload, capacities):
    engine.clear_caches()
    points = [api.load_hardware(ROOT / "hw_configs" / config, [f"hbm.bandwidth={b}", capacity])
              for b in BANDWIDTHS for capacity in capacities]
    family = Family(tuple(points[::len(capacities)]))  # one chip a bandwidth: the members
    loaded = api.load_workload(ROOT / "workloads" / workload, hw=points[0])
    read = []
    for hw in points:
        run = Simulator(hw, family=family).run(loaded)
        read.append((_totals(run), isinstance(run, FamilyRun), run))
    assert sum(made for _, made, _ in read) >= len(points) // 2, "the family's runs were not read"
    engine.clear_caches()
    for hw, (totals, _, run) in zip(points, read):
        alone = Simulator(hw).run(loaded)
        assert totals == _totals(alone), (hw.hbm.bandwidth, hw.cmem.capacity)
        assert run.ops == alone.ops  # made when read: the member's own run's, its static energies charged
    engine.clear_caches()


def test_a_run_the_family_gets_wrong_raises_when_its_ops_are_read():
    engine.clear_caches()
    chips = tuple(api.load_hardware(ROOT / "hw_configs" / "cim_tpu.yaml", [f"hbm.bandwidth={b}"]) for b in BANDWIDTHS)
    loaded = api.load_workload(ROOT / "workloads" / "llama2_7b_layer_decode.yaml", hw=chips[0])
    run = Simulator(chips[1], family=Family(chips)).run(loaded)
    assert isinstance(run, FamilyRun)
    run.__dict__["latency_s"] = np.nextafter(run.latency_s, np.inf)  # one ulp off
    with pytest.raises(RuntimeError, match="a bug in archsim.sim.family_runs"):
        run.ops
    engine.clear_caches()


def test_a_run_of_one_op_a_phase_is_the_members_own():
    """Not scheduled (its ops one after another): no family run stands for it."""
    engine.clear_caches()
    chips = tuple(api.load_hardware(ROOT / "hw_configs" / "cim_tpu.yaml", [f"hbm.bandwidth={b}"]) for b in BANDWIDTHS)
    loaded = api.load_workload(ROOT / "workloads" / "llama2_7b_layer_decode.yaml", hw=chips[0])
    serial = SimpleNamespace(phases=[SimpleNamespace(graph=[op]) for op in loaded.phases[0].graph.ops()][:1])
    assert runs_module.family_run(Simulator(chips[0], family=Family(chips)), serial, None) is None
    engine.clear_caches()


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 4), st.integers(2, 7), st.booleans(), st.randoms(use_true_random=False))
def test_the_critical_chains_of_every_member_at_once_are_each_ones(members, count, alike, rng):
    """``_chain`` against ``PhaseSchedule.critical_ops`` member by member, on random schedules
    (ends tie often: a few distinct values; each op waited for an earlier one, or none; ``alike``:
    every member's op waited for the same one, an int, as the schedule arrays record it then)."""
    start = [np.array([rng.choice([0.0, 1.0, 2.0]) for _ in range(members)]) for _ in range(count)]
    end = [s + np.array([rng.choice([0.0, 1.0, 3.0]) for _ in range(members)]) for s in start]
    if alike:
        after = [rng.randrange(-1, i) if i else -1 for i in range(count)]
    else:
        after = [np.array([rng.randrange(-1, i) if i else -1 for _ in range(members)]) for i in range(count)]
    copies = [rng.choice([1, 2, 28]) for _ in range(count)]
    added = _chain(copies, start, end, after, members)
    for m in range(members):
        schedule = PhaseSchedule("p", 1, (), (), (), tuple(float(s[m]) for s in start), tuple(float(e[m]) for e in end),
                                 tuple(int(np.broadcast_to(a, members)[m]) for a in after))
        chain = set(schedule.critical_ops)
        want = [(schedule.end[i] - schedule.start[i]) / c if i in chain else 0.0 for i, c in enumerate(copies)]
        assert [op[m] for op in added] == want


def test_a_sweeps_family_runs_are_read_by_its_members(tmp_path):
    """On a sweep's chunk, every point but the plan's first member reads its run off the family's."""
    from archsim.dse.evaluate import evaluate_chunk
    from archsim.dse.plan import plan_sweep

    engine.clear_caches()
    spec = tmp_path / "sweep.yaml"
    spec.write_text(f"extends: {ROOT / 'hw_configs' / 'cim_tpu.yaml'}\nsweep:\n  axes:\n"
                    f"    cmem.capacity: [64 MiB, 256 MiB]\n    hbm.bandwidth: [400 GB/s, 800 GB/s, 1.6 TB/s]\n"
                    f"  workloads: [{ROOT / 'workloads' / 'llama2_7b_layer_decode.yaml'}]\n")
    made = []
    original = runs_module._PlanRuns.member

    def counted(self, sim, m, workload, placement):
        made.append(m)
        return original(self, sim, m, workload, placement)

    runs_module._PlanRuns.member = counted
    try:
        rows = evaluate_chunk(list(plan_sweep([spec]).points))
    finally:
        runs_module._PlanRuns.member = original
    assert all(row["status"] == "ok" for row in rows)
    assert sorted(set(made)) == [0, 1, 2]
    engine.clear_caches()
