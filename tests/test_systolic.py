"""Systolic MXU timing against SCALE-Sim v3: its closed form and runs of the real tool."""

import csv
import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from archsim.api import load_hardware, run_gemm
from archsim.dtypes import DType
from archsim.hw.matrix import MatmulShape, build_matrix_unit
from tests.conftest import TPUV4I, TPUV4I_PLAIN

DATA = Path(__file__).parent / "data" / "scalesim_v3_runs.csv"


def scalesim_formula(dataflow, m, k, n, r, c):
    """docs/sources/papers.md#scale-sim-cycle-counts (ws, os); is is ws with m and n swapped
    (SCALE-Sim's systolic_compute_is.py maps K to rows and M to columns and streams N)."""
    if dataflow == "ws":
        return math.ceil(k / r) * math.ceil(n / c) * (m + 2 * r + c - 2) - 1
    if dataflow == "is":
        return math.ceil(k / r) * math.ceil(m / c) * (n + 2 * r + c - 2) - 1
    return math.ceil(m / r) * math.ceil(n / c) * (k + r + c - 2) - 1


def one_array(dataflow, rows=128, cols=128, fold_model="scalesim"):
    return load_hardware(TPUV4I, ["mxu.count=1", f"mxu.rows={rows}", f"mxu.cols={cols}",
                                  f"mxu.dataflow={dataflow}", f"mxu.fold_model={fold_model}"])


HW = {df: one_array(df) for df in ("ws", "os", "is")}
dims = st.integers(min_value=1, max_value=5000)


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(["ws", "os", "is"]), dims, dims, dims)
def test_compute_cycles_equal_scalesim_formula(dataflow, m, k, n):
    result = run_gemm(HW[dataflow], m, k, n, DType.INT8)
    assert result.ops[-1].compute_cycles == scalesim_formula(dataflow, m, k, n, 128, 128)


def test_example_from_reference():
    # docs/sources/papers.md#scale-sim-cycle-counts: M=256, K=1152, N=1152 on 128x128:
    # WS 51,677 cycles, OS 25,307.
    assert run_gemm(HW["ws"], 256, 1152, 1152).ops[-1].compute_cycles == 51677
    assert run_gemm(HW["os"], 256, 1152, 1152).ops[-1].compute_cycles == 25307


def _recorded_runs():
    with DATA.open() as f:
        return [{k: (v if k == "dataflow" else int(v)) for k, v in row.items() if k != "compute_util_pct"}
                for row in csv.DictReader(f)]


@pytest.mark.parametrize("run", _recorded_runs(), ids=lambda r: f"{r['rows']}x{r['cols']}-{r['dataflow']}-{r['M']}x{r['K']}x{r['N']}")
def test_matches_scalesim_runs(run):
    """Runs of SCALE-Sim 3.0.0 itself (how: tests/data/scalesim_v3_runs.md): difference 0 cycles."""
    hw = one_array(run["dataflow"], run["rows"], run["cols"])
    got = run_gemm(hw, run["M"], run["K"], run["N"]).ops[-1].compute_cycles
    assert got - run["total_cycles"] == 0


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(["ws", "os", "is"]), dims, dims, dims, st.integers(1, 8))
def test_pipelined_never_slower_and_equal_for_one_fold(dataflow, m, k, n, count):
    base = load_hardware(TPUV4I, [f"mxu.count={count}", f"mxu.dataflow={dataflow}"])
    shape = MatmulShape(1, m, k, n, DType.INT8)
    pipelined = build_matrix_unit(base.mxu).timing(shape, DType.INT8)
    scalesim = build_matrix_unit(base.mxu.model_copy(update={"fold_model": "scalesim"})).timing(shape, DType.INT8)
    assert pipelined.compute_cycles <= scalesim.compute_cycles
    if math.ceil(pipelined.folds / count) == 1:
        assert pipelined.compute_cycles == scalesim.compute_cycles


def test_pipelined_decode_gemm_is_bound_by_weight_swaps():
    # M=8: each fold streams 8 rows but must wait 128 cycles for the next 128x128 weight tile
    # (the weight load fully overlapped: tests/data/tpuv4i_plain.yaml).
    shape = MatmulShape(1, 8, 7168, 7168, DType.INT8)
    t = build_matrix_unit(load_hardware(TPUV4I_PLAIN).mxu).timing(shape, DType.INT8)
    folds_per_unit = (7168 // 128) ** 2 // 4
    assert t.compute_cycles == 128 + (folds_per_unit - 1) * 128 + 8 + 128 + 128 - 2 - 1


def test_multiple_units_share_folds():
    hw4 = load_hardware(TPUV4I, ["mxu.fold_model=scalesim"])
    c4 = run_gemm(hw4, 256, 1152, 1152).ops[-1].compute_cycles
    # 81 folds over 4 units -> 21 folds on the busiest
    assert c4 == 21 * (256 + 2 * 128 + 128 - 2) - 1


def test_pe_rate_packs_reduction(tmp_path):
    hw = load_hardware(TPUV4I, ["mxu.count=1", "mxu.fold_model=scalesim", "mxu.pe_macs_per_cycle.int8=2"])
    assert run_gemm(hw, 256, 1152, 1152).ops[-1].compute_cycles == scalesim_formula("ws", 256, 576, 1152, 128, 128)
