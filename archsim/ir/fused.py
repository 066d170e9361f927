"""Fused ops: a group of ops a compiler runs as one kernel (``archsim.passes.fusion``).

A ``Fused`` op is its *main* op (a GEMM or a vector op) with the ops fused after it
(``epilogue``) and, for input fusion, before it (``prologue``). Its ``inputs`` are the group's
external inputs, the main op's as it reads them first (``main_inputs``: an intermediate it read
replaced by the prologue's data input), then the others (``extra_inputs``); its ``outputs`` the
group's last member's. Intermediate tensors are not in the graph: they never reach memory.

What the kernel does beyond its main op (read by both chip kinds' costs, archsim/sim/fused.py):

- ``epilogue_work``: each epilogue op's work once (it runs tile by tile on the data the main op
  produces), a vector-chain prologue's work once per pass of the main op (the producer is
  duplicated into each of the consumer's passes, XLA's input fusion [XLA-FUSION]), a norm
  prologue's normalise-and-scale pass once (applied to the GEMM's A operand as it is loaded);
- ``extra_reads``: each extra input with the times it is read (a vector-chain prologue's extra
  inputs once per pass; every other once).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar

from archsim.ir import ops
from archsim.ir.tensor import Tensor
from archsim.memo import cached_property

# the rule of a group whose prologue is a norm's normalise pass (archsim/config/compiler.py)
NORM_PROLOGUE = "norm_prologue"


@dataclass(frozen=True)
class Fused(ops.Op):
    """``main`` with ``epilogue`` (in order) and ``prologue`` fused into one kernel. ``rule``:
    the fusion rules that formed it, joined by '+'. ``kind`` and ``unit`` are the main op's: a
    fused GEMM is one GEMM kernel launch (``hw.dispatch`` is looked up by kind)."""

    main: ops.Op
    epilogue: tuple[ops.Op, ...]
    rule: str
    prologue: tuple[ops.Op, ...] = ()

    def __post_init__(self) -> None:
        if len(self.inputs) < len(self.main.inputs):
            raise ValueError(f"fused op {self.name!r}: fewer inputs than its main op's")

    @property
    def kind(self) -> str:  # type: ignore[override]
        return self.main.kind

    @property
    def unit(self) -> ops.Unit:  # type: ignore[override]
        return self.main.unit

    @property
    def members(self) -> tuple[ops.Op, ...]:
        return (*self.prologue, self.main, *self.epilogue)

    @property
    def macs(self) -> int:
        return self.main.macs

    @cached_property
    def main_inputs(self) -> tuple[Tensor, ...]:
        """The main op's inputs as the kernel reads them (a prologue's intermediate replaced)."""
        return self.inputs[:len(self.main.inputs)]

    @cached_property
    def core(self) -> ops.Op:
        """The main op as the kernel runs it: its inputs as read (``main_inputs``), the group's
        output as written (that tensor's name, dtype, role and copies; the main op's shape, or
        a cache write's: the new entries'). Both chip kinds cost the group from it."""
        final = self.outputs[0]
        last = self.epilogue[-1] if self.epilogue else self.main
        shape = last.inputs[0].shape if isinstance(last, ops.CacheWrite) else self.main.outputs[0].shape
        out = Tensor(final.name, shape, final.dtype, final.role, copies=final.copies)
        return dataclasses.replace(self.main, inputs=self.main_inputs, outputs=(out,))

    @cached_property
    def extra_inputs(self) -> tuple[Tensor, ...]:
        return self.inputs[len(self.main.inputs):]

    @cached_property
    def _prologue_times(self) -> int:
        """How often the prologue runs: a vector-chain prologue once per pass of the main op."""
        if not self.prologue or NORM_PROLOGUE in self.rule:
            return 1
        return len(self.main.passes)

    @cached_property
    def _prologue_tensors(self) -> frozenset[str]:
        return frozenset(t.name for op in self.prologue for t in op.inputs)

    @cached_property
    def extra_reads(self) -> tuple[tuple[Tensor, int], ...]:
        """Each extra input and how many times the kernel reads it."""
        times = self._prologue_times
        return tuple((t, times if t.name in self._prologue_tensors else 1) for t in self.extra_inputs)

    @cached_property
    def epilogue_work(self) -> ops.VectorWork:
        """Vector work beyond the main op's (see the module docstring)."""
        total = ops.VectorWork(0, 0)
        for op in self.epilogue:
            total = total + op.vector_work
        for op in self.prologue:
            if NORM_PROLOGUE in self.rule:  # the normalise-and-scale pass alone
                total = total + op.passes[-1].work(op.elements, op.rows)
            else:
                for _ in range(self._prologue_times):
                    total = total + op.vector_work
        return total

    @property
    def vector_work(self) -> ops.VectorWork:
        return self.main.vector_work + self.epilogue_work

    @cached_property
    def signature(self) -> tuple:
        """The rule, each member's signature and where each member's tensors sit among the fused
        op's (an index, -1 for an intermediate): ops alike but for names share it."""
        index = {name: i for i, name in reversed(list(enumerate(self.tensor_names)))}
        where = tuple(tuple(index.get(t.name, -1) for t in op.tensors) for op in self.members)
        return (type(self), self.rule, len(self.prologue), tuple(op.signature for op in self.members), where,
                tuple((t.shape, t.dtype, t.role) for t in self.tensors))


@dataclass(frozen=True)
class FusedCacheWrite(Fused, ops.CacheWrite):
    """A fused group ending in a cache write: its output is the cache, of which it writes the new
    entries at the cache's type (the kernel converts them in its epilogue). A ``CacheWrite`` too,
    so the placement and the graph summary count the bytes written, not the whole cache."""

    @property
    def written_bytes(self) -> float:
        return sum(t.elements for t in self.epilogue[-1].inputs) * self.outputs[0].dtype.bytes


@dataclass(frozen=True)
class NormStats(ops.VectorOp):
    """What stays of a norm whose normalise-and-scale pass moved into the GEMMs reading it
    (``norm_prologue``): its reduction passes, writing per-row statistics (``outputs``).
    ``function`` is the norm's kind, whose dispatch and kernel settings apply. Costed as any vector
    op of these passes: its last one writes the statistics, so a TPU-style chip does not count that
    pass's lane fold (``reduce_step_cycles``, 0 on the bundled TPUs: [V3FIT]), and a GPU reads its
    input as the norm's kernel does (``kernels``), an approximation of a kernel without the norm's
    last pass."""

    PASSES: ClassVar[dict[str, tuple[ops.Pass, ...]]] = {
        "layernorm": ops.LayerNorm.PASSES["layernorm"][:-1], "rmsnorm": ops.RMSNorm.PASSES["rmsnorm"][:-1]}

    @property
    def kind(self) -> str:  # type: ignore[override]
        return self.function
