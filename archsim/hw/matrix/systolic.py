"""Systolic-array timing: a GEMM is folded onto R x C arrays per dataflow, in closed form.

Each dataflow keeps one operand (or the outputs) stationary in the R x C array and streams
the other through it. A *fold* is one placement of the stationary tile. With ``S`` the
streamed length, SCALE-Sim v3 charges every fold ``S + 2R + C - 2`` cycles for ws/is (R to
load the stationary tile one row per cycle, then skew and drain) and ``S + R + C - 2`` for os,
and subtracts one cycle overall (docs/sources/papers.md#scale-sim-cycle-counts).

Fold models:
- ``scalesim``: folds run back to back, each paying its full fill and drain (SCALE-Sim's count).
- ``pipelined``: the next fold's stationary load (or, in os, the previous fold's output
  unload, also R rows) overlaps the current fold's stream, as in a TPU's double-buffered MXU:
  a fold costs max(S, L), and fill and drain are paid once. With one fold both models agree.
  L = R / ``weight_load_rows_per_cycle`` is the load's length; ``weight_load_overlap`` (0 to 1)
  is the share of it that hides behind the stream, S + L - overlap x min(S, L): measured TPUs
  hide little of it (a fold at M = 256 runs near S + R, hw_configs/tpuv3.yaml).

Folds are shared round-robin among the units. With fewer folds than units (a small GEMM),
ws and is split each fold's stream (rows of A, columns of B) among the idle units, each
holding a copy of the stationary tile; os does not (splitting its K stream would need a
cross-unit reduction). The model offers the mapping on every number of units from 1 to
``count`` (``mappings``); the engine picks the fastest with the memory system.

A PE rate of p MACs per cycle for a dtype is modelled as p reduction (K) elements per PE.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from archsim.config.schema import SystolicConfig
from archsim.dtypes import DType
from archsim.hw.matrix.base import ArrayTiming, MatmulShape, register_matrix_unit, undominated


@dataclass(frozen=True)
class Mapping:
    """How one dataflow maps (m, k, n) onto array rows, array columns and the stream."""

    row_dim: int
    col_dim: int
    stream: int
    preload: bool  # the stationary operand is loaded before streaming (ws, is)


def map_dataflow(dataflow: str, m: int, k: int, n: int) -> Mapping:
    if dataflow == "ws":  # weights B[k, n] stationary, A's rows stream through
        return Mapping(row_dim=k, col_dim=n, stream=m, preload=True)
    if dataflow == "is":  # inputs A[m, k] stationary (k on rows), B's columns stream through
        return Mapping(row_dim=k, col_dim=m, stream=n, preload=True)
    if dataflow == "os":  # outputs C[m, n] stationary, k streams
        return Mapping(row_dim=m, col_dim=n, stream=k, preload=False)
    raise ValueError(f"unknown dataflow {dataflow!r}")


def fold_cycles(fold_model: str, folds: int, mapping: Mapping, rows: int, cols: int,
                load_rows_per_cycle: int = 1, load_overlap: float = 1.0) -> int:
    """Cycles for ``folds`` folds run one after another on one R x C array. The stationary
    tile loads in ``R / load_rows_per_cycle`` cycles; ``load_overlap`` of it hides behind the
    previous fold's stream (pipelined model)."""
    if folds == 0:
        return 0
    load = math.ceil(rows / load_rows_per_cycle) if mapping.preload else 0
    skew_drain = rows + cols - 2
    s = mapping.stream
    if fold_model == "scalesim":
        return folds * (s + load + skew_drain) - 1
    if fold_model == "pipelined":
        # the first load is exposed; each later fold streams and swaps in its stationary tile,
        # all of the swap hidden at overlap 1 (max(s, R): the TPU's double-buffered weights),
        # none at 0 (s + R); os unloads its R rows of outputs likewise. The last fold drains.
        swap = rows if not mapping.preload else load
        later = s + swap - load_overlap * min(s, swap)
        return math.ceil(load + (folds - 1) * later + s + skew_drain - 1)
    raise ValueError(f"unknown fold model {fold_model!r}")


@register_matrix_unit("systolic")
class SystolicModel:
    def __init__(self, config: SystolicConfig):
        self.config = config

    def supports(self, dtype: DType) -> bool:
        return dtype in self.config.pe_macs_per_cycle

    def mappings(self, shape: MatmulShape, out_dtype: DType) -> tuple[ArrayTiming, ...]:
        """The folds spread over 1 to ``count`` units: more units finish sooner, but a split
        stream copies the stationary tile to each unit, which a VMEM-bound op may not afford."""
        return undominated(self._timing(shape, out_dtype, units) for units in range(self.config.count, 0, -1))

    def _timing(self, shape: MatmulShape, out_dtype: DType, units: int) -> ArrayTiming:
        cfg = self.config
        pack = cfg.pe_macs_per_cycle[shape.dtype]
        k_eff = math.ceil(shape.k / pack)
        mapping = map_dataflow(cfg.dataflow, shape.m, k_eff, shape.n)
        row_folds = math.ceil(mapping.row_dim / cfg.rows)
        col_folds = math.ceil(mapping.col_dim / cfg.cols)
        folds = shape.batch * row_folds * col_folds
        split = units // folds if mapping.preload and folds < units else 1
        if split > 1:
            mapping = Mapping(mapping.row_dim, mapping.col_dim, math.ceil(mapping.stream / split), True)
        per_unit = math.ceil(folds / units)
        cycles = fold_cycles(cfg.fold_model, per_unit, mapping, cfg.rows, cfg.cols,
                             cfg.weight_load_rows_per_cycle, cfg.weight_load_overlap)

        a_bytes, b_bytes = shape.a_bytes, shape.b_bytes  # at their storage widths
        out_bytes = shape.batch * shape.m * shape.n * out_dtype.bytes
        # Scratchpad reads by the dataflow: the stationary operand is read once per fold
        # (so once in all); a streamed operand once for every fold across the other dimension.
        # (a split stream replicates the stationary tile to every unit sharing the fold).
        if cfg.dataflow == "ws":
            a_reads, b_reads = a_bytes * math.ceil(shape.n / cfg.cols), b_bytes * split
            loaded = b_reads  # the stationary tiles, each shifted into the PEs' weight registers
        elif cfg.dataflow == "is":
            a_reads, b_reads = a_bytes * split, b_bytes * math.ceil(shape.m / cfg.cols)
            loaded = a_reads
        else:
            a_reads = a_bytes * math.ceil(shape.n / cfg.cols)
            b_reads = b_bytes * math.ceil(shape.m / cfg.rows)
            loaded = 0.0  # both operands stream; nothing is held in the PEs
        return ArrayTiming(
            compute_cycles=cycles,
            folds=folds * split,
            macs=shape.macs,
            peak_macs_per_cycle=cfg.count * cfg.macs_per_cycle(shape.dtype),
            a_reads=a_reads,
            b_reads=b_reads,
            out_writes=out_bytes,
            weight_write_bytes=loaded,
            stream_cycles=per_unit * mapping.stream,
        )
