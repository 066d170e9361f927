"""Memory-model values pinned against hand calculations (issue 15): bytes per level, where
tensors live, the CMEM preload, and each op's time ``latency + max(T_mem, T_mem/steps + C)``.

Cases are small and chosen so that the tiler's and the placement's choices are forced or do not
change what is pinned: every operand fits VMEM (each is read from its home once, whatever the
tile sizes), or a single tile size fits; op times are pinned where the pipeline's steps do not
matter (one fold and one tile, or a memory-bound op) and ``overlapped_time`` directly.
"""

from __future__ import annotations

import dataclasses

import pytest

from archsim.api import gemm_workload, load_hardware, run_gemm, simulate
from archsim.config.loader import parse_overrides
from archsim.dtypes import DType
from archsim.hw.memory import Level, Traffic, place
from archsim.hw.timing import access_latency, channel_times, overlapped_seconds, overlapped_time
from archsim.ir.graph import OpGraph, Phase, Workload
from archsim.ir.ops import CacheWrite, Gemm, Softmax
from archsim.ir.tensor import Role, Tensor
from tests.conftest import TPUV4I_PLAIN as TPUV4I


@pytest.fixture(scope="module")
def tpuv4i():
    """TPUv4i with its calibration fields neutral: the hand calculations here are written for it."""
    return load_hardware(TPUV4I)

I8, BF16 = DType.INT8, DType.BF16
CLOCK = 1.05e9
# TPUv4i: bandwidths (B/s) and latencies (s) of each level
VMEM_BW, CMEM_BW, HBM_BW = 13.5e12, 2.151e12, 614e9
VMEM_LAT, CMEM_LAT, HBM_LAT = 5e-9, 50e-9, 555e-9
REL = 1e-12


def hw_with(*overrides):
    return load_hardware(TPUV4I, list(overrides))


# -- the pieces of an op's time -------------------------------------------------------------

def test_overlapped_time():
    # one step: all the memory time, then all the compute: 1 + 4 + 3
    assert overlapped_time(4.0, 3.0, 1, 1.0) == 8.0
    # two steps: the first half of the transfers is exposed, the rest hides under compute
    assert overlapped_time(4.0, 3.0, 2, 1.0) == 1.0 + max(4.0, 2.0 + 3.0)
    # many steps of a memory-bound op: the roofline, T_mem
    assert overlapped_time(4.0, 1.0, 100, 0.0) == 4.0
    assert overlapped_time(4.0, 3.0, 0, 0.0) == 7.0  # no steps counts as one
    assert overlapped_time(0.0, 3.0, 5, 0.5) == 3.5
    # the scalar form the op costs use: the same operations, the same bits
    for args in ((4.0, 3.0, 1, 1.0), (4.0, 3.0, 2, 1.0), (4.0, 1.0, 100, 0.0), (4.0, 3.0, 0, 0.0), (0.0, 3.0, 5, 0.5),
                 (1e-7 / 3, 2.5e-8 / 7, 37, 5e-7 / 11), (3.3e-5, 1.1e-6, 4097, 6.1e-7)):
        assert overlapped_seconds(*args) == float(overlapped_time(*args))
        assert type(overlapped_seconds(*args)) is float


def test_access_latency_is_the_slowest_level_touched(tpuv4i):
    assert access_latency(tpuv4i, {Level.VMEM}) == VMEM_LAT
    assert access_latency(tpuv4i, {Level.VMEM, Level.CMEM}) == CMEM_LAT
    assert access_latency(tpuv4i, {Level.CMEM, Level.HBM, Level.VMEM}) == HBM_LAT
    assert access_latency(tpuv4i, ()) == 0.0


def test_channel_times_count_reads_and_writes(tpuv4i):
    times = channel_times(tpuv4i, Traffic(100.0, 200.0, 0.0, 0.0, 300.0, 400.0))
    assert times == {Level.VMEM: pytest.approx(300 / VMEM_BW, rel=REL), Level.HBM: pytest.approx(700 / HBM_BW, rel=REL)}


# -- a GEMM whose operands all fit VMEM: each read from its home once ------------------------

def test_gemm_bytes_per_level():
    # 64 x 256 x 512 int8 on one 128 x 128 MXU. A (16 KiB) and C (32 KiB) are activations:
    # they fit CMEM, so they live there; B (128 KiB) is a weight read once, not worth a
    # preload: HBM. Everything fits VMEM (2 x (16 + 128 + 128 KiB accumulators) < 16 MiB), so
    # whatever the tiles, each operand is read from its home once.
    r = run_gemm(hw_with("mxu.count=1"), 64, 256, 512)
    (op,) = r.ops
    a, b, c = 64 * 256, 256 * 512, 64 * 512
    # arrays (ws): A streams once per column fold (4), B once, C written once
    a_reads, b_reads = 4 * a, b
    assert op.traffic == Traffic(
        vmem_read=c + a_reads + b_reads,  # the DMA drains C; the arrays read A and B
        vmem_write=a + b + c,  # the DMA fills A and B; the arrays write C
        cmem_read=a, cmem_write=c, hbm_read=b, hbm_write=0.0)
    assert (op.traffic.vmem_read, op.traffic.vmem_write) == (229376, 180224)
    # T_mem: the busiest channel: HBM 128 KiB / 614 GB/s = 213 ns (VMEM 409600 B: 30 ns,
    # CMEM 48 KiB: 23 ns); C: 1341 cycles (2 x 4 folds, test_values_matrix)
    assert op.memory_s == pytest.approx(b / HBM_BW, rel=REL)
    assert op.compute_s == pytest.approx(1341 / CLOCK, rel=REL)
    # the array streams 8 folds x 64 rows = 512 of its 1341 cycles: mostly weight swaps
    assert op.bottleneck == "mxu" and op.bound == "array-fill"
    assert r.latency_s == op.latency_s


def test_one_fold_gemm_time_is_latency_plus_transfers_plus_compute():
    # 64 x 128 x 128 int8 on one MXU: one fold and (everything fitting VMEM) one tile: the
    # arrays start when all operands are in: T = HBM latency + T_mem + C
    (op,) = run_gemm(hw_with("mxu.count=1"), 64, 128, 128).ops
    a, b, c = 64 * 128, 128 * 128, 64 * 128
    assert op.traffic == Traffic(c + a + b, a + b + c, a, c, b, 0.0)
    compute = (128 + 64 + 254 - 1) / CLOCK
    assert op.latency_s == pytest.approx(HBM_LAT + b / HBM_BW + compute, rel=REL)
    # without CMEM the activations live in HBM too: its port moves A, B and C
    (op,) = run_gemm(hw_with("mxu.count=1", "cmem=null"), 64, 128, 128).ops
    assert op.traffic == Traffic(c + a + b, a + b + c, 0.0, 0.0, a + b, c)
    assert op.memory_s == pytest.approx((a + b + c) / HBM_BW, rel=REL)
    assert op.latency_s == pytest.approx(HBM_LAT + (a + b + c) / HBM_BW + compute, rel=REL)
    # a faster HBM with a shorter latency: the same formula, T_mem still HBM's (8.2 ns against
    # CMEM's 7.6 ns and VMEM's 4.9 ns), the latency HBM's 100 ns
    (op,) = run_gemm(hw_with("mxu.count=1", "hbm.bandwidth=2 TB/s", "hbm.latency=100 ns"), 64, 128, 128).ops
    t_mem = max(b / 2e12, (a + c) / CMEM_BW, (2 * (a + b + c)) / VMEM_BW)
    assert op.latency_s == pytest.approx(100e-9 + t_mem + compute, rel=REL)


def test_memory_bound_gemm_time():
    # decode-like: 8 x 4096 x 4096 int8 on 4 MXUs with HBM at 100 GB/s: the 16 MiB of weights
    # take 168 us, far more than the arrays' 31 us however the transfers are pipelined
    r = run_gemm(hw_with("hbm.bandwidth=100 GB/s"), 8, 4096, 4096)
    (op,) = r.ops
    b = 4096 * 4096
    assert (op.traffic.hbm_read, op.traffic.cmem_read, op.traffic.cmem_write) == (b, 8 * 4096, 8 * 4096)
    # 32 x 32 = 1024 folds of 8 rows, 256 a unit, each waiting 128 cycles for its weights:
    # 128 + 255 x 128 + 8 + 254 - 1
    assert op.compute_cycles == 128 + 255 * 128 + 8 + 253
    assert op.latency_s == pytest.approx(HBM_LAT + b / 100e9, rel=REL)
    assert op.bottleneck == "hbm" and op.bound == "memory"


def test_a_gemm_whose_activations_do_not_fit_cmem_spills_them_to_hbm():
    # CMEM of 1 MiB (VMEM 512 KiB): A (256 KiB) + C (1 MiB) do not fit, so no plan puts them
    # there; 64 x 1024 x 4096 (A 64 KiB + C 256 KiB) fits, and some plan does
    hw = hw_with("mxu.count=1", "cmem.capacity=1 MiB", "vmem.capacity=512 KiB")
    for placement in place(hw, gemm_workload(256, 1024, 4096)):
        assert (placement.home["A"], placement.home["C"]) == (Level.HBM, Level.HBM)
    assert any((p.home["A"], p.home["C"]) == (Level.CMEM, Level.CMEM) for p in place(hw, gemm_workload(64, 1024, 4096)))


def test_a_single_fitting_tile_forces_refetches():
    # 32 x 16 x 32 int8 in a 4 KiB VMEM: only 16 x 16 x 16 tiles fit double-buffered
    # (2 x (256 + 256 + 16 x 16 x 4 B accumulators) = 3072 B; any 32-edge tile needs 5632 B),
    # so 2 m-tiles x 2 n-tiles: one of A (CMEM) and B (HBM) must be fetched twice. Fetching A
    # twice keeps the busiest channel least busy (CMEM 2 x 512 + 1024 B out = 952 ps; fetching
    # B twice would put 1024 B on HBM, 1.67 ns).
    r = run_gemm(hw_with("mxu.count=1", "vmem.capacity=4 KiB"), 32, 16, 32)
    (op,) = r.ops
    assert op.tiling.startswith("16x16x16/")
    a, b, c = 32 * 16, 16 * 32, 32 * 32
    # arrays: one 16 x 32 weight fold; A streams once, B once; C written once
    assert op.traffic == Traffic(vmem_read=c + a + b, vmem_write=2 * a + b + c,
                                 cmem_read=2 * a, cmem_write=c, hbm_read=b, hbm_write=0.0)
    assert op.memory_s == pytest.approx((2 * a + c) / CMEM_BW, rel=REL)


# -- vector ops: streamed through VMEM a row block at a time -------------------------------

def softmax_workload(rows, length):
    x, y = Tensor("x", (rows, length), BF16), Tensor("y", (rows, length), BF16)
    return Workload("sm", (Phase("p", OpGraph([Softmax("sm", (x,), (y,), rows, length)])),))


@pytest.mark.parametrize("rows,length,cycles,steps", [
    # Three passes (max; sum of exp; normalise with exp again and one reciprocal a row). On
    # TPUv4i (1024 lanes, 2 ALU ops a lane a cycle, 2 cycles a transcendental), n elements:
    # max: n / 2048; sum: 2n / 2048 + 2n / 1024; normalise: 2n / 2048 + 2(n + rows) / 1024.
    # 8 x 1000 (n = 8000): ceil(3.906) = 4, ceil(7.8125 + 15.625) = 24, ceil(7.8125 + 15.64) = 24;
    # a block is one vector of 1024 lanes (a row is shorter): ceil(8000 / 1024) = 8 steps
    (8, 1000, (4, 24, 24), 8),
    # 4 x 3000 (n = 12000): ceil(5.86) = 6, ceil(11.72 + 23.44) = 36, ceil(11.72 + 23.45) = 36;
    # a block is a whole row (3000 > 1024 lanes): 4 steps
    (4, 3000, (6, 36, 36), 4),
])
def test_vector_op_traffic_and_time(tpuv4i, rows, length, cycles, steps):
    (op,) = simulate(tpuv4i, softmax_workload(rows, length)).ops
    size = rows * length * 2
    # each pass reads x from CMEM into VMEM, where the VPU reads it; the last writes y to VMEM,
    # drained to CMEM: x three times, y once
    assert op.traffic == Traffic(4 * size, 4 * size, 3 * size, size, 0.0, 0.0)
    assert op.compute_cycles == sum(cycles)
    assert op.vector_ops == 5 * rows * length + 2 * rows * length + rows
    # CMEM (2.151 TB/s) is busier than VMEM (13.5 TB/s, twice the bytes) in every pass
    t_mem = (size / CMEM_BW, size / CMEM_BW, 2 * size / CMEM_BW)
    expected = sum(CMEM_LAT + max(t, t / steps + c / CLOCK) for t, c in zip(t_mem, cycles))
    assert op.latency_s == pytest.approx(expected, rel=REL)


def test_rows_pad_to_whole_lane_widths(tpuv4i):
    """A row of 100 elements on 128-wide lanes takes 128 in registers and in the layout."""
    padded = load_hardware(TPUV4I, parse_overrides(["vpu.lane_width=128"]))
    (plain,) = simulate(tpuv4i, softmax_workload(64, 100)).ops
    (op,) = simulate(padded, softmax_workload(64, 100)).ops
    assert op.traffic == Traffic(*(x * 128 / 100 for x in dataclasses.astuple(plain.traffic)))
    # max pass: 64 x 128 / 2048 = 4 cycles (100 wide: ceil(3.125) = 4); sum: 8192 x (2 / 2048 +
    # 2 / 1024) = 24; normalise: 8 + (8192 + 64) x 2 / 1024 = 24.125 -> 25
    assert op.compute_cycles == 4 + 24 + 25
    assert op.vector_ops == 5 * 8192 + 2 * 8192 + 64


# -- data movement ops and the CMEM preload --------------------------------------------------

def test_cache_write_moves_only_the_new_entries(tpuv4i):
    new = Tensor("k_new", (8, 1024), BF16)
    cache = Tensor("k_cache", (8, 4096, 1024), BF16, Role.KV_CACHE)
    w = Workload("w", (Phase("p", OpGraph([CacheWrite("append", (new,), (cache,))])),))
    (op,) = simulate(tpuv4i, w).ops
    # the entries (16 KiB, an activation in CMEM) appended to the cache, which lives in HBM
    # (written a little at a time, never worth a preload)
    assert op.traffic == Traffic(0.0, 0.0, 16384, 0.0, 0.0, 16384)
    assert op.latency_s == pytest.approx(HBM_LAT + 16384 / HBM_BW, rel=REL)


def two_weights(steps=4):
    """W1 read by a GEMM repeated ``steps`` times, W2 by a GEMM run once; 1 MiB each."""
    def gemm(name, w):
        x, y = Tensor(f"x_{name}", (8, 1024), I8), Tensor(f"y_{name}", (8, 1024), I8)
        return OpGraph([Gemm(name, (x, Tensor(w, (1024, 1024), I8, Role.WEIGHT)), (y,), 1, 8, 1024, 1024, False)])
    return Workload("w", (Phase("loop", gemm("g1", "W1"), repeat=steps), Phase("once", gemm("g2", "W2"))))


def test_a_weight_read_once_is_not_worth_a_preload(tpuv4i):
    # 8 x 1024 x 1024: in CMEM its (compute-bound, 2.2 us) GEMM would save 0.5 us of HBM
    # transfer and latency, less than the 1 MiB preload (1.7 us + 555 ns): it stays in HBM
    for placement in place(tpuv4i, gemm_workload(8, 1024, 1024)):
        assert placement.preload == () and placement.home["B"] is Level.HBM
    for placement in place(tpuv4i, two_weights()):
        assert "W2" not in {t.name for t in placement.preload} and placement.home["W2"] is Level.HBM


def test_a_reused_weight_is_preloaded_once(tpuv4i):
    r = simulate(tpuv4i, two_weights(8))
    mib, act = 2**20, 8 * 1024
    preload, g1, g2 = r.ops
    assert preload.phase == "preload" and (g1.name, g2.name) == ("g1", "g2")
    # W1 read 8 times saves 8 MiB of HBM reads for a 1 MiB preload (and 8 x 0.5 us for 2.3 us);
    # W2 read once stays in HBM
    assert preload.traffic == Traffic(0.0, 0.0, 0.0, mib, mib, 0.0)
    assert preload.latency_s == pytest.approx(HBM_LAT + mib / HBM_BW, rel=REL)  # HBM slower than CMEM
    assert g1.traffic.cmem_read == act + mib and g1.traffic.hbm_read == 0
    assert g2.traffic.cmem_read == act and g2.traffic.hbm_read == mib
    # the run: HBM reads W1 once (preload) and W2 once; CMEM takes the preload and the outputs
    assert r.traffic.hbm_read == 2 * mib and r.traffic.hbm_write == 0
    assert r.traffic.cmem_read == 8 * (act + mib) + act
    assert r.traffic.cmem_write == mib + 9 * act
    assert r.latency_s == pytest.approx(preload.latency_s + 8 * g1.latency_s + g2.latency_s, rel=REL)


def stack(name, mib, layers=3):
    """A GEMM over a stack of ``layers`` layers, each with its own ``mib`` MiB weight."""
    n = mib * 1024
    x, y = Tensor(f"x_{name}", (8, 1024), I8), Tensor(f"y_{name}", (8, n), I8)
    w = Tensor(name, (1024, n), I8, Role.WEIGHT, copies=layers)
    return OpGraph([Gemm(f"g_{name}", (x, w), (y,), 1, 8, 1024, n, False, copies=layers)])


# HBM at 100 GB/s: streaming a weight costs far more than its share of the arrays' time, so
# keeping a weight read 10 times in CMEM always pays
SLOW_HBM = "hbm.bandwidth=100 GB/s"


def test_a_stack_too_big_for_cmem_is_never_promoted():
    # 3 x 50 MiB = 150 MiB does not fit 128 MiB of CMEM (though one layer's copy would);
    # 3 x 40 MiB = 120 MiB does
    hw = hw_with(SLOW_HBM)
    for placement in place(hw, Workload("s", (Phase("p", stack("w", 50), 10),))):
        assert placement.preload == () and placement.home["w"] is Level.HBM
    assert any(p.preload and p.home["w"] is Level.CMEM for p in place(hw, Workload("s", (Phase("p", stack("w", 40), 10),))))


def test_promotions_never_overfill_cmem():
    # two stacks, 3 x 30 MiB and 3 x 20 MiB: each fits 128 MiB alone, both (150 MiB) do not
    graph = stack("w1", 30)
    for op in stack("w2", 20).ops():
        graph.add(op)
    plans = place(hw_with(SLOW_HBM), Workload("s", (Phase("p", graph, 10),)))
    for placement in plans:
        in_cmem = {t.name: t.total_bytes for t in (placement.preload or ())}
        assert sum(in_cmem.values()) <= 128 * 2**20
    assert any(len(p.preload) == 1 for p in plans)


def test_a_stack_of_layers_runs_each_copy():
    # 3 layers of 64 x 128 x 128 (each its own 16 KiB weight), no CMEM: 3 x the one-layer op,
    # which moves x (8 KiB) and w (16 KiB) in from HBM and y (8 KiB) out
    x, y = Tensor("x", (64, 128), I8), Tensor("y", (64, 128), I8)
    w = Tensor("w", (128, 128), I8, Role.WEIGHT, copies=3)
    gemm = Gemm("g", (x, w), (y,), 1, 64, 128, 128, False, copies=3)
    r = simulate(hw_with("mxu.count=1", "cmem=null"), Workload("s", (Phase("p", OpGraph([gemm])),)))
    (op,) = r.ops
    compute = (128 + 64 + 254 - 1) / CLOCK
    assert op.latency_s == pytest.approx(HBM_LAT + (8192 + 16384 + 8192) / HBM_BW + compute, rel=REL)
    assert r.latency_s == pytest.approx(3 * op.latency_s, rel=REL)
    assert r.macs == 3 * 64 * 128 * 128 and r.traffic.hbm_read == 3 * (8192 + 16384)


def test_hbm_must_hold_the_weights_and_the_activations_spilled_to_it():
    # no CMEM, 1 MiB of HBM: 64 x 1024 x 960 int8 needs B (960 KiB) + A (64 KiB) + C (60 KiB)
    hw = hw_with("cmem=null", "hbm.capacity=1 MiB")
    r = run_gemm(hw, 64, 1024, 960)
    assert not r.feasible and "60 KiB missing" in r.reason
    assert run_gemm(hw, 64, 1024, 896).feasible  # 896 + 64 + 56 KiB = 1016 KiB fits


def test_partial_sums_spill_at_the_accumulator_width():
    # 32 x 32 x 32 int8, A and B in HBM, C in CMEM, a 3.5 KiB VMEM: only 16 x 16 x 16 tiles fit
    # (3072 B double-buffered; 16 x 32 x 16 needs 4096 B), so 2 x 2 x 2 tiles and every loop order fetches two of A, B
    # and C twice. Spilling C's partial sums to CMEM and fetching one of A or B twice puts
    # 1024 + 2048 B on HBM (5.0 ns) against 4096 B (6.7 ns) for fetching both twice.
    from archsim.hw.memory import Placement
    from archsim.sim.engine import Simulator

    hw = hw_with("mxu.count=1", "vmem.capacity=3584 B")
    home = {"A": Level.HBM, "B": Level.HBM, "C": Level.CMEM}
    (op,) = Simulator(hw).run_with(gemm_workload(32, 32, 32), Placement(home, (), True)).ops
    assert op.tiling.startswith("16x16x16/")
    a = b = c = 32 * 32
    acc = 32 * 32 * 4  # int32 partial sums, spilled once (written out, read back)
    assert op.traffic.hbm_read == a + 2 * b or op.traffic.hbm_read == 2 * a + b
    assert op.traffic.hbm_write == 0
    assert (op.traffic.cmem_read, op.traffic.cmem_write) == (acc, acc + c)
    # VMEM: the DMA fills A, B (3072 B) and the read-back partial sums, the arrays write C;
    # the DMA drains the partial sums and C, the arrays read A and B (one fold: once each)
    assert op.traffic.vmem_write == 3 * 1024 + acc + c
    assert op.traffic.vmem_read == acc + c + a + b


def test_embedding_lookup_gathers_rows(tpuv4i):
    from archsim.ir.ops import EmbeddingLookup

    table = Tensor("table", (1000, 512), BF16, Role.WEIGHT)
    ids, out = Tensor("ids", (8, 1), DType.INT32), Tensor("out", (8, 512), BF16)
    w = Workload("e", (Phase("p", OpGraph([EmbeddingLookup("embed", (table, ids), (out,), 8)])),))
    (op,) = simulate(tpuv4i, w).ops
    # 8 rows of 512 bf16 gathered from the table in HBM, written to the output in CMEM
    assert op.traffic == Traffic(0.0, 0.0, 0.0, 8192, 8192, 0.0)
    assert op.latency_s == pytest.approx(HBM_LAT + 8192 / HBM_BW, rel=REL)


def test_traffic_of_a_level_sets_its_two_fields_alone():
    assert Traffic.of(Level.VMEM, 1.0, 2.0) == Traffic(vmem_read=1.0, vmem_write=2.0)
    assert Traffic.of(Level.CMEM, read=3.0) == Traffic(cmem_read=3.0)
    assert Traffic.of(Level.HBM, write=4.5) == Traffic(hbm_write=4.5)
    assert Traffic.of(Level.HBM, 7, 8).as_dict() == {"vmem_read": 0.0, "vmem_write": 0.0, "cmem_read": 0.0,
                                                     "cmem_write": 0.0, "hbm_read": 7, "hbm_write": 8}
    with pytest.raises(ValueError, match="unknown memory level"):
        Traffic.of("l2", 1.0)
