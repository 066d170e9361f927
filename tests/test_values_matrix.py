"""Matrix-unit and vector-unit values pinned against hand calculations (issue 15).

Every expected number below is worked out by hand in the comment beside it, from the model as
the README and the module docstrings state it, never copied from the code's output. The cases
are small and chosen so that no mapper choice is involved: the systolic fold mapping is fixed,
and CIM timings are taken for an explicit grid split (``CimModel._timing(..., g_k)``) or on a
grid with a single possible split (one grid row), so a change of the CIM mapper's pick does not
move them.
"""

from __future__ import annotations

import math

import pytest

from archsim.api import load_hardware, run_gemm
from archsim.dtypes import DType
from archsim.hw.matrix import MatmulShape
from archsim.hw.matrix.cim import CimModel
from archsim.hw.matrix.systolic import Mapping, SystolicModel, fold_cycles, map_dataflow
from archsim.hw.vector import vector_cycles
from archsim.ir.ops import VectorWork
from tests.conftest import HW, TPUV4I_PLAIN as TPUV4I


@pytest.fixture(scope="module")
def tpuv4i():
    """TPUv4i with its calibration fields neutral: the hand calculations here are written for it."""
    return load_hardware(TPUV4I)

CIM = HW / "cim_tpu.yaml"
I8, BF16 = DType.INT8, DType.BF16


class Systolic:
    """A systolic model's timing with its folds on all ``count`` units (its ``count``-unit
    mapping; the engine may pick another, see ``mappings``)."""

    def __init__(self, count=1, dataflow="ws", fold_model="pipelined", *more):
        hw = load_hardware(TPUV4I, [f"mxu.count={count}", f"mxu.dataflow={dataflow}", f"mxu.fold_model={fold_model}", *more])
        self.model = SystolicModel(hw.mxu)

    def timing(self, shape, out_dtype):
        return self.model._timing(shape, out_dtype, self.model.config.count)


class Cim:
    """A CIM model's timing for an explicit grid split g_k on all ``count`` units."""

    def __init__(self, *overrides):
        self.model = CimModel(load_hardware(CIM, list(overrides)).mxu)

    def timing(self, shape, out_dtype, g_k):
        return self.model._timing(shape, out_dtype, g_k, self.model.config.count)


def systolic(count=1, dataflow="ws", fold_model="pipelined", *more):
    return Systolic(count, dataflow, fold_model, *more)


def cim(*overrides):
    return Cim(*overrides)


# -- systolic fold counts -------------------------------------------------------------------

WS = Mapping(row_dim=0, col_dim=0, stream=8, preload=True)


def test_one_fold_costs_load_stream_skew_and_drain_in_both_models():
    # ws, 1 fold on 128x128: R load + M stream + (R + C - 2) skew/drain - 1 = 128 + 8 + 254 - 1
    for model in ("pipelined", "scalesim"):
        assert fold_cycles(model, 1, WS, 128, 128) == 389
    assert fold_cycles("pipelined", 0, WS, 128, 128) == 0


def test_pipelined_folds_wait_for_the_weight_swap_when_the_stream_is_short():
    # 4 folds streaming 8 rows: the first load exposed, then each fold waits max(8, 128) = 128
    # for the next stationary tile, the last fold streams and drains:
    # 128 + 3 x 128 + 8 + 254 - 1 = 773
    assert fold_cycles("pipelined", 4, WS, 128, 128) == 773
    # scalesim: every fold pays its load and skew: 4 x (8 + 128 + 254) - 1 = 1559
    assert fold_cycles("scalesim", 4, WS, 128, 128) == 1559


def test_pipelined_folds_are_bound_by_a_long_stream():
    long = Mapping(0, 0, stream=1000, preload=True)
    # 128 + 3 x max(1000, 128) + 1000 + 254 - 1 = 4381
    assert fold_cycles("pipelined", 4, long, 128, 128) == 4381
    # 4 x (1000 + 128 + 254) - 1 = 5527
    assert fold_cycles("scalesim", 4, long, 128, 128) == 5527


def test_output_stationary_has_no_preload():
    os_long = Mapping(0, 0, stream=300, preload=False)
    # no load; each later fold waits max(300, 128) (the previous outputs unload, R rows):
    # 2 x 300 + 300 + 254 - 1 = 1153; scalesim: 3 x (300 + 254) - 1 = 1661
    assert fold_cycles("pipelined", 3, os_long, 128, 128) == 1153
    assert fold_cycles("scalesim", 3, os_long, 128, 128) == 1661
    os_short = Mapping(0, 0, stream=50, preload=False)
    # 2 x max(50, 128) + 50 + 254 - 1 = 559
    assert fold_cycles("pipelined", 3, os_short, 128, 128) == 559


def test_a_rectangular_array_uses_its_rows_and_columns():
    # 32 x 64, ws, 2 folds of 10 rows: 32 + 1 x max(10, 32) + 10 + (32 + 64 - 2) - 1 = 167
    assert fold_cycles("pipelined", 2, Mapping(0, 0, 10, True), 32, 64) == 167
    # scalesim: 2 x (10 + 32 + 94) - 1 = 271
    assert fold_cycles("scalesim", 2, Mapping(0, 0, 10, True), 32, 64) == 271


def test_dataflow_mappings():
    assert map_dataflow("ws", 5, 6, 7) == Mapping(row_dim=6, col_dim=7, stream=5, preload=True)
    assert map_dataflow("is", 5, 6, 7) == Mapping(row_dim=6, col_dim=5, stream=7, preload=True)
    assert map_dataflow("os", 5, 6, 7) == Mapping(row_dim=5, col_dim=7, stream=6, preload=False)


# -- systolic units: cycles and the operands they read from VMEM ------------------------------

def test_ws_gemm_on_one_unit():
    t = systolic().timing(MatmulShape(1, 64, 256, 512, I8), I8)
    # folds: ceil(256/128) x ceil(512/128) = 2 x 4 = 8, all on one unit
    # 128 + 7 x max(64, 128) + 64 + 254 - 1 = 1341
    assert (t.compute_cycles, t.folds, t.macs) == (1341, 8, 64 * 256 * 512)
    assert t.stream_cycles == 8 * 64  # the cycles spent streaming A's rows, not swapping weights
    assert t.peak_macs_per_cycle == 128 * 128
    # A (64 x 256 = 16 KiB) streams once per column fold: 4 x 16384 = 65536;
    # B (256 x 512 = 128 KiB) is stationary, read once; C written once at the output width
    assert (t.a_reads, t.b_reads, t.out_writes) == (65536, 131072, 64 * 512)
    assert systolic().timing(MatmulShape(1, 64, 256, 512, I8), BF16).out_writes == 64 * 512 * 2


def test_ws_folds_shared_round_robin():
    t = systolic(count=4).timing(MatmulShape(1, 64, 256, 512, I8), I8)
    # 8 folds over 4 units: 2 on each: 128 + 1 x 128 + 64 + 254 - 1 = 573
    assert (t.compute_cycles, t.folds) == (573, 8)
    assert t.peak_macs_per_cycle == 4 * 128 * 128
    t5 = systolic(count=4).timing(MatmulShape(1, 64, 640, 128, I8), I8)
    # 5 folds over 4 units: the busiest runs ceil(5/4) = 2: 573 again
    assert (t5.compute_cycles, t5.folds) == (573, 5)
    # K = 128 is exactly one row fold: 128 + 8 + 254 - 1 = 389
    t1 = systolic().timing(MatmulShape(1, 8, 128, 128, I8), I8)
    assert (t1.compute_cycles, t1.folds) == (128 + 8 + 254 - 1, 1)
    t2 = systolic().timing(MatmulShape(1, 8, 129, 128, I8), I8)
    # K = 129 needs 2 row folds: 128 + 128 + 8 + 253
    assert (t2.compute_cycles, t2.folds) == (517, 2)


def test_ws_single_fold_splits_its_stream_over_idle_units():
    # one 128 x 128 weight fold, 1000 rows, 4 units: each holds a copy and streams 250 rows
    t = systolic(count=4).timing(MatmulShape(1, 1000, 128, 128, I8), I8)
    assert (t.compute_cycles, t.folds, t.stream_cycles) == (128 + 250 + 254 - 1, 4, 250)
    # B is read once per copy: 4 x 16384; A once (one column fold): 1000 x 128
    assert (t.a_reads, t.b_reads) == (128000, 4 * 16384)
    # 3 units: ceil(1000/3) = 334 rows each
    t3 = systolic(count=3).timing(MatmulShape(1, 1000, 128, 128, I8), I8)
    assert (t3.compute_cycles, t3.folds, t3.b_reads) == (128 + 334 + 253, 3, 3 * 16384)
    # 2 folds on 4 units: each fold split in 2 (500 rows), one fold-piece per unit
    t2 = systolic(count=4).timing(MatmulShape(1, 1000, 128, 256, I8), I8)
    assert (t2.compute_cycles, t2.folds) == (128 + 500 + 253, 4)
    assert (t2.a_reads, t2.b_reads) == (2 * 128000, 2 * 32768)


def test_os_does_not_split_its_reduction():
    # one 128 x 128 output fold, K = 1000 streamed, 4 units: no split, no load
    t = systolic(count=4, dataflow="os").timing(MatmulShape(1, 128, 1000, 128, I8), I8)
    assert (t.compute_cycles, t.folds) == (1000 + 254 - 1, 1)
    # 200 x 130 outputs: ceil(200/128) x ceil(130/128) = 2 x 2 folds, K = 64 streamed:
    # 3 x max(64, 128) + 64 + 254 - 1 = 701
    t = systolic(dataflow="os").timing(MatmulShape(1, 200, 64, 130, I8), I8)
    assert (t.compute_cycles, t.folds) == (701, 4)
    # A (200 x 64) streams once per column fold (2), B (64 x 130) once per row fold (2)
    assert (t.a_reads, t.b_reads) == (2 * 12800, 2 * 8320)


def test_is_streams_b_through_stationary_inputs():
    # is: A[m, k] stationary (k on rows, m on columns), B's columns stream
    # M = 200, K = 100, N = 50: 1 x ceil(200/128) = 2 folds of 50 columns:
    # 128 + 1 x max(50, 128) + 50 + 254 - 1 = 559
    t = systolic(dataflow="is").timing(MatmulShape(1, 200, 100, 50, I8), I8)
    assert (t.compute_cycles, t.folds) == (559, 2)
    # A read once; B once per column fold (2)
    assert (t.a_reads, t.b_reads) == (200 * 100, 2 * 100 * 50)
    # is with fewer folds than units: the N stream is split, A replicated to each copy
    t = systolic(count=4, dataflow="is").timing(MatmulShape(1, 100, 100, 1000, I8), I8)
    assert (t.compute_cycles, t.folds, t.a_reads) == (128 + 250 + 253, 4, 4 * 100 * 100)


def test_scalesim_counts_every_fold_fill():
    # 2 x 4 folds of 64 rows: 8 x (64 + 128 + 254) - 1 = 3567
    t = systolic(fold_model="scalesim").timing(MatmulShape(1, 64, 256, 512, I8), I8)
    assert t.compute_cycles == 3567


def test_bf16_and_pe_packing():
    # bf16 at one MAC per PE: same folds, operands twice the bytes
    t = systolic().timing(MatmulShape(1, 64, 256, 512, BF16), BF16)
    assert t.compute_cycles == 1341 and (t.a_reads, t.b_reads, t.out_writes) == (131072, 262144, 65536)
    # 2 bf16 MACs per PE: K = 512 packs into 256 rows: 2 row folds, N = 128: 2 folds of 10 rows
    # 128 + 128 + 10 + 253 = 519
    packed = systolic(1, "ws", "pipelined", "mxu.pe_macs_per_cycle.bf16=2").timing(MatmulShape(1, 10, 512, 128, BF16), BF16)
    assert (packed.compute_cycles, packed.folds) == (519, 2)
    assert packed.peak_macs_per_cycle == 2 * 128 * 128


def test_batched_b_folds_per_batch_element():
    # 3 attention-like matrices of 16 x 128 x 128, each its own B: 3 folds on one unit
    # 128 + 2 x 128 + 16 + 253 = 653
    t = systolic().timing(MatmulShape(3, 16, 128, 128, I8, b_batched=True), I8)
    assert (t.compute_cycles, t.folds) == (653, 3)
    assert (t.a_reads, t.b_reads, t.out_writes) == (3 * 16 * 128, 3 * 128 * 128, 3 * 16 * 128)


def test_engine_gemm_cycles_are_the_units():
    # the engine folds a GEMM's batch into M and asks the units: 1 x 64 x 256 x 512 -> 1341
    hw = load_hardware(TPUV4I, ["mxu.count=1"])
    assert run_gemm(hw, 64, 256, 512).ops[0].compute_cycles == 1341
    assert run_gemm(load_hardware(TPUV4I), 64, 256, 512).ops[0].compute_cycles == 573
    # a compute-bound single fold runs split over all 4 units (631 cycles against 1381 on one),
    # though each unit then reads its own copy of the weights
    op = run_gemm(load_hardware(TPUV4I), 1000, 128, 128).ops[0]
    assert op.compute_cycles == 128 + 250 + 253 and op.compute_s > op.memory_s
    # of them, 250 stream rows; 381 load, skew and drain
    assert op.fill_s == pytest.approx(381 / 1.05e9, rel=1e-12)


# -- CIM units --------------------------------------------------------------------------------
# CIM-TPU core: 128 rows x 256 bit columns: 32 int8 outputs per core (16 bf16); grid 16 x 8;
# 128 int8 MACs a cycle (64 bf16); inputs 1 bit a cycle; weights written 256 bits a cycle;
# 4 KiB partial-sum buffer. Per int8 row: max(ceil(128 x 32 / 128), 8 / 1) = 32 cycles;
# bit-serial fill 8; a weight load writes 128 x 32 x 8 bits / 256 = 128 cycles.


def test_decode_gemm_on_the_whole_grid_with_and_without_reload_overlap():
    shape = MatmulShape(1, 1, 7168, 7168, I8)
    t = cim().timing(shape, I8, 16)
    # K tile 16 x 128 = 2048 -> ceil(7168/2048) = 4 K folds; N tile 8 x 32 = 256 -> 28 N folds;
    # 112 folds over 4 units: 28 each. A fold computes 1 row x 32 + 8 = 40 cycles; its reload
    # (128) overlaps the previous fold: 128 + 27 x max(40, 128) + 40 = 3624
    assert (t.compute_cycles, t.folds) == (3624, 112)
    assert t.stream_cycles == 28 * 1 * 32  # 28 folds of one 32-cycle row on the busiest unit
    # every weight written once: 7168 x 7168 bytes; A broadcast once per N fold: 28 x 7168
    assert t.weight_write_bytes == t.b_reads == 7168 * 7168
    assert (t.a_reads, t.out_writes) == (28 * 7168, 7168)
    assert t.peak_macs_per_cycle == 4 * 128 * 128
    serial = cim("mxu.cim.reload_overlap=false").timing(shape, I8, 16)
    # without overlap every fold pays load + compute: 28 x (128 + 40) = 4704
    assert serial.compute_cycles == 4704


def test_a_slower_core_clock_stretches_every_core_cycle():
    # the same decode GEMM with the cores at 0.4 x the chip's clock: each of the 3624 core cycles
    # takes 1 / 0.4 chip cycles: ceil(3624 / 0.4) = 9060; the stream 896 / 0.4 = 2240; the peak
    # 4 x 128 x 128 x 0.4 MACs a chip cycle
    t = cim("mxu.cim.clock_ratio=0.4").timing(MatmulShape(1, 1, 7168, 7168, I8), I8, 16)
    assert (t.compute_cycles, t.stream_cycles) == (9060, pytest.approx(2240.0))
    assert t.peak_macs_per_cycle == pytest.approx(4 * 128 * 128 * 0.4)
    assert t.weight_write_bytes == 7168 * 7168  # the work is the same


def test_decode_gemm_on_half_grids():
    # g_k = 8: two 8-row groups per unit, K tile 1024 -> 7 K folds x 28 N folds = 196 folds
    # over 4 x 2 = 8 sub-units: 25 on the busiest: 128 + 24 x 128 + 40 = 3240
    t = cim().timing(MatmulShape(1, 1, 7168, 7168, I8), I8, 8)
    assert (t.compute_cycles, t.folds, t.weight_write_bytes) == (3240, 196, 7168 * 7168)
    serial = cim("mxu.cim.reload_overlap=false").timing(MatmulShape(1, 1, 7168, 7168, I8), I8, 8)
    assert serial.compute_cycles == 25 * 168


def test_one_fold_split_over_idle_units_writes_a_weight_copy_each():
    # M = 64, K = 2048, N = 256: one fold; 4 units idle but one: the 64 rows split 4 ways,
    # 16 rows each, each unit writing its own copy: 128 + 16 x 32 + 8 = 648
    t = cim().timing(MatmulShape(1, 64, 2048, 256, I8), I8, 16)
    assert (t.compute_cycles, t.folds) == (648, 4)
    assert t.weight_write_bytes == t.b_reads == 4 * 2048 * 256
    assert t.a_reads == 64 * 2048  # one N fold


def test_partial_sums_chunk_m_and_reload_per_chunk():
    # K = 4096 needs 2 K folds: partial sums of 32 int32 outputs per core fill 4 KiB at
    # 4096 / (32 x 4) = 32 rows, so M = 96 runs in 3 chunks of 32, each reloading the weights.
    # folds 3 chunks x 2 K x 1 N = 6 on one unit; a fold computes 32 x 32 + 8 = 1032 (> 128
    # load): 128 + 5 x 1032 + 1032 = 6320
    t = cim("mxu.count=1").timing(MatmulShape(1, 96, 4096, 256, I8), I8, 16)
    assert (t.compute_cycles, t.folds, t.stream_cycles) == (6320, 6, 6 * 32 * 32)
    assert t.weight_write_bytes == 3 * 4096 * 256
    serial = cim("mxu.count=1", "mxu.cim.reload_overlap=false").timing(MatmulShape(1, 96, 4096, 256, I8), I8, 16)
    assert serial.compute_cycles == 6 * (128 + 1032)
    # a single K fold keeps no partial sums: M = 96 in one chunk, 96 x 32 + 8 + 128
    one = cim("mxu.count=1").timing(MatmulShape(1, 96, 2048, 256, I8), I8, 16)
    assert (one.compute_cycles, one.weight_write_bytes) == (128 + 96 * 32 + 8, 2048 * 256)


def test_bf16_on_cim():
    # bf16: 16 outputs per core (N tile 128), rows at 64 MACs a cycle: ceil(128 x 16 / 64) = 32
    # cycles, fill 16 bits, load 128 x 16 x 16 / 256 = 128 cycles. M = 8, K = 2048, N = 128:
    # one fold: 128 + 8 x 32 + 16 = 400; weights 2048 x 128 x 2 bytes
    t = cim("mxu.count=1").timing(MatmulShape(1, 8, 2048, 128, BF16), BF16, 16)
    assert (t.compute_cycles, t.weight_write_bytes, t.a_reads) == (400, 2048 * 128 * 2, 8 * 2048 * 2)
    # partial sums: 4096 / (16 x 4) = 64 rows per chunk with 2 K folds: M = 128 -> 2 chunks,
    # 4 folds of 64 x 32 + 16 = 2064: 128 + 3 x 2064 + 2064
    t = cim("mxu.count=1").timing(MatmulShape(1, 128, 4096, 128, BF16), BF16, 16)
    assert (t.compute_cycles, t.weight_write_bytes) == (128 + 4 * 2064, 2 * 4096 * 128 * 2)


def test_bit_serial_input_bounds_a_fast_core():
    # 4096 MACs a cycle: a row's 32 x 128 MACs take 1 cycle but its 8 bits take 8
    t = cim("mxu.count=1", "mxu.cim.macs_per_cycle.int8=4096").timing(MatmulShape(1, 10, 2048, 256, I8), I8, 16)
    assert t.compute_cycles == 128 + 10 * 8 + 8
    # 2 input bits a cycle: 4 cycles a row, fill 4
    t = cim("mxu.count=1", "mxu.cim.macs_per_cycle.int8=4096", "mxu.cim.input_bits_per_cycle=2").timing(
        MatmulShape(1, 10, 2048, 256, I8), I8, 16)
    assert t.compute_cycles == 128 + 10 * 4 + 4
    # a wider write port loads faster: 512 bits a cycle, 64-cycle loads
    t = cim("mxu.count=1", "mxu.cim.weight_write_bits_per_cycle=512").timing(MatmulShape(1, 10, 2048, 256, I8), I8, 16)
    assert t.compute_cycles == 64 + 10 * 32 + 8


def test_a_one_row_grid_has_one_split():
    # grid 1 x 8: K tile 128, N tile 256, so M = 16, K = 256, N = 512 is 2 x 2 = 4 folds on one
    # unit; psum chunk 32 >= 16 rows; a fold 16 x 32 + 8 = 520: 128 + 3 x 520 + 520 = 2208
    unit = cim("mxu.count=1", "mxu.cim.grid=[1, 8]")
    t = unit.timing(MatmulShape(1, 16, 256, 512, I8), I8, 1)
    assert (t.compute_cycles, t.folds, t.weight_write_bytes) == (2208, 4, 256 * 512)
    assert t.a_reads == 2 * 16 * 256  # two N folds
    assert t.peak_macs_per_cycle == 8 * 128


# -- the vector unit --------------------------------------------------------------------------

def test_vector_cycles(tpuv4i):
    vpu = tpuv4i.vpu  # 1024 lanes, 2 ALU ops a lane a cycle, 2 cycles a transcendental
    # 10000 / 2048 + 3000 x 2 / 1024 = 4.883 + 5.859 = 10.74 -> 11
    assert vector_cycles(vpu, VectorWork(10000, 3000)) == 11
    # one rounding for both parts: 1024 / 2048 + 256 x 2 / 1024 = 1 cycle, not 2
    assert vector_cycles(vpu, VectorWork(1024, 256)) == 1
    assert vector_cycles(vpu, VectorWork(2049, 0)) == 2
    assert vector_cycles(vpu, VectorWork(0, 513)) == 2
    assert vector_cycles(vpu, VectorWork(0, 0)) == 0
    slow = load_hardware(TPUV4I, ["vpu.special_cycles_per_op=5", "vpu.alu_ops_per_lane_per_cycle=1"]).vpu
    # 4096 / 1024 + 1024 x 5 / 1024 = 4 + 5
    assert vector_cycles(slow, VectorWork(4096, 1024)) == 9


def test_macs_per_cycle_and_peak(tpuv4i):
    cim_hw = load_hardware(CIM)
    # 4 x 128 x 128 x 1.05 GHz; CIM: 4 units x 16 x 8 cores x 128 MACs
    assert tpuv4i.peak_macs_per_second(I8) == pytest.approx(4 * 16384 * 1.05e9, rel=1e-15)
    assert cim_hw.mxu.macs_per_cycle(I8) == 16 * 8 * 128 and cim_hw.mxu.macs_per_cycle(BF16) == 16 * 8 * 64
    assert math.isclose(cim_hw.peak_macs_per_second(BF16), 4 * 8192 * 1.05e9)


def test_a_gemm_batch_shares_its_weight():
    # 4 x 16 rows against one 128 x 128 weight: the batch folds into M = 64: one fold,
    # 128 + 64 + 254 - 1 = 445 cycles, the weight read once
    from archsim.ir.graph import OpGraph, Phase, Workload
    from archsim.ir.ops import Gemm
    from archsim.ir.tensor import Role, Tensor
    from archsim.sim.engine import Simulator

    a, c = Tensor("a", (4, 16, 128), I8), Tensor("c", (4, 16, 128), I8)
    b = Tensor("b", (128, 128), I8, Role.WEIGHT)
    w = Workload("w", (Phase("p", OpGraph([Gemm("g", (a, b), (c,), 4, 16, 128, 128, False)])),))
    (op,) = Simulator(load_hardware(TPUV4I, ["mxu.count=1"])).run(w).ops
    assert op.compute_cycles == 445
    assert op.traffic.hbm_read == 128 * 128


def test_undominated_as_arrays_keeps_what_the_pairwise_test_keeps():
    """A CIM unit offers its grid splits times its counts (48 timings at 8 units of a 32-row
    grid): ``undominated`` compares them as arrays above a few; the kept timings and their order
    are those of the pairwise test, on random timings that tie and dominate often, and none
    kept is beaten by another on every count."""
    import random

    from archsim.hw.matrix import base
    from archsim.hw.matrix.base import ArrayTiming

    rng = random.Random(22)
    for _ in range(400):
        timings = [ArrayTiming(compute_cycles=rng.choice([10, 20, 30, 40]), folds=rng.choice([1, 2, 4]), macs=1,
                               peak_macs_per_cycle=1, a_reads=rng.choice([1.0, 2.0, 3.0]), b_reads=rng.choice([1.0, 2.0]),
                               out_writes=1.0, weight_write_bytes=rng.choice([0.0, 5.0]))
                   for _ in range(rng.randrange(1, 40))]
        distinct = list(dict.fromkeys(timings))
        pairwise = [x for i, x in enumerate(distinct)
                    if not any(y.compute_cycles <= x.compute_cycles and y.folds >= x.folds and y.a_reads <= x.a_reads
                               and y.b_reads <= x.b_reads and y.weight_write_bytes <= x.weight_write_bytes
                               and (j < i or not (x.compute_cycles <= y.compute_cycles and x.folds >= y.folds
                                                  and x.a_reads <= y.a_reads and x.b_reads <= y.b_reads
                                                  and x.weight_write_bytes <= y.weight_write_bytes))
                               for j, y in enumerate(distinct) if j != i)]
        assert list(base.undominated(timings)) == pairwise
        if len(distinct) > 1:
            assert list(base._undominated_arrays(distinct)) == pairwise
