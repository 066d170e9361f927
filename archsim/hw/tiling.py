"""VMEM tiling of a matmul: choose tile sizes and loop order, count traffic per level.

The output is computed tile by tile: loops over m-, n- and k-tiles (batch outermost), in one
of the six orders. An operand tile is fetched again whenever a loop it depends on advances,
and also each time an outer loop it does not depend on advances (its tile was evicted in
between). Loops inside its innermost dependent loop reuse the tile for free. When k is not
innermost for the output, partial sums (accumulator type) are written out and read back.
Tiles are double-buffered: 2 x (A tile + B tile + accumulator tile) must fit VMEM.

All candidate tilings (power-of-two sizes up to each dimension) are evaluated at once with
numpy. Tiling decides data movement, not the compute/transfer pipeline (which runs at the
granularity of array folds: the arrays start as soon as their first fold's operands arrive),
so the mapper picks the tiling whose busiest memory channel is least busy, ties going to the
fewest bytes moved, then to the fewest (largest) tiles, then to the first candidate: the
choice is deterministic.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from itertools import permutations

import numpy as np

from archsim.hw.matrix.base import ArrayTiming, MatmulShape
from archsim.hw.memory import Level, Traffic

# Smallest tile edge considered (elements); smaller tiles only add loop overhead.
_MIN_TILE_EXPONENT = 4
ORDERS = tuple("".join(p) for p in permutations("mnk"))
_DEPENDS = {"a": set("mk"), "b": set("nk"), "c": set("mn")}


class TilingError(ValueError):
    """No tile of the matmul fits the scratchpad."""


@dataclass(frozen=True)
class MatmulTiling:
    m_tile: int
    k_tile: int
    n_tile: int
    order: str  # loop order, outermost first
    tiles: int
    traffic: Traffic  # outer levels plus VMEM (DMA fills and drains, and the arrays' reads)
    memory_s: float  # the busiest channel's time

    def describe(self) -> str:
        return f"{self.m_tile}x{self.k_tile}x{self.n_tile}/{self.order}"


@dataclass(frozen=True)
class Channels:
    """Bandwidths of the memory levels and the scratchpad capacity (hashable, for the cache)."""

    vmem_capacity: float
    bandwidth: tuple[tuple[Level, float], ...]


def _candidates(dim: int) -> np.ndarray:
    top = max(_MIN_TILE_EXPONENT, math.ceil(math.log2(dim)))
    sizes = np.minimum(dim, 2 ** np.arange(_MIN_TILE_EXPONENT, top + 1))
    return np.unique(sizes)


def _refetch(order: str, operand: str, trips: dict[str, np.ndarray]) -> np.ndarray:
    depends = _DEPENDS[operand]
    innermost = max(i for i, loop in enumerate(order) if loop in depends)
    factor = np.ones_like(trips["m"])
    for loop in order[:innermost]:
        if loop not in depends:
            factor = factor * trips[loop]
    return factor


@lru_cache(maxsize=4096)
def tile_matmul(
    shape: MatmulShape,
    out_bytes_per_element: float,
    acc_bytes_per_element: float,
    levels: tuple[Level, Level, Level],  # homes of a, b and the output
    array: ArrayTiming,
    channels: Channels,
) -> MatmulTiling:
    bw = dict(channels.bandwidth)
    e = shape.dtype.bytes
    mt, kt, nt = (g.ravel() for g in np.meshgrid(_candidates(shape.m), _candidates(shape.k), _candidates(shape.n), indexing="ij"))
    footprint = 2 * (mt * kt * e + kt * nt * e + mt * nt * acc_bytes_per_element)
    fits = footprint <= channels.vmem_capacity
    if not fits.any():
        raise TilingError(
            f"no tile of the {shape.m}x{shape.k}x{shape.n} matmul fits VMEM "
            f"({channels.vmem_capacity:.0f} B; the smallest needs {footprint.min():.0f} B)"
        )
    mt, kt, nt = mt[fits], kt[fits], nt[fits]
    trips = {"m": np.ceil(shape.m / mt), "n": np.ceil(shape.n / nt), "k": np.ceil(shape.k / kt)}
    tiles = shape.batch * trips["m"] * trips["n"] * trips["k"]

    a_bytes = shape.batch * shape.m * shape.k * e
    b_bytes = (shape.batch if shape.b_batched else 1) * shape.k * shape.n * e
    out_bytes = shape.batch * shape.m * shape.n * out_bytes_per_element
    acc_bytes = shape.batch * shape.m * shape.n * acc_bytes_per_element
    a_level, b_level, out_level = levels
    outer_levels = sorted(set(levels))

    best = None
    for order in ORDERS:
        a_moved = a_bytes * _refetch(order, "a", trips)
        b_moved = b_bytes * _refetch(order, "b", trips)
        spills = acc_bytes * (_refetch(order, "c", trips) - 1)
        reads = {lv: np.zeros_like(mt, dtype=float) for lv in outer_levels}
        writes = {lv: np.zeros_like(mt, dtype=float) for lv in outer_levels}
        reads[a_level] = reads[a_level] + a_moved
        reads[b_level] = reads[b_level] + b_moved
        reads[out_level] = reads[out_level] + spills
        writes[out_level] = writes[out_level] + out_bytes + spills
        vmem_write = a_moved + b_moved + spills + array.out_writes
        vmem_read = out_bytes + spills + array.a_reads + array.b_reads
        t_mem = (vmem_read + vmem_write) / bw[Level.VMEM]
        for lv in outer_levels:
            t_mem = np.maximum(t_mem, (reads[lv] + writes[lv]) / bw[lv])
        moved = vmem_read + vmem_write
        for lv in outer_levels:
            moved = moved + reads[lv] + writes[lv]
        i = int(np.lexsort((tiles, moved, t_mem))[0])
        key = (t_mem[i], moved[i], tiles[i])
        if best is None or key < best[0]:
            traffic = Traffic.of(Level.VMEM, vmem_read[i], vmem_write[i])
            for lv in outer_levels:
                traffic = traffic + Traffic.of(lv, reads[lv][i], writes[lv][i])
            tiling = MatmulTiling(int(mt[i]), int(kt[i]), int(nt[i]), order, int(tiles[i]), traffic, float(t_mem[i]))
            best = (key, tiling)
    return best[1]
