"""No literal in the cost models sets a hardware quantity (issue 19): every number a chip could
change is a config field. This scans the model code for numeric literals; the only ones allowed
are the trivial (0, 1, -1: sums' starts, steps) and those listed below, each a true constant with
its reason; a 2 or a 1/2 is listed per file too, since either could be a hardware share."""

from __future__ import annotations

import ast

from conftest import ROOT

SCANNED = ("archsim/hw", "archsim/sim", "archsim/system", "archsim/gpu")
TRIVIAL = {0, 1, -1}
ALLOWED = {  # (file, value): why it is not a hardware quantity
    ("archsim/gpu/gemm.py", 4): "bytes of an fp32/int32 accumulator: a number format, not a chip's choice",
    ("archsim/gpu/engine.py", 20000): "memo size (entries), software",
    ("archsim/sim/engine.py", 50000): "memo size (entries), software",
    ("archsim/sim/engine.py", 256): "memo size (entries), software",
    ("archsim/sim/engine.py", 4): "memo size (entries), software",
    ("archsim/sim/scheduled_ops.py", 1024): "memo size (entries), software",
    ("archsim/sim/scheduled_ops.py", 16): "memo size (entries), software",
    ("archsim/hw/energy.py", 256): "memo size (entries), software",
    ("archsim/hw/area.py", 256): "memo size (entries), software",
    ("archsim/hw/leakage.py", 256): "memo size (entries), software",
    ("archsim/sim/matmul_cost.py", 4096): "memo size (entries), software",
    ("archsim/hw/matrix/base.py", 8): "how many timings are compared pair by pair in Python, not as arrays: software",
    ("archsim/sim/vector_cost.py", 4096): "memo size (entries), software",
    ("archsim/sim/fused.py", 4096): "memo size (entries), software",
    ("archsim/hw/matrix/base.py", 256): "memo size (entries), software",
    ("archsim/hw/matrix/base.py", 4096): "memo size (entries), software",
    ("archsim/hw/placement_rungs.py", 1e-9): "relative tie tolerance of the placement search, numerics",
    ("archsim/hw/knapsack.py", 4096): "cap on the placement search's Pareto set, software",
    ("archsim/hw/knapsack.py", 512): "memo size (Pareto lists kept by their items), software",
    ("archsim/sim/family_timing.py", 8): "schedules a family keeps per phase to resume from (entries), software",
    ("archsim/hw/placement.py", 16): "memo size (entries), software",
    ("archsim/hw/placement.py", 4): "memo size (entries), software",
    ("archsim/hw/placement.py", 256): "memo size (entries), software",
    ("archsim/sim/schedule.py", 16): "memo size (entries), software",
    ("archsim/hw/tiling.py", 4): "smallest tile edge searched, 2^4: the search's grid, not a chip's",
    ("archsim/hw/tiling.py", 1024): "memo size (entries), software",
    ("archsim/hw/tiling.py", 16384): "memo size (entries), software",
    ("archsim/sim/fingerprint.py", 10000): "memo size (entries), software",
    ("archsim/hw/matrix/cim.py", 8): "bits per byte",
    ("archsim/hw/tiling.py", 3): "a matmul's three operands (A, B, the output): a table's shape",
    ("archsim/sim/result.py", 1e12): "tera- (TOPS/W): a unit conversion",
    ("archsim/sim/result.py", 1e6): "m^2 to mm^2: a unit conversion",
    ("archsim/sim/trace.py", 1e6): "s to us (the trace format's unit): a unit conversion",
    ("archsim/system/trace.py", 1e6): "s to us (the trace format's unit): a unit conversion",
    # every 2 and 1/2, by what it is in its file
    ("archsim/hw/matrix/cim.py", 2): "grid splits halve the K side of a power-of-two grid: the search's steps",
    ("archsim/hw/matrix/systolic.py", 2): "skew and drain of an R x C array is R + C - 2 cycles: its geometry",
    ("archsim/hw/tiling.py", 2): "tile sizes are powers of two (the search's grid); axis 2 of the refetch table "
                                 "(the output); tiles double-buffered, the next loading while one computes "
                                 "(the tiled pipeline's structure: the DMA overlaps the arrays)",
    ("archsim/sim/cost.py", 0.5): "an op is named 'array-fill' bound when fill is the larger part of its "
                                  "compute time: a label's definition, no cost reads it",
    ("archsim/sim/result.py", 2): "two operations per MAC (TOPS/W): a definition",
    ("archsim/system/simulator.py", 2): "the next stage's group of chips, (cut + 2) x tp: an index",
    ("archsim/system/topology.py", 2): "a ring's two directions and two neighbours, a 2-D torus's two axes, a "
                                       "switched path's two links (up and down) and two hops: the topology's geometry",
    ("archsim/gpu/collectives.py", 2): "a ring all-reduce's 2 (n - 1) steps and a tree's up-and-down 2 (n - 1) hops, "
                                       "as NCCL's tuner counts them: the algorithm",
    ("archsim/gpu/engine.py", 2): "the first two warm-input flags: a slice",
    ("archsim/system/fit.py", 64): "the fit search's largest multiple of the chips given: a search bound, software",
    ("archsim/system/fit.py", 2): "the fit search doubles the chips at each step: the search's grid",
}


def literals():
    for folder in SCANNED:
        for path in sorted((ROOT / folder).rglob("*.py")):
            tree = ast.parse(path.read_text())
            # an index into a tuple or array (``entry[3]``) is a position, not a quantity
            indices = {id(n.slice) for n in ast.walk(tree) if isinstance(n, ast.Subscript)}
            for node in ast.walk(tree):
                if isinstance(node, ast.Constant) and type(node.value) in (int, float) and id(node) not in indices:
                    yield str(path.relative_to(ROOT)), node.lineno, node.value


def test_every_numeric_literal_of_the_cost_models_is_trivial_or_a_listed_constant():
    found = {(file, value) for file, _, value in literals()}
    unexplained = [(file, line, value) for file, line, value in literals()
                   if value not in TRIVIAL and (file, value) not in ALLOWED]
    assert not unexplained, "hardware quantities in model code (make them config fields): " + ", ".join(
        f"{f}:{line} {v!r}" for f, line, v in unexplained)
    assert not set(ALLOWED) - found, "allow-list entries no code needs any more"
