"""Evaluate a workload on a system of chips under its parallel mapping.

The workload comes lowered for one chip of the mapping (``archsim.workloads.Lowering``): a
micro-batch of one data-parallel replica, each tensor-parallel layer split, its collectives in
the graph. The simulator splits it into pipeline stages, evaluates each stage on one chip (the
single-chip model: placement, capacity, per-op costs; the tensor-parallel ranks of a stage are
alike), times the boundaries between stages on the topology, and schedules micro-batches and
repeats (``archsim.system.schedule``).
"""

from __future__ import annotations

from archsim.chips import build_chip
from archsim.config.schema import HardwareConfig
from archsim.hw.memory import Level, Placement
from archsim.hw.tiling import TilingError
from archsim.ir.graph import Phase, Workload
from archsim.ir.ops import Op
from archsim.passes import compile_for
from archsim.system.pipeline import PipelineError, split_pipeline
from archsim.system.result import Boundary, SystemResult
from archsim.system.topology import NO_TRANSFER, Transfer


class SystemSimulator:
    """A system ready to evaluate workloads; reuse it freely."""

    def __init__(self, hw: HardwareConfig, dispatch: str = "program"):
        self.hw = hw
        self.dispatch = dispatch
        self.chip = build_chip(hw, dispatch=dispatch)
        self.topology = self.chip.topology

    def run(self, workload: Workload) -> SystemResult:
        p = self.hw.system.parallelism
        if self.dispatch == "program":  # the compiler's graph is what the stages split: a fused
            workload = compile_for(self.hw, workload)  # kernel or a flash attention is never cut
        flat = Placement({name: Level.HBM for name in workload.tensors()}, (), True)

        def op_time(op: Op, phase: Phase) -> float:  # for balancing stages: every tensor in HBM
            return self.chip.op_cost(op, flat, phase.name, phase.repeat).latency_s

        try:
            split = split_pipeline(workload, p.pipeline, op_time, p.micro_batches,
                                   lambda size: self._boundary(0, size).time_s)
        except (PipelineError, TilingError) as exc:
            return SystemResult.infeasible(self.hw, workload, str(exc))
        stages = []
        for s, stage in enumerate(split.stages):
            result = self.chip.run(stage)
            if not result.feasible:
                return SystemResult.infeasible(self.hw, workload, f"{self._where(s)}: {result.reason}")
            stages.append(result)
        boundaries = {name: tuple(self._boundary(s, size) for s, size in enumerate(sizes))
                      for name, sizes in split.sends.items()}
        feedback = {name: self._feedback(size) for name, size in split.feedback.items()}
        return SystemResult(self.hw, workload, split, tuple(stages), boundaries, feedback)

    def _where(self, stage: int) -> str:
        p = self.hw.system.parallelism
        if self.hw.system.chips == 1:
            return "the chip"
        chips = [stage * p.tensor + r for r in range(p.tensor)]
        label = f"chip {chips[0]}" if len(chips) == 1 else f"chips {chips[0]}-{chips[-1]}"
        return f"pipeline stage {stage} ({label}{', and its data-parallel replicas' if p.data > 1 else ''})"

    def _boundary(self, cut: int, size: float) -> Boundary:
        """From stage ``cut`` to the next: its last chip sends the activations to the next
        stage's first chip, which broadcasts them to its tensor-parallel group."""
        tp = self.hw.system.parallelism.tensor
        send = self.topology.send(size, cut * tp + tp - 1, (cut + 1) * tp)
        share = self.topology.broadcast(size, range((cut + 1) * tp, (cut + 2) * tp)) if tp > 1 else NO_TRANSFER
        return Boundary(send, share)

    def _feedback(self, size: float) -> Transfer:
        p = self.hw.system.parallelism
        if p.pipeline == 1:
            return NO_TRANSFER
        return self.topology.send(size, p.pipeline * p.tensor - 1, 0)


def simulate_system(hw: HardwareConfig, workload: Workload, dispatch: str = "program") -> SystemResult:
    return SystemSimulator(hw, dispatch).run(workload)
