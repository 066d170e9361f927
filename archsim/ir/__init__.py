"""The operator-graph IR: tensors, ops, graphs, phases and workloads."""

from archsim.ir.graph import OpGraph, Phase, Workload
from archsim.ir.ops import Op, Unit
from archsim.ir.tensor import Role, Tensor

__all__ = ["Op", "OpGraph", "Phase", "Role", "Tensor", "Unit", "Workload"]
