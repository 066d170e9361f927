"""A GPU matmul as its libraries run it: thread-block tiles of the output in waves over the SMs,
operands staged through shared memory, the L2 a cache in front of HBM.

For each candidate kernel (a tile ``bm x bn`` of the library's ``gemm.tiles``, a split of K by
``s`` of ``gemm.split_k``) of a GEMM ``batch x (M x K) . (K x N)``:

- **Tiles**: ``ceil(M / bm) x ceil(N / bn)`` per GEMM, ``x s x batch`` thread blocks. Edge tiles
  run as whole tiles (*tile quantisation*): a tile's MACs are ``bm x bn x`` its K rounded up to
  whole ``k_tile`` steps.
- **Blocks per SM**: as many as the SM's shared memory holds (``stages x (bm + bn) x k_tile``
  operand elements each) and its register file holds (``bm x bn`` fp32 accumulators each), at
  least one. A wave is ``SMs x blocks per SM`` blocks.
- **Compute** (*wave quantisation*): each full wave takes ``blocks per SM x`` one tile's MACs at
  the SM's tensor rate (``tensor_macs_per_cycle x tensor_efficiency``); the last, partial wave
  of ``r`` blocks takes ``ceil(r / SMs)`` tiles' time.
- **L2 to the SMs**: every tile reads its A rows and B columns over its K range: A is read once
  per column of tiles and B once per row of tiles (``A x ceil(N / bn) + B x ceil(M / bm)``), and
  C is written once (split-K: ``s`` fp32 partials instead, read back and reduced into C). A thread-block
  *cluster* of ``cm x cn`` blocks (``gemm.clusters``, Hopper) loads a tile its blocks share once
  and multicasts it: A is read ``ceil(N / bn) / cn`` times, B ``ceil(M / bm) / cm`` times.
- **HBM**: the L2 is a cache. An operand already in L2 as the kernel starts (*warm*: see
  ``archsim.gpu.engine``) is not read from HBM at all. One that fits in half the L2's usable
  capacity is read from HBM once. A larger one is read again for each group of tiles that does
  not run together: a wave's blocks cover a ``w_m x w_n`` block of tiles (rasterised as near
  square, ``w_n = min(ceil(N / bn), ceil(sqrt(wave)))``, wider when the grid has fewer rows),
  and while they advance through K together they share their A rows and B columns in L2, so A
  is read ``ceil(ceil(N / bn) / w_n)`` times and B ``ceil(ceil(M / bm) / w_m)`` times. C is written once; split-K partials that do not fit
  the L2 go to HBM and back.
- **Time**: ``max(compute, L2 time, HBM time)`` (the main loop overlaps its loads with its MMAs),
  plus one exposed HBM latency per wave (each wave's pipeline fill), plus the split-K
  reduction's pass over the partials through L2 (a second kernel, after the first).
- The fastest candidate (tile, split, cluster) is the library's choice (ties: fewest HBM bytes,
  then fewest bytes the L2 sends). Shared memory still receives every block's whole tiles.

Sources: CUTLASS's tiles and pipeline (``docs/sources/gpu.md`` [CUTLASS]); tile and wave
quantisation as NVIDIA's performance guide describes them ([MMB]); the L2 duplication on A100
([UBENCH], ``l2.usable``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from archsim.config.gpu import GpuConfig
from archsim.dtypes import DType

ACCUMULATOR_BYTES = 4  # fp32 (int32) accumulators and split-K partials: what tensor cores produce


@dataclass(frozen=True)
class GemmShape:
    batch: int  # independent GEMMs (attention's heads; a weight shared by a batch is folded into m)
    m: int
    k: int
    n: int
    dtype: DType  # the MACs' operand type
    a_bytes: float  # bytes per element as stored
    b_bytes: float
    out_bytes: float
    a_warm: bool = False  # the operand is in L2 as the kernel starts (just written, or read by the last call)
    b_warm: bool = False


@dataclass(frozen=True)
class GemmPlan:
    tile: tuple[int, int]
    split: int
    cluster: tuple[int, int]
    tiles: int
    waves: int
    blocks_per_sm: int
    compute_s: float  # tensor cores, wave-quantised
    l2_s: float
    hbm_s: float
    latency_s: float  # exposed: a fill per wave
    reduce_s: float  # split-K reduction
    time_s: float
    smem_bytes: float  # operand bytes staged into the blocks' shared memory (each block its whole tiles)
    fetched: float  # operand bytes the L2 sends the SMs (a cluster's multicast tile once)
    l2_read: float
    l2_write: float
    hbm_read: float
    hbm_write: float
    padded_macs: float

    def describe(self) -> str:
        split = f", split-K {self.split}" if self.split > 1 else ""
        cluster = f", clusters {self.cluster[0]}x{self.cluster[1]}" if self.cluster != (1, 1) else ""
        return (f"{self.tile[0]}x{self.tile[1]} tiles{split}{cluster}: {self.tiles} blocks, {self.waves} wave"
                f"{'s' if self.waves != 1 else ''} of {self.blocks_per_sm}/SM")


def plan_gemm(hw: GpuConfig, shape: GemmShape) -> GemmPlan:
    """The library's kernel for ``shape``: the fastest candidate (see the module docstring).

    Every candidate is ranked at once, in arrays, by the very arithmetic ``_candidate`` does
    (the same operations in the same order, so the same doubles); the first of the best, in
    the order tiles, splits, clusters, is then built in full."""
    kernels = [(tile, split, tuple(cluster)) for tile in hw.gemm.tiles for split in hw.gemm.split_k
               if split == 1 or math.ceil(shape.k / split) >= hw.gemm.k_tile  # each split needs a K step
               for cluster in hw.gemm.clusters]
    time_s, hbm, fetched = _ranks(hw, shape, np.array([(t[0], t[1], s, c[0], c[1]) for t, s, c in kernels],
                                                      dtype=np.float64).T)
    best = np.lexsort((np.arange(len(kernels)), fetched, hbm, time_s))[0]
    return _candidate(hw, shape, *kernels[best])


def _ranks(hw: GpuConfig, shape: GemmShape, kernels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each kernel's (time, HBM bytes, bytes fetched from L2): ``_candidate``'s figures, as arrays
    over the columns of ``kernels`` (tile rows, tile columns, split, cluster rows, cluster columns)."""
    sm, gemm = hw.sm, hw.gemm
    bm, bn, split, cluster_m, cluster_n = kernels
    tm, tn = np.ceil(shape.m / bm), np.ceil(shape.n / bn)
    k_steps = np.ceil(np.ceil(shape.k / split) / gemm.k_tile)
    tiles = shape.batch * tm * tn * split
    staged = gemm.stages * (bm + bn) * gemm.k_tile * shape.dtype.bytes
    per_sm = np.maximum(1, np.minimum(sm.shared_memory // staged, sm.registers // (bm * bn * ACCUMULATOR_BYTES)))
    wave = sm.count * per_sm
    waves = np.ceil(tiles / wave)
    rest = tiles - (waves - 1) * wave
    tile_macs = bm * bn * k_steps * gemm.k_tile
    rate = sm.tensor_macs_per_cycle[shape.dtype] * sm.tensor_efficiency * hw.clock
    compute_s = ((waves - 1) * per_sm + np.ceil(rest / sm.count)) * tile_macs / rate
    a = shape.m * shape.k * shape.a_bytes
    b = shape.k * shape.n * shape.b_bytes
    c = shape.m * shape.n * shape.out_bytes
    cm, cn = np.minimum(cluster_m, tm), np.minimum(cluster_n, tn)
    fetched = shape.batch * (a * tn / cn + b * tm / cm)
    partials = np.where(split > 1, shape.batch * split * shape.m * shape.n * ACCUMULATOR_BYTES, 0.0)
    half = hw.l2.resident_capacity
    w_n = np.minimum(tn, np.ceil(np.sqrt(wave)))
    w_m = np.minimum(tm, np.ceil(wave / w_n))
    w_n = np.minimum(tn, np.maximum(w_n, np.ceil(wave / w_m)))
    a_reads = 0 if shape.a_warm else 1 if a <= half else np.ceil(tn / w_n)
    b_reads = 0 if shape.b_warm else 1 if b <= half else np.ceil(tm / w_m)
    spill = partials > hw.l2.usable_capacity
    hbm_read = shape.batch * (a * a_reads + b * b_reads) + np.where(spill, partials, 0.0)
    hbm_write = shape.batch * c + np.where(spill, partials, 0.0)
    l2_bw = hw.l2.achievable_bandwidth
    l2_s = (fetched + np.where(split > 1, partials, shape.batch * c)) / l2_bw
    hbm_s = (hbm_read - np.where(spill, partials, 0.0)) / hw.hbm.achievable_bandwidth \
        + (hbm_write - np.where(spill, partials, 0.0)) / hw.hbm.achievable_write_bandwidth
    reduce_s = np.where(split > 1, (partials + shape.batch * c) / l2_bw, 0.0)
    reduce_s = np.where((split > 1) & spill, np.maximum(reduce_s, partials / hw.hbm.achievable_bandwidth
                                                      + partials / hw.hbm.achievable_write_bandwidth), reduce_s)
    time_s = np.maximum(np.maximum(compute_s, l2_s), hbm_s) + waves * hw.hbm.latency + reduce_s
    return time_s, hbm_read + hbm_write, fetched


def _candidate(hw: GpuConfig, shape: GemmShape, tile: tuple[int, int], split: int,
               cluster: tuple[int, int]) -> GemmPlan:
    sm, gemm = hw.sm, hw.gemm
    bm, bn = tile
    tm, tn = math.ceil(shape.m / bm), math.ceil(shape.n / bn)
    k_split = math.ceil(shape.k / split)
    k_steps = math.ceil(k_split / gemm.k_tile)
    tiles = shape.batch * tm * tn * split
    staged = gemm.stages * (bm + bn) * gemm.k_tile * shape.dtype.bytes
    by_smem = int(sm.shared_memory // staged)
    by_registers = int(sm.registers // (bm * bn * ACCUMULATOR_BYTES))
    per_sm = max(1, min(by_smem, by_registers))
    wave = sm.count * per_sm
    waves = math.ceil(tiles / wave)
    rest = tiles - (waves - 1) * wave
    tile_macs = bm * bn * k_steps * gemm.k_tile
    rate = sm.tensor_macs_per_cycle[shape.dtype] * sm.tensor_efficiency * hw.clock  # MACs/s of one SM
    compute_s = ((waves - 1) * per_sm + math.ceil(rest / sm.count)) * tile_macs / rate

    a = shape.m * shape.k * shape.a_bytes  # one GEMM's operands
    b = shape.k * shape.n * shape.b_bytes
    c = shape.m * shape.n * shape.out_bytes
    # a cluster of cm x cn blocks loads each A tile once for its cn blocks along N, each B tile
    # once for its cm blocks along M (at most as many blocks as the grid has that way)
    cm, cn = min(cluster[0], tm), min(cluster[1], tn)
    fetched = shape.batch * (a * tn / cn + b * tm / cm)
    staged = shape.batch * (a * tn + b * tm)  # every block still holds its whole tiles
    partials = shape.batch * split * shape.m * shape.n * ACCUMULATOR_BYTES if split > 1 else 0.0

    half = hw.l2.resident_capacity
    w_n = min(tn, math.ceil(math.sqrt(wave)))
    w_m = min(tm, math.ceil(wave / w_n))
    w_n = min(tn, max(w_n, math.ceil(wave / w_m)))  # a grid with few rows runs wider
    a_reads = 0 if shape.a_warm else 1 if a <= half else math.ceil(tn / w_n)
    b_reads = 0 if shape.b_warm else 1 if b <= half else math.ceil(tm / w_m)
    hbm_read = shape.batch * (a * a_reads + b * b_reads)
    hbm_write = shape.batch * c
    spill = partials > hw.l2.usable_capacity
    if spill:  # the partials go to HBM and are read back by the reduction
        hbm_read += partials
        hbm_write += partials

    l2_read = fetched + partials
    l2_write = hbm_read + shape.batch * c + partials  # lines filled from HBM, results, partials
    l2_bw = hw.l2.achievable_bandwidth
    # the main kernel writes C, or with split-K its partials (the reduction then writes C)
    l2_s = (fetched + (partials if split > 1 else shape.batch * c)) / l2_bw
    hbm_s = (hbm_read - (partials if spill else 0.0)) / hw.hbm.achievable_bandwidth \
        + (hbm_write - (partials if spill else 0.0)) / hw.hbm.achievable_write_bandwidth
    reduce_s = 0.0
    if split > 1:  # read every partial, write the result
        reduce_s = (partials + shape.batch * c) / l2_bw
        if spill:
            reduce_s = max(reduce_s, partials / hw.hbm.achievable_bandwidth
                           + partials / hw.hbm.achievable_write_bandwidth)
    latency_s = waves * hw.hbm.latency
    time_s = max(compute_s, l2_s, hbm_s) + latency_s + reduce_s
    return GemmPlan(tile, split, cluster, tiles, waves, per_sm, compute_s, l2_s, hbm_s, latency_s, reduce_s, time_s,
                    staged, fetched, l2_read, l2_write, hbm_read, hbm_write, float(tiles * tile_macs))
