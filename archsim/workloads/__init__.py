"""Workload extractors: model descriptions (as data) lowered to operator graphs. Each bundled
kind's module is imported when a file of that kind is read (``base.BUNDLED_KINDS``)."""

from archsim.workloads.base import load_spec, load_workload, register_workload, spec_class, workload_kinds

__all__ = ["load_spec", "load_workload", "register_workload", "spec_class", "workload_kinds"]
