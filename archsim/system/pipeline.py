"""Pipeline parallelism: split a workload into consecutive stages, one per group of chips.

- A workload whose ops stand for a stack of D layers (``copies``) is split between layers: stage
  s runs n_s of the D layers (each op of the stack with n_s copies, on n_s copies of the stack's
  weights and caches). Ops a cache schedule runs on only c < D of the layers get their share of
  c in proportion to n_s. Ops that depend on the stack's output run on the last stage (final
  norm, LM head), the others on the first (embeddings, conditioning).
- A one-phase workload with fewer layers than stages (one transformer layer) is split between
  ops instead: consecutive runs of ops in topological order.

Either way the split balances the stages' times, estimated from one chip's per-op costs with
every tensor in HBM (``op_time``); a split between ops also weighs the time to send what
crosses each cut (``cut_time``), as a cut through attention's scores would send more than it
saves. The activations a stage reads that an earlier stage wrote are
sent across every cut between the two, once per micro-batch and execution.

With several micro-batches in flight, each stage keeps every micro-batch's K/V and feature
caches: those tensors get ``instances = micro_batches``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable

from archsim.ir.graph import OpGraph, Phase, Workload
from archsim.ir.ops import Op
from archsim.ir.tensor import Role, Tensor

OpTime = Callable[[Op, Phase], float]  # one execution of one copy
CutTime = Callable[[float], float]  # bytes across a cut -> seconds


class PipelineError(ValueError):
    pass


@dataclass(frozen=True)
class PipelineSplit:
    stages: tuple[Workload, ...]
    sends: dict[str, tuple[float, ...]]  # per phase: bytes across each of the p - 1 cuts, per micro-batch
    feedback: dict[str, float]  # per phase: input bytes the first stage needs from the last to repeat it
    layers: tuple[int, ...]  # layers per stage; empty when split between ops


def split_pipeline(workload: Workload, stages: int, op_time: OpTime, micro_batches: int = 1,
                   cut_time: CutTime = lambda size: 0.0) -> PipelineSplit:
    depth = stack_depth(workload)
    if stages == 1:
        only = _with_instances(workload, micro_batches)
        return PipelineSplit((only,), {p.name: () for p in workload.phases}, {p.name: 0.0 for p in workload.phases}, (depth,))
    if depth >= stages:
        sides = {phase.name: _split_sides(phase, depth) for phase in workload.phases}
        layers = _balance_layers(workload, sides, depth, stages, op_time)
        copies = _layer_assignment(workload, sides, depth, layers)
    elif depth == 1 and len(workload.phases) == 1:
        layers = ()
        copies = _op_assignment(workload.phases[0], stages, op_time, cut_time)
    else:
        raise PipelineError(f"{depth} layer(s) cannot be split into {stages} pipeline stages, and a split between "
                            f"ops needs a workload of one layer and one phase ({workload.name!r} has "
                            f"{len(workload.phases)} phase(s)); use fewer stages")
    stage_workloads = tuple(_with_instances(_stage(workload, copies, s, depth, layers), micro_batches)
                            for s in range(stages))
    sends = {p.name: _cut_bytes(p, copies, stages) for p in workload.phases}
    feedback = {p.name: _first_stage_inputs(p, copies) for p in workload.phases}
    return PipelineSplit(stage_workloads, sends, feedback, tuple(layers))


def stack_depth(workload: Workload) -> int:
    """Layers of the workload's stack: the most copies any tensor or op stands for."""
    depth = 1
    for phase in workload.phases:
        for op in phase.graph.ops():
            depth = max(depth, op.copies, *(t.copies for t in op.tensors))
    return depth


# -- which ops run where: (phase, op) -> {stage: copies} --------------------------------------

Assignment = dict[tuple[str, str], dict[int, int]]


def _in_stack(op: Op, depth: int) -> bool:
    return depth > 1 and (op.copies > 1 or any(t.role.persistent and t.copies == depth for t in op.tensors))


def _split_sides(phase: Phase, depth: int) -> tuple[list[Op], list[Op], list[Op]]:
    """The phase's ops before the stack, in it, and after it (depending on it)."""
    stack = [op for op in phase.graph.ops() if _in_stack(op, depth)]
    after: set[str] = set()
    for op in stack:
        after |= phase.graph.descendants(op.name)
    names = {op.name for op in stack}
    ops = list(phase.graph.ops())
    return ([op for op in ops if op.name not in names and op.name not in after], stack,
            [op for op in ops if op.name not in names and op.name in after])


Sides = dict[str, tuple[list[Op], list[Op], list[Op]]]  # per phase: ops before, in and after the stack


def _balance_layers(workload: Workload, sides: Sides, depth: int, stages: int, op_time: OpTime) -> list[int]:
    """Layers per stage minimising the slowest stage, the first carrying the ops before the
    stack and the last those after it."""
    pre = post = layer = 0.0
    for phase in workload.phases:
        before, stack, after = sides[phase.name]
        pre += phase.repeat * sum(op_time(op, phase) * op.copies for op in before)
        post += phase.repeat * sum(op_time(op, phase) * op.copies for op in after)
        layer += phase.repeat * sum(op_time(op, phase) * op.copies for op in stack) / depth
    layers = [depth // stages + (1 if s < depth % stages else 0) for s in range(stages)]
    offset = [pre if s == 0 else 0.0 for s in range(stages)]
    offset[-1] += post

    def load(s: int) -> float:
        return offset[s] + layers[s] * layer

    while True:  # move a layer from the slowest stage to the fastest while that helps
        slow = max(range(stages), key=lambda s: (load(s), -s))
        fast = min(range(stages), key=lambda s: (load(s), s))
        if layers[slow] <= 1 or load(fast) + layer >= load(slow):
            return layers
        layers[slow] -= 1
        layers[fast] += 1


def _apportion(count: int, layers: list[int]) -> list[int]:
    """``count`` of the stack's layers spread over the stages in proportion to their layers
    (largest remainder, ties to the earlier stage); exact: the parts sum to ``count``."""
    depth = sum(layers)
    exact = [count * n / depth for n in layers]
    parts = [int(x) for x in exact]
    order = sorted(range(len(layers)), key=lambda s: (-(exact[s] - parts[s]), s))
    for s in order[:count - sum(parts)]:
        parts[s] += 1
    return parts


def _layer_assignment(workload: Workload, sides: Sides, depth: int, layers: list[int]) -> Assignment:
    last = len(layers) - 1
    copies: Assignment = {}
    for phase in workload.phases:
        before, stack, after = sides[phase.name]
        for op in before:
            copies[(phase.name, op.name)] = {0: op.copies}
        for op in after:
            copies[(phase.name, op.name)] = {last: op.copies}
        for op in stack:
            parts = layers if op.copies == depth else _apportion(op.copies, layers)
            copies[(phase.name, op.name)] = {s: n for s, n in enumerate(parts) if n}
    return copies


def _op_assignment(phase: Phase, stages: int, op_time: OpTime, cut_time: CutTime) -> Assignment:
    """Consecutive ops per stage, minimising the slowest stage or cut (linear partition)."""
    ops = list(phase.graph.ops())
    if len(ops) < stages:
        raise PipelineError(f"{len(ops)} ops cannot be split into {stages} pipeline stages")
    times = [op_time(op, phase) * op.copies for op in ops]
    cuts = [cut_time(size) for size in _live_bytes(ops)]  # cuts[j]: between ops j - 1 and j
    prefix = [0.0]
    for t in times:
        prefix.append(prefix[-1] + t)
    n, inf = len(ops), float("inf")
    # best[k][i]: the least slowest-stage time putting the first i ops on k stages
    best = [[inf] * (n + 1) for _ in range(stages + 1)]
    cut = [[0] * (n + 1) for _ in range(stages + 1)]
    best[0][0] = 0.0
    for k in range(1, stages + 1):
        for i in range(k, n - (stages - k) + 1):
            for j in range(k - 1, i):
                value = max(best[k - 1][j], prefix[i] - prefix[j], cuts[j] if k > 1 else 0.0)
                if value < best[k][i]:
                    best[k][i], cut[k][i] = value, j
    bounds, i = [], n
    for k in range(stages, 0, -1):
        bounds.append((cut[k][i], i))
        i = cut[k][i]
    copies: Assignment = {}
    for s, (start, end) in enumerate(reversed(bounds)):
        for op in ops[start:end]:
            copies[(phase.name, op.name)] = {s: op.copies}
    return copies


def _live_bytes(ops: list[Op]) -> list[float]:
    """Per position j, the activation bytes written before op j (or inputs) and read from op j on."""
    written = {t.name: i for i, op in enumerate(ops) for t in op.outputs}
    last_read: dict[str, int] = {}
    size: dict[str, float] = {}
    for i, op in enumerate(ops):
        for t in op.inputs:
            if not t.role.persistent:
                last_read[t.name] = i
                size[t.name] = t.bytes
    live = [0.0] * (len(ops) + 1)
    for name, end in last_read.items():
        for j in range(written.get(name, -1) + 1, end + 1):
            live[j] += size[name]
    return live


# -- the stages' workloads and the traffic between them ---------------------------------------

def _stage(workload: Workload, copies: Assignment, stage: int, depth: int, layers: tuple | list) -> Workload:
    held = layers[stage] if layers else depth

    def tensor(t: Tensor) -> Tensor:  # this stage's layers of the stack's weights and caches
        return dataclasses.replace(t, copies=held) if t.role.persistent and t.copies == depth and layers else t

    phases = []
    for phase in workload.phases:
        graph = OpGraph()
        for op in phase.graph.ops():
            n = copies[(phase.name, op.name)].get(stage, 0)
            if n:
                graph.add(dataclasses.replace(op, inputs=tuple(map(tensor, op.inputs)),
                                              outputs=tuple(map(tensor, op.outputs)), copies=n))
        if len(graph):
            phases.append(Phase(phase.name, graph, phase.repeat))
    return Workload(f"{workload.name} [stage {stage}]", tuple(phases))


def _with_instances(workload: Workload, micro_batches: int) -> Workload:
    if micro_batches == 1:
        return workload

    def tensor(t: Tensor) -> Tensor:
        return dataclasses.replace(t, instances=micro_batches) if t.role in (Role.KV_CACHE, Role.FEATURE_CACHE) else t

    phases = []
    for phase in workload.phases:
        graph = OpGraph(dataclasses.replace(op, inputs=tuple(map(tensor, op.inputs)), outputs=tuple(map(tensor, op.outputs)))
                        for op in phase.graph.ops())
        phases.append(Phase(phase.name, graph, phase.repeat))
    return dataclasses.replace(workload, phases=tuple(phases))


def _cut_bytes(phase: Phase, copies: Assignment, stages: int) -> tuple[float, ...]:
    """Bytes crossing each cut: every activation read on a later stage than the one that
    wrote it (the stack's last layer for stack ops) crosses each cut between them, once."""
    last = {op.name: max(copies[(phase.name, op.name)]) for op in phase.graph.ops()}
    producer: dict[str, str] = {}
    for op in phase.graph.ops():
        for t in op.outputs:
            producer.setdefault(t.name, op.name)
    crossing: list[dict[str, float]] = [{} for _ in range(stages - 1)]
    for op in phase.graph.ops():
        for t in op.inputs:
            if t.role.persistent:
                continue
            src = last[producer[t.name]] if t.name in producer else 0
            for k in range(src, last[op.name]):
                crossing[k][t.name] = t.bytes
    return tuple(sum(c.values()) for c in crossing)


def _first_stage_inputs(phase: Phase, copies: Assignment) -> float:
    """The phase's inputs (activations no op writes) that the first stage reads: what it
    needs from the last stage's result to start the next execution."""
    written = {t.name for op in phase.graph.ops() for t in op.outputs}
    inputs: dict[str, float] = {}
    for op in phase.graph.ops():
        if 0 in copies[(phase.name, op.name)]:
            inputs.update({t.name: t.bytes for t in op.inputs if not t.role.persistent and t.name not in written})
    return sum(inputs.values())
