"""A plan's run time from its family's op timings (``archsim.sim.family_timing``) is its full timed
run's ``latency_s``, to the bit, on every member; the engine drops a plan by it only when slower
than a plan it timed, and a sweep's rows are the same bits as when it times every plan."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from archsim import api
from archsim.dse.evaluate import evaluate_chunk
from archsim.hw.placement import without_preload
from archsim.ir.graph import OpGraph, Phase, Workload
from archsim.passes import compile_for
from archsim.sim import engine
from archsim.sim.engine import Simulator
from archsim.sim.family import families
from archsim.sim.family_timing import _member_run_time, run_time
from test_family import _spec

ROOT = Path(__file__).resolve().parent.parent
BANDWIDTHS = ("300 GB/s", "819 GB/s", "1.2 TB/s", "3.3 TB/s")


@pytest.mark.parametrize("workload, sets, chip, lone", [
    ("dit_xl_2.yaml", [], [], False), ("sd3_medium_1024.yaml", [], [], False),
    # a fixed cost per op in a program, and weights the vector unit converts beside the arrays
    ("dit_xl_2.yaml", ["precision.weights=int8"], ["dispatch.program.default=3 us"], False),
    # a phase of one op beside the others (timed alone, not scheduled)
    ("dit_xl_2.yaml", [], [], True),
])
def test_a_plans_time_from_the_family_is_its_full_runs(workload, sets, chip, lone):
    engine.clear_caches()
    chips = [api.load_hardware(ROOT / "hw_configs" / "cim_tpu.yaml",
                               [f"hbm.bandwidth={b}", f"cmem.capacity={c}", *chip])
             for b in BANDWIDTHS for c in ("128 MiB", "1 GiB")]
    grouped = families(chips, [("one family",)] * len(chips))
    checked = 0
    for hw, family in zip(chips, grouped):
        sim = Simulator(hw, family=family)
        work = compile_for(hw, api.load_workload(ROOT / "workloads" / workload, sets, hw=hw))
        if lone:  # the first phase's first op again, alone in a phase of its own
            work = Workload(work.name, (*work.phases, Phase("lone", OpGraph([next(iter(work.phases[0].graph.ops()))]))))
        for plan in sim._placements(work, True):  # the search fills the family's timings
            if not (plan.feasible and plan.preload):
                continue
            variant = without_preload(plan)
            quick = run_time(sim, work, variant)  # every member's at once, as arrays
            assert quick is not None
            alone = _member_run_time(sim, work, variant, family.member(sim._fingerprint))  # the member's alone
            full = sim._timed_afresh(work, variant).latency_s
            assert quick == alone == full  # the bits
            checked += 1
            assert run_time(Simulator(hw), work, variant) is None  # no family: nothing to read
    assert checked >= len(chips) // 2
    assert any(times is not None for times in grouped[0].run_times.values())  # made for every member at once
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
    from archsim.sim.family_ops import _Times
    from archsim.sim.family_timing import _members_parts

    zero = {lv: np.zeros(2) for lv in Level}
    reads = dict(zero, cmem=np.array([0.0, 64.0]), hbm=np.array([128.0, 128.0]))
    times = _Times(latency=np.array([3.0, 4.0]), compute=1.0, held=("mxu", np.array([1.0, 1.0])),
                   others={"vpu": np.array([0.0, 0.5])},
                   ch={Level.CMEM: np.array([0.0, 2.0]), Level.HBM: np.array([2.5, 3.5])}, reads=reads, writes=zero,
                   memory=np.array([2.5, 3.5]))
    parts = _members_parts((times, times.latency + 0.25), 2)
    for member, others, channels in ((0, [], {Level.HBM: 2.5}), (1, [("vpu", 0.5)], {Level.CMEM: 2.0, Level.HBM: 3.5})):
        busy, latency, traffic = parts[member]
        assert busy == busy_of(("mxu", 1.0), *others, channels=channels)
        assert latency == [3.25, 4.25][member]
        assert traffic == Traffic(cmem_read=[0.0, 64.0][member], hbm_read=128.0)


def _phase_cases():
    """Random phases of 2 to 6 ops on a family of 3 members: each op's unit, its other resources'
    and channels' seconds per member (0: the member's op lacks it, as ``busy_of`` leaves it out),
    its latency (sometimes below its longest resource: a negative fixed time, clamped), copies,
    dependencies on earlier ops, and its prefetches (a share of a channel's seconds)."""
    from hypothesis import strategies as st

    seconds = st.one_of(st.just(0.0), st.floats(0.0, 4.0, allow_nan=False, width=32).map(float))

    @st.composite
    def case(draw):
        members = 3
        ops = []
        for i in range(draw(st.integers(2, 6))):
            unit = draw(st.sampled_from(["mxu", "vpu", "dma"]))
            held = [draw(seconds) for _ in range(members)]
            work = [(name, [draw(seconds) for _ in range(members)])
                    for name in draw(st.lists(st.sampled_from(["vpu", "hbm", "cmem", "vmem"]), unique=True))
                    if name != unit]
            latency = [draw(st.floats(0.0, 6.0, allow_nan=False, width=32).map(float)) for _ in range(members)]
            fetch = [(name, [s * draw(st.sampled_from([0.0, 0.25, 1.0])) for s in values])
                     for name, values in work if name != "vpu" and draw(st.booleans())]
            deps = tuple(sorted(draw(st.sets(st.integers(0, i - 1), max_size=2)))) if i else ()
            ops.append((unit, held, work, latency, draw(st.integers(1, 3)), fetch, deps))
        return ops
    return case()


@settings(max_examples=300, deadline=None)
@given(_phase_cases())
def test_a_phases_makespan_as_arrays_is_each_members_own(ops):
    """``family_timing._makespan`` over the members' arrays against ``schedule._schedule`` run for
    each member on its own costs: the same bits, member by member."""
    import numpy as np

    from archsim.sim.cost import OpCost
    from archsim.sim.family_timing import _makespan, _parts
    from archsim.sim.schedule import _schedule

    members = len(ops[0][1])
    parts = []
    for unit, held, work, latency, copies, fetch, _ in ops:
        arrays = [(name, np.array(values)) for name, values in work]
        ahead = [(name, np.array(values) * copies, np.array(values) > 0) for name, values in fetch]
        parts.append(_parts(unit, np.array(held), arrays, np.array(latency), copies,
                            [(name, np.where(present, s, 0.0), present) for name, s, present in ahead]))
    makespans = np.broadcast_to(_makespan(parts, [o[6] for o in ops]), (members,))
    for m in range(members):
        costs, prefetch = [], []
        for unit, held, work, latency, copies, fetch, _ in ops:
            busy = ((unit, held[m]), *((name, values[m]) for name, values in work if values[m] > 0))
            costs.append(OpCost.made(phase="p", name="op", kind="k", unit=unit, repeat=1, copies=copies, macs=0,
                                     vector_ops=0, compute_cycles=0.0, compute_s=0.0, memory_s=0.0,
                                     latency_s=latency[m], busy=busy))
            prefetch.append(tuple((name, values[m] * copies) for name, values in fetch if values[m] > 0))
        start, end, _, _ = _schedule(costs, [o[6] for o in ops], prefetch, record=False)
        assert makespans[m] == max(end)


@pytest.mark.parametrize("buffer", [96.0, 1e9])  # a share of the transfers, and more than all of them
def test_an_ops_parts_and_prefetches_as_arrays_are_each_members_own(buffer):
    """``_timing_parts`` (a batched op, arrays over 2 members: the second moves nothing over
    CMEM) and ``_cost_parts`` (an op alike for every member) against ``schedule.op_parts`` and
    ``schedule._prefetch`` of each member's own cost, with its inputs in HBM and CMEM (the first
    member moving fewer bytes over HBM than may be fetched ahead: the share capped), by value."""
    import numpy as np

    from archsim.dtypes import DType
    from archsim.hw.memory import Level, Placement, Traffic
    from archsim.ir.tensor import Role, Tensor
    from archsim.sim.cost import OpCost, busy_of
    from archsim.sim.family_ops import _Times
    from archsim.sim.family_timing import _cost_parts, _members_parts, _timing_parts
    from archsim.sim.schedule import _prefetch, op_parts, prefetch_bytes

    inputs = (Tensor("w", (64,), DType.BF16, Role.WEIGHT), Tensor("c", (32,), DType.BF16, Role.WEIGHT))
    placement = Placement({"w": Level.HBM, "c": Level.CMEM}, (), True)
    ahead = prefetch_bytes(inputs, placement, buffer)
    zero = {lv: np.zeros(2) for lv in Level}
    times = _Times(latency=np.array([3.0, 4.0]), compute=1.0, held=("mxu", np.array([1.0, 1.5])),
                   others={"vpu": np.array([0.0, 0.5])},
                   ch={Level.CMEM: np.array([2.0, 0.0]), Level.HBM: np.array([2.5, 3.5])},
                   reads=dict(zero, cmem=np.array([64.0, 0.0]), hbm=np.array([100.0, 200.0])), writes=zero,
                   memory=np.array([2.5, 3.5]))
    copies = 3
    got = _timing_parts(times, times.latency, copies, ahead)
    for m, (busy, latency, traffic) in enumerate(_members_parts((times, times.latency), 2)):
        cost = OpCost.made(phase="p", name="op", kind="k", unit="mxu", repeat=1, copies=copies, macs=0, vector_ops=0,
                           compute_cycles=0.0, compute_s=0.0, memory_s=0.0, latency_s=latency, traffic=traffic,
                           busy=busy)
        held, held_s, lane, work, fixed = op_parts(cost)
        assert (got[0], float(np.broadcast_to(got[1], 2)[m]), got[2]) == (held, held_s, lane)
        # a resource every member has is marked True (no mask to apply), another by its mask
        assert [(name, float(s[m])) for name, s, present in got[3] if np.broadcast_to(present, 2)[m]] == list(work)
        assert float(np.broadcast_to(got[4], 2)[m]) == fixed
        assert [(name, float(s[m])) for name, s, present in got[6]
                if np.broadcast_to(present, 2)[m]] == list(_prefetch(inputs, cost, placement, buffer))
    assert [present is True for _, _, present in got[3]] == [False, False, True]  # vpu, cmem: one member's 0
    marks = {name: present is True for name, _, present in got[6]}
    assert marks["hbm"] and not marks.get("cmem", False)  # HBM's prefetch both members', CMEM's the first's
    alike = OpCost.made(phase="p", name="op", kind="k", unit="mxu", repeat=1, copies=copies, macs=0, vector_ops=0,
                        compute_cycles=0.0, compute_s=0.0, memory_s=0.0, latency_s=5.0,
                        traffic=Traffic(cmem_read=64.0, hbm_read=128.0),
                        busy=busy_of(("mxu", 1.0), ("vpu", 0.25), channels={Level.CMEM: 2.0, Level.HBM: 1.5}))
    got = _cost_parts(alike, copies, ahead)
    held, held_s, lane, work, fixed = op_parts(alike)
    assert got[:3] == (held, held_s, lane) and [(n, s) for n, s, _ in got[3]] == list(work) and got[4] == fixed
    assert [(n, s) for n, s, _ in got[6]] == list(_prefetch(inputs, alike, placement, buffer))


@settings(max_examples=200, deadline=None)
@given(_phase_cases(), st.integers(1, 6))
def test_a_phase_resumed_after_the_first_ops_of_another_plan_is_the_schedule_made_afresh(ops, k):
    """``family_timing._scheduled``: a plan whose first ``k`` ops' parts are those of a plan scheduled
    before (the same objects) and whose later ops' differ (their seconds and latencies doubled)
    resumes the loop from the earlier plan's state after those ops. Its start, end and ``after``
    are ``scheduled_arrays``' made afresh, to the bit; the first ops' are the earlier plan's own."""
    import numpy as np

    from archsim.sim.family_timing import _parts, _scheduled, scheduled_arrays

    def parts_of(scale):
        made = []
        for unit, held, work, latency, copies, fetch, _ in ops:
            arrays = [(name, np.array(values) * scale) for name, values in work]
            ahead = [(name, np.array(values) * scale * copies, np.array(values) > 0) for name, values in fetch]
            made.append(_parts(unit, np.array(held) * scale, arrays, np.array(latency) * scale, copies,
                               [(name, np.where(present, s, 0.0), present) for name, s, present in ahead]))
        return made

    deps = [o[6] for o in ops]
    k = min(k, len(ops))
    first, other = parts_of(1.0), parts_of(2.0)
    mixed = first[:k] + other[k:]
    traces: list = []
    before = _scheduled(traces, first, deps)
    resumed = _scheduled(traces, mixed, deps)
    afresh = scheduled_arrays(mixed, deps)
    for got, want in zip(resumed, afresh):
        assert [np.asarray(v).tobytes() for v in got] == [np.asarray(v).tobytes() for v in want]
    assert all(a is b for a, b in zip(resumed[1][:k], before[1][:k]))  # read off the earlier schedule
    assert len(traces) == 2 and len(traces[1][4]) == len(ops)  # its state after each op, kept
