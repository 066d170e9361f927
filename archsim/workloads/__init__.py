"""Workload extractors: model descriptions (as data) lowered to operator graphs."""

from archsim.workloads import block, dit, dllm, llm  # noqa: F401  (register the kinds)
from archsim.workloads import dit_family  # noqa: F401  (kind: diffusion_transformer)
from archsim.workloads.base import load_spec, load_workload, register_workload, workload_kinds

__all__ = ["load_spec", "load_workload", "register_workload", "workload_kinds"]
