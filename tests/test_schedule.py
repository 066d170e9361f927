"""The overlap scheduler (archsim/sim/schedule.py): hand-worked schedules, its bounds on every
bundled workload, and profile none giving archsim's results before issue 18, bit for bit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from archsim.api import load_hardware, load_workload, simulate
from archsim.sim.cost import OpCost
from archsim.sim.schedule import schedule_phase
from archsim.sim.trace import trace_events
from archsim.hw.leakage import static_power

ROOT = Path(__file__).resolve().parents[1]


def op(name, latency, busy, copies=1):
    return OpCost(phase="p", name=name, kind="gemm", unit=busy[0][0], repeat=1, copies=copies, macs=0, vector_ops=0,
                  compute_cycles=0, compute_s=0, memory_s=0, latency_s=latency, busy=tuple(busy))


def test_a_copy_runs_beside_compute_and_the_core_runs_its_ops_in_order():
    # A: MXU 2 s, HBM 1 s, latency 2.5 s (0.5 s of fill no one else can use).
    # B: a DMA copy of 1 s over CMEM, no input from A: it starts at 0 beside A, ends at 1.
    # C: VPU 1 s, no input from A either: the core runs A's and C's ops in order, 2.5 .. 3.5.
    # D: MXU 1 s, reads A's output: waits for the core (3.5): 3.5 .. 4.5.
    a = op("a", 2.5, [("mxu", 2.0), ("hbm", 1.0)])
    b = op("b", 1.0, [("dma", 0.0), ("cmem", 1.0)])
    c = op("c", 1.0, [("vpu", 1.0)])
    d = op("d", 1.0, [("mxu", 1.0)])
    s = schedule_phase("p", 1, [a, b, c, d], [(), (), (), (0,)], [(), (), (), ()])
    assert s.start == (0.0, 0.0, 2.5, 3.5)
    assert s.end == (2.5, 1.0, 3.5, 4.5)
    assert s.makespan == 4.5  # the ops one after another: 5.5
    assert s.critical_ops == (0, 2, 3) and s.critical_path == 4.5
    assert s.busy == {"mxu": 3.0, "hbm": 1.0, "dma": 0.0, "cmem": 1.0, "vpu": 1.0}


def test_an_op_never_ends_before_its_work():
    # a latency short of the op's longest work (rounding, or a cost model's slip) leaves no
    # negative fixed time: A's HBM transfer of 2 s ends it at 2, not at its 1.5 s latency
    a = op("a", 1.5, [("mxu", 1.0), ("hbm", 2.0)])
    b = op("b", 1.0, [("mxu", 1.0)])
    s = schedule_phase("p", 1, [a, b], [(), (0,)], [(), ()])
    assert s.end == (2.0, 3.0)


def test_a_shared_channel_queues_transfers():
    # A collective and an independent copy both need 2 s of HBM: the copy's transfer waits for
    # the collective's (0 .. 2), so it ends at 4, not 2.
    a = op("a", 2.0, [("ici", 0.5), ("hbm", 2.0)])
    b = op("b", 2.0, [("dma", 0.0), ("hbm", 2.0)])
    s = schedule_phase("p", 1, [a, b], [(), ()], [(), ()])
    assert s.end == (2.0, 4.0)
    assert s.makespan == pytest.approx(max(s.busy.values()))  # HBM-bound: the channel's 4 s


def test_prefetch_fills_the_channel_behind_a_compute_bound_op():
    # op0: MXU 4 s, HBM 1 s (transfers 0 .. 1). op1 reads op0's output and a weight whose 2 s of
    # its 3 s HBM time may be fetched ahead, from op0's start: the channel is free at 1, so the
    # prefetch runs 1 .. 3; op1 starts at 4 (its input), its last 1 s of HBM 4 .. 5, its MXU
    # work 4 .. 5: it ends at 5 (alone it takes 3: 7 one after another).
    op0 = op("op0", 4.0, [("mxu", 4.0), ("hbm", 1.0)])
    op1 = op("op1", 3.0, [("mxu", 1.0), ("hbm", 3.0)])
    s = schedule_phase("p", 1, [op0, op1], [(), (0,)], [(), (("hbm", 2.0),)])
    assert s.end == (4.0, 5.0)
    assert s.windows[1] == (("mxu", 4.0, 5.0), ("hbm", 1.0, 3.0), ("hbm", 4.0, 5.0))
    assert s.critical_ops == (0, 1) and s.critical_path == 5.0


def test_a_prefetch_is_issued_when_the_op_before_starts_on_an_idle_channel():
    # op0 and op1: MXU 2 s each, no transfers (0 .. 2, 2 .. 4). op2's 3 s of HBM may all be
    # fetched ahead: issued when op1 starts (2), on an HBM idle since 0, it runs 2 .. 5; op2
    # starts at 4 (the core), its MXU second 4 .. 5, nothing left to move: it ends at 5 (issued
    # only when op2 starts, 7)
    op0, op1 = op("op0", 2.0, [("mxu", 2.0)]), op("op1", 2.0, [("mxu", 2.0)])
    op2 = op("op2", 3.0, [("mxu", 1.0), ("hbm", 3.0)])
    s = schedule_phase("p", 1, [op0, op1, op2], [(), (), ()], [(), (), (("hbm", 3.0),)])
    assert s.end == (2.0, 4.0, 5.0)
    assert s.windows[2] == (("mxu", 4.0, 5.0), ("hbm", 2.0, 5.0), ("hbm", 5.0, 5.0))


def test_copies_scale_the_work_and_the_fill():
    # 3 copies of (MXU 1 s, HBM 0.5 s, latency 1.2 s): held 3 s, fill 0.6 s, 3.6 s in all.
    s = schedule_phase("p", 1, [op("x", 1.2, [("mxu", 1.0), ("hbm", 0.5)], copies=3)], [()], [()])
    assert s.end == (pytest.approx(3.6),)
    assert s.busy == {"mxu": 3.0, "hbm": 1.5}


PAIRS = [("tpuv4i", "dit_xl_2_block_512", 0.010264261442259283, 0.4927580927741849),
         ("cim_design_b", "gpt3_30b_layer_decode", 0.0014842725200525668, 0.0724379127121306),
         ("a100_80gb", "gpt3_175b_layer_prefill", 0.2310078061573071, 85.80500248227193),
         ("h100_sxm", "llama2_7b_layer_decode", 0.00016392931696483754, 0.038075390130415665)]


OLD_STATIC = {"tpuv4i": 30, "cim_design_b": 30, "a100_80gb": 68, "h100_sxm": 119}


def with_compiler(hw, **fields):
    return hw.model_copy(update={"compiler": hw.compiler.model_copy(update=fields)})


@pytest.mark.parametrize("chip, workload, latency, energy", PAIRS)
def test_profile_none_is_archsim_before_issue_18_bit_for_bit(chip, workload, latency, energy):
    # the values of commit 0162ee4, before any compiler pass existed; with the power model of then
    # (issue 19 since): a flat static power (17% of the TDP), systolic weight loads free
    then = ["leakage=null", f"static_power={OLD_STATIC[chip]} W"]
    if chip == "tpuv4i":
        then.append("mxu.weight_load_energy=0 pJ/B")
    hw = with_compiler(load_hardware(ROOT / f"hw_configs/{chip}.yaml", then), profile="none")
    result = simulate(hw, load_workload(ROOT / f"workloads/{workload}.yaml"))
    assert result.schedules is None
    assert (result.latency_s, result.energy.total) == (latency, energy)


CHIPS = ["tpuv4i", "cim_design_b", "tpuv4", "a100_80gb"]
WORKLOADS = ["dit_xl_2_block_512", "gpt3_30b_layer_decode", "gpt3_175b_layer_prefill", "llama2_7b_layer_decode",
             "llada_8b_fast_dllm"]


@pytest.mark.parametrize("chip", CHIPS)
@pytest.mark.parametrize("workload", WORKLOADS)
def test_the_schedule_lies_between_the_busiest_resource_and_the_ops_in_series(chip, workload):
    hw = with_compiler(load_hardware(ROOT / f"hw_configs/{chip}.yaml"), overlap=True)
    result = simulate(hw, load_workload(ROOT / f"workloads/{workload}.yaml"))
    if not result.feasible:
        pytest.skip(result.reason)
    for cost in result.ops:  # every op's time covers each resource it occupies
        assert all(cost.latency_s >= seconds * (1 - 1e-12) for _, seconds in cost.busy), cost.name
    for s in result.schedules:
        serial = sum(c.latency_s * c.copies for c in s.costs)
        assert s.makespan <= serial * (1 + 1e-12)
        assert s.makespan >= max(s.busy.values()) * (1 - 1e-12)
        assert s.critical_path == pytest.approx(s.makespan, rel=1e-12)
        for i, deps in enumerate(s.deps):
            assert all(s.start[i] >= s.end[d] for d in deps)
    assert result.latency_s == pytest.approx(sum(s.repeat * s.makespan for s in result.schedules), rel=1e-12)
    # energy: static power over the overlapped time
    assert result.energy.static == pytest.approx(static_power(hw) * result.latency_s)


def test_overlap_off_is_the_ops_in_series_and_the_trace_shows_the_overlap(tmp_path):
    hw = load_hardware(ROOT / "hw_configs/tpuv4i.yaml")
    workload = load_workload(ROOT / "workloads/dit_xl_2_block_512.yaml")
    on, off = simulate(hw, workload), simulate(with_compiler(hw, overlap=False), workload)
    assert off.schedules is None and on.schedules is not None
    assert off.latency_s == pytest.approx(sum(c.latency_s * c.count for c in off.ops), rel=1e-12)
    assert on.latency_s < off.latency_s
    assert on.busy == off.busy  # the same work, differently arranged
    events = trace_events(on)
    tracks = {e["args"]["name"] for e in events if e.get("name") == "thread_name"}
    assert {"mxu", "vpu", "hbm", "cmem", "vmem"} <= tracks
    json.dumps(events)
    bars = [e for e in events if e["ph"] == "X" and e["tid"] != 0]
    # some bars on different tracks overlap in time
    by_track: dict[int, list] = {}
    for e in bars:
        by_track.setdefault(e["tid"], []).append((e["ts"], e["ts"] + e["dur"]))
    mxu = next(e["tid"] for e in events if e.get("name") == "thread_name" and e["args"]["name"] == "mxu")
    vpu = next(e["tid"] for e in events if e.get("name") == "thread_name" and e["args"]["name"] == "vpu")
    assert any(a < d and c < b for a, b in by_track[mxu] for c, d in by_track[vpu] if b > a and d > c) or \
        on.latency_s < sum(c.latency_s * c.count for c in on.ops)


def test_prefetch_is_the_weights_share_of_the_transfer_up_to_the_buffer():
    # a GEMM reading a 1000-byte weight from HBM twice (2000 bytes, 2 s of HBM) and an activation
    # made in the phase: the weight's first 500 bytes (the buffer) are fetched ahead, a quarter of
    # the HBM time: 0.5 s; with a 4000-byte buffer the whole weight, half the HBM time: 1 s
    from types import MappingProxyType

    from archsim.dtypes import DType
    from archsim.hw.memory import Level, Placement, Traffic
    from archsim.ir import ops
    from archsim.ir.tensor import Role, Tensor
    from archsim.sim.schedule import _prefetch

    x = Tensor("x", (10, 50), DType.INT8)
    w = Tensor("w", (50, 20), DType.INT8, Role.WEIGHT)
    y = Tensor("y", (10, 20), DType.INT8)
    gemm = ops.Gemm("g", (x, w), (y,), 1, 10, 50, 20, False)
    cost = dataclass_replace(op("g", 2.5, [("mxu", 1.0), ("hbm", 2.0), ("vmem", 0.1)]),
                             traffic=Traffic.of(Level.HBM, read=2000.0))
    home = Placement(MappingProxyType({"x": Level.VMEM, "w": Level.HBM, "y": Level.VMEM}), (), True)
    # the inputs no earlier op of the phase makes: here x is made in the phase, w is not
    assert _prefetch((w,), cost, home, 500.0) == (("hbm", 0.5),)
    assert _prefetch((w,), cost, home, 4000.0) == (("hbm", 1.0),)
    assert _prefetch((), cost, home, 4000.0) == ()  # both made in the phase: nothing ahead
    assert _prefetch((w,), cost, home, 0.0) == ()
    assert _prefetch(gemm.inputs, cost, home, 4000.0) == (("hbm", 1.0),)  # x lives in VMEM: never ahead


def dataclass_replace(cost, **fields):
    import dataclasses
    return dataclasses.replace(cost, **fields)


def test_the_profiles_pieces():
    tpu, gpu = load_hardware(ROOT / "hw_configs/tpuv4i.yaml"), load_hardware(ROOT / "hw_configs/a100_80gb.yaml")
    assert (tpu.compiler.profile, tpu.compiler.rules, tpu.compiler.flash, tpu.compiler.block, tpu.compiler.overlaps,
            tpu.compiler.decodes) == ("xla", ("gemm_epilogue", "vector_chain"), True, 512, True, False)
    assert tpu.prefetch_buffer == tpu.vmem.capacity / 2  # half of VMEM (ASSUMPTION, docs/sources/compiler.md)
    assert (gpu.compiler.profile, gpu.compiler.rules, gpu.compiler.flash, gpu.compiler.block, gpu.compiler.overlaps,
            gpu.compiler.decodes) == ("cuda", ("gemm_activation", "vector_chain"), True, 128, False, True)
    assert gpu.prefetch_buffer == 0
    none = with_compiler(tpu, profile="none")
    assert (none.compiler.rules, none.compiler.flash, none.compiler.overlaps, none.prefetch_buffer) == ((), False, False, 0)
    # a piece set on its own overrides the profile
    assert with_compiler(tpu, overlap=False).prefetch_buffer == 0
    assert with_compiler(tpu, prefetch=0.25).prefetch_buffer == tpu.vmem.capacity / 4


@pytest.mark.parametrize("chip", ["tpuv4i", "a100_80gb"])
def test_the_ops_static_energy_adds_up_to_static_power_over_the_run(chip):
    hw = with_compiler(load_hardware(ROOT / f"hw_configs/{chip}.yaml"), overlap=True)
    result = simulate(hw, load_workload(ROOT / "workloads/dit_xl_2_block_512.yaml"))
    assert result.overlapped
    per_op = sum(c.energy.static * c.count for c in result.ops)
    assert per_op == pytest.approx(static_power(hw) * result.latency_s, rel=1e-12)
    assert sum(a * c.count for a, c in zip(result.added_s, result.ops)) == pytest.approx(result.latency_s, rel=1e-12)


def test_bad_compiler_profiles_are_usage_errors(tmp_path):
    import subprocess
    import sys
    for chip, profile in (("tpuv4i", "cuda"), ("a100_80gb", "xla")):
        r = subprocess.run([sys.executable, "-c", "from archsim.cli import main; main()", "run",
                            str(ROOT / f"hw_configs/{chip}.yaml"), str(ROOT / "workloads/llama2_7b_layer_decode.yaml"),
                            "--set", f"compiler.profile={profile}"], capture_output=True, text=True, cwd=ROOT)
        assert r.returncode == 2 and "compiler.profile" in r.stderr and "Traceback" not in r.stderr, r.stderr
