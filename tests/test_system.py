"""Multi-chip systems: topology costs against closed forms, the pipeline schedule's bubble, the
single-chip limit, tensor-parallel lowering, capacity per chip, and config errors."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from archsim.api import Simulator, SystemSimulator, load_hardware, load_workload, simulate
from archsim.config.loader import parse_overrides
from archsim.ir.summary import summarize
from archsim.system.schedule import StageTime, phase_schedule
from archsim.system.topology import topology_of
from conftest import HW, TPUV4I, WORKLOADS, run_cli

PREFILL = WORKLOADS / "gpt3_30b_layer_prefill.yaml"
DIT_BLOCK = WORKLOADS / "dit_xl_2_block_512.yaml"


def system(chips: int, *sets: str, base=TPUV4I):
    return load_hardware(base, parse_overrides([f"system.chips={chips}", *sets]))


def small_block(layers: int = 8) -> list:
    """A small stack of identical layers (each stage gets whole layers)."""
    return parse_overrides([f"layers={layers}", "batch=8", "q_len=128", "kv_len=128"])


# -- the single-chip limit ------------------------------------------------------------------

@pytest.mark.parametrize("workload", ["gpt3_30b_layer_prefill.yaml", "dit_xl_2_block_512.yaml",
                                      "gpt3_30b_layer_decode.yaml", "llama3_8b.yaml", "dit_xl_2.yaml"])
def test_one_chip_system_equals_the_chip_exactly(workload):
    hw = load_hardware(TPUV4I, parse_overrides(["hbm.capacity=64 GiB"]))
    w = load_workload(WORKLOADS / workload, hw=hw)
    chip, whole = Simulator(hw).run(w), SystemSimulator(hw).run(w)
    assert chip.feasible and whole.feasible
    assert whole.latency_s == chip.latency_s
    assert whole.energy == chip.energy
    assert whole.traffic == chip.traffic
    assert (whole.macs, whole.utilization, whole.ici_bytes) == (chip.macs, chip.utilization, 0.0)
    assert whole.area == chip.area


# -- collectives and transfers against closed forms -----------------------------------------

@pytest.mark.parametrize("chips", [2, 3, 4, 8, 16])
@pytest.mark.parametrize("size", [1.0, 4096.0, 7.34e6, 2.1e9])
def test_ring_all_reduce_matches_the_closed_form(chips, size):
    for algorithm, directions in (("ring", 1), ("bidirectional_ring", 1 if chips == 2 else 2)):
        hw = system(chips, f"system.parallelism.tensor={chips}", f"system.collective_algorithm={algorithm}")
        # one way: the links to one neighbour; both ways (more than two chips): to both at once
        bandwidth = directions * hw.ici.link_bandwidth * (hw.ici.links // (1 if chips == 2 else 2))
        closed = 2 * (chips - 1) / chips * size / bandwidth + 2 * (chips - 1) * hw.ici.link_latency
        ring = topology_of(hw)
        got = ring.all_reduce(size, range(chips))
        assert got.time_s == pytest.approx(closed, rel=1e-12)
        assert got.sent_per_chip == pytest.approx(2 * (chips - 1) / chips * size, rel=1e-12)
        gather = ring.all_gather(size, range(chips))
        assert gather.time_s == pytest.approx((chips - 1) / chips * size / bandwidth + (chips - 1) * hw.ici.link_latency)


def test_torus_and_switch_collectives_match_their_closed_forms():
    hw = system(16, "system.topology={kind: torus2d, shape: [4, 4]}", "ici.links=4", "system.parallelism.tensor=16")
    torus = topology_of(hw)
    size, b, a = 64e6, hw.ici.link_bandwidth, hw.ici.link_latency  # 4 links, 4 neighbours: 1 link each
    # bidirectional rings: half of each chunk goes each way, over the links to both neighbours
    row = 3 * (a + size / 4 / (2 * b))  # reduce-scatter (or all-gather) along a row of 4
    column = 2 * 3 * (a + size / 16 / (2 * b))  # all-reduce of a quarter along a column of 4
    assert torus.all_reduce(size, range(16)).time_s == pytest.approx(2 * row + column, rel=1e-12)
    assert torus.all_reduce(size, range(4)).time_s == pytest.approx(2 * 3 * (a + size / 4 / (2 * b)), rel=1e-12)

    hw = system(8, "system.topology={kind: switch, latency: 300 ns, energy_per_byte: 1 pJ/B}",
                "system.parallelism.tensor=8")
    switch = topology_of(hw)
    inject = hw.ici.links * hw.ici.link_bandwidth
    closed = 2 * (7 / 8 * size / inject + 2 * a + 300e-9)
    assert switch.all_reduce(size, range(8)).time_s == pytest.approx(closed, rel=1e-12)


def test_an_all_reduce_op_costs_at_least_its_transfer():
    hw = system(4, "system.parallelism.tensor=4")
    result = simulate(hw, load_workload(PREFILL, hw=hw))
    reduces = [c for c in result.stages[0].ops if c.kind == "all_reduce"]
    assert [c.name for c in reduces] == ["block.attn.o.all_reduce", "block.mlp.fc2.all_reduce"]
    size = 8 * 1024 * 7168  # int8 activations [batch x tokens, hidden]
    transfer = topology_of(hw).all_reduce(size, range(4))
    for c in reduces:
        assert c.latency_s >= transfer.time_s and c.ici_bytes == transfer.sent_per_chip
        assert c.energy.ici == pytest.approx(transfer.energy_j / 4)  # this chip's share


# -- tensor-parallel lowering ---------------------------------------------------------------

@pytest.mark.parametrize("workload", ["gpt3_30b_layer_prefill.yaml", "llama3_8b.yaml", "dit_xl_2.yaml"])
def test_tensor_parallel_ranks_share_the_split_layers(workload):
    whole = summarize(load_workload(WORKLOADS / workload))
    hw = system(4, "system.parallelism.tensor=4")
    rank = summarize(load_workload(WORKLOADS / workload, hw=hw))
    # the split GEMMs and attention divide by 4; embeddings, heads and adaLN stay whole
    assert whole.macs / 4 <= rank.macs < whole.macs / 2
    assert rank.weight_bytes < whole.weight_bytes / 2


def test_gqa_kv_heads_split_or_replicate():
    one = summarize(load_workload(WORKLOADS / "llama3_8b.yaml"))  # 8 KV heads
    for tp, kv_share in ((8, 8), (16, 8)):  # 16 ranks: each keeps a replica of one KV head
        hw = system(tp, f"system.parallelism.tensor={tp}", "ici.links=2")
        rank = summarize(load_workload(WORKLOADS / "llama3_8b.yaml", hw=hw))
        assert rank.cache_bytes == pytest.approx(one.cache_bytes / kv_share)


# -- the pipeline schedule ------------------------------------------------------------------

@pytest.mark.parametrize("p,m", [(2, 1), (2, 8), (4, 4), (4, 16), (8, 3)])
def test_balanced_pipeline_bubble_is_p_minus_1_over_m_plus_p_minus_1(p, m):
    t = 1.7e-3
    schedule = phase_schedule([StageTime(t, 0.0)] * p, (0.0,) * (p - 1), 0.0, m, 1)
    assert schedule.total_s == pytest.approx((m + p - 1) * t, rel=1e-12)
    bubble = 1 - m * t / schedule.total_s
    assert bubble == pytest.approx((p - 1) / (m + p - 1), rel=1e-9)


@pytest.mark.parametrize("p,m", [(2, 4), (4, 8)])
def test_pipelined_system_shows_the_bubble(p, m):
    """A stack of identical layers over p chips with free links: the measured idle fraction
    is the closed form's."""
    hw = system(p, f"system.parallelism.pipeline={p}", f"system.parallelism.micro_batches={m}",
                "ici.link_bandwidth=1 EB/s", "ici.link_latency=0 s")
    result = simulate(hw, load_workload(PREFILL, small_block(8), hw=hw))
    assert result.split.layers == (8 // p,) * p
    assert result.bubble_fraction == pytest.approx((p - 1) / (m + p - 1), rel=1e-6)


def test_repeats_wait_for_the_previous_result():
    t, p = 1e-3, 4
    few = phase_schedule([StageTime(t, 0.0)] * p, (0.0,) * (p - 1), 0.0, 2, 10)
    assert few.step_s == pytest.approx(p * t)  # 2 micro-batches cannot fill 4 stages
    many = phase_schedule([StageTime(t, 0.0)] * p, (0.0,) * (p - 1), 0.0, 8, 10)
    assert many.step_s == pytest.approx(8 * t)  # the stages are the bottleneck


def test_overlap_of_collectives_needs_micro_batches():
    stage = StageTime(total_s=3.0, collective_s=1.0)
    assert stage.occupancy(1) == 3.0 and stage.occupancy(2) == 2.0


@settings(max_examples=25, deadline=None)
@given(st.sampled_from([(2, 1, 1), (4, 1, 4), (1, 4, 1), (2, 2, 2)]),
       st.floats(1e9, 1e12), st.floats(1.01, 100.0))
def test_more_link_bandwidth_never_slows_a_run(mapping, bandwidth, factor):
    pp, tp, m = mapping
    runs = []
    for bw in (bandwidth, bandwidth * factor):
        hw = system(pp * tp, f"system.parallelism.pipeline={pp}", f"system.parallelism.tensor={tp}",
                    f"system.parallelism.micro_batches={m}", f"ici.link_bandwidth={bw} B/s")
        runs.append(simulate(hw, load_workload(PREFILL, small_block(4), hw=hw)).latency_s)
    assert runs[1] <= runs[0] * (1 + 1e-12)


def test_layers_are_balanced_with_the_head_on_the_last_stage():
    hw = system(2, "system.parallelism.pipeline=2", "hbm.capacity=64 GiB")
    result = simulate(hw, load_workload(WORKLOADS / "gpt3_30b.yaml", parse_overrides(["output_len=4"]), hw=hw))
    assert sum(result.split.layers) == 48 and abs(result.split.layers[0] - result.split.layers[1]) <= 2
    first, last = ({c.name for c in s.ops} for s in result.stages)
    assert "embed" in first and "lm_head" in last and "lm_head" not in first


# -- capacity per chip ----------------------------------------------------------------------

def test_llama2_7b_bf16_needs_two_tpuv4i():
    one = simulate(load_hardware(TPUV4I), load_workload(WORKLOADS / "llama2_7b.yaml"))
    assert not one.feasible and "GiB missing" in one.reason and "8 GiB" in one.reason
    for mapping in ("system.parallelism.pipeline=2", "system.parallelism.tensor=2"):
        hw = system(2, mapping)
        two = simulate(hw, load_workload(WORKLOADS / "llama2_7b.yaml", hw=hw))
        assert two.feasible, two.reason


def test_a_stage_that_does_not_fit_says_where_and_how_much():
    hw = system(2, "system.parallelism.pipeline=2")
    result = simulate(hw, load_workload(WORKLOADS / "gpt3_30b.yaml", hw=hw))
    assert not result.feasible
    assert result.reason.startswith("pipeline stage 0 (chip 0): needs ") and "GiB missing" in result.reason


def test_micro_batches_keep_every_kv_cache():
    hw1 = system(2, "system.parallelism.pipeline=2")
    hw8 = system(2, "system.parallelism.pipeline=2", "system.parallelism.micro_batches=8")
    w = WORKLOADS / "gpt3_30b_layer_decode.yaml"
    one = simulate(hw1, load_workload(w, hw=hw1)).stages[0].workload.tensors()
    eight = simulate(hw8, load_workload(w, hw=hw8)).stages[0].workload.tensors()
    caches = [n for n, t in one.items() if t.role.value == "kv_cache"]
    assert caches and all(eight[n].total_bytes == one[n].total_bytes for n in caches)  # 8 x 1/8 of the batch


# -- commands and config errors -------------------------------------------------------------

def test_run_reports_the_system_and_writes_chip_and_link_tracks(tmp_path):
    trace = tmp_path / "t.json"
    out = run_cli("run", str(HW / "systems" / "tpuv4i_x4_pipeline.yaml"), str(DIT_BLOCK), "--json", "--trace", str(trace))
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["system"]["chips"] == 4 and len(data["system"]["stages"]) == 4
    assert 0 < data["system"]["link_utilization"] < 1 and data["ici_bytes"] > 0
    names = {e["args"]["name"] for e in json.loads(trace.read_text())["traceEvents"] if e.get("name") == "thread_name"}
    assert {"chip 0 (stage 0)", "chip 3 (stage 3)", "link stage 2 -> 3"} <= names


@pytest.mark.parametrize("sets,message", [
    (["system.chips=4"], "parallelism: pipeline 1 x tensor 1 x data 1 = 1 chips, but the system has 4"),
    (["system.chips=4", "system.parallelism.pipeline=4", "system.topology={kind: torus2d, shape: [3, 2]}"],
     "topology.shape: 3 x 2 = 6 chips"),
    (["system.chips=4", "system.parallelism.pipeline=4", "ici.links=1"], "ici.links: 1 links per chip, but a ring of 4 chips needs 2"),
    (["system.chips=2", "system.parallelism.data=2", "system.parallelism.micro_batches=3"], "batch 8 cannot be split into 6"),
    (["system.topology={kind: mesh}"], "system.topology"),
])
def test_bad_systems_are_clear_errors(sets, message):
    args = [a for s in sets for a in ("--set", s)]
    out = run_cli("run", str(TPUV4I), str(PREFILL), *args)
    assert out.returncode == 2, out.stderr
    assert message in out.stderr and "Traceback" not in out.stderr


# -- regressions from review ----------------------------------------------------------------

def test_collective_energy_is_per_byte_hop_whatever_the_topology():
    size = 64e6
    ring = topology_of(system(4, "system.parallelism.tensor=4"))
    torus = topology_of(system(4, "system.topology={kind: torus2d, shape: [2, 2]}", "system.parallelism.tensor=4"))
    # a 2x2 torus all-reduce moves the same bytes over single hops as a 4-ring: 4 chips x 6 x S/4
    expected = 4 * 6 * size / 4 * ring.energy_per_byte
    assert ring.all_reduce(size, range(4)).energy_j == pytest.approx(expected)
    assert torus.all_reduce(size, range(4)).energy_j == pytest.approx(expected)


@pytest.mark.parametrize("sets", [
    ("system.parallelism.tensor=4", "system.parallelism.micro_batches=2"),
    ("system.topology={kind: torus2d, shape: [2, 2]}", "system.parallelism.tensor=2",
     "system.parallelism.pipeline=2", "system.parallelism.micro_batches=4"),
])
def test_chips_are_never_busier_than_the_run_is_long(sets):
    hw = system(4, *sets)
    result = simulate(hw, load_workload(PREFILL, hw=hw))
    assert all(busy <= result.latency_s * (1 + 1e-12) for busy in result.stage_busy_s)


def test_unsupported_splits_are_clear():
    hw = system(4, "system.parallelism.pipeline=4")
    result = simulate(hw, load_workload(PREFILL, parse_overrides(["layers=2"]), hw=hw))
    assert not result.feasible and "2 layer(s) cannot be split into 4 pipeline stages" in result.reason
    out = run_cli("run", str(TPUV4I), str(WORKLOADS / "dit_xl_2.yaml"), "--schedule", "toca",
                  "--set", "system.chips=2", "--set", "system.parallelism.tensor=2")
    assert out.returncode == 2 and "not lowered for tensor parallelism" in out.stderr
