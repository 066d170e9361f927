"""What archsim predicts for a measured call, and the plain roofline beside it.

``predict(hw, row)`` builds the row's op as a one-op workload, as a microbenchmark runs it: its
tensors where the chip model says a repeated call finds them (``benchmark_placement``: a
TPU-style chip's in HBM, rather than searched, since a chip with CMEM would otherwise keep a
small op's activations on chip, which a call timed on its own does not see; a GPU's inputs in
its L2 when the call's working set fits there), and the op launched on its own, paying
``hw.dispatch.call`` for its kind (``build_chip(hw, dispatch="call")``). The operand tensors are of the row's dtype:

- gemm: ``Gemm`` A[m, k] x B[k, n] (B a weight) -> C[m, n], batch 1;
- softmax, layernorm, rmsnorm: ``rows`` rows of ``cols`` elements, normalised along ``cols``;
- gelu, silu, add: ``elements`` as rows of the largest divisor of ``elements`` up to 8192 (one
  row of them all when that divisor is below 128: a prime count); add has two inputs;
- all_reduce: ``AllReduce`` of a ``bytes`` buffer over ``ranks`` chips, on the config's system
  when it is ``ranks`` tensor-parallel chips, else on a ring of ``ranks`` chips of this config
  (``ring_of``: the file loaded again with the system replaced, so the config layer validates it).

``roofline(hw, row)`` is the plain roofline bound, max(work / peak, bytes / bandwidth), with no
dispatch cost, no latency and every efficiency at 1:

- gemm: 2mkn flops at ``2 x hw.peak_macs_per_second(dtype)``; bytes A + B + C, each once, at the
  HBM's peak ``hbm.bandwidth``;
- vector ops: the op's ``VectorWork`` (alu + special ops) at the chip's peak simple-op rate
  (``vector_ops_per_second``: a TPU's lanes x ALU ops per lane x clock, a GPU's SMs x CUDA-core
  lanes x clock); bytes its inputs + output, each once, at ``hbm.bandwidth``;
- all_reduce: a ring all-reduce sends 2 (n - 1) / n x bytes per chip, over ``ici.link_bandwidth x
  ici.links``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from archsim.calibrate.measurements import Measurement
from archsim.chips import build_chip
from archsim.config.loader import Override, load_hardware
from archsim.config.schema import HardwareConfig
from archsim.errors import ArchsimError, ConfigError
from archsim.ir import ops
from archsim.ir.graph import OpGraph, Phase, Workload
from archsim.ir.tensor import Role, Tensor

MAX_ROW = 8192  # the longest row an element-wise op's elements are laid out in
MIN_ROW = 128  # a shorter divisor (an odd count): one row instead


def simulator(hw: HardwareConfig):
    """A chip model timing ops launched one call each, as a microbenchmark does."""
    return build_chip(hw, dispatch="call")


def build_op(row: Measurement) -> ops.Op:
    """The archsim op a row measured, its tensors activations (B of a gemm a weight)."""
    dtype = row.dtype
    if row.op == "gemm":
        a = Tensor("A", (row.m, row.k), dtype)
        b = Tensor("B", (row.k, row.n), dtype, Role.WEIGHT)
        out = Tensor("C", (row.m, row.n), dtype)
        return ops.Gemm("gemm", (a, b), (out,), 1, row.m, row.k, row.n, False)
    if row.op == "all_reduce":
        shape = (int(row.bytes // dtype.bytes),)
        return ops.AllReduce("all_reduce", (Tensor("x", shape, dtype),), (Tensor("y", shape, dtype),),
                             group=row.ranks)
    if row.op in ("softmax", "layernorm", "rmsnorm"):
        rows, length = row.rows, row.cols
    else:
        length = element_row(row.elements)
        rows = row.elements // length
    x = Tensor("x", (rows, length), dtype)
    out = Tensor("y", (rows, length), dtype)
    if row.op == "softmax":
        return ops.Softmax(row.op, (x,), (out,), rows, length)
    if row.op == "layernorm":
        return ops.LayerNorm(row.op, (x,), (out,), rows, length)
    if row.op == "rmsnorm":
        return ops.RMSNorm(row.op, (x,), (out,), rows, length)
    if row.op == "add":
        return ops.Elementwise(row.op, (x, Tensor("x2", (rows, length), dtype)), (out,), rows, length, "add")
    return ops.Activation(row.op, (x,), (out,), rows, length, row.op)


def element_row(elements: int) -> int:
    """The row length an element-wise op's elements are laid out in: the largest divisor up to
    ``MAX_ROW`` (a power of two for the usual counts), or all of them when it is below ``MIN_ROW``."""
    best = next(d for d in range(min(elements, MAX_ROW), 0, -1) if elements % d == 0)
    return best if best >= MIN_ROW or elements <= MAX_ROW else elements


def is_system_of(hw: HardwareConfig, ranks: int) -> bool:
    """Whether ``hw``'s own system is ``ranks`` chips, all tensor-parallel ranks."""
    return hw.system.chips == ranks and hw.system.parallelism.tensor == ranks


def system_rule(hw: HardwareConfig, ranks: int) -> str:
    """How all-reduce rows over ``ranks`` chips are run, for the report."""
    if is_system_of(hw, ranks):
        return f"all-reduce rows ({ranks} ranks): the config's system ({hw.system.topology.kind})"
    return f"all-reduce rows ({ranks} ranks): a ring of {ranks} chips of this config"


def ring_of(path: str | Path, overrides: Sequence[Override], ranks: int) -> HardwareConfig:
    """The config at ``path`` (with ``overrides``) as a ring of ``ranks`` tensor-parallel chips:
    loaded again with the system replaced, so the config layer validates it."""
    label = f"{path}: all-reduce rows as a ring of {ranks} chips"
    ring = [Override(p, v, f"{'.'.join(p)}={v}", label) for p, v in (
        (("system", "chips"), ranks), (("system", "topology"), {"kind": "ring"}),
        (("system", "parallelism"), {"tensor": ranks}))]
    return load_hardware(path, [*overrides, *ring])


class Predictor:
    """archsim's predictions for one config, memoised per op signature: use one per config
    within one calibrate run (a fit makes one per candidate). ``path`` and ``overrides`` are
    what ``hw`` was loaded from: all-reduce rows over another number of chips than its system
    load it again as a ring (``ring_of``)."""

    def __init__(self, hw: HardwareConfig, path: str | Path | None = None, overrides: Sequence[Override] = ()):
        self.hw = hw
        self.path = path
        self.overrides = tuple(overrides)
        self._times: dict[tuple, float] = {}
        self._systems: dict[int, object] = {}

    def predict(self, row: Measurement) -> float:
        time = self._times.get(row.signature)
        if time is None:
            time = self._times[row.signature] = self._run(row)
        return time

    def _simulator(self, row: Measurement):
        ranks = row.ranks if row.op == "all_reduce" else 1
        sim = self._systems.get(ranks)
        if sim is None:
            if ranks == 1 or is_system_of(self.hw, ranks):
                hw = self.hw
            elif self.path is None:
                raise ConfigError(f"{row.describe()}: {self.hw.name} is not a system of {ranks} tensor-parallel "
                                  "chips, and without its file a ring of them cannot be built")
            else:
                hw = ring_of(self.path, self.overrides, ranks)
            sim = self._systems[ranks] = simulator(hw)
        return sim

    def _run(self, row: Measurement) -> float:
        op = build_op(row)
        workload = Workload(row.describe(), (Phase("call", OpGraph([op])),))
        try:
            sim = self._simulator(row)
            result = sim.run_with(workload, sim.benchmark_placement(op))
        except ArchsimError as exc:
            raise ConfigError(f"{row.describe()}: {exc}") from None
        if not result.feasible:
            raise ConfigError(f"{row.describe()}: cannot run on {self.hw.name}: {result.reason}")
        return result.latency_s


def predict(hw: HardwareConfig, row: Measurement, path: str | Path | None = None,
            overrides: Sequence[Override] = ()) -> float:
    """archsim's time for the measured call (seconds); see the module's docstring. ``path`` and
    ``overrides`` (what ``hw`` was loaded from) are needed for all-reduce rows only, where the
    config's system is not ``ranks`` tensor-parallel chips."""
    return Predictor(hw, path, overrides).predict(row)


def roofline(hw: HardwareConfig, row: Measurement) -> float:
    """The plain roofline bound (seconds); see the module's docstring."""
    if row.op == "gemm" and row.dtype not in hw.matrix_dtypes:
        raise ConfigError(f"{row.describe()}: the matrix units of {hw.name} do not support {row.dtype}")
    return op_roofline(hw, build_op(row))


def op_roofline(hw: HardwareConfig, op: ops.Op) -> float:
    """The plain roofline bound of one op on one chip of ``hw`` (seconds), as ``roofline``: a
    collective's ring traffic over all the links; a matrix op's 2 x MACs at the peak of its A
    operand's dtype; a vector op's ``VectorWork`` at the lanes' ALU rate; every op's tensors
    read or written once at the HBM's peak bandwidth, whichever is longer."""
    if isinstance(op, ops.Collective):
        n = op.group
        passes = 2 if isinstance(op, ops.AllReduce) else 1
        return passes * (n - 1) / n * op.bytes * op.copies / (hw.ici.link_bandwidth * hw.ici.links)
    moved = sum(t.bytes for t in op.tensors) * op.copies
    if isinstance(op, ops.MatMul):
        work_s = 2 * op.macs * op.copies / (2 * hw.peak_macs_per_second(op.a.dtype))
    else:
        work = op.vector_work
        work_s = (work.alu + work.special) * op.copies / hw.vector_ops_per_second
    return max(work_s, moved / hw.hbm.bandwidth)
