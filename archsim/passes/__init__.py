"""Passes over a workload's op graphs, run per chip before its costs (``compile_for``): what a
chip's compiler and libraries do to the graph (``compiler:`` in its config)."""

from archsim.passes.flash import clear_passes, compile_for, flash_attention
from archsim.passes.fusion import fuse

__all__ = ["clear_passes", "compile_for", "flash_attention", "fuse"]
