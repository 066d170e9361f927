"""Operator graphs, phases with repeat counts, and whole workloads.

A phase is one graph run ``repeat`` times (a 1000-step diffusion is one per-step graph with
repeat 1000, never 1000 copies). Edges follow tensors: an op depends on the op that
produced each of its inputs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable, Iterator

from archsim.ir.ops import Op
from archsim.ir.tensor import Tensor
from archsim.memo import cached_property

if TYPE_CHECKING:  # networkx is imported only by ``OpGraph.nx``, never on the simulation path
    import networkx


class OpGraph:
    """A DAG of ops; build it by adding ops in any order that respects data dependencies.

    An edge runs from the op that last produced a tensor to each later op reading it; a
    consumer added before the tensor's producer gets no edge. Every edge therefore runs from
    an earlier op to a later one, and the insertion order is a topological order: the one
    ``ops()`` gives (the lexicographical topological order keyed by insertion)."""

    def __init__(self, ops: Iterable[Op] = ()):
        self._ops: dict[str, Op] = {}  # by name, in insertion (= topological) order
        self._succ: dict[str, dict[str, str]] = {}  # op -> {consumer: the tensor of the edge}
        self._pred: dict[str, dict[str, str]] = {}  # op -> {producer: the tensor of the edge}
        self._producer: dict[str, str] = {}
        self._tensors: dict[str, Tensor] = {}
        self._sorted: tuple[Op, ...] | None = None
        for op in ops:
            self.add(op)

    def add(self, op: Op) -> Op:
        if op.name in self._ops:
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
        self._ops[op.name] = op
        self._succ[op.name] = {}
        preds = self._pred[op.name] = {}
        self._sorted = None
        for tensor in op.inputs:
            producer = self._producer.get(tensor.name)
            if producer is not None:  # an earlier op: edges never point backwards
                preds[producer] = tensor.name  # several tensors between two ops: the last names the edge
                self._succ[producer][op.name] = tensor.name
        for tensor in op.outputs:
            if tensor.name in self._producer and not tensor.role.persistent:
                raise ValueError(f"activation {tensor.name!r} produced twice")
            self._producer[tensor.name] = op.name
        return op

    def predecessors(self, name: str) -> Iterator[str]:
        """The ops producing ``name``'s inputs, in the order their edges were made."""
        return iter(self._pred[name])

    def successors(self, name: str) -> Iterator[str]:
        """The ops reading ``name``'s outputs, in insertion order."""
        return iter(self._succ[name])

    def descendants(self, name: str) -> set[str]:
        """Every op reachable from ``name`` (not itself), as ``networkx.descendants``."""
        if name not in self._succ:
            raise KeyError(name)
        seen: set[str] = set()
        stack = [name]
        while stack:
            for consumer in self._succ[stack.pop()]:
                if consumer not in seen:
                    seen.add(consumer)
                    stack.append(consumer)
        return seen

    @property
    def nx(self) -> networkx.DiGraph:
        """A networkx copy of the graph (nodes are op names, attribute ``op``; edges have
        attribute ``tensor``), for analyses beyond ``ops()``, ``predecessors``, ``successors``
        and ``descendants``. networkx is imported here, on first use."""
        import networkx

        graph = networkx.DiGraph()
        for name, op in self._ops.items():
            graph.add_node(name, op=op)
            for producer, tensor in self._pred[name].items():
                graph.add_edge(producer, name, tensor=tensor)
        return graph

    def ops(self) -> Iterator[Op]:
        """Ops in a deterministic topological order: the order they were added in."""
        if self._sorted is None:
            self._sorted = tuple(self._ops.values())
        return iter(self._sorted)

    def __len__(self) -> int:
        return len(self._ops)

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
    # Tokens each sequence gains over every execution of the step phases; 0: one per execution
    # (vanilla decode). A speculative round (draft, verify) gives a number set by acceptance.
    step_tokens: int = 0


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
