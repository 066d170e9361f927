"""Passes over a workload's op graphs, run per chip before its costs (``compile_for``): what a
chip's compiler and libraries do to the graph (``compiler:`` in its config)."""

from archsim.passes.flash import compile_for, flash_attention

__all__ = ["compile_for", "flash_attention"]
