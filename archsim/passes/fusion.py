"""Fusion as a pass: groups of ops a compiler runs as one kernel become one ``Fused`` op
(archsim/ir/fused.py), by named rules (``compiler.fusion``, archsim/config/compiler.py):

- ``gemm_epilogue``: an element-wise op (``Activation``, ``Elementwise``) reading a matmul's
  output fuses into the matmul, and chains on (a GEMM then gelu; the gate GEMM, silu and the
  multiply by ``up``, read by the kernel; the out-projection and a residual add; DiT's
  gated_add): XLA fuses element-wise consumers into a dot's output [XLA-FUSION], cuBLASLt runs
  bias, activation and auxiliary inputs as a GEMM's epilogue [CUBLASLT].
- ``gemm_activation``: ``gemm_epilogue`` restricted to what cuBLASLt's epilogues compute: one
  ReLU or GELU after the GEMM [CUBLASLT].
- ``cache_epilogue``: a ``CacheWrite`` of a matmul group's output: the kernel writes its output
  tile straight into the cache, at the cache's type. ASSUMPTION: XLA writes the cache in place
  but as its own op, no public code fuses the dot with it [XLA-DUS]; vLLM's reshape_and_cache is
  a kernel of its own [VLLM].
- ``vector_chain``: an element-wise op reading a vector op's output fuses into it (loop fusion:
  its work joins the producer's last pass, its other inputs read in that pass) [XLA-FUSION]; an
  element-wise op whose output only a norm or softmax reads fuses into it as a prologue,
  duplicated into each of its passes (XLA's input fusion), only when that moves no more bytes
  than the two kernels did (XLA's ``ComputeGloballyUnfusible`` refuses duplication that raises
  memory traffic [XLA-FUSION]). vLLM's silu_and_mul is such a chain [VLLM]; its
  fused_add_rms_norm also writes the sum for the next residual, a second reader, which archsim
  does not fuse (no multi-output fusion).
- ``norm_prologue``: a norm read only by GEMMs over whole rows (K = the row length) keeps its
  reduction passes as a ``NormStats`` op writing per-row statistics; its normalise-and-scale
  pass runs in each GEMM's prologue on the A tiles as they are loaded, so the normalised tensor
  is never stored (ASSUMPTION: what a hand-written kernel does; no public compiler's default).

ASSUMPTION (all rules): only an intermediate with a single reader fuses: nothing is recomputed
for a second consumer nor written out as well (XLA duplicates cheap producers; archsim does not).
Members must stand for the same layers (``copies``). A fused op takes its main op's name and the
place of its last member in the order, after every input's producer; the intermediates leave the
graph (no memory, no footprint).
"""

from __future__ import annotations

import dataclasses

from archsim.dtypes import DType
from archsim.ir import ops
from archsim.ir.fused import NORM_PROLOGUE, Fused, FusedCacheWrite, NormStats
from archsim.ir.graph import OpGraph, Phase, Workload
from archsim.ir.tensor import Role, Tensor

_POINTWISE = (ops.Activation, ops.Elementwise)
_NORMS = (ops.LayerNorm, ops.RMSNorm)
_STATS_PER_ROW = {"layernorm": 2, "rmsnorm": 1}  # mean and 1/std; 1/rms
_CUBLASLT = frozenset({"relu", "gelu"})  # cuBLASLt's activation epilogues [CUBLASLT]


def fuse(workload: Workload, rules: tuple[str, ...]) -> Workload:
    """Every phase's graph with the groups ``rules`` allow fused; ``workload`` itself when
    nothing fuses."""
    phases = tuple(Phase(p.name, _graph(p.graph, frozenset(rules)), p.repeat) for p in workload.phases)
    if all(new.graph is old.graph for new, old in zip(phases, workload.phases)):
        return workload
    return dataclasses.replace(workload, phases=phases)


class _Group:
    """A main op and the ops fused with it so far."""

    def __init__(self, main: ops.Op, inputs: tuple[Tensor, ...], prologue=(), rules=(), extras=(), inner=()):
        self.main, self.main_inputs = main, inputs
        self.prologue, self.epilogue = list(prologue), []
        self.rules, self.extras, self.inner = list(rules), list(extras), set(inner)
        self.tail: Tensor | None = main.outputs[0] if len(main.outputs) == 1 else None
        self.absorbed = False  # became another group's prologue

    @property
    def last(self) -> ops.Op:
        return self.epilogue[-1] if self.epilogue else self.main

    def add(self, op: ops.Op, rule: str, through: Tensor) -> None:
        self.epilogue.append(op)
        self.rules.append(rule)
        self.inner.add(through.name)
        self.extras += [t for t in op.inputs if t.name not in self.inner]
        self.tail = op.outputs[0] if len(op.outputs) == 1 and not isinstance(op, ops.CacheWrite) else None

    def build(self) -> ops.Op:
        if not (self.prologue or self.epilogue):
            return self.main
        extras = tuple({t.name: t for t in self.extras if t.name not in self.inner}.values())
        cls = FusedCacheWrite if isinstance(self.last, ops.CacheWrite) else Fused
        return cls(self.main.name, self.main_inputs + extras, self.last.outputs, self.main, tuple(self.epilogue),
                   "+".join(dict.fromkeys(self.rules)), tuple(self.prologue), copies=self.main.copies)


def _graph(graph: OpGraph, rules: frozenset[str]) -> OpGraph:
    order = list(graph.ops())
    split = _split_norms(order) if NORM_PROLOGUE in rules else {}
    stats = {norm.name: _stats_op(norm) for norm in {n.name: n for n in split.values()}.values()}
    order = [stats.get(op.name, op) for op in order]
    inputs = {op.name: _inputs(op, split.get(op.name)) for op in order}  # as each op's kernel reads them
    readers: dict[str, set[str]] = {}
    for op in order:
        for t in inputs[op.name]:
            readers.setdefault(t.name, set()).add(op.name)

    def single(t: Tensor, op: ops.Op) -> bool:
        return t.role is Role.ACTIVATION and readers.get(t.name) == {op.name}

    groups: list[_Group] = []
    at_tail: dict[str, _Group] = {}  # an open group by its current output's name
    for op in order:
        if isinstance(op, ops.MatMul):
            norm = split.get(op.name)
            group = _Group(op, inputs[op.name]) if norm is None else _Group(
                op, inputs[op.name][:2], (norm,), (NORM_PROLOGUE,), (stats[norm.name].outputs[0],), (norm.outputs[0].name,))
        elif isinstance(op, _POINTWISE) and len(op.outputs) == 1:
            host = next((at_tail[t.name] for t in op.inputs if t.name in at_tail and single(t, op)
                         and _joins(at_tail[t.name], op, rules)), None)
            if host is not None:
                through = host.tail
                del at_tail[through.name]
                host.add(op, _gemm_rule(rules) if isinstance(host.main, ops.MatMul) else "vector_chain", through)
                at_tail[host.tail.name] = host
                continue
            group = _Group(op, op.inputs)
        elif isinstance(op, ops.CacheWrite) and "cache_epilogue" in rules and len(op.inputs) == 1:
            host = at_tail.get(op.inputs[0].name)
            if host is None or not isinstance(host.main, ops.MatMul) or not single(op.inputs[0], op) \
                    or host.main.copies != op.copies:
                continue
            del at_tail[host.tail.name]
            host.add(op, "cache_epilogue", host.tail)
            continue
        elif isinstance(op, ops.VectorOp):
            producer = at_tail.get(op.inputs[0].name)
            if "vector_chain" in rules and producer is not None and _prologue_fits(producer, op, single):
                producer.absorbed = True
                del at_tail[producer.tail.name]
                p = producer.main
                group = _Group(op, (p.inputs[0], *op.inputs[1:]), (p,), ("vector_chain",), p.inputs[1:],
                               (p.outputs[0].name,))
            else:
                group = _Group(op, op.inputs)
        else:
            continue
        groups.append(group)
        if group.tail is not None:
            at_tail[group.tail.name] = group
    kept = [g for g in groups if not g.absorbed and (g.prologue or g.epilogue)]
    fused = {g.last.name: g.build() for g in kept}
    members = {m.name for g in kept for m in (*g.prologue, g.main, *g.epilogue)}
    if not fused and not stats:
        return graph
    return OpGraph([fused.get(op.name, op) for op in order if op.name in fused or op.name not in members])


def _joins(host: _Group, op: ops.Op, rules: frozenset[str]) -> bool:
    """Whether element-wise ``op`` may join ``host`` (reading its output) under ``rules``."""
    if host.main.copies != op.copies or host.tail is None:
        return False
    if isinstance(host.main, ops.MatMul):
        return "gemm_epilogue" in rules or ("gemm_activation" in rules and not host.epilogue
                                            and isinstance(op, ops.Activation) and op.function in _CUBLASLT)
    # loop fusion runs one loop over the elements: an op over more elements than its producer
    # wrote (a mixture of experts' combine reading the router's small output) is not a chain
    return isinstance(host.main, ops.VectorOp) and "vector_chain" in rules and op.elements <= host.tail.elements


def _gemm_rule(rules: frozenset[str]) -> str:
    return "gemm_epilogue" if "gemm_epilogue" in rules else "gemm_activation"


def _prologue_fits(producer: _Group, op: ops.VectorOp, single) -> bool:
    """An element-wise op alone in its group, read only by reduction op ``op``, whose data input
    is shaped like its output: duplicated into each of ``op``'s passes, it must move no more
    bytes than it did writing its output for ``op`` to read in each pass."""
    p, h = producer.main, producer.tail
    if producer.prologue or producer.epilogue or not isinstance(p, _POINTWISE) or isinstance(op, _POINTWISE):
        return False
    if not single(h, op) or p.copies != op.copies or (p.inputs[0].shape, p.inputs[0].dtype) != (h.shape, h.dtype) \
            or op.elements != h.elements:  # a norm of the last token alone reads a slice
        return False
    passes, read = len(op.passes), sum(t.bytes for t in p.inputs)
    return passes * read <= read + h.bytes + passes * h.bytes


def _split_norms(order: list[ops.Op]) -> dict[str, ops.VectorOp]:
    """GEMM name -> the norm whose normalise pass becomes its prologue: norms whose output only
    GEMMs read, as their A operand over whole rows (K = the row length)."""
    readers: dict[str, list[ops.Op]] = {}
    for op in order:
        for t in op.inputs:
            readers.setdefault(t.name, []).append(op)
    out: dict[str, ops.VectorOp] = {}
    for norm in order:
        x, y = norm.inputs[0], norm.outputs[0]
        if type(norm) not in _NORMS or len(norm.inputs) != 1 or y.role is not Role.ACTIVATION \
                or (x.shape, x.dtype) != (y.shape, y.dtype):  # the GEMM reads x as it read the output
            continue
        after = readers.get(norm.outputs[0].name, [])
        if after and all(isinstance(g, ops.Gemm) and g.inputs[0].name == norm.outputs[0].name
                         and g.inputs[1].name != g.inputs[0].name and g.k == norm.row_length
                         and g.copies == norm.copies for g in after):
            out.update((g.name, norm) for g in after)
    return out


def _stats_op(norm: ops.VectorOp) -> NormStats:
    stats = Tensor(f"{norm.outputs[0].name}.stats", (norm.rows, _STATS_PER_ROW[norm.kind]), DType.FP32,
                   copies=norm.outputs[0].copies)
    return NormStats(f"{norm.name}.stats", norm.inputs, (stats,), norm.rows, norm.row_length, norm.kind,
                     copies=norm.copies)


def _inputs(op: ops.Op, norm: ops.VectorOp | None) -> tuple[Tensor, ...]:
    """What ``op`` reads once the norms are split: a GEMM with a norm prologue reads the norm's
    input and statistics instead of its output."""
    if norm is None:
        return op.inputs
    stats = f"{norm.outputs[0].name}.stats"
    return (norm.inputs[0], op.inputs[1],
            Tensor(stats, (norm.rows, _STATS_PER_ROW[norm.kind]), DType.FP32, copies=norm.outputs[0].copies))
