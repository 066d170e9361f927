"""The chip's calibration fields a fit may set: a registry.

Each ``Parameter`` names its config key, its unit (seconds, or a plain number), its bounds, the
measured ops whose rows it affects (the CSV's op names), how to read its current value from a
loaded config, and where the fit's search looks: a fixed starting value and a grid of values
within the bounds (``fit``'s coordinate search; neither depends on the config, so neither does
the fit's answer). A fit varies only parameters whose ops occur in its data (and, for the MXU's
weight-load overlap, a chip whose matrix units are systolic arrays), and among those the ones
``chosen`` says the rows can tell apart from the others.

The contract a fit relies on (for its Jacobian's sparsity and its memo): a parameter changes
the predicted time of the rows of its ``ops`` only (``parameters_for`` widens the GEMM's dispatch
cost, which also sets the default, to the rows that would take the default).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Callable, Sequence

import numpy as np

from archsim.calibrate.measurements import OPS, Measurement
from archsim.config.gpu import GpuMemoryConfig, L2Config, SmConfig
from archsim.config.loader import Override
from archsim.config.schema import (DispatchConfig, HardwareConfig, IciConfig, MemoryLevelConfig, SystolicConfig,
                                   VectorUnitConfig)
from archsim.errors import ConfigError
from archsim.units import TIME, format_quantity, parse_quantity

SECONDS = "s"
PLAIN = ""
GRID_POINTS = 12  # values per parameter in the coordinate search


@dataclass(frozen=True)
class Parameter:
    key: str  # dotted config key path
    unit: str  # SECONDS or PLAIN
    low: float
    high: float
    scale: float  # a typical size: the fit varies value / scale, so every variable is about 1
    ops: frozenset[str]  # the CSV ops whose rows it affects
    read: Callable[[HardwareConfig], float] = field(compare=False)
    applies: Callable[[HardwareConfig], bool] = field(default=lambda hw: True, compare=False)
    start: float = 0.0  # where the coordinate search starts (the ideal machine's value)
    grid: tuple[float, ...] = ()  # the coordinate search's values, within [low, high]
    also: tuple[str, ...] = ()  # keys set to the same value (the GEMM's dispatch cost: the default too)
    # Whether a fit picks it when no keys are given; else a sentence saying why not (``held``).
    chosen: Callable[[HardwareConfig, Sequence[Measurement]], bool] = field(default=lambda hw, rows: True,
                                                                           compare=False)
    held: str = ""

    @property
    def path(self) -> tuple[str, ...]:
        return tuple(self.key.split("."))

    @property
    def keys(self) -> tuple[str, ...]:
        return (self.key, *self.also)

    def text(self, value: float) -> str:
        """The value as written in a config, 4 significant digits: '112.3 us', '0.78'."""
        if self.unit == SECONDS:
            return format_quantity(value, TIME, 4) if value else "0 s"
        return f"{value:.4g}"

    def rounded(self, value: float) -> float:
        """The value a config reads back from ``text(value)``."""
        return _parse(self.text(value), self.unit)

    def overrides(self, value: float, label: str) -> tuple[Override, ...]:
        """Overrides setting this key (and ``also``'s) to ``value`` (exactly: seconds as '<repr> s')."""
        written = f"{value!r} s" if self.unit == SECONDS else value
        return tuple(Override(tuple(key.split(".")), written, f"{key}={written}", label) for key in self.keys)


def _parse(text: str, unit: str) -> float:
    return parse_quantity(text, TIME) if unit == SECONDS else float(text)


def _lin(low: float, high: float) -> tuple[float, ...]:
    return tuple(float(v) for v in np.linspace(low, high, GRID_POINTS))


def _log(low: float, high: float, zero: bool = False) -> tuple[float, ...]:
    """Log-spaced from ``low`` to ``high``; with ``zero``, 0 first and one point fewer."""
    points = np.geomspace(low, high, GRID_POINTS - zero)
    return (0.0,) * zero + tuple(float(v) for v in points)


def _special(function: str) -> Callable[[HardwareConfig], float]:
    return lambda hw: hw.vpu.special_cycles.get(function, hw.vpu.special_cycles_per_op)


DISPATCH_GRID = _log(1e-6, 10e-3, zero=True)  # 0, 1 us ... 10 ms


def _dispatch(kind: str) -> Parameter:
    return Parameter(f"dispatch.call.{kind}", SECONDS, 0.0, 10e-3, 100e-6,
                     frozenset(op for op, k in OPS.items() if k == kind),
                     lambda hw: hw.dispatch.cost("call", kind), start=0.0, grid=DISPATCH_GRID,
                     # The GEMM's launch is the default for kinds no row measures (attention's
                     # matmuls, embeddings): an op launched on its own pays at least a launch.
                     also=("dispatch.call.default",) if kind == "gemm" else ())


def _is(kind: str) -> Callable[[HardwareConfig], bool]:
    """A parameter of one chip kind's config (``archsim.config.chips``)."""
    return lambda hw: hw.kind == kind


def _systolic(hw: HardwareConfig) -> bool:
    return hw.kind == "tpu" and hw.mxu.kind == "systolic"


def _overlap(kind: str) -> Parameter:
    """Of a call's cost for ``kind``, the host-side part its kernel hides (the GPU measurements of
    compiled ops: a floor, then a line whose intercept is about 10 us below it)."""
    return Parameter(f"dispatch.call_overlap.{kind}", SECONDS, 0.0, 1e-3, 10e-6,
                     frozenset(op for op, k in OPS.items() if k == kind),
                     lambda hw: hw.dispatch.overlap(kind), _is("gpu"),
                     start=0.0, grid=_log(1e-7, 1e-3, zero=True))


def _ranks_vary(hw: HardwareConfig, rows: Sequence[Measurement]) -> bool:
    return len({r.ranks for r in rows if r.op == "all_reduce"}) > 1


DISPATCH_KINDS = tuple(dict.fromkeys(OPS.values()))  # gemm, softmax, ..., all_reduce
VECTOR_OPS = frozenset(op for op, kind in OPS.items() if kind not in ("gemm", "all_reduce"))

REGISTRY: tuple[Parameter, ...] = (
    *(_dispatch(kind) for kind in DISPATCH_KINDS),
    # every op: an all-reduce also reads its buffer from HBM and writes the result (the longest
    # of its transfer, those bytes and its adds bounds it)
    Parameter("hbm.efficiency", PLAIN, 0.3, 1.0, 1.0, frozenset(OPS), lambda hw: hw.hbm.efficiency,
              start=1.0, grid=_lin(0.3, 1.0)),
    Parameter("mxu.weight_load_overlap", PLAIN, 0.0, 1.0, 1.0, frozenset({"gemm"}),
              lambda hw: hw.mxu.weight_load_overlap, _systolic, start=1.0,
              grid=_lin(0.0, 1.0)),
    # Cycles each pass of a vector op spends per register's worth of its data besides the
    # arithmetic (loads, stores, loop): every vector op's rows.
    Parameter("vpu.pass_cycles_per_vreg", PLAIN, 0.0, 64.0, 8.0, VECTOR_OPS, lambda hw: hw.vpu.pass_cycles_per_vreg,
              applies=_is("tpu"),
              start=0.0, grid=_log(0.5, 64.0, zero=True)),
    # Cycles of one step of a row's reduction across its lanes: the rows of reducing ops.
    Parameter("vpu.reduce_step_cycles", PLAIN, 0.0, 64.0, 2.0, frozenset({"softmax", "layernorm", "rmsnorm"}),
              lambda hw: hw.vpu.reduce_step_cycles,
              applies=_is("tpu"), start=0.0, grid=_log(0.25, 64.0, zero=True)),
    Parameter("vpu.special_cycles.exp", PLAIN, 0.25, 512.0, 4.0, frozenset({"softmax", "silu"}), _special("exp"),
              applies=_is("tpu"),
              start=1.0, grid=_log(0.25, 512.0)),
    Parameter("vpu.special_cycles.tanh", PLAIN, 0.25, 512.0, 4.0, frozenset({"gelu"}), _special("tanh"),
              applies=_is("tpu"),
              start=1.0, grid=_log(0.25, 512.0)),
    Parameter("ici.efficiency", PLAIN, 0.05, 1.0, 1.0, frozenset({"all_reduce"}), lambda hw: hw.ici.efficiency,
              applies=_is("tpu"),
              start=1.0, grid=_log(0.05, 1.0)),
    # A ring all-reduce over n ranks pays 2 (n - 1) hops of link latency per call: with every
    # row over the same number of ranks that is a constant per call, as dispatch.call.all_reduce
    # is, and the two trade one for one (a fit moves 17 us of latency into 240 us less dispatch
    # and back). So the latency is fitted only when the rows span several rank counts (or when
    # asked for by key); otherwise it stays at the config's value, and the fit says so.
    Parameter("ici.link_latency", SECONDS, 0.0, 1e-3, 1e-6, frozenset({"all_reduce"}), lambda hw: hw.ici.link_latency,
              applies=_is("tpu"),
              start=1e-6, grid=_log(1e-7, 1e-3, zero=True), chosen=_ranks_vary,
              held="every all-reduce row is over the same number of ranks, so its hops' latency is a constant per "
                   "call, as dispatch.call.all_reduce is: not identifiable apart from it"),
    # GPUs: the share of the tensor cores' peak a GEMM's main loop sustains; HBM writes' own
    # achievable share (every op writes); NVLink's achievable share (NCCL's bus bandwidth).
    Parameter("sm.tensor_efficiency", PLAIN, 0.3, 1.0, 1.0, frozenset({"gemm"}), lambda hw: hw.sm.tensor_efficiency,
              _is("gpu"), start=1.0, grid=_lin(0.3, 1.0)),
    Parameter("hbm.write_efficiency", PLAIN, 0.2, 1.0, 1.0, frozenset(OPS), lambda hw: hw.hbm.achievable_write_bandwidth
              / hw.hbm.bandwidth, _is("gpu"), start=1.0, grid=_lin(0.2, 1.0)),
    *(_overlap(kind) for kind in DISPATCH_KINDS),
    Parameter("l2.efficiency", PLAIN, 0.05, 1.0, 1.0, frozenset(OPS) - {"all_reduce"}, lambda hw: hw.l2.efficiency,
              _is("gpu"), start=1.0, grid=_log(0.05, 1.0)),
    Parameter("nvlink.efficiency", PLAIN, 0.05, 1.0, 1.0, frozenset({"all_reduce"}), lambda hw: hw.nvlink.efficiency,
              _is("gpu"), start=1.0, grid=_log(0.05, 1.0)),
    # NCCL's protocols as the GPU runs them: the LL protocol's share of the bus bandwidth (small
    # and mid-size collectives) and the LL128 and Simple protocols' fixed latencies (where larger
    # ones start).
    Parameter("collectives.protocols.ll.bandwidth_share", PLAIN, 0.02, 1.0, 0.5, frozenset({"all_reduce"}),
              lambda hw: hw.collectives.protocols["ll"].bandwidth_share,
              lambda hw: hw.kind == "gpu" and "ll" in hw.collectives.protocols, start=0.5, grid=_log(0.02, 1.0)),
    Parameter("collectives.protocols.ll128.base_latency", SECONDS, 0.0, 1e-3, 10e-6, frozenset({"all_reduce"}),
              lambda hw: hw.collectives.protocols["ll128"].base_latency,
              lambda hw: hw.kind == "gpu" and "ll128" in hw.collectives.protocols, start=14e-6,
              grid=_log(1e-6, 1e-3, zero=True)),
    Parameter("collectives.protocols.simple.base_latency", SECONDS, 0.0, 1e-3, 10e-6, frozenset({"all_reduce"}),
              lambda hw: hw.collectives.protocols["simple"].base_latency,
              lambda hw: hw.kind == "gpu" and "simple" in hw.collectives.protocols, start=8.4e-6,
              grid=_log(1e-6, 1e-3, zero=True)),
)
KEYS = tuple(p.key for p in REGISTRY)


def parameters_for(hw: HardwareConfig, rows: Sequence[Measurement],
                   keys: list[str] | None = None) -> tuple[list[Parameter], list[Parameter]]:
    """The parameters to fit to ``rows`` on ``hw``, and those left at the config's value because
    the rows cannot tell them apart from the others (``Parameter.held``). Without ``keys``: every
    one that applies and that the rows inform; with ``keys``: these only (an unknown key, or
    one no row informs, is an error)."""
    ops = {r.op for r in rows}
    if keys is None:
        informed = [p for p in REGISTRY if p.ops & ops and p.applies(hw)]
        chosen = [p for p in informed if p.chosen(hw, rows)]
        return _widen_default(hw, ops, chosen), [p for p in informed if p not in chosen]
    by_key = {p.key: p for p in REGISTRY}
    chosen, problems = [], []
    for key in dict.fromkeys(keys):
        p = by_key.get(key)
        if p is None:
            problems.append(f"{key}: not a calibration field; expected one of: {', '.join(KEYS)}")
        elif not p.ops & ops:
            problems.append(f"{key}: no measured row informs it (it affects {', '.join(sorted(p.ops))} rows)")
        elif not p.applies(hw):
            kind = f"mxu.kind {hw.mxu.kind}" if hw.kind == "tpu" else f"kind {hw.kind}"
            problems.append(f"{key}: does not apply to {hw.name} ({kind})")
        else:
            chosen.append(p)
    if problems:
        raise ConfigError("\n".join(problems))
    return _widen_default(hw, ops, chosen), []


def _widen_default(hw: HardwareConfig, ops: set[str], chosen: list[Parameter]) -> list[Parameter]:
    """The GEMM's dispatch cost also sets ``dispatch.call.default``: it affects the rows of the
    kinds that have no cost of their own, in the config or among the fitted keys."""
    own = set(hw.dispatch.call) | {p.key.rsplit(".", 1)[1] for p in chosen if p.key.startswith("dispatch.call.")}
    out = []
    for p in chosen:
        if "dispatch.call.default" in p.also:
            p = replace(p, ops=p.ops | {op for op in ops if OPS[op] not in own})
        out.append(p)
    return out


def _default(model: type, name: str) -> Any:
    return model.model_fields[name].default


def uncalibrated(hw: HardwareConfig,
                 label: str = "calibration fields at their schema defaults") -> tuple[Override, ...]:
    """Overrides that reset every field the registry fits to its schema default: no dispatch
    cost, full HBM and ICI efficiency, a fully overlapped weight load, no per-function
    transcendental cycles (``special_cycles_per_op`` for all), no pass or cross-lane reduction
    cost; on a GPU also no launch overlap, full tensor, L2, HBM-write and NVLink shares, and
    NCCL's fitted protocol fields at the ideal machine's values (no schema default). A fit from
    these sees nothing of the config's own calibration (cross-validation needs that). ``ici.link_latency`` has no schema default and keeps the config's value: a bundled
    config must not hold a fitted value there (hw_configs/tpuv3.yaml keeps its cited one)."""
    resets: list[tuple[str, Any]] = [
        ("dispatch.call", {k: f"{v!r} s" for k, v in _default(DispatchConfig, "call").items()}),
        ("hbm.efficiency", _default(MemoryLevelConfig, "efficiency")),
    ]
    if hw.kind == "gpu":  # a GPU's own calibration fields (archsim.config.gpu)
        resets += [("dispatch.call_overlap", {}),
                   ("hbm.write_efficiency", _default(GpuMemoryConfig, "write_efficiency")),
                   ("l2.efficiency", _default(L2Config, "efficiency")),
                   ("sm.tensor_efficiency", _default(SmConfig, "tensor_efficiency")),
                   ("nvlink.efficiency", _default(IciConfig, "efficiency"))]
        # NCCL's fitted protocol fields, which have no schema default: the ideal machine's (the
        # whole bus bandwidth, no fixed latency), as every other field here
        protocols = hw.collectives.protocols
        resets += [(f"collectives.protocols.{p}.{field}", value) for p, field, value in (
            ("ll", "bandwidth_share", 1.0), ("ll128", "base_latency", "0 s"), ("simple", "base_latency", "0 s"))
            if p in protocols]
        return tuple(Override(tuple(key.split(".")), value, f"{key}={value}", label) for key, value in resets)
    resets += [
        ("vpu.special_cycles", dict(_default(VectorUnitConfig, "special_cycles"))),
        ("vpu.pass_cycles_per_vreg", _default(VectorUnitConfig, "pass_cycles_per_vreg")),
        ("vpu.reduce_step_cycles", _default(VectorUnitConfig, "reduce_step_cycles")),
        ("ici.efficiency", _default(IciConfig, "efficiency")),
    ]
    if hw.mxu.kind == "systolic":
        resets.append(("mxu.weight_load_overlap", _default(SystolicConfig, "weight_load_overlap")))
    return tuple(Override(tuple(key.split(".")), value, f"{key}={value}", label) for key, value in resets)
