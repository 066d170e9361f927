"""The calibration mechanisms of issue 16 pinned against hand calculations: the dispatch cost
per op, achievable bandwidth fractions, the systolic weight load's rate and overlap, per-function
transcendental costs, and the ICI's efficiency. Each expected number is worked out in the
comment beside it from the model as its docstring states it."""

from __future__ import annotations

import pytest

from archsim.api import load_hardware
from archsim.config.loader import parse_overrides
from archsim.dtypes import DType
from archsim.errors import ArchsimError
from archsim.hw.matrix.systolic import Mapping, fold_cycles
from archsim.hw.vector import padded_row, vector_cycles
from archsim.ir.graph import OpGraph, Phase, Workload
from archsim.ir.ops import Elementwise, Gemm, LayerNorm, VectorWork
from archsim.hw.memory import Level
from archsim.ir.tensor import Role, Tensor
from archsim.sim.engine import Simulator
from archsim.system.topology import topology_of
from tests.conftest import HW, TPUV4I_PLAIN as TPUV4I

TPUV3 = HW / "tpuv3.yaml"
F32, BF16 = DType.FP32, DType.BF16
REL = 1e-12


def hw(path=TPUV4I, *sets):
    return load_hardware(path, parse_overrides(list(sets)))


def one(op) -> Workload:
    return Workload("w", (Phase("p", OpGraph([op])),))


def add_op(rows=1024, length=1024):
    a, b, c = (Tensor(n, (rows, length), F32) for n in "abc")
    return Elementwise("add", (a, b), (c,), rows, length, "add")


def gemm_op(m=256, k=1024, n=1024):
    a, w, y = Tensor("a", (m, k), BF16), Tensor("w", (k, n), BF16, Role.WEIGHT), Tensor("y", (m, n), BF16)
    return Gemm("g", (a, w), (y,), 1, m, k, n, False)


# -- dispatch --------------------------------------------------------------------------------

DISPATCH = ("dispatch.call={default: 10 us, gemm: 100 us}", "dispatch.program={default: 2 us}")


def test_dispatch_adds_the_kinds_cost_in_front_of_each_op():
    chip = hw(TPUV4I, *DISPATCH)
    body = Simulator(hw(TPUV4I)).run(one(gemm_op())).ops[0]  # no dispatch configured: zero
    call = Simulator(chip, dispatch="call").run(one(gemm_op())).ops[0]
    program = Simulator(chip).run(one(gemm_op())).ops[0]
    assert body.dispatch_s == 0.0
    assert call.dispatch_s == 100e-6 and call.latency_s == pytest.approx(body.latency_s + 100e-6, rel=REL)
    assert program.dispatch_s == 2e-6 and program.latency_s == pytest.approx(body.latency_s + 2e-6, rel=REL)
    # a kind not listed pays the default; the energy of the op's work is unchanged
    add = Simulator(chip, dispatch="call").run(one(add_op(8, 128))).ops[0]
    plain = Simulator(hw(TPUV4I)).run(one(add_op(8, 128))).ops[0]
    assert add.dispatch_s == 10e-6 and add.latency_s == pytest.approx(plain.latency_s + 10e-6, rel=REL)
    assert add.energy.vpu == plain.energy.vpu
    assert add.bound == "dispatch"  # 10 us against about 50 ns of work


def test_the_cmem_preload_pays_no_dispatch_and_dispatch_draws_static_power():
    # two_weights(8): W1 (1 MiB) read by 8 GEMMs is preloaded into CMEM, which takes HBM's time
    # (614 GB/s, slower than CMEM) after its 555 ns latency: 555 ns + 2^20 / 614e9 = 2.263 us and
    # no launch (the placement's own DMA as the program starts, priced by the placement search
    # by its bytes and latency alone); the GEMMs pay the 2 us default
    from tests.test_values_memory import two_weights
    chip = hw(TPUV4I, "dispatch.program={default: 2 us}")
    result = Simulator(chip).run(two_weights(8))
    preload, g1, g2 = result.ops
    assert preload.phase == "preload" and preload.dispatch_s == 0.0
    assert preload.latency_s == pytest.approx(555e-9 + 2**20 / 614e9, rel=REL)
    assert g1.dispatch_s == g2.dispatch_s == 2e-6
    # the chip's static power over each launch (0.0716 W/mm^2 over its 349.05 mm^2 die + 5 W =
    # 29.99 W): 60 uJ more static energy an op, and the
    # ops' energies still sum to the run's
    plain = Simulator(hw(TPUV4I)).run(two_weights(8)).ops[1]
    assert g1.energy.static == pytest.approx(plain.energy.static + (0.0716 * (53.051392 + 10 + 14 + 112 + 10 + 150) + 5) * 2e-6, rel=REL)
    assert sum(c.energy.static * c.count for c in result.ops) == pytest.approx(result.energy.static, rel=1e-9)
    with pytest.raises(ArchsimError, match="unknown op kind 'preload'"):
        hw(TPUV4I, "dispatch.program={default: 2 us, preload: 1 us}")


def test_dispatch_tables_name_known_kinds_and_a_default():
    with pytest.raises(ArchsimError, match="unknown op kind 'matmul'"):
        hw(TPUV4I, "dispatch.call={default: 1 us, matmul: 5 us}")
    with pytest.raises(ArchsimError, match="default"):
        hw(TPUV4I, "dispatch.call={gemm: 5 us}")
    with pytest.raises(ValueError, match="dispatch must be"):
        Simulator(hw(TPUV4I), dispatch="eager")


# -- achievable bandwidth ----------------------------------------------------------------------

@pytest.mark.parametrize("efficiency", [1.0, 0.8, 0.5])
def test_hbm_efficiency_scales_the_memory_time(efficiency):
    # TPUv3 core (no CMEM: activations in HBM). c = a + b over 1024 x 1024 fp32: 8 MiB read,
    # 4 MiB written at 450 GB/s x efficiency; VMEM moves twice that at 9.9 TB/s (less busy).
    # 1M adds on 1024 lanes at 1 op a cycle (no pass cost): 1024 cycles at 940 MHz; a block is one row of 1024
    # (= the lanes): 1024 steps; HBM's 555 ns latency exposed once.
    chip = hw(TPUV3, f"hbm.efficiency={efficiency}", "vpu.pass_cycles_per_vreg=0")
    op = Simulator(chip).run(one(add_op())).ops[0]
    t_mem = 12 * 2**20 / (450e9 * efficiency)
    assert op.memory_s == pytest.approx(t_mem, rel=REL)
    assert op.compute_cycles == 1024
    assert op.latency_s == pytest.approx(555e-9 + max(t_mem, t_mem / 1024 + 1024 / 940e6), rel=REL)


def test_ici_efficiency_scales_the_link_bandwidth():
    # 4 TPUv4i chips in a ring (2 links of 100 GB/s: one to each neighbour), half achievable:
    # a bidirectional all-reduce of 8 MB takes 6 steps of 1 us + (8e6 / 4 / 2) / 50e9
    ring = topology_of(hw(TPUV4I, "system.chips=4", "system.parallelism.tensor=4", "ici.efficiency=0.5"))
    assert ring.all_reduce(8e6, range(4)).time_s == pytest.approx(6 * (1e-6 + 1e6 / 50e9), rel=REL)


# -- systolic weight load ----------------------------------------------------------------------

WS256 = Mapping(row_dim=128, col_dim=128, stream=256, preload=True)


@pytest.mark.parametrize("rate,overlap,cycles", [
    # 4 folds of a 256-row stream on a 128 x 128 array; skew and drain 128 + 128 - 2 = 254:
    # overlap 1 (double-buffered): 128 + 3 x max(256, 128) + 256 + 254 - 1 = 1405
    (1, 1.0, 1405),
    # overlap 0 (serial load): 128 + 3 x (256 + 128) + 256 + 253 = 1789
    (1, 0.0, 1789),
    # half hidden: each later fold 256 + 128 - 0.5 x 128 = 320: 128 + 960 + 509 = 1597
    (1, 0.5, 1597),
    # two rows a cycle, serial: load 64; 64 + 3 x 320 + 509 = 1533
    (2, 0.0, 1533),
])
def test_fold_cycles_with_weight_load_rate_and_overlap(rate, overlap, cycles):
    assert fold_cycles("pipelined", 4, WS256, 128, 128, rate, overlap) == cycles


def test_short_streams_wait_for_the_load_however_it_overlaps():
    # a 64-row stream (decode): each later fold at overlap 1 waits max(64, 128) = 128; at 0,
    # 64 + 128 = 192: 128 + 3 x 192 + 64 + 253 = 1021 (vs 128 + 384 + 317 = 829)
    short = Mapping(128, 128, 64, True)
    assert fold_cycles("pipelined", 4, short, 128, 128, 1, 1.0) == 829
    assert fold_cycles("pipelined", 4, short, 128, 128, 1, 0.0) == 1021
    # SCALE-Sim's count ignores the overlap but loads at the configured rate: 4 x (64 + 64 + 254) - 1
    assert fold_cycles("scalesim", 4, short, 128, 128, 2, 0.0) == 4 * (64 + 64 + 254) - 1


# -- vector unit -------------------------------------------------------------------------------

def test_transcendentals_cost_their_own_cycles():
    vpu = hw(TPUV4I, "vpu.special_cycles={exp: 8}").vpu
    # 2048 ALU ops / (1024 lanes x 2) = 1; 1024 exp x 8 + 1024 tanh x 2 (the default) over 1024
    # lanes = 10; 100 unnamed specials at 2: 0.195 -> ceil(11.195) = 12
    work = VectorWork(2048, 2148, (("exp", 1024), ("tanh", 1024)))
    assert vector_cycles(vpu, work) == 12


def test_each_pass_pays_its_register_traffic():
    from archsim.hw.vector import pass_cycles
    vpu = hw(TPUV4I, "vpu.pass_cycles_per_vreg=12").vpu
    # 4096 elements: 4 registers of 1024 lanes x 12 = 48 cycles, plus 4096 adds / 2048 a cycle = 2
    assert pass_cycles(vpu, VectorWork(4096, 0), 4096) == 50
    assert pass_cycles(hw(TPUV4I).vpu, VectorWork(4096, 0), 4096) == 2  # default: no pass cost


def test_a_reduction_folds_each_row_across_its_lanes():
    from archsim.hw.vector import reduction_cycles
    vpu = hw(TPUV4I, "vpu.lane_width=128", "vpu.reduce_step_cycles=2").vpu
    # 1024 lanes of 128 per row: 8 rows a register; 100 rows -> 13 registers x log2(128) = 7
    # steps x 2 cycles = 182
    assert reduction_cycles(vpu, 100) == 182
    # a softmax makes two reduction passes (max, sum): 2 x 182 more cycles than without
    from tests.test_values_memory import softmax_workload
    plain = Simulator(hw(TPUV4I, "vpu.lane_width=128")).run(softmax_workload(100, 256)).ops[0]
    folded = Simulator(hw(TPUV4I, "vpu.lane_width=128", "vpu.reduce_step_cycles=2")).run(softmax_workload(100, 256)).ops[0]
    assert folded.compute_cycles == plain.compute_cycles + 2 * 182


def test_rows_pad_to_the_lane_width():
    vpu = hw(TPUV4I, "vpu.lane_width=128").vpu
    assert [padded_row(vpu, n) for n in (1, 128, 129, 4096)] == [128, 128, 256, 4096]
    assert padded_row(hw(TPUV4I).vpu, 100) == 100  # no lane width: no padding


def test_reduction_passes_read_the_data_input_only():
    # A layernorm y = norm(x) * gamma + beta with gamma and beta as tensors of their own (1024
    # bf16, 2 KiB each); x and y 8 x 1024 bf16 (16 KiB), all activations in CMEM. Its passes:
    # mean and variance read x alone; the last reads x, gamma and beta and writes y, each
    # through VMEM (written by the DMA, read by the lanes). CMEM reads 3 x 16 + 2 x 2 = 52 KiB
    # (53248 B), writes 16 KiB; VMEM reads and writes x three times, gamma, beta and y once:
    # 48 + 4 + 16 = 68 KiB (69632 B) each way.
    x, y = Tensor("x", (8, 1024), BF16), Tensor("y", (8, 1024), BF16)
    gamma, beta = Tensor("gamma", (1024,), BF16), Tensor("beta", (1024,), BF16)
    op = Simulator(hw(TPUV4I)).run(one(LayerNorm("ln", (x, gamma, beta), (y,), 8, 1024))).ops[0]
    assert (op.traffic.cmem_read, op.traffic.cmem_write) == (53248, 16384)
    assert (op.traffic.vmem_read, op.traffic.vmem_write) == (69632, 69632)
    # 8192 elements on 1024 lanes x 2 ALU ops: mean 1 op each, 4 cycles; variance 2, 8 cycles;
    # normalise 4, 16 cycles + 8 rsqrt x 2 cycles / 1024 lanes -> ceil(16.016) = 17
    assert op.compute_cycles == 4 + 8 + 17
    # each pass: CMEM's 50 ns latency + max(T, T / 8 + C) over 8 row blocks (a row = 1024 lanes),
    # T its CMEM bytes at 2.151 TB/s (VMEM moves twice those at 13.5 TB/s: less busy)
    passes = ((16384, 4), (16384, 8), (16384 + 4096 + 16384, 17))
    expected = sum(50e-9 + max(b / 2.151e12, b / 2.151e12 / 8 + c / 1.05e9) for b, c in passes)
    assert op.latency_s == pytest.approx(expected, rel=REL)


def test_the_configs_weight_load_overlap_reaches_the_arrays():
    from archsim.hw.matrix import MatmulShape
    from archsim.hw.matrix.systolic import SystolicModel
    # one 128 x 128 unit, ws, 256 x 1024 x 128 bf16: 8 folds of a 256-row stream. Overlap 0:
    # 128 + 7 x (256 + 128) + 256 + 254 - 1 = 3325; overlap 1: 128 + 7 x 256 + 509 = 2429
    shape = MatmulShape(1, 256, 1024, 128, BF16)
    for overlap, cycles in ((0.0, 3325), (1.0, 2429)):
        mxu = hw(TPUV4I, "mxu.count=1", f"mxu.weight_load_overlap={overlap}").mxu
        assert SystolicModel(mxu)._timing(shape, BF16, 1).compute_cycles == cycles


def test_hbm_efficiency_reaches_the_matmul_tiling():
    # a decode GEMM (8 x 4096 x 4096 bf16 on TPUv3: no CMEM, its 32 MiB weight from HBM) is
    # bound by HBM: at half the achievable bandwidth its busiest channel takes exactly twice as long
    full = Simulator(hw(TPUV3, "hbm.efficiency=1")).run(one(gemm_op(8, 4096, 4096))).ops[0]
    half = Simulator(hw(TPUV3, "hbm.efficiency=0.5")).run(one(gemm_op(8, 4096, 4096))).ops[0]
    assert full.traffic == half.traffic and full.bottleneck == half.bottleneck == "hbm"
    assert half.memory_s == pytest.approx(2 * full.memory_s, rel=REL)
    assert full.memory_s == pytest.approx(full.traffic.total(Level.HBM) / 450e9, rel=REL)
