"""A workload's ground truth, without any hardware: parameters, work, bytes, intensity.

- ``flops`` = 2 x MACs + vector-unit operations (simple and transcendental).
- A phase's *minimum bytes* per run: every persistent tensor it reads, once (the copies its
  ops touch: a phase that runs some of a stack's blocks, as a cache schedule's may, reads only
  theirs), unless the phase itself wrote it in full first; the entries it writes to caches;
  and the activations crossing its boundary (inputs it does not produce, outputs it does not
  consume: one copy each, as one layer's output is the next one's input). Its arithmetic
  intensity is MACs per minimum byte: the roofline's x-axis.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from archsim.ir import ops
from archsim.ir.graph import Phase, Workload
from archsim.ir.tensor import Role


@dataclass(frozen=True)
class PhaseSummary:
    name: str
    repeat: int
    ops: int
    macs: int  # one run
    flops: int  # one run
    min_bytes: float  # one run
    weight_bytes_read: float  # one run
    cache_bytes_read: float  # one run
    cache_bytes_written: float  # one run

    @property
    def intensity(self) -> float:
        return self.macs / self.min_bytes if self.min_bytes else float("inf")

    def as_dict(self) -> dict:
        return asdict(self) | {"intensity_macs_per_byte": self.intensity,
                               "total_macs": self.macs * self.repeat, "total_flops": self.flops * self.repeat}


@dataclass(frozen=True)
class WorkloadSummary:
    name: str
    params: int
    macs: int
    flops: int
    weight_bytes: float  # parameters and constant tables
    cache_bytes: float  # KV and feature caches at their largest
    activation_bytes: float  # the largest activation working set of any op
    phases: tuple[PhaseSummary, ...]

    def as_dict(self) -> dict:
        top = {k: v for k, v in asdict(self).items() if k != "phases"}
        return top | {"phases": [p.as_dict() for p in self.phases]}


def _copies_read(graph_ops: list[ops.Op]) -> dict[str, int]:
    """Per persistent tensor, how many of its copies the phase's ops read.

    An op with fewer copies than a tensor runs on some of a stack's layers (a cache schedule's
    subset of blocks). Which ones the IR does not say; the builders that lower such subsets
    (``archsim.workloads.dit``) name each subset's ops under its own prefix and run disjoint
    layers in each, so the copies read are the sum over prefixes, at most all of them. Ops
    under one prefix touch the same layers: a tensor they read twice counts once.
    """
    readers: dict[str, set[tuple[str, int]]] = {}  # tensor -> (op name prefix, copies) reading it
    for op in graph_ops:
        group = op.name.split(".", 1)[0]
        for t in op.inputs:
            if t.role.persistent:
                readers.setdefault(t.name, set()).add((group, op.copies))
    tensors = {t.name: t for op in graph_ops for t in op.inputs}
    return {name: min(tensors[name].copies, sum(copies for _, copies in groups)) for name, groups in readers.items()}


def summarize_phase(phase: Phase) -> PhaseSummary:
    graph_ops = list(phase.graph.ops())
    produced = {t.name for op in graph_ops for t in op.outputs}
    consumed = {t.name for op in graph_ops for t in op.inputs}
    copies_read = _copies_read(graph_ops)
    macs = flops = 0
    weights = cache_read = cache_written = boundary = 0.0
    seen: set[str] = set()
    for op in graph_ops:
        work = op.vector_work
        macs += op.macs * op.copies
        flops += (2 * op.macs + work.alu + work.special) * op.copies
        if isinstance(op, ops.CacheWrite):
            cache_written += op.written_bytes * op.copies
            for t in op.outputs:  # written in full before any read: no read from memory
                if t.name not in seen and op.written_bytes >= t.bytes and op.copies >= t.copies:
                    seen.add(t.name)
        for t in op.inputs:
            if t.name in seen:
                continue
            if isinstance(op, ops.EmbeddingLookup) and t.role is Role.WEIGHT:
                # A lookup reads only its rows of the table (a tied head reading all of it counts it again).
                weights += min(1.0, op.rows / t.shape[0]) * t.total_bytes
                continue
            if isinstance(op, ops.EmbeddingLookup) and t.role is Role.KV_CACHE:
                cache_read += op.outputs[0].elements * t.dtype.bytes * op.copies  # a gather: its entries only
                continue
            seen.add(t.name)
            if t.role.persistent:
                read = t.total_bytes * copies_read[t.name] / t.copies
                if t.role in (Role.WEIGHT, Role.CONSTANT):
                    weights += read
                else:
                    cache_read += read
            elif t.name not in produced:
                boundary += t.bytes
        for t in op.outputs:
            if not t.role.persistent and t.name not in consumed and t.name not in seen:
                seen.add(t.name)
                boundary += t.bytes
    return PhaseSummary(phase.name, phase.repeat, len(graph_ops), macs, flops,
                        weights + cache_read + cache_written + boundary, weights, cache_read, cache_written)


def summarize(workload: Workload) -> WorkloadSummary:
    tensors = workload.tensors().values()
    weights = [t for t in tensors if t.role is Role.WEIGHT]
    constants = [t for t in tensors if t.role is Role.CONSTANT]
    caches = [t for t in tensors if t.role in (Role.KV_CACHE, Role.FEATURE_CACHE)]
    peak_activations = max(
        (sum(t.bytes for t in op.tensors if not t.role.persistent) for p in workload.phases for op in p.graph.ops()),
        default=0.0,
    )
    phases = tuple(summarize_phase(p) for p in workload.phases)
    return WorkloadSummary(
        name=workload.name,
        params=sum(t.elements * t.copies for t in weights),
        macs=sum(p.macs * p.repeat for p in phases),
        flops=sum(p.flops * p.repeat for p in phases),
        weight_bytes=sum(t.total_bytes for t in weights + constants),
        cache_bytes=sum(t.total_bytes for t in caches),
        activation_bytes=peak_activations,
        phases=phases,
    )
