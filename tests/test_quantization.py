"""Weight-only quantisation: weights stored, moved and counted at their own width; converted
to the MACs' type on the vector unit as the arrays read them. Values by hand."""

from __future__ import annotations

import math

import pytest

from archsim.api import Simulator, load_hardware
from archsim.dtypes import DType
from archsim.hw.matrix import MatmulShape, build_matrix_unit
from archsim.hw.tiling import Channels, TilingError, tile_matmul
from archsim.hw.memory import Level
from archsim.ir.graph import OpGraph, Phase, Workload
from archsim.ir.ops import Gemm
from archsim.ir.tensor import Role, Tensor
from archsim.sim.engine import UnsupportedOpError
from conftest import HW

M, K, N = 8, 1024, 1024


def gemm(weights: DType, activations: DType) -> Workload:
    a = Tensor("x", (M, K), activations)
    w = Tensor("w", (K, N), weights, Role.WEIGHT)
    y = Tensor("y", (M, N), activations)
    return Workload("gemm", (Phase("p", OpGraph([Gemm("g", (a, w), (y,), 1, M, K, N, False)])),))


@pytest.fixture(scope="module")
def tpu():
    # one MXU, no CMEM: every tensor lives in HBM and is read from it
    # calibration fields neutral (tests/data/tpuv4i_plain.yaml): the fold counts below are for it
    return load_hardware(HW.parent / "tests" / "data" / "tpuv4i_plain.yaml", ["mxu.count=1", "cmem=null"])


def only_op(hw, workload):
    result = Simulator(hw).run(workload)
    assert result.feasible, result.reason
    (op,) = result.ops
    return op


def test_int4_weights_move_half_the_bytes_of_int8(tpu):
    w4a8, w8a8 = only_op(tpu, gemm(DType.INT4, DType.INT8)), only_op(tpu, gemm(DType.INT8, DType.INT8))
    # everything fits VMEM: A and W read once from HBM, Y written once
    assert w8a8.traffic.hbm_read == M * K * 1 + K * N * 1
    assert w4a8.traffic.hbm_read == M * K * 1 + K * N * 0.5  # 8 KiB + 512 KiB
    assert w4a8.traffic.hbm_write == w8a8.traffic.hbm_write == M * N * 1


def test_int8_weights_with_bf16_activations_move_int8_weights(tpu):
    w8a16, bf16 = only_op(tpu, gemm(DType.INT8, DType.BF16)), only_op(tpu, gemm(DType.BF16, DType.BF16))
    assert bf16.traffic.hbm_read == M * K * 2 + K * N * 2
    assert w8a16.traffic.hbm_read == M * K * 2 + K * N * 1
    assert w8a16.macs == bf16.macs == M * K * N


def test_conversion_runs_on_the_vector_unit_beside_the_arrays(tpu):
    op = only_op(tpu, gemm(DType.INT4, DType.INT8))
    # ws on one unit: every weight element is fed to the array once; 2 ALU ops each (tpuv4i.yaml)
    ops_ = 2 * K * N
    assert op.vector_ops == ops_
    # 1024 lanes x 2 ALU ops a cycle: 1024 cycles, well inside the array's time
    convert_s = math.ceil(ops_ / (1024 * 2)) / tpu.clock
    assert convert_s < op.compute_s
    # the array: 64 folds of 128x128 weights; pipelined: 128 load + 63 x max(8, 128) + 8 + 254 - 1
    assert op.compute_cycles == 128 + 63 * 128 + 8 + 254 - 1
    # its energy: 0.845 pJ per ALU op at 7 nm (the VPU's figure is stated at the chip's node)
    assert op.energy.vpu == pytest.approx(ops_ * 0.845e-12, rel=1e-12)
    # the MACs run at int8: 2.598 pJ at 22 nm, scaled by 0.11 / 0.30 to 7 nm; the weights are
    # loaded into the array once, at their stored width (int4: K x N / 2 bytes) at 2.90 pJ/B
    assert op.energy.mxu == pytest.approx((M * K * N * 2.598e-12 + K * N / 2 * 2.90e-12) * 0.11 / 0.30, rel=1e-12)
    same_width = only_op(tpu, gemm(DType.INT8, DType.INT8))
    assert same_width.vector_ops == 0 and same_width.energy.vpu == 0


def test_conversion_that_outlasts_the_arrays_bounds_the_op():
    hw = load_hardware(HW / "tpuv4i.yaml", ["mxu.count=1", "cmem=null", "vpu.lanes=8",
                                             "vpu.convert_ops_per_element=4"])
    op = only_op(hw, gemm(DType.INT4, DType.INT8))
    convert_s = math.ceil(4 * K * N / (8 * 2)) / hw.clock  # 262,144 cycles on 8 lanes
    assert op.compute_s == convert_s
    assert op.bottleneck == "vpu"


def test_a_chip_that_does_not_say_how_it_converts_is_an_error():
    hw = load_hardware(HW / "tpuv4i.yaml", ["vpu.convert_ops_per_element=null"])
    with pytest.raises(UnsupportedOpError, match="vpu.convert_ops_per_element"):
        Simulator(hw).run(gemm(DType.INT4, DType.INT8))


def test_cim_reads_stored_weights_and_writes_them_at_the_compute_width():
    hw = load_hardware(HW / "cim_tpu.yaml", ["mxu.count=1"])
    unit = build_matrix_unit(hw.mxu)
    # one fold: K 2048 <= 16 x 128 rows, N 256 <= 8 cores x 32 int8 outputs
    t4 = unit.timing(MatmulShape(1, 64, 2048, 256, DType.INT8, b_stored=DType.INT4), DType.INT8)
    t8 = unit.timing(MatmulShape(1, 64, 2048, 256, DType.INT8), DType.INT8)
    assert t4.b_reads == 2048 * 256 * 0.5  # read from VMEM at int4
    assert t4.weight_write_bytes == t8.weight_write_bytes == 2048 * 256 * 1  # the SRAM holds int8
    assert t4.compute_cycles == t8.compute_cycles == 128 + 64 * 32 + 8


def test_vmem_tiles_hold_weights_at_their_storage_width():
    channels = Channels(2816.0, ((Level.VMEM, 1e12), (Level.HBM, 1e11)))
    # the only candidate is 16x16x16: 2 x (256 A + 256 B + 256 x 4 acc) = 3072 B at int8 weights,
    # 2 x (256 + 128 + 1024) = 2816 B at int4
    narrow = MatmulShape(1, 16, 16, 16, DType.INT8, b_stored=DType.INT4)
    assert tile_matmul(narrow, 1.0, 4.0, (Level.HBM,) * 3, (0.0, 0.0, 0.0), 1, channels).tiles == 1
    with pytest.raises(TilingError):
        tile_matmul(MatmulShape(1, 16, 16, 16, DType.INT8), 1.0, 4.0, (Level.HBM,) * 3, (0.0, 0.0, 0.0), 1,
                    channels)


def test_two_types_of_one_width_are_an_error_not_a_guess(tpu):
    for a, w in ((DType.INT8, DType.FP8), (DType.FP8, DType.INT8), (DType.BF16, DType.FP16)):
        with pytest.raises(UnsupportedOpError, match=f"multiplies {a} by {w}: two types of one width"):
            Simulator(tpu).run(gemm(w, a))


def test_int4_weights_take_half_the_capacity():
    # a 4096 x 4096 weight: 16 MiB at int8, 8 MiB at int4; with 1 MiB of activations, a 12 MiB
    # HBM (and no CMEM) holds the int4 one only
    hw = load_hardware(HW / "tpuv4i.yaml", ["cmem=null", "hbm.capacity=12 MiB"])

    def square(weights):
        a, w, y = Tensor("x", (64, 4096), DType.INT8), Tensor("w", (4096, 4096), weights, Role.WEIGHT), \
            Tensor("y", (64, 4096), DType.INT8)
        return Workload("g", (Phase("p", OpGraph([Gemm("g", (a, w), (y,), 1, 64, 4096, 4096, False)])),))

    assert Simulator(hw).run(square(DType.INT4)).feasible
    wide = Simulator(hw).run(square(DType.INT8))  # 16 MiB + 2 x 256 KiB of activations
    assert not wide.feasible and "16.5 MiB of HBM" in wide.reason
