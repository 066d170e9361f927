"""The fusion pass (issue 18) pinned against hand calculations: which ops each rule fuses into
which and which tensors leave the graph (``archsim.passes.fusion``), a fused op's cost on a
TPU-style chip and on a GPU (archsim/sim/fused.py, archsim/gpu/fused.py: the main op's own cost
plus the epilogue's vector time and extra reads), and what holds on every bundled workload
(no memory level's traffic grows, MACs unchanged, profile ``none`` the workload itself).

Expected numbers are worked out in the comments from the model as its docstrings state it. The
chips: tests/data/tpuv4i_plain.yaml (1.05 GHz; VPU 1024 lanes x 2 ALU ops a cycle, a
transcendental 2 cycles a lane, no pass cost or padding; VMEM 13.5 TB/s; HBM 614 GB/s at
efficiency 1, 555 ns) and tests/data/gpu_plain.yaml (4 SMs at 1 GHz: 256e9 ALU ops/s and 64e9
transcendentals/s; L2 400 GB/s; HBM 100 GB/s, 500 ns). Neither has a dispatch cost.
"""

from __future__ import annotations

from types import MappingProxyType

import pytest

from archsim import api
from archsim.api import load_hardware
from archsim.config.compiler import FUSION_RULES
from archsim.dtypes import DType
from archsim.gpu.engine import GpuSimulator
from archsim.hw.energy import EnergyModel
from archsim.hw.memory import Level, Placement
from archsim.ir import ops
from archsim.ir.fused import Fused, FusedCacheWrite, NormStats
from archsim.ir.graph import OpGraph, Phase, Workload
from archsim.ir.ops import Activation, Elementwise, FlashAttention, Gemm
from archsim.ir.tensor import Role, Tensor
from archsim.ir.transformer import BlockShape, Builder, Precision, Tokens, transformer_block
from archsim.passes import clear_passes, compile_for, flash_attention, fuse
from archsim.sim.engine import Simulator
from archsim.hw.leakage import static_power
from tests.conftest import HW, ROOT, TPUV4I, TPUV4I_PLAIN, WORKLOADS, run_cli

GPU_PLAIN = ROOT / "tests" / "data" / "gpu_plain.yaml"
A100 = HW / "a100_80gb.yaml"
BF16 = DType.BF16
REL = 1e-12
NS, US = 1e-9, 1e-6
TPU_CLOCK, TPU_HBM, TPU_VMEM, TPU_LAT = 1.05e9, 614e9, 13.5e12, 555 * NS
ALL = tuple(FUSION_RULES)


def block(gated=False, cache=False, norm="layernorm", rows=8) -> Workload:
    """One pre-norm transformer block: hidden 64, 4 heads, ffn 256 (gated: silu), ``rows`` tokens
    (decode with a 16-entry KV cache when ``cache``)."""
    shape = BlockShape(64, 4, 4, 256, activation="silu" if gated else "gelu", gated=gated, norm=norm)
    tokens = Tokens(1, rows, 16, kv_cache=True) if cache else Tokens(1, rows, rows)
    graph = OpGraph()
    transformer_block(Builder(graph, "b", Precision()), shape, tokens)
    return Workload("block", (Phase("p", graph),))


def graph_of(w: Workload) -> dict[str, ops.Op]:
    return {op.name: op for op in w.phases[0].graph.ops()}


def members(op) -> list[str]:
    return [m.name for m in op.members]


# -- the pass: which ops fuse into which -------------------------------------------------------

def test_gemm_epilogue_fuses_activation_and_residual_adds():
    w = block()
    out = graph_of(fuse(w, ("gemm_epilogue",)))
    fc1, o, fc2 = out["b.mlp.fc1"], out["b.attn.o"], out["b.mlp.fc2"]
    assert members(fc1) == ["b.mlp.fc1", "b.mlp.act"] and fc1.rule == "gemm_epilogue"
    assert members(o) == ["b.attn.o", "b.residual1"] and members(fc2) == ["b.mlp.fc2", "b.residual2"]
    # inputs: the GEMM's, then the residual's other operand; output: the last member's
    assert [t.name for t in o.inputs] == ["b.attn.context", "b.attn.o.weight", "b.in"]
    assert [t.name for t in o.extra_inputs] == ["b.in"] and o.outputs[0].name == "b.residual1.out"
    # kind and unit are the GEMM's (one GEMM launch); MACs the GEMM's; work all members'
    assert (fc1.kind, fc1.unit, fc1.macs) == ("gemm", ops.Unit.MXU, 8 * 64 * 256)
    act = graph_of(w)["b.mlp.act"]
    assert fc1.vector_work == act.vector_work and fc1.epilogue_work == act.vector_work
    # the intermediates are gone; the norms, q/k/v, attention unchanged
    tensors = fuse(w, ("gemm_epilogue",)).tensors()
    assert not {"b.mlp.fc1.out", "b.attn.o.out", "b.mlp.fc2.out"} & set(tensors)
    assert len(out) == len(graph_of(w)) - 3
    assert fuse(w, ("gemm_epilogue",)).macs == w.macs


def test_gated_mlp_fuses_silu_and_the_gating_multiply_reading_up():
    out = graph_of(fuse(block(gated=True), ("gemm_epilogue",)))
    gate = out["b.mlp.gate"]
    assert members(gate) == ["b.mlp.gate", "b.mlp.act", "b.mlp.gated"]
    assert [t.name for t in gate.extra_inputs] == ["b.mlp.up.out"]  # up read by the fused kernel
    assert gate.rule == "gemm_epilogue" and "b.mlp.up" in out and not isinstance(out["b.mlp.up"], Fused)
    # placed at its last member's position: after up, which produces its extra input
    names = list(out)
    assert names.index("b.mlp.up") < names.index("b.mlp.gate") < names.index("b.mlp.down")


def test_gemm_activation_takes_one_relu_or_gelu_only():
    plain = graph_of(fuse(block(), ("gemm_activation",)))
    assert members(plain["b.mlp.fc1"]) == ["b.mlp.fc1", "b.mlp.act"] and plain["b.mlp.fc1"].rule == "gemm_activation"
    assert not isinstance(plain["b.attn.o"], Fused)  # a residual add is not a cuBLASLt epilogue
    gated = block(gated=True)
    assert fuse(gated, ("gemm_activation",)) is gated  # silu is not one either: nothing fuses


def test_cache_epilogue_writes_the_projection_into_the_cache():
    w = block(cache=True)
    out = graph_of(fuse(w, ("cache_epilogue",)))
    k = out["b.attn.k"]
    assert isinstance(k, FusedCacheWrite) and isinstance(k, ops.CacheWrite)
    assert members(k) == ["b.attn.k", "b.attn.k_append"] and k.outputs[0].name == "b.attn.k_cache"
    # the bytes written are the new entries' (8 tokens x 64 bf16), not the cache's 16 entries
    assert k.written_bytes == 8 * 64 * 2 and k.outputs[0].bytes == 16 * 64 * 2
    assert "b.attn.k.out" not in fuse(w, ("cache_epilogue",)).tensors()
    assert "b.attn.k_append" not in out and "b.attn.v_append" not in out
    # a cache write of a vector op's output is left alone
    y, z, cache = Tensor("y", (8, 64), BF16), Tensor("z", (8, 64), BF16), Tensor("c", (16, 64), BF16, Role.KV_CACHE)
    act = Workload("w", (Phase("p", OpGraph([Activation("act", (y,), (z,), 8, 64, "gelu"),
                                             ops.CacheWrite("put", (z,), (cache,))])),))
    assert fuse(act, ("cache_epilogue", "vector_chain")) is act


def test_vector_chain_fuses_element_wise_consumers_and_a_prologue():
    out = graph_of(fuse(block(gated=True), ("vector_chain",)))
    act = out["b.mlp.act"]  # silu and the multiply by up: one pass (vLLM's silu_and_mul)
    assert members(act) == ["b.mlp.act", "b.mlp.gated"] and act.rule == "vector_chain"
    assert (act.kind, act.unit) == ("activation", ops.Unit.VPU)
    # a residual add read only by a norm: the norm's prologue, duplicated into its passes
    x, y = Tensor("x", (8, 64), BF16), Tensor("y", (8, 64), BF16)
    h, n = Tensor("h", (8, 64), BF16), Tensor("n", (8, 64), BF16)
    add = Elementwise("add", (x, y), (h,), 8, 64, "add")
    norm = ops.RMSNorm("norm", (h,), (n,), 8, 64)
    small = Workload("w", (Phase("p", OpGraph([add, norm])),))
    fused, = fuse(small, ("vector_chain",)).phases[0].graph.ops()
    assert fused.name == "norm" and fused.prologue == (add,) and fused.epilogue == ()
    assert fused.main_inputs == (x,) and fused.extra_reads == ((y, 2),)  # y in each of the 2 passes
    # work: the add (512 ALU) once per pass, and the norm's own
    assert fused.epilogue_work == ops.VectorWork(2 * 512, 0)
    assert fused.vector_work.alu == norm.vector_work.alu + 1024
    # no more bytes than apart: 2 passes x 2 inputs = 4 tensors read, against 2 + h written + 2 h read
    ln = ops.LayerNorm("norm", (h,), (n,), 8, 64)
    three = Elementwise("add", (x, y, Tensor("g", (8, 64), BF16)), (h,), 8, 64, "axpby")
    # layernorm's 3 passes over a 3-input op: 9 tensors read against 3 + 1 + 3: left alone
    w3 = Workload("w", (Phase("p", OpGraph([three, ln])),))
    assert fuse(w3, ("vector_chain",)) is w3


def test_norm_prologue_splits_the_norm_into_stats_and_gemm_prologues():
    w = block()
    out = graph_of(fuse(w, ("norm_prologue",)))
    stats = out["b.norm1.stats"]
    assert isinstance(stats, NormStats) and stats.kind == "layernorm"
    assert [t.name for t in stats.inputs] == ["b.in"] and stats.outputs[0].shape == (8, 2)  # mean, 1/std
    assert len(stats.passes) == 2  # layernorm's two reductions; the normalise pass moved
    for name in ("b.attn.q", "b.attn.k", "b.attn.v"):
        gemm = out[name]
        assert members(gemm) == ["b.norm1", name] and gemm.rule == "norm_prologue"
        assert [t.name for t in gemm.inputs] == ["b.in", f"{name}.weight", "b.norm1.out.stats"]
        # the normalise pass (4 ALU ops an element, an rsqrt a row) recomputed per GEMM
        assert gemm.epilogue_work == ops.VectorWork(4 * 512, 8, (("rsqrt", 8),))
    assert "b.norm1" not in out and "b.norm1.out" not in fuse(w, ("norm_prologue",)).tensors()
    # with gemm_epilogue too: fc1 has both a prologue and the gelu
    both = graph_of(fuse(w, ("gemm_epilogue", "norm_prologue")))
    assert members(both["b.mlp.fc1"]) == ["b.norm2", "b.mlp.fc1", "b.mlp.act"]
    assert both["b.mlp.fc1"].rule == "norm_prologue+gemm_epilogue"
    # a norm that a GEMM and another op read stays whole
    x, n, a, wt = (Tensor("x", (8, 64), BF16), Tensor("n", (8, 64), BF16), Tensor("a", (8, 64), BF16),
                   Tensor("w", (64, 64), BF16, Role.WEIGHT))
    mixed = Workload("w", (Phase("p", OpGraph([
        ops.RMSNorm("norm", (x,), (n,), 8, 64), Gemm("g", (n, wt), (Tensor("y", (8, 64), BF16),), 1, 8, 64, 64, False),
        Activation("act", (n,), (a,), 8, 64, "gelu")])),))
    assert fuse(mixed, ("norm_prologue",)) is mixed


def test_an_intermediate_with_a_second_reader_or_other_layers_does_not_fuse():
    a, wt = Tensor("a", (8, 64), BF16), Tensor("w", (64, 64), BF16, Role.WEIGHT)
    y, z, u = Tensor("y", (8, 64), BF16), Tensor("z", (8, 64), BF16), Tensor("u", (8, 64), BF16)
    gemm = Gemm("g", (a, wt), (y,), 1, 8, 64, 64, False)
    twice = Workload("w", (Phase("p", OpGraph([gemm, Activation("act", (y,), (z,), 8, 64, "gelu"),
                                                 Elementwise("add", (y, z), (u,), 8, 64, "add")])),))
    assert fuse(twice, ("gemm_epilogue",)) is twice  # y is read twice: the GEMM keeps it
    g, act = fuse(twice, ALL).phases[0].graph.ops()  # the gelu and the add still chain: z has one reader
    assert g is gemm and members(act) == ["act", "add"] and [t.name for t in act.inputs] == ["y", "y"]
    stacked = Activation("act", (y,), (Tensor("z", (8, 64), BF16, copies=2),), 8, 64, "gelu", copies=2)
    other = Workload("w", (Phase("p", OpGraph([gemm, stacked])),))
    assert fuse(other, ALL) is other  # a stack of 2 after a single op


def test_signature_ignores_names_but_not_where_tensors_sit():
    def fused(prefix, swap=False):
        a, wt = Tensor(f"{prefix}a", (8, 64), BF16), Tensor(f"{prefix}w", (64, 64), BF16, Role.WEIGHT)
        y, x, z = (Tensor(f"{prefix}{n}", (8, 64), BF16) for n in "yxz")
        add = Elementwise(f"{prefix}add", (x, y) if swap else (y, x), (z,), 8, 64, "add")
        w = Workload("w", (Phase("p", OpGraph([Gemm(f"{prefix}g", (a, wt), (y,), 1, 8, 64, 64, False), add])),))
        return next(fuse(w, ("gemm_epilogue",)).phases[0].graph.ops())

    assert fused("p.").signature == fused("q.").signature
    assert fused("p.").signature != fused("p.", swap=True).signature


# -- costs: a GEMM + gelu on each chip kind ------------------------------------------------------

def gemm_gelu(m, k, n, residual=False):
    """A GEMM [m, k] x [k, n] then gelu (or a residual add) as one fused op, and the two apart."""
    a, wt = Tensor("a", (m, k), BF16), Tensor("w", (k, n), BF16, Role.WEIGHT)
    y, z = Tensor("y", (m, n), BF16), Tensor("z", (m, n), BF16)
    gemm = Gemm("g", (a, wt), (y,), 1, m, k, n, False)
    after = (Elementwise("add", (Tensor("x", (m, n), BF16), y), (z,), m, n, "add") if residual
             else Activation("act", (y,), (z,), m, n, "gelu"))
    w = Workload("w", (Phase("p", OpGraph([gemm, after])),))
    fused, = fuse(w, ("gemm_epilogue",)).phases[0].graph.ops()
    return fused, gemm, after


def in_hbm(op):
    return Placement(MappingProxyType({name: Level.HBM for name in op.tensor_names}), (), True)


def tpu(op, *sets):
    return Simulator(load_hardware(TPUV4I_PLAIN, list(sets))).op_cost(op, in_hbm(op), "p", 1)


@pytest.mark.parametrize("lanes", [1024, 1])
def test_tpu_fused_gemm_gelu(lanes):
    # 8 x 4096 x 4096 bf16, all in HBM: A 64 KiB + W 32 MiB read, C 64 KiB written: 54.862 us at
    # 614 GB/s, more than the arrays' 33,029 cycles (31.456 us; the fold count of
    # tests/test_values_memory.py's memory-bound GEMM): latency 555 ns + 54.862 us
    fused, gemm, act = gemm_gelu(8, 4096, 4096)
    sets = () if lanes == 1024 else ("vpu.lanes=1",)
    main = tpu(gemm, *sets)
    a, w, c = 65_536, 33_554_432, 65_536
    hbm = (a + w + c) / TPU_HBM
    assert main.memory_s == pytest.approx(hbm, rel=REL) and main.latency_s == pytest.approx(TPU_LAT + hbm, rel=REL)
    arrays = 33_029 / TPU_CLOCK
    assert main.compute_s == pytest.approx(arrays, rel=REL)
    # gelu over 32,768 elements: 8 ALU ops and a tanh each: 262,144 + 32,768 = 294,912 ops
    cost = tpu(fused, *sets)
    assert cost.vector_ops == 294_912 == act.vector_work.alu + act.vector_work.special
    # 1024 lanes: 262,144 / 2048 + 32,768 x 2 / 1024 = 192 cycles, hidden beside the arrays;
    # 1 lane: 131,072 + 65,536 = 196,608 cycles (187.246 us), outlasting HBM's 54.862 us
    epi = (192 if lanes == 1024 else 196_608) / TPU_CLOCK
    assert cost.compute_s == pytest.approx(max(arrays, epi), rel=REL)
    assert cost.latency_s == pytest.approx(TPU_LAT + hbm + max(0.0, epi - hbm), rel=REL)
    # HBM: the GEMM's bytes alone; apart, gelu also reads and writes C
    assert (cost.traffic.hbm_read, cost.traffic.hbm_write) == (a + w, c)
    apart = tpu(act, *sets)
    assert (apart.traffic.hbm_read, apart.traffic.hbm_write) == (c, c)
    assert cost.latency_s < main.latency_s + apart.latency_s
    # busy: the MXUs' arrays, the VPU's epilogue, the channels; one row named after the GEMM
    assert cost.busy[:2] == (("mxu", pytest.approx(arrays, rel=REL)), ("vpu", pytest.approx(epi, rel=REL)))
    assert (cost.name, cost.kind, cost.macs) == ("g", "gemm", 8 * 4096 * 4096)
    assert cost.tiling.endswith(" + gelu") and cost.bottleneck == ("hbm" if lanes == 1024 else "vpu")
    # energy: the GEMM's, plus the gelu's vector work and static power over the added time
    hw = load_hardware(TPUV4I_PLAIN, list(sets))
    model = EnergyModel.of(hw)
    assert cost.energy.vpu == pytest.approx(262_144 * model.vpu_alu + 32_768 * model.vpu_special, rel=REL)
    assert cost.energy.static == pytest.approx(static_power(hw) * cost.latency_s, rel=REL)
    assert cost.energy.hbm == pytest.approx(main.energy.hbm, rel=REL)


def test_tpu_gemm_epilogue_pays_the_pass_cost_per_vector_register():
    # the calibrated chip's cost per vector register of a pass (pass_cycles_per_vreg 12 on
    # TPUv4i, [V3FIT]) applies to the epilogue's one pass over the 8 x 4096 output: 32,768
    # elements / 1024 lanes = 32 registers x 12 = 384 cycles, beside the arrays' 33,029
    fused, _, _ = gemm_gelu(8, 4096, 4096)
    cost = tpu(fused, "vpu.pass_cycles_per_vreg=12")
    epi = (192 + 384) / TPU_CLOCK
    assert dict(cost.busy)["vpu"] == pytest.approx(epi, rel=REL)
    # the same in a vector chain joins the producer's last pass: no second per-register cost
    # (tested above with the plain chip: test_tpu_vector_chain_adds_the_epilogue_to_the_pass)


def test_tpu_fused_gemm_residual_reads_its_operand_through_vmem():
    # the same GEMM + a residual add of x (64 KiB in HBM): x read from HBM into VMEM and by the
    # VPU; HBM's time grows by 65,536 / 614e9 = 106.7 ns, the latency with it (memory-bound)
    fused, gemm, _ = gemm_gelu(8, 4096, 4096, residual=True)
    main, cost = tpu(gemm), tpu(fused)
    x = 65_536
    assert cost.traffic.hbm_read - main.traffic.hbm_read == x
    assert (cost.traffic.vmem_read - main.traffic.vmem_read, cost.traffic.vmem_write - main.traffic.vmem_write) == (x, x)
    assert cost.latency_s == pytest.approx(main.latency_s + x / TPU_HBM, rel=REL)
    assert cost.memory_s == pytest.approx(main.memory_s + x / TPU_HBM, rel=REL)
    assert cost.vector_ops == 32_768  # one add an element


def test_fused_ops_alike_in_their_core_cost_it_once(monkeypatch):
    """The residual GEMM with x in HBM and then in CMEM: the GEMM itself (its tensors in HBM
    both times) is costed once, and each fused cost is the one costed with every cache cleared."""
    from archsim.sim import engine

    fused, gemm, _ = gemm_gelu(8, 4096, 4096, residual=True)
    sim = Simulator(load_hardware(TPUV4I, []))
    homes = [in_hbm(fused), Placement(MappingProxyType({**in_hbm(fused).home, "x": Level.CMEM}), (), True)]
    fresh = []
    for home in homes:
        engine.clear_caches()
        fresh.append(sim.op_cost(fused, home, "p", 1))
    engine.clear_caches()
    cores = []
    real = Simulator._cost

    def counting(self, op, placement, phase, repeat):
        if not isinstance(op, Fused):
            cores.append(op.name)
        return real(self, op, placement, phase, repeat)

    monkeypatch.setattr(Simulator, "_cost", counting)
    shared = [sim.op_cost(fused, home, "p", 1) for home in homes]
    assert cores == ["g"]  # the second fused op read the first's core
    assert shared == fresh and shared[0] != shared[1]
    assert shared[1].traffic.cmem_read == 65_536 and shared[0].traffic.cmem_read == 0


def test_fused_epilogues_kept_across_chips_are_those_costed_afresh():
    """The epilogue's vector time and extra traffic are kept by the vector unit, the clock and
    the extra input's home (``fused._epilogue``): the residual GEMM on chips differing in HBM
    bandwidth, in the VPU's pass cost and in the clock, with x in HBM and in CMEM, costed one
    after another, each equal to its cost with every cache cleared."""
    from archsim.sim import engine

    fused, _, _ = gemm_gelu(8, 4096, 4096, residual=True)
    homes = [in_hbm(fused), Placement(MappingProxyType({**in_hbm(fused).home, "x": Level.CMEM}), (), True)]
    chips = [[], ["hbm.bandwidth=1.2 TB/s"], ["vpu.pass_cycles_per_vreg=24"], ["clock=2 GHz"]]
    fresh = {}
    for i, sets in enumerate(chips):
        for j, home in enumerate(homes):
            engine.clear_caches()
            fresh[i, j] = Simulator(load_hardware(TPUV4I, sets)).op_cost(fused, home, "p", 1)
    engine.clear_caches()
    shared = {(i, j): Simulator(load_hardware(TPUV4I, sets)).op_cost(fused, home, "p", 1)
              for i, sets in enumerate(chips) for j, home in enumerate(homes)}
    assert shared == fresh
    assert len({c.busy for c in fresh.values()}) == len(fresh)  # every chip and home its own


def test_tpu_vector_chain_adds_the_epilogue_to_the_pass():
    # silu [64, 1024] then a multiply by up: silu 3 ALU + exp + reciprocal an element:
    # 196,608 / 2048 + 131,072 x 2 / 1024 = 352 cycles (335.2 ns); the multiply's 65,536 / 2048
    # = 32 more. Apart, silu streams x in and its output out (2 x 128 KiB: 426.9 ns of HBM) in
    # 64 row blocks: 555 ns + max(426.9, 426.9 / 64 + 335.2) = 981.9 ns; fused, up's 128 KiB
    # more: HBM 640.4 ns against 384 cycles (365.7 ns): 981.9 + (640.4 - 426.9) ns
    t = 131_072
    x, up, s, out = (Tensor(n, (64, 1024), BF16) for n in ("x", "up", "s", "out"))
    silu = Activation("act", (x,), (s,), 64, 1024, "silu")
    mul = Elementwise("mul", (s, up), (out,), 64, 1024, "mul")
    fused, = fuse(Workload("w", (Phase("p", OpGraph([silu, mul])),)), ("vector_chain",)).phases[0].graph.ops()
    cost = tpu(fused)
    silu_alone = TPU_LAT + 2 * t / TPU_HBM
    assert tpu(silu).latency_s == pytest.approx(silu_alone, rel=REL)
    assert cost.compute_s == pytest.approx(384 / TPU_CLOCK, rel=REL)
    assert cost.latency_s == pytest.approx(silu_alone + t / TPU_HBM, rel=REL)
    assert (cost.traffic.hbm_read, cost.traffic.hbm_write) == (2 * t, t)
    assert cost.busy[0] == ("vpu", pytest.approx(384 / TPU_CLOCK, rel=REL))
    assert cost.latency_s < tpu(silu).latency_s + tpu(mul).latency_s


def test_tpu_vector_prologue_reads_its_operands_in_each_pass():
    # add(x, y) -> h -> rmsnorm [64, 1024] fused: each of the norm's 2 passes reads x and y
    # (t = 128 KiB each); the norm writes its output once. Alone (reading x), the norm's passes:
    # x (213.5 ns of HBM) against 64 cycles; x in, out out (427.0 ns) against 64 + 1 (64 rsqrt
    # at 2 cycles a lane over 1024 lanes, rounded up): 555 + 213.5 + 555 + 427.0 ns; fused, y
    # twice more: + 2t / 614 GB/s, the 64 cycles of the adds (2 x 65,536 / 2048) hidden
    t = 131_072
    x, y, h, n = (Tensor(name, (64, 1024), BF16) for name in "xyhn")
    add = Elementwise("add", (x, y), (h,), 64, 1024, "add")
    norm = ops.RMSNorm("norm", (h,), (n,), 64, 1024)
    fused, = fuse(Workload("w", (Phase("p", OpGraph([add, norm])),)), ("vector_chain",)).phases[0].graph.ops()
    cost = tpu(fused)
    alone = 2 * TPU_LAT + 3 * t / TPU_HBM
    assert cost.latency_s == pytest.approx(alone + 2 * t / TPU_HBM, rel=REL)
    assert (cost.traffic.hbm_read, cost.traffic.hbm_write) == (4 * t, t)  # apart: 4t read, 2t written
    assert cost.compute_cycles == 64 + 65 + 64
    assert cost.vector_ops == norm.vector_work.alu + norm.vector_work.special + 2 * 65_536


def test_tpu_cache_epilogue_writes_the_new_entries_into_the_cache():
    # 8 x 64 @ 64 x 64 bf16 into a 32-entry cache: the GEMM writes its 1 KiB output tile into the
    # cache's home (HBM), never the cache's 4 KiB; it reads A (1 KiB) and W (8 KiB) once
    a, wt = Tensor("a", (8, 64), BF16), Tensor("w", (64, 64), BF16, Role.WEIGHT)
    y, cache = Tensor("y", (8, 64), BF16), Tensor("cache", (32, 64), BF16, Role.KV_CACHE)
    w = Workload("w", (Phase("p", OpGraph([Gemm("k", (a, wt), (y,), 1, 8, 64, 64, False),
                                           ops.CacheWrite("put", (y,), (cache,))])),))
    fused, = fuse(w, ("cache_epilogue",)).phases[0].graph.ops()
    cost = tpu(fused)
    assert (cost.traffic.hbm_read, cost.traffic.hbm_write) == (1024 + 8192, 1024)
    assert cost.vector_ops == 0 and cost.tiling.endswith(" + cache write") and cost.kind == "gemm"
    # an int8 cache: the kernel writes the 512 int8 entries (the quantisation in its epilogue)
    int8 = Tensor("cache", (32, 64), DType.INT8, Role.KV_CACHE)
    w8 = Workload("w", (Phase("p", OpGraph([Gemm("k", (a, wt), (y,), 1, 8, 64, 64, False),
                                            ops.CacheWrite("put", (y,), (int8,))])),))
    fused8, = fuse(w8, ("cache_epilogue",)).phases[0].graph.ops()
    assert fused8.written_bytes == 512 and tpu(fused8).traffic.hbm_write == 512


@pytest.mark.parametrize("special", [16, 1])
def test_gpu_vector_chain_with_a_special_function_epilogue(special):
    # add(x, y) then gelu [64, 1024] as one kernel: x, y read (2 x 128 KiB) and the output written
    # from and to HBM at 100 GB/s: 3.93216 us; the add 65,536 / 256e9 = 0.256 us; gelu 524,288
    # ALU (2.048 us) and 65,536 tanh: 1.024 us at 64e9/s, hidden; at 4e9/s (1 a cycle a SM)
    # 16.384 us: the kernel's 0.256 + 16.384 us outlast HBM's
    x, y, h, z = (Tensor(name, (64, 1024), BF16) for name in "xyhz")
    w = Workload("w", (Phase("p", OpGraph([Elementwise("add", (x, y), (h,), 64, 1024, "add"),
                                           Activation("act", (h,), (z,), 64, 1024, "gelu")])),))
    fused, = fuse(w, ("vector_chain",)).phases[0].graph.ops()
    cost = gpu(fused, f"sm.special_ops_per_cycle={special}")
    compute = 0.256 + (2.048 if special == 16 else 16.384)
    assert cost.compute_s == pytest.approx(compute * US, rel=REL)
    assert cost.latency_s == pytest.approx((0.5 + max(3.93216, compute)) * US, rel=REL)
    assert cost.busy[0] == ("sm", pytest.approx(compute * US, rel=REL))


def gpu(op, *sets, warm=()):
    home = {n: Level.CMEM if n in warm else Level.HBM for n in op.tensor_names}
    hw = load_hardware(GPU_PLAIN, list(sets))
    return GpuSimulator(hw).op_cost(op, Placement(MappingProxyType(home), (), True), "p", 1)


@pytest.mark.parametrize("alu", [64, 1])
def test_gpu_fused_gemm_gelu(alu):
    # 64 x 4096 x 1024 bf16 (tests/test_gpu_model.py's decode GEMM): 64x64 tiles, one wave, 4 a
    # SM: tensor cores 65.536 us; HBM A 512 KiB + B 8 MiB read, C 128 KiB written: 90.43968 us;
    # latency 90.93968 us. gelu over 65,536 elements: 524,288 ALU ops and 65,536 tanh:
    # 64 ALU ops/cycle/SM: max(524,288 / 256e9, 65,536 / 64e9) = 2.048 us, beside the tensor
    # cores; 1 a cycle/SM (4e9/s): 131.072 us, past HBM's 90.43968: + 40.63232 us
    fused, gemm, act = gemm_gelu(64, 4096, 1024)
    sets = () if alu == 64 else ("sm.alu_ops_per_cycle=1",)
    main, cost = gpu(gemm, *sets), gpu(fused, *sets)
    assert main.latency_s == pytest.approx(90.93968 * US, rel=REL)
    epi = (2.048 if alu == 64 else 131.072) * US
    assert cost.compute_s == pytest.approx(max(65.536 * US, epi), rel=REL)
    assert cost.latency_s == pytest.approx((90.93968 + max(0.0, epi / US - 90.43968)) * US, rel=REL)
    assert cost.vector_ops == 589_824
    KiB, MiB = 1024, 1024 ** 2
    assert (cost.traffic.hbm_read, cost.traffic.hbm_write) == (512 * KiB + 8 * MiB, 128 * KiB)
    apart = gpu(act, *sets)  # apart: gelu reads and writes C again
    assert (apart.traffic.hbm_read, apart.traffic.hbm_write) == (128 * KiB, 128 * KiB)
    assert cost.busy[0] == ("sm", pytest.approx(max(65.536 * US, epi), rel=REL))
    assert (cost.kind, cost.name) == ("gemm", "g") and cost.tiling.endswith(" + gelu")


def test_gpu_fused_residual_reads_x_from_hbm_unless_warm():
    # + a residual add of x (128 KiB): from HBM 1.31072 us more (memory-bound); warm in L2,
    # only L2's 0.32768 us, hidden under HBM's time
    fused, gemm, _ = gemm_gelu(64, 4096, 1024, residual=True)
    main = gpu(gemm)
    cold, warm = gpu(fused), gpu(fused, warm=("x",))
    x = 131_072
    assert cold.traffic.hbm_read - main.traffic.hbm_read == x
    assert cold.traffic.cmem_read - main.traffic.cmem_read == x
    assert cold.latency_s == pytest.approx(main.latency_s + x / 100e9, rel=REL)
    assert warm.traffic.hbm_read == main.traffic.hbm_read and warm.latency_s == pytest.approx(main.latency_s, rel=REL)


# -- whole workloads ---------------------------------------------------------------------------

BUNDLED = sorted(p.name for p in WORKLOADS.glob("*.yaml"))


@pytest.mark.parametrize("name", BUNDLED)
def test_fusion_never_adds_traffic_nor_changes_macs(name):
    # each rule alone and all together, at one placement (every tensor in HBM) on the TPU-style
    # chip and with the GPU's own (HBM, activations handed over in L2): no level moves more
    w = api.load_workload(WORKLOADS / name)
    tpu_sim = Simulator(load_hardware(TPUV4I, ["compiler.profile=none"]))
    gpu_sim = GpuSimulator(load_hardware(A100, ["compiler.profile=none"]))
    before = {"tpu": tpu_sim.run_with(w, in_hbm_all(w)).traffic, "gpu": gpu_sim.run(w).traffic}
    for rules in [(r,) for r in ALL] + [ALL]:
        fw = fuse(w, rules)
        assert fw.macs == w.macs
        after = {"tpu": tpu_sim.run_with(fw, in_hbm_all(fw)).traffic, "gpu": gpu_sim.run(fw).traffic}
        for chip in before:
            for level in Level:  # reads and writes: a norm's stats read by each GEMM replace its output's write
                assert after[chip].total(level) <= before[chip].total(level) * (1 + 1e-12), (chip, rules, level)


def in_hbm_all(w):
    return Placement(MappingProxyType({n: Level.HBM for n in w.tensors()}), (), True)


def test_fusion_after_flash_attention_on_the_xla_profile():
    w = api.load_workload(WORKLOADS / "gpt3_30b_layer_prefill.yaml")
    hw = load_hardware(TPUV4I, ["compiler.profile=xla"])
    compiled = compile_for(hw, w)
    kinds = {type(op) for op in compiled.phases[0].graph.ops()}
    assert FlashAttention in kinds and Fused in kinds
    assert compile_for(hw, w) is compiled  # memoised
    clear_passes()
    assert compile_for(hw, w) is not compiled
    assert compiled.macs == flash_attention(w, hw.compiler.block).macs  # fusion keeps the kernels' MACs
    assert fuse(compiled, ()) is compiled


def test_profile_none_is_the_workload_itself_bit_for_bit():
    w = api.load_workload(WORKLOADS / "gpt3_30b_layer_decode.yaml")
    for path in (TPUV4I, A100):
        none = load_hardware(path, ["compiler.profile=none"])
        assert compile_for(none, w) is w
        off = load_hardware(path, ["compiler.fusion=[]", "compiler.flash_attention=false", "compiler.overlap=false"])
        assert compile_for(off, w) is w
        a, b = api.simulate(none, w), api.simulate(off, w)
        assert (a.latency_s, a.energy.total, a.traffic) == (b.latency_s, b.energy.total, b.traffic)


def test_a_bogus_fusion_rule_is_a_usage_error(tmp_path):
    layer = str(WORKLOADS / "llama2_7b_layer_decode.yaml")
    for chip in (TPUV4I, A100):
        r = run_cli("run", str(chip), layer, "--set", "compiler.fusion=[bogus]")
        assert r.returncode == 2 and "compiler.fusion" in r.stderr and "gemm_epilogue" in r.stderr, r.stderr
        path = tmp_path / f"{chip.stem}_bad.yaml"
        path.write_text(f"extends: {chip}\nname: bad\ncompiler: {{fusion: [bogus]}}\n")
        r = run_cli("run", str(path), layer)
        assert r.returncode == 2 and "compiler.fusion" in r.stderr and str(path) in r.stderr, r.stderr


def test_a_compiler_that_fuses_without_flash_attention_fuses():
    """``compile_for`` runs the fusion rules of a compiler whose flash attention is off (its
    passes are not only flash attention), and runs none for a compiler with neither."""
    clear_passes()
    work = block()
    fused = compile_for(load_hardware(TPUV4I, ["compiler.flash_attention=false"]), work)
    assert any(isinstance(op, Fused) for op in fused.phases[0].graph.ops())
    assert not any(isinstance(op, FlashAttention) for op in fused.phases[0].graph.ops())
    bare = load_hardware(TPUV4I, ["compiler.flash_attention=false", "compiler.fusion=[]"])
    assert compile_for(bare, work) is work
    clear_passes()
