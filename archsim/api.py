"""The Python API, for notebooks and scripts; the CLI is a thin layer over it.

    from archsim import api
    hw = api.load_hardware("hw_configs/tpuv4i.yaml", ["mxu.count=8"])
    result = api.simulate(hw, api.load_workload("workloads/gpt3_30b_layer_prefill.yaml"))
    result.latency_s, result.utilization, result.table()
"""

from __future__ import annotations

from archsim.config.loader import load_hardware
from archsim.dtypes import DType
from archsim.ir.graph import OpGraph, Phase, Workload
from archsim.ir.ops import Gemm
from archsim.ir.tensor import Role, Tensor
from archsim.sim.engine import Simulator, simulate
from archsim.sim.result import RunResult
from archsim.workloads import load_workload

__all__ = ["Simulator", "gemm_workload", "load_hardware", "load_workload", "run_gemm", "simulate"]


def gemm_workload(m: int, k: int, n: int, dtype: DType = DType.INT8) -> Workload:
    """One GEMM: activations A[m, k] times weights B[k, n]."""
    a = Tensor("A", (m, k), dtype)
    b = Tensor("B", (k, n), dtype, Role.WEIGHT)
    out = Tensor("C", (m, n), dtype)
    graph = OpGraph([Gemm("gemm", (a, b), (out,), 1, m, k, n, False)])
    return Workload(f"gemm {m}x{k}x{n} {dtype}", (Phase("gemm", graph),))


def run_gemm(hw, m: int, k: int, n: int, dtype: DType = DType.INT8) -> RunResult:
    return simulate(hw, gemm_workload(m, k, n, dtype))
