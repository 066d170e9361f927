"""The chip's calibration fields a fit may set: a registry.

Each ``Parameter`` names its config key, its unit (seconds, or a plain number), its bounds, the
measured ops whose rows it affects (the CSV's op names) and how to read its current value from
a loaded config. A fit varies only parameters whose ops occur in its data (and, for the MXU's
weight-load overlap, a chip whose matrix units are systolic arrays).

The contract a fit relies on (for its Jacobian's sparsity and its memo): a parameter changes
the predicted time of the rows of its ``ops`` only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from archsim.calibrate.measurements import OPS
from archsim.config.loader import Override
from archsim.config.schema import HardwareConfig
from archsim.errors import ConfigError
from archsim.units import TIME, format_quantity, parse_quantity

SECONDS = "s"
PLAIN = ""


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

    @property
    def path(self) -> tuple[str, ...]:
        return tuple(self.key.split("."))

    def text(self, value: float) -> str:
        """The value as written in a config, 4 significant digits: '112.3 us', '0.78'."""
        if self.unit == SECONDS:
            return format_quantity(value, TIME, 4) if value else "0 s"
        return f"{value:.4g}"

    def rounded(self, value: float) -> float:
        """The value a config reads back from ``text(value)``."""
        return _parse(self.text(value), self.unit)

    def override(self, value: float, label: str) -> Override:
        """An override setting this key to ``value`` (exactly: seconds as '<repr> s')."""
        written = f"{value!r} s" if self.unit == SECONDS else value
        return Override(self.path, written, f"{self.key}={written}", label)


def _parse(text: str, unit: str) -> float:
    return parse_quantity(text, TIME) if unit == SECONDS else float(text)


def _special(function: str) -> Callable[[HardwareConfig], float]:
    return lambda hw: hw.vpu.special_cycles.get(function, hw.vpu.special_cycles_per_op)


def _dispatch(kind: str) -> Parameter:
    return Parameter(f"dispatch.call.{kind}", SECONDS, 0.0, 10e-3, 100e-6,
                     frozenset(op for op, k in OPS.items() if k == kind),
                     lambda hw: hw.dispatch.cost("call", kind))


DISPATCH_KINDS = tuple(dict.fromkeys(OPS.values()))  # gemm, softmax, ..., all_reduce

REGISTRY: tuple[Parameter, ...] = (
    *(_dispatch(kind) for kind in DISPATCH_KINDS),
    Parameter("hbm.efficiency", PLAIN, 0.3, 1.0, 1.0, frozenset(OPS) - {"all_reduce"}, lambda hw: hw.hbm.efficiency),
    Parameter("mxu.weight_load_overlap", PLAIN, 0.0, 1.0, 1.0, frozenset({"gemm"}),
              lambda hw: hw.mxu.weight_load_overlap, lambda hw: hw.mxu.kind == "systolic"),
    Parameter("vpu.special_cycles.exp", PLAIN, 0.25, 512.0, 4.0, frozenset({"softmax", "silu"}), _special("exp")),
    Parameter("vpu.special_cycles.tanh", PLAIN, 0.25, 512.0, 4.0, frozenset({"gelu"}), _special("tanh")),
    Parameter("ici.efficiency", PLAIN, 0.05, 1.0, 1.0, frozenset({"all_reduce"}), lambda hw: hw.ici.efficiency),
    Parameter("ici.link_latency", SECONDS, 0.0, 1e-3, 1e-6, frozenset({"all_reduce"}), lambda hw: hw.ici.link_latency),
)
KEYS = tuple(p.key for p in REGISTRY)


def parameters_for(hw: HardwareConfig, ops: set[str], keys: list[str] | None = None) -> list[Parameter]:
    """The parameters to fit to rows of ``ops`` on ``hw``: every one that applies (``keys``:
    these only; an unknown key, or one no row informs, is an error)."""
    if keys is None:
        return [p for p in REGISTRY if p.ops & ops and p.applies(hw)]
    by_key = {p.key: p for p in REGISTRY}
    chosen, problems = [], []
    for key in dict.fromkeys(keys):
        p = by_key.get(key)
        if p is None:
            problems.append(f"{key}: not a calibration field; expected one of: {', '.join(KEYS)}")
        elif not p.ops & ops:
            problems.append(f"{key}: no measured row informs it (it affects {', '.join(sorted(p.ops))} rows)")
        elif not p.applies(hw):
            problems.append(f"{key}: does not apply to {hw.name} (mxu.kind {hw.mxu.kind})")
        else:
            chosen.append(p)
    if problems:
        raise ConfigError("\n".join(problems))
    return chosen
