"""Digital compute-in-memory (CIM) matrix units, in closed form.

A CIM unit is a grid of cores; each core's SRAM holds a stationary weight block of
``core_rows`` reduction inputs x ``core_cols / weight bits`` outputs and multiplies every
input row broadcast to it against that block, ``macs_per_cycle`` MACs a cycle, accumulating
outputs in place (output stationary). The grid's rows tile K and its columns tile N, so one
*fold* places a K_t x N_t weight tile (K_t = grid rows x core_rows, N_t = grid cols x outputs
per core) and streams the M input rows through it:

    fold compute = M_chunk x ceil(weights per core / macs_per_cycle) + input bits / input_bits_per_cycle

The second term is the bit-serial pipeline depth; there is no systolic fill or skew, which is
why small-M (decode) GEMMs keep CIM busy. Before a fold computes, its weights are written
through each core's write port (core_rows x core_cols bits at weight_write_bits_per_cycle),
all cores in parallel. A unit that holds all its folds' weights at once (one fold) loads them
once; otherwise it reloads per fold, overlapping the next fold's reload with the current
fold's compute when ``reload_overlap`` (interleaved SRAM read/write) is set.

Partial sums across K folds stay in each core's ``psum_buffer``: M x outputs per core x the
accumulator type must fit, else M is processed in chunks that each reload the weights.

Grid split: when K is short (attention's head dimension), spending every grid row on K would
leave most cores idle. The mapper may use only g_k grid rows per fold along K and run the
grid_rows / g_k row groups as independent sub-units (other N tiles, or other batch elements
such as heads), assuming the accumulation across grid rows is reconfigurable and the input
bus broadcasts to every group. Folds (and chunks) are shared round-robin among all sub-units
of the units used; with fewer folds than sub-units, a fold's M rows are split among the idle
sub-units, each writing its own copy of the weights.
"""

from __future__ import annotations

import math

from archsim.config.schema import CimConfig
from archsim.dtypes import DType
from archsim.hw.matrix.base import ArrayTiming, MatmulShape, register_matrix_unit, undominated


@register_matrix_unit("cim")
class CimModel:
    def __init__(self, config: CimConfig):
        self.config = config

    def supports(self, dtype: DType) -> bool:
        return dtype in self.config.cim.macs_per_cycle

    def mappings(self, shape: MatmulShape, out_dtype: DType) -> tuple[ArrayTiming, ...]:
        """Every grid split g_k (grid rows, halved while even) on every number of units from
        ``count`` down to 1: fewer folds, fewer weight copies or fewer cycles each have their
        price, which only the op's time with memory settles (the engine picks)."""
        splits = []
        g_k = self.config.cim.grid[0]
        while True:
            splits.append(g_k)
            if g_k == 1 or g_k % 2:
                break
            g_k //= 2
        return undominated(self._timing(shape, out_dtype, g_k, units)
                           for g_k in splits for units in range(self.config.count, 0, -1))

    def _timing(self, shape: MatmulShape, out_dtype: DType, g_k: int, units: int) -> ArrayTiming:
        cfg, core = self.config, self.config.cim
        bits = int(shape.dtype.bytes * 8)
        outputs_per_core = core.core_cols // bits
        groups = core.grid[0] // g_k
        k_tile = g_k * core.core_rows
        n_tile = core.grid[1] * outputs_per_core
        k_folds, n_folds = math.ceil(shape.k / k_tile), math.ceil(shape.n / n_tile)

        psum_rows = int(core.psum_buffer // (outputs_per_core * shape.dtype.accumulator.bytes))
        chunk = shape.m if k_folds == 1 else max(1, min(shape.m, psum_rows))
        chunks = math.ceil(shape.m / chunk)
        weight_batches = shape.batch if shape.b_batched else 1
        folds = shape.batch * chunks * k_folds * n_folds
        slots = units * groups
        split = min(slots // folds, chunk) if folds < slots else 1
        chunk = math.ceil(chunk / split)
        per_unit = math.ceil(folds / slots)

        # an input row takes the longer of its MACs at the core's rate and its bits through the
        # bit-serial input port
        row_cycles = max(math.ceil(core.core_rows * outputs_per_core / core.macs_per_cycle[shape.dtype]),
                         math.ceil(bits / core.input_bits_per_cycle))
        fill = math.ceil(bits / core.input_bits_per_cycle)
        compute = chunk * row_cycles + fill
        load = math.ceil(core.core_rows * outputs_per_core * bits / core.weight_write_bits_per_cycle)
        if per_unit == 1:
            cycles = load + compute
        elif core.reload_overlap:
            cycles = load + (per_unit - 1) * max(compute, load) + compute
        else:
            cycles = per_unit * (load + compute)

        # Each weight load reads B from the scratchpad at its storage width and writes it into
        # the cores' SRAM at the compute width (a narrower stored weight is converted on the way).
        loads = chunks * split
        weight_writes = weight_batches * shape.k * shape.n * shape.dtype.bytes * loads
        ratio = core.clock_ratio  # the cores' cycles in chip cycles
        return ArrayTiming(
            compute_cycles=cycles if ratio == 1 else math.ceil(cycles / ratio),
            folds=folds * split,
            macs=shape.macs,
            peak_macs_per_cycle=cfg.count * cfg.macs_per_cycle(shape.dtype),
            a_reads=shape.a_bytes * n_folds,  # broadcast once per N fold
            b_reads=shape.b_bytes * loads,
            out_writes=shape.batch * shape.m * shape.n * out_dtype.bytes,
            weight_write_bytes=weight_writes,
            stream_cycles=per_unit * chunk * row_cycles / ratio,
        )
