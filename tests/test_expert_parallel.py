"""Expert parallelism (issue 20, MoE end to end): a mixture of experts' experts divided among
data-parallel replicas, tokens sent to their experts' chips and back by all-to-all; the
all-to-all's time and energy on each topology by hand."""

from __future__ import annotations

import json

import pytest
from conftest import ROOT, TPUV4I_PLAIN, run_cli

from archsim.api import load_hardware
from archsim.gpu.collectives import collective_time
from archsim.ir import ops
from archsim.ir.transformer import MoeShape, Precision, Tokens
from archsim.system.topology import topology_of
from archsim.workloads.hf import translate
from archsim.workloads.lm import LanguageModel, lm_forward

REL = 1e-12
ALPHA, B, E = 1e-6, 100e9, 40e-12  # TPUv4i's ICI: 1 us a hop, 100 GB/s a link, 5 pJ/bit
MIXTRAL = ROOT / "workloads" / "models" / "mixtral_8x7b.json"


def test_all_to_all_on_a_ring_by_hand():
    # 4 chips in a bidirectional ring, S bytes each, S/4 to each other chip: from every chip
    # the others are 1, 2 and 1 hops away (16 byte-hops of S/4 in all) over 8 directed links
    # of 100 GB/s; a chip's own 3 S/4 leave over its two links. The spread bounds: S/2 / B.
    ring = topology_of(load_hardware(TPUV4I_PLAIN, ["system.chips=4", "system.parallelism.data=4"]))
    s = 8e6
    t = ring.all_to_all(s, range(4))
    assert t.time_s == pytest.approx(2 * ALPHA + max(3 * s / 4 / (2 * B), 16 * s / 4 / (8 * B)), rel=REL)
    assert t.sent_per_chip == pytest.approx(3 * s / 4, rel=REL)
    assert t.energy_j == pytest.approx(16 * s / 4 * E, rel=REL)


def test_all_to_all_through_a_switch_by_hand():
    hw = load_hardware(ROOT / "hw_configs" / "systems" / "a100_80gb_x8.yaml",
                       ["system.parallelism.tensor=1", "system.parallelism.data=8"])
    switch = topology_of(hw)
    s, n = 7e6, 8
    bw = hw.nvlink.links * hw.nvlink.achievable_bandwidth  # 12 links at the fitted share of 25 GB/s
    t = switch.all_to_all(s, range(n))
    # two hops (1 us each: the NVLink latency) and the switch's 1 us, 7/8 of the buffer out of the links
    assert t.time_s == pytest.approx(2 * hw.nvlink.link_latency + 1e-6 + (n - 1) / n * s / bw, rel=REL)
    # NCCL's way: grouped sends at the fastest protocol's bus bandwidth, after its base latency
    c = collective_time(hw, "all_to_all", s, n)
    raw = hw.nvlink.links * hw.nvlink.achievable_bandwidth
    best = min(p.base_latency + (n - 1) / n * s / min(raw * p.bandwidth_share, p.max_bus_bandwidth or float("inf"))
               for p in hw.collectives.protocols.values())
    assert c.time_s == pytest.approx(best, rel=REL) and c.sent_per_gpu == pytest.approx(7 / 8 * s, rel=REL)


def small_moe(ep: int, rows: int = 16):
    fields, _ = translate({"model_type": "mixtral", "hidden_size": 64, "intermediate_size": 96,
                           "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
                           "vocab_size": 256, "num_local_experts": 8, "num_experts_per_tok": 2})
    model = LanguageModel(**fields)
    return lm_forward(model, Precision(), Tokens(1, rows, rows, kv_cache=True, causal=True), 1, "p", ep=ep)


def test_each_chip_holds_its_share_of_the_experts_and_sends_the_routed_rows():
    graph = small_moe(ep=4)
    experts = [op for op in graph.ops() if isinstance(op, ops.ExpertGemm)]
    assert {op.experts for op in experts} == {2}  # 8 experts over 4 chips
    # 16 tokens here and 48 on the others route to a chip's 2 experts: 2 (1 - (3/4)^64) = 2.0
    assert sum(op.batch for op in experts if op.name.startswith("layers.mlp.experts.gate")) == 2
    # the routed rows, 16 x 2, each way: 32 x 64 bf16 = 4096 bytes a layer
    a2a = [op for op in graph.ops() if isinstance(op, ops.AllToAll)]
    assert [op.name for op in a2a] == ["layers.mlp.dispatch.all_to_all", "layers.mlp.combine.all_to_all"]
    assert {op.bytes for op in a2a} == {32 * 64 * 2} and {op.group for op in a2a} == {4}
    # the routed MACs are the chip's own routed rows: 32 x 3 x 64 x 96 a layer, as without EP
    macs = lambda g: sum(op.macs * op.copies for op in g.ops() if isinstance(op, ops.ExpertGemm))  # noqa: E731
    assert macs(graph) == macs(small_moe(ep=1)) == 2 * 32 * 3 * 64 * 96


def test_expected_local_experts():
    moe = MoeShape(experts=64, top_k=2, ffn=1)
    # 8 ranks of 8 experts; 1 token a chip: 8 (1 - (62/64)^8) = 1.97 -> 2
    assert moe.active(1, 8) == 2 and moe.active(1000, 8) == 8 and moe.active(1, 1) == 2


def test_mixtral_on_eight_gpus_with_expert_parallelism():
    r = run_cli("run", str(ROOT / "hw_configs" / "systems" / "a100_80gb_x8.yaml"),
                str(ROOT / "workloads" / "mixtral_8x7b.yaml"), "--set", "system.parallelism.tensor=1",
                "--set", "system.parallelism.data=8", "--set", "system.parallelism.expert=8", "--json")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["feasible"]


@pytest.mark.parametrize("sets, message", [
    (["system.parallelism.tensor=1", "system.parallelism.data=8", "system.parallelism.expert=3"],
     "3 expert-parallel ranks do not divide the 8 data-parallel replicas"),
])
def test_bad_expert_parallel_mappings_exit_2(sets, message):
    args = [a for s in sets for a in ("--set", s)]
    r = run_cli("run", str(ROOT / "hw_configs" / "systems" / "a100_80gb_x8.yaml"),
                str(ROOT / "workloads" / "mixtral_8x7b.yaml"), *args)
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr


def test_expert_parallelism_needs_experts():
    r = run_cli("run", str(ROOT / "hw_configs" / "systems" / "a100_80gb_x8.yaml"),
                str(ROOT / "workloads" / "llama3_8b.yaml"), "--wset", "batch=8", "--set", "system.parallelism.tensor=1",
                "--set", "system.parallelism.data=8", "--set", "system.parallelism.expert=8")
    assert r.returncode == 2 and "has no mixture of experts to divide" in r.stderr


def test_an_expert_group_is_one_chip_of_each_replica():
    # chips numbered tensor rank first, then stage, then replica: with 2 stages x 2 ranks, the
    # replicas of chip 0 are chips 0, 4, 8, 12
    from archsim.dtypes import DType
    from archsim.ir.tensor import Tensor
    from archsim.sim.engine import collective_group

    hw = load_hardware(TPUV4I_PLAIN, ["system.chips=16", "system.parallelism.pipeline=2", "system.parallelism.tensor=2",
                                      "system.parallelism.data=4", "system.parallelism.expert=4",
                                      "system.topology={kind: switch, latency: 1 us, energy_per_byte: 1 pJ/bit}"])
    t = Tensor("x", (4, 4), DType.BF16)
    assert list(collective_group(hw, ops.AllToAll("a", (t,), (t,), 4))) == [0, 4, 8, 12]
    assert list(collective_group(hw, ops.AllReduce("r", (t,), (t,), 2))) == [0, 1]
