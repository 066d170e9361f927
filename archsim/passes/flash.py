"""Flash attention as a pass: each attention's three ops (``AttentionScore`` writing the score
matrix, ``Softmax``, ``AttentionContext`` reading the probabilities) become one
``FlashAttention`` kernel where the chip's compiler runs one (``compiler.flash_attention``). The
score and probability tensors leave the graph: no memory, no footprint. A triple is rewritten
only when its score and probability tensors have no other reader.
"""

from __future__ import annotations

import dataclasses

from archsim.ir import ops
from archsim.ir.graph import OpGraph, Phase, Workload
from archsim.memo import BoundedMemo
from archsim.passes.fusion import fuse

_LOWERED: BoundedMemo[Workload] = BoundedMemo(size=256)


def compile_for(hw, workload: Workload) -> Workload:
    """``workload`` as the chip's compiler runs it (``hw.compiler``): flash attention where the
    compiler runs it, then fusion by its rules (``archsim.passes.fusion``), memoised per workload
    and ``compiler.passes_key``; the workload itself when no pass applies (profile ``none``)."""
    compiler = hw.compiler
    passes = _passes_key(compiler)
    if passes is None:
        return workload
    key = (workload, passes)
    lowered = _LOWERED.get(key)
    if lowered is None:
        flashed = flash_attention(workload, compiler.block, compiler.decodes) if compiler.flash else workload
        lowered = _LOWERED.put(key, fuse(flashed, compiler.rules))
    return lowered


def _passes_key(compiler) -> tuple | None:
    """``compiler.passes_key``, None where no pass applies, kept by the section object (configs
    are immutable, and a sweep's points share their compiler section: its properties resolve the
    profile's defaults, a few microseconds a point)."""
    entry = _KEYS.get(id(compiler))
    if entry is None or entry[0] is not compiler:  # held with it: its id is no other's meanwhile
        if len(_KEYS) >= _KEYS_HELD:
            _KEYS.clear()
        entry = _KEYS[id(compiler)] = (compiler, compiler.passes_key if compiler.flash or compiler.rules else None)
    return entry[1]


_KEYS: dict[int, tuple] = {}
_KEYS_HELD = 256  # compiler sections: a sweep's points share one or a few


def clear_passes() -> None:
    _LOWERED.clear()
    _KEYS.clear()


def flash_attention(workload: Workload, block: int, decode: bool = True) -> Workload:
    """Every phase's attention triples as ``FlashAttention`` ops of ``block`` x ``block`` tiles;
    with ``decode`` false, not a causal attention of one query per sequence (a decode step: the
    dense ops, as MaxText decodes with XLA's dot-product attention [PALLAS-FLASH])."""
    phases = tuple(Phase(p.name, _graph(p.graph, block, decode), p.repeat) for p in workload.phases)
    return dataclasses.replace(workload, phases=phases)


def _graph(graph: OpGraph, block: int, decode: bool = True) -> OpGraph:
    order = list(graph.ops())
    readers: dict[str, list[ops.Op]] = {}
    for op in order:
        for t in op.inputs:
            readers.setdefault(t.name, []).append(op)
    fused: dict[str, ops.Op] = {}  # the score op's name -> its kernel
    gone: set[str] = set()
    for op in order:
        if not isinstance(op, ops.AttentionScore) or (not decode and op.causal_queries == 1):
            continue
        after = readers.get(op.outputs[0].name, [])
        if len(after) != 1 or not isinstance(after[0], ops.Softmax):
            continue
        softmax = after[0]
        then = readers.get(softmax.outputs[0].name, [])
        if len(then) != 1 or not isinstance(then[0], ops.AttentionContext):
            continue
        context = then[0]
        # a causal score op knows its queries per head; otherwise the query heads sharing a KV
        # head and their queries are all rows alike (m of them), which is all the cost reads
        q_len = op.causal_queries or op.m
        fused[op.name] = ops.FlashAttention(
            op.name.rsplit(".", 1)[0] + ".flash" if "." in op.name else "flash", (op.a, op.b, context.b),
            context.outputs, op.batch, op.m // q_len, q_len, op.n, op.k, op.causal_queries > 0, block,
            copies=op.copies)
        gone.update((softmax.name, context.name))
    if not fused:
        return graph
    return OpGraph([fused.get(op.name, op) for op in order if op.name not in gone])

