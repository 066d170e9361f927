"""Metrics that must read right: what bounds an op, and power against the TDP."""

from __future__ import annotations

import pytest

from archsim import report
from archsim.api import load_hardware, run_gemm
from archsim.dtypes import DType
from conftest import HW


@pytest.fixture(scope="module")
def tpuv4i():
    """Calibration fields neutral (weight loads hidden): the fold counts below are for that."""
    return load_hardware(HW.parent / "tests" / "data" / "tpuv4i_plain.yaml")


def test_a_decode_gemm_is_bound_by_array_fill_not_compute(tpuv4i):
    (op,) = run_gemm(tpuv4i, 8, 4096, 4096).ops
    # 32 x 32 weight folds over 4 MXUs: 256 each. Pipelined: 128 + 255 x max(8, 128) + 8 + 254 - 1
    assert op.compute_cycles == 128 + 255 * 128 + 8 + 254 - 1
    # of which the array streams 256 folds x 8 rows; the rest swaps weights, fills and drains
    assert op.fill_s == pytest.approx((op.compute_cycles - 256 * 8) / 1.05e9, rel=1e-12)
    assert op.compute_s > op.memory_s  # the MXUs are the bottleneck...
    assert op.bound == "array-fill" and op.utilization < 0.07  # ...but not for their MACs


def test_a_prefill_gemm_is_compute_bound(tpuv4i):
    (op,) = run_gemm(tpuv4i, 2048, 4096, 4096).ops
    # 256 folds per MXU, each streaming 2048 rows: max(2048, 128) per fold
    assert op.fill_s == pytest.approx((op.compute_cycles - 256 * 2048) / 1.05e9, rel=1e-12)
    assert op.bound == "compute" and op.utilization > 0.99


def test_average_power_above_the_tdp_is_flagged(tpuv4i):
    result = run_gemm(tpuv4i, 2048, 4096, 11008, DType.BF16)
    assert result.tdp_w == 175.0  # tpuv4i.yaml, [J21]
    assert result.power_w == pytest.approx(result.energy.total / result.latency_s, rel=1e-12)
    assert result.power_w > 175.0 and result.over_tdp
    assert "WARNING" in report.power_text(result) and "175 W TDP" in report.power_text(result)
    warm = run_gemm(load_hardware(HW / "tpuv4i.yaml", ["tdp=300 W"]), 2048, 4096, 11008, DType.BF16)
    assert 300 < warm.power_w < 600 and warm.over_tdp  # flagged however little above
    cooler = run_gemm(load_hardware(HW / "tpuv4i.yaml", ["tdp=1 kW"]), 2048, 4096, 11008, DType.BF16)
    assert not cooler.over_tdp and "WARNING" not in report.power_text(cooler)
    unknown = run_gemm(load_hardware(HW / "tpuv4i.yaml", ["tdp=null"]), 2048, 4096, 11008, DType.BF16)
    assert unknown.tdp_w is None and not unknown.over_tdp


def test_a_tdp_must_be_positive():
    from archsim.errors import ArchsimError

    with pytest.raises(ArchsimError, match="tdp: must be positive"):
        load_hardware(HW / "tpuv4i.yaml", ["tdp=0 W"])


def test_fill_is_never_negative():
    # a 1x1 output-stationary array under SCALE-Sim's count: one fold of K = 4 streams 4 cycles
    # but is counted 4 + 1 + 1 - 2 - 1 = 3 (its -1); the fill is 0, not -1 cycle
    hw = load_hardware(HW / "tpuv4i.yaml", ["mxu.count=1", "mxu.rows=1", "mxu.cols=1", "mxu.dataflow=os",
                                             "mxu.fold_model=scalesim"])
    (op,) = run_gemm(hw, 1, 4, 1).ops
    assert op.compute_cycles == 3 and op.fill_s == 0.0
