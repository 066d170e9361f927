"""The Python API, for notebooks and scripts; the CLI is a thin layer over it.

    from archsim import api
    hw = api.load_hardware("hw_configs/tpuv4i.yaml", ["mxu.count=8"])
    result = api.simulate(hw, api.load_workload("workloads/gpt3_30b_layer_prefill.yaml", hw=hw))
    result.latency_s, result.utilization, result.table()

A config with a ``system:`` section (several chips, a parallel mapping) gives a ``SystemResult``;
load the workload with ``hw=`` so it is lowered for one chip of that mapping.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from archsim.chips import build_chip
from archsim.config.loader import HARDWARE_KEYS, Override, load_hardware, load_layered, parse_overrides
from archsim.config.schema import HardwareConfig
from archsim.config.system import SystemConfig
from archsim.dtypes import DType
from archsim.errors import ConfigError
from archsim.ir.graph import OpGraph, Phase, Workload
from archsim.ir.ops import Gemm
from archsim.ir.tensor import Role, Tensor
from archsim.sim.engine import Simulator
from archsim.sim.result import RunResult
from archsim.system.result import SystemResult
from archsim.system.simulator import SystemSimulator
from archsim.workloads import base as _workloads

__all__ = ["Simulator", "SystemSimulator", "gemm_workload", "load_hardware", "load_workload", "run_gemm", "simulate"]


def is_system(hw: HardwareConfig) -> bool:
    """Whether ``hw`` describes more than one plain chip (several chips or micro-batches)."""
    return hw.system != SystemConfig()


def simulate(hw: HardwareConfig, workload: Workload, dispatch: str = "program") -> RunResult | SystemResult:
    """Evaluate ``workload`` on ``hw``: a chip's ``RunResult``, or a ``SystemResult`` when the
    config maps the workload onto a system. ``dispatch``: ``program`` (the ops of one compiled
    program) or ``call`` (every op launched on its own), for ``hw.dispatch``'s costs."""
    if is_system(hw):
        return SystemSimulator(hw, dispatch).run(workload)
    return build_chip(hw, dispatch=dispatch).run(workload)


def load_workload(path: str | Path, overrides: Sequence[Override] | Sequence[str] = (),
                  hw: HardwareConfig | None = None) -> Workload:
    """A workload file lowered for one chip of ``hw``'s parallel mapping (a plain chip: as is).
    ``overrides`` are ``Override`` objects or ``"key.path=value"`` strings, as for hardware."""
    lowering = _workloads.Lowering.of(hw) if hw is not None else _workloads.Lowering()
    parsed = [o if isinstance(o, Override) else parse_overrides([o])[0] for o in overrides]
    try:
        return _workloads.load_workload(path, parsed, lowering)
    except ConfigError:
        if file_kind(path) == "hardware":  # say so, rather than that its 'kind' is missing
            raise ConfigError(f"this is a hardware config, not a workload, which names its kind (one of: "
                              f"{', '.join(_workloads.workload_kinds())})", file=str(path)) from None
        raise


def file_kind(path: str | Path) -> str | None:
    """What a file holds, by its top-level keys (with its ``extends:`` chain): 'workload' (a
    ``kind:`` of a workload kind), 'hardware' (``clock``, ``mxu``, ...), or None (neither, or
    unreadable). For errors that tell the user which file goes where."""
    try:
        data = load_layered(path).data
    except ConfigError:
        return None
    if data.get("kind") in _workloads.workload_kinds():
        return "workload"
    return "hardware" if any(key in data for key in HARDWARE_KEYS) else None


def gemm_workload(m: int, k: int, n: int, dtype: DType = DType.INT8) -> Workload:
    """One GEMM: activations A[m, k] times weights B[k, n]."""
    a = Tensor("A", (m, k), dtype)
    b = Tensor("B", (k, n), dtype, Role.WEIGHT)
    out = Tensor("C", (m, n), dtype)
    graph = OpGraph([Gemm("gemm", (a, b), (out,), 1, m, k, n, False)])
    return Workload(f"gemm {m}x{k}x{n} {dtype}", (Phase("gemm", graph),))


def run_gemm(hw, m: int, k: int, n: int, dtype: DType = DType.INT8) -> RunResult:
    return build_chip(hw).run(gemm_workload(m, k, n, dtype))
