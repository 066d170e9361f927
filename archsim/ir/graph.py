"""Operator graphs, phases with repeat counts, and whole workloads.

A phase is one graph run ``repeat`` times (a 1000-step diffusion is one per-step graph with
repeat 1000, never 1000 copies). Edges follow tensors: an op depends on the op that
produced each of its inputs.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Iterable, Iterator

import networkx as nx

from archsim.ir.ops import Op
from archsim.ir.tensor import Tensor


class OpGraph:
    """A DAG of ops; build it by adding ops in any order that respects data dependencies."""

    def __init__(self, ops: Iterable[Op] = ()):
        self._graph = nx.DiGraph()
        self._producer: dict[str, str] = {}
        self._tensors: dict[str, Tensor] = {}
        self._order: dict[str, int] = {}
        self._sorted: tuple[Op, ...] | None = None
        for op in ops:
            self.add(op)

    def add(self, op: Op) -> Op:
        if op.name in self._graph:
            raise ValueError(f"duplicate op name {op.name!r}")
        for tensor in op.tensors:
            known = self._tensors.setdefault(tensor.name, tensor)
            if known != tensor:
                raise ValueError(f"tensor {tensor.name!r} redefined by op {op.name!r}")
            # A stack of N layers touches each layer's own persistent tensors, all of them
            # (copies a multiple of N) or some (fewer copies: the layers a cache schedule
            # runs); an activation may pass between a stack and a single op.
            if tensor.role.persistent and op.copies > tensor.copies and op.copies % tensor.copies:
                raise ValueError(f"op {op.name!r} ({op.copies} copies) cannot touch tensor "
                                 f"{tensor.name!r} ({tensor.copies} copies)")
        self._graph.add_node(op.name, op=op)
        self._sorted = None
        self._order[op.name] = len(self._order)
        for tensor in op.inputs:
            producer = self._producer.get(tensor.name)
            if producer is not None:
                self._graph.add_edge(producer, op.name, tensor=tensor.name)
        for tensor in op.outputs:
            if tensor.name in self._producer and not tensor.role.persistent:
                raise ValueError(f"activation {tensor.name!r} produced twice")
            self._producer[tensor.name] = op.name
        return op

    @property
    def nx(self) -> nx.DiGraph:
        """The underlying networkx graph (nodes are op names, attribute ``op``)."""
        return self._graph

    def ops(self) -> Iterator[Op]:
        """Ops in a deterministic topological order (ties broken by insertion order)."""
        if self._sorted is None:
            order = nx.lexicographical_topological_sort(self._graph, key=self._order.__getitem__)
            self._sorted = tuple(self._graph.nodes[name]["op"] for name in order)
        return iter(self._sorted)

    def __len__(self) -> int:
        return self._graph.number_of_nodes()

    @property
    def tensors(self) -> dict[str, Tensor]:
        return dict(self._tensors)

    @property
    def macs(self) -> int:
        return sum(op.macs * op.copies for op in self.ops())


@dataclass(frozen=True)
class Phase:
    name: str
    graph: OpGraph
    repeat: int = 1

    def __post_init__(self) -> None:
        if self.repeat < 1:
            raise ValueError(f"phase {self.name!r}: repeat must be at least 1")

    @cached_property
    def macs(self) -> int:
        return self.graph.macs * self.repeat


PRELOAD_PHASE = "preload"  # the phase of the op loading promoted tensors into CMEM


@dataclass(frozen=True)
class Generation:
    """What a language-model workload generates, for its serving figures (TTFT, TPOT, tokens
    per second and per joule): ``tokens`` output tokens in all over ``sequences`` sequences;
    the phase whose end gives each sequence its first token, and the phases that each give
    every sequence one more token per execution (none for a diffusion LM, which unmasks
    tokens in blocks: only its rates apply)."""

    sequences: int
    tokens: int
    first_token_phase: str | None = None
    step_phases: tuple[str, ...] = ()


@dataclass(frozen=True)
class Workload:
    name: str
    phases: tuple[Phase, ...]
    generation: Generation | None = None  # a language model's output, when it generates any

    def __post_init__(self) -> None:
        names = [p.name for p in self.phases]
        if len(set(names)) != len(names):
            raise ValueError(f"workload {self.name!r}: phase names must be unique")
        if PRELOAD_PHASE in names:  # results group costs by phase: the CMEM preload's is this one
            raise ValueError(f"workload {self.name!r}: the phase name {PRELOAD_PHASE!r} is reserved for the "
                             "CMEM preload")

    @property
    def macs(self) -> int:
        return sum(p.macs for p in self.phases)

    def tensors(self) -> dict[str, Tensor]:
        """Every tensor by name. A name in several phases is one storage: a KV cache that
        grows from phase to phase is kept at its largest."""
        merged: dict[str, Tensor] = {}
        for phase in self.phases:
            for name, tensor in phase.graph.tensors.items():
                known = merged.setdefault(name, tensor)
                if (known.dtype, known.role, known.copies) != (tensor.dtype, tensor.role, tensor.copies):
                    raise ValueError(f"tensor {name!r} differs between phases in dtype, role or copies")
                if tensor.total_bytes > known.total_bytes:
                    merged[name] = tensor
        return merged
