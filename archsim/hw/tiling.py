"""VMEM tiling of a matmul: choose tile sizes and loop order, count traffic per level.

The output is computed tile by tile: loops over m-, n- and k-tiles (batch outermost), in one
of the six orders. An operand tile is fetched again whenever a loop it depends on advances,
and also each time an outer loop it does not depend on advances (its tile was evicted in
between). Loops inside its innermost dependent loop reuse the tile for free. When k is not
innermost for the output, partial sums (accumulator type) are written out and read back.
Tiles are double-buffered: 2 x (A tile + B tile + accumulator tile) must fit VMEM.

All candidate tilings (power-of-two sizes up to each dimension) that fit are evaluated at
once with numpy. The mapper picks the one that gives the op the least time, as the engine
times it: ``latency + max(T_mem, T_mem / steps + C)`` with T_mem the busiest channel's time,
C the compute time and steps the coarser of the array's folds and the VMEM tiles: the arrays
start once the first fold's operands are in VMEM, and a DMA'd tile is usable only once it is
whole, so the first transfer exposed is the larger of the two pieces. Ties go to the fewest
bytes moved, then to the fewest (largest) tiles, then to the first candidate: the choice is
deterministic. Every tiling that fits a scratchpad fits a larger one, and the candidate set is
not pruned, so more VMEM never gives a slower op.
"""

from __future__ import annotations

import math
import dataclasses
from dataclasses import dataclass
from functools import lru_cache
from itertools import permutations

import numpy as np

from archsim.hw.matrix.base import MatmulShape
from archsim.hw.memory import Level, Traffic
from archsim.hw.timing import overlapped_time

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
    time_s: float  # the op's time: memory and compute overlapped (archsim.hw.timing)

    def describe(self) -> str:
        return f"{self.m_tile}x{self.k_tile}x{self.n_tile}/{self.order}"


@dataclass(frozen=True)
class Channels:
    """Bandwidths of the memory levels and the scratchpad capacity (hashable, for the cache)."""

    vmem_capacity: float
    bandwidth: tuple[tuple[Level, float], ...]


@lru_cache(maxsize=1024)
def _candidates(dim: int) -> np.ndarray:
    """Powers of two from 2^_MIN_TILE_EXPONENT, capped at the dimension, ascending."""
    top = max(_MIN_TILE_EXPONENT, math.ceil(math.log2(dim)))
    sizes = np.array(sorted({min(dim, 2 ** e) for e in range(_MIN_TILE_EXPONENT, top + 1)}), dtype=np.int64)
    sizes.flags.writeable = False  # cached: shared by every caller
    return sizes


def _refetch_mask() -> np.ndarray:
    """[order, operand (a, b, c), loop (m, n, k)]: 1 where the operand's tile is fetched again
    each time that loop advances, i.e. a loop outside the operand's innermost dependent loop
    that the operand does not depend on."""
    out = np.zeros((len(ORDERS), 3, 3), dtype=bool)
    for o, order in enumerate(ORDERS):
        for i, operand in enumerate("abc"):
            depends = _DEPENDS[operand]
            innermost = max(j for j, loop in enumerate(order) if loop in depends)
            for loop in order[:innermost]:
                if loop not in depends:
                    out[o, i, "mnk".index(loop)] = True
    return out


_REFETCH = _refetch_mask()


def _fitting(shape: MatmulShape, acc_bytes_per_element: float, capacity: float):
    """Every candidate (m, k, n) tile that fits VMEM double-buffered, in (m, k, n) order."""
    ea, eb = shape.a_dtype.bytes, shape.b_dtype.bytes  # tiles sit in VMEM at their storage widths
    m, k, n = (_candidates(shape.m)[:, None, None], _candidates(shape.k)[None, :, None],
               _candidates(shape.n)[None, None, :])
    footprint = 2 * (m * k * ea + k * n * eb + m * n * acc_bytes_per_element)
    fits = footprint <= capacity
    if not fits.any():
        raise TilingError(
            f"no tile of the {shape.m}x{shape.k}x{shape.n} matmul fits VMEM "
            f"({capacity:.0f} B; the smallest needs {footprint.min():.0f} B)"
        )
    mi, ki, ni = np.nonzero(fits)
    return m.ravel()[mi], k.ravel()[ki], n.ravel()[ni]


@dataclass(frozen=True)
class _Table:
    """Every candidate tiling in every loop order: arrays are [order, candidate] (read-only)."""

    mt: np.ndarray
    kt: np.ndarray
    nt: np.ndarray
    tiles: np.ndarray  # [candidate]
    levels: tuple[Level, ...]  # VMEM, then the outer levels in order
    reads: tuple[np.ndarray, ...]  # per level of ``levels``
    writes: tuple[np.ndarray, ...]
    busy_bytes: tuple[np.ndarray, ...]  # reads + writes per level: what its port moves
    moved: np.ndarray  # bytes moved at every level together
    # per use after the first (the ranking below and the chosen candidates' traffic)
    memo: dict = dataclasses.field(default_factory=dict, compare=False, repr=False)
    shared: _Shared | None = dataclasses.field(default=None, compare=False, repr=False)  # what it was made from

    def ranked(self) -> tuple[np.ndarray, tuple[np.ndarray, ...], np.ndarray] | None:
        """None at the table's first use; then the candidates flattened (order-major) and
        ranked by the tie-breaks, fewest bytes moved, then fewest tiles, then the first: their
        flat indices, busy bytes per level and tiles in that order. The first least time in
        this order is the lexicographic best (numpy's argmin takes the first minimum), so a
        table that design points differing in bandwidths share pays the sort once, and a
        table used once (a new shape) not at all. Only the candidates no earlier one dominates
        are kept (``_undominated``: about 3% of a DiT sweep's), which changes no choice. A
        table made from the same ``_Shared`` as one ranked before takes that one's ranking
        where it provably is its own (``_Ranking.of``)."""
        ranked = self.memo.get("ranked")
        if ranked is None:
            if not self.memo.setdefault("used", False):
                self.memo["used"] = True
                return None
            held = self.shared.ranking if self.shared is not None else None
            ranked = held[0].of(self) if held else None
            if ranked is None:
                ranking = _Ranking(self)
                ranked = ranking.kept_of(self)
                if held is not None:
                    held[:] = [ranking]
            self.memo["ranked"] = ranked
        return ranked


class _Ranking:
    """A table's ranking (``_Table.ranked``) and what makes it another table's. Tables made
    from one ``_Shared`` differ only in their VMEM traffic: the same candidates, tiles and
    outer levels' bytes. The ranking reads bytes moved and tiles; the survivors
    (``_undominated``) compare busy bytes per level and tiles, pair by pair. So where another
    table's bytes moved, taken in this ranking's order, rise and stay level exactly where this
    table's do, each pair of candidates compares alike in both (through the chain of
    neighbours between them) and the lexsort's order is this one's; and where its VMEM busy
    bytes do the same in the order that sorts this table's, every dominance is this one's too,
    and so are the survivors. Otherwise (a rounding that makes two sums equal in one table and
    not the other) the table is ranked afresh. Checking is two passes over the candidates, where
    ranking is a sort and a pass per survivor."""

    __slots__ = ("rank", "kept", "tiles", "_moved", "_vmem", "_checks")

    def __init__(self, table: _Table):
        moved = table.moved.ravel()
        flat_tiles = np.broadcast_to(table.tiles, table.moved.shape).ravel()
        rank = np.lexsort((np.arange(moved.size), flat_tiles, moved))  # last key first
        tiles = flat_tiles[rank]
        keep = _undominated(tuple(b.ravel()[rank] for b in table.busy_bytes), tiles)
        self.rank, self.kept, self.tiles = rank, rank[keep], tiles[keep]
        for value in (self.kept, self.tiles):
            value.flags.writeable = False
        self._moved, self._vmem = moved, table.busy_bytes[0].ravel()
        self._checks = None  # made when first asked for (most shared parts make one table)

    def kept_of(self, table: _Table) -> tuple[np.ndarray, tuple[np.ndarray, ...], np.ndarray]:
        busy = tuple(b.ravel()[self.kept] for b in table.busy_bytes)
        for value in busy:
            value.flags.writeable = False
        return self.kept, busy, self.tiles

    def of(self, table: _Table) -> tuple[np.ndarray, tuple[np.ndarray, ...], np.ndarray] | None:
        """``table``'s ranking as ``_Table.ranked`` keeps it if this one's provably is (None if not)."""
        if self._checks is None:
            by_vmem = np.argsort(self._vmem, kind="stable")
            moved, vmem = self._moved[self.rank], self._vmem[by_vmem]
            self._checks = (moved[1:] - moved[:-1] > 0, by_vmem, vmem[1:] - vmem[:-1] > 0)  # ``numpy.diff``'s
        rises, by_vmem, vmem_rises = self._checks
        if not (_rises_alike(table.moved.ravel()[self.rank], rises)
                and _rises_alike(table.busy_bytes[0].ravel()[by_vmem], vmem_rises)):
            return None
        return self.kept_of(table)


def _rises_alike(values: np.ndarray, rises: np.ndarray) -> bool:
    """Whether ``values`` never fall, and rise from one to the next exactly where ``rises``."""
    steps = values[1:] - values[:-1]  # ``numpy.diff``'s subtraction, without its Python wrapper
    # ``.all()`` and ``array_equal`` as counts (the same shapes: both read one ranking's candidates)
    return np.count_nonzero(steps >= 0) == steps.size and not np.count_nonzero((steps > 0) != rises)


def _undominated(busy: tuple[np.ndarray, ...], tiles: np.ndarray) -> np.ndarray:
    """Which candidates, in ranked order, no earlier one dominates: moving no more bytes at any
    level (``busy``) in at least as many tiles. A dominating candidate's time is at most the
    dominated one's at every bandwidth, fold count, compute time and latency (``_times``:
    ``max`` of bytes over bandwidths, then ``t / min(tiles, folds) + compute``, each monotone
    in correctly rounded floats), so it is as fast and ranked first: a dominated candidate is
    never the first least time. Found survivor by survivor: the first candidate no survivor so
    far dominates is one (an earlier candidate dominating it would be a survivor, or dominated by
    one that then dominates it too)."""
    n = tiles.size
    # one row per criterion, each to be no larger in a dominating candidate (tiles negated:
    # exact), so a survivor's test is one comparison and one reduction, not one per level
    columns = np.stack([*busy, -tiles.astype(np.float64)])
    dominated = np.zeros(n, dtype=bool)
    keep = np.zeros(n, dtype=bool)
    u = 0
    while True:
        keep[u] = True
        later = dominated[u + 1:]  # only later ones are read: a view, updated in place
        if later.size == 0:
            return keep
        later |= np.logical_and.reduce(columns[:, u:u + 1] <= columns[:, u + 1:], axis=0)  # ``.all(axis=0)``
        first = int(later.argmin())  # the first later candidate not dominated, if any
        if later[first]:
            return keep
        u += 1 + first


@dataclass(frozen=True)
class _Shared:
    """What a table reads of everything but the arrays' own VMEM traffic (``_table``'s
    ``array_bytes``): the candidates, their tiles and their outer levels' traffic. The tables
    of one matmul's mappings, and of chips whose matrix units differ (a sweep's grids and
    counts), share it; so does their ranking, where it provably agrees (``_Ranking``)."""

    mt: np.ndarray
    kt: np.ndarray
    nt: np.ndarray
    tiles: np.ndarray
    levels: tuple[Level, ...]  # VMEM, then the outer levels in order
    reads: tuple[np.ndarray, ...]  # per outer level
    writes: tuple[np.ndarray, ...]
    busy_bytes: tuple[np.ndarray, ...]  # per outer level
    filled: np.ndarray  # VMEM writes but the arrays' outputs: operand tiles in, partial sums back
    drained: np.ndarray  # VMEM reads but the arrays' operands: outputs and partial sums out
    ranking: list = dataclasses.field(default_factory=list, compare=False, repr=False)  # its last _Ranking


@lru_cache(maxsize=1024)
def _shared(shape: MatmulShape, out_bytes_per_element: float, acc_bytes_per_element: float,
            levels: tuple[Level, Level, Level], vmem_capacity: float) -> _Shared:
    mt, kt, nt = _fitting(shape, acc_bytes_per_element, vmem_capacity)
    trips = np.stack([np.ceil(shape.m / mt), np.ceil(shape.n / nt), np.ceil(shape.k / kt)])  # loops m, n, k
    tiles = shape.batch * trips[0] * trips[1] * trips[2]
    # refetch[order, operand, candidate]: the product of the trips of the loops that evict it
    refetch = np.where(_REFETCH[:, :, :, None], trips[None, None], 1.0).prod(axis=2)

    a_bytes, b_bytes = shape.a_bytes, shape.b_bytes
    out_bytes = shape.batch * shape.m * shape.n * out_bytes_per_element
    acc_bytes = shape.batch * shape.m * shape.n * acc_bytes_per_element
    a_level, b_level, out_level = levels
    outer_levels = sorted(set(levels))

    a_moved = a_bytes * refetch[:, 0]
    b_moved = b_bytes * refetch[:, 1]
    spills = acc_bytes * (refetch[:, 2] - 1)
    zero = np.zeros_like(a_moved)
    reads = {lv: zero for lv in outer_levels}
    writes = {lv: zero for lv in outer_levels}
    reads[a_level] = reads[a_level] + a_moved
    reads[b_level] = reads[b_level] + b_moved
    reads[out_level] = reads[out_level] + spills
    writes[out_level] = writes[out_level] + out_bytes + spills
    outer_reads, outer_writes = tuple(reads[lv] for lv in outer_levels), tuple(writes[lv] for lv in outer_levels)
    shared = _Shared(mt, kt, nt, tiles, (Level.VMEM, *outer_levels), outer_reads, outer_writes,
                     tuple(r + w for r, w in zip(outer_reads, outer_writes)), a_moved + b_moved + spills,
                     out_bytes + spills)
    for value in (mt, kt, nt, tiles, *outer_reads, *outer_writes, *shared.busy_bytes, shared.filled, shared.drained):
        value.flags.writeable = False
    return shared


@lru_cache(maxsize=1024)  # 5 to 50 kB each
def _table(
    shape: MatmulShape,
    out_bytes_per_element: float,
    acc_bytes_per_element: float,
    levels: tuple[Level, Level, Level],
    array_bytes: tuple[float, float, float],  # the arrays' a reads, b reads and output writes
    vmem_capacity: float,
) -> _Table:
    """The traffic of every candidate: it depends on the shape, the homes, the arrays' operand
    traffic and VMEM's size, not on any bandwidth, so design points that differ in bandwidths
    (or in anything the arrays do not see) share it. All but the arrays' VMEM traffic is
    ``_shared``'s, made once for every ``array_bytes``."""
    shared = _shared(shape, out_bytes_per_element, acc_bytes_per_element, levels, vmem_capacity)
    a_reads, b_reads, out_writes = array_bytes
    vmem_write = shared.filled + out_writes  # a_moved + b_moved + spills + out_writes, in that order
    vmem_read = shared.drained + a_reads + b_reads  # out_bytes + spills + a_reads + b_reads
    moved = vmem_read + vmem_write
    for r, w in zip(shared.reads, shared.writes):
        moved = moved + r + w
    vmem_busy = vmem_read + vmem_write
    table = _Table(shared.mt, shared.kt, shared.nt, shared.tiles, shared.levels, (vmem_read, *shared.reads),
                   (vmem_write, *shared.writes), (vmem_busy, *shared.busy_bytes), moved, shared=shared)
    for value in (moved, vmem_read, vmem_write, vmem_busy):
        value.flags.writeable = False
    return table


@lru_cache(maxsize=16384)
def tile_matmul(
    shape: MatmulShape,
    out_bytes_per_element: float,
    acc_bytes_per_element: float,
    levels: tuple[Level, Level, Level],  # homes of a, b and the output
    array_bytes: tuple[float, float, float],  # the arrays' a reads, b reads and output writes
    folds: int,  # the arrays' folds: with the tiles, the steps transfers overlap compute in
    channels: Channels,
    compute_s: float = 0.0,  # the units' time, which transfers overlap
    latency_s: float = 0.0,  # the exposed access latency
) -> MatmulTiling:
    """The candidate that gives the op the least time (see the module's doc). Keyed by what it
    reads of the arrays' mapping only, so mappings alike in those share it."""
    table = _table(shape, out_bytes_per_element, acc_bytes_per_element, levels, array_bytes, channels.vmem_capacity)
    bw = dict(channels.bandwidth)
    ranked = table.ranked()
    if ranked is None:  # its first use: the least time, then the tie-breaks, searched directly
        t_mem, time = _times(table.busy_bytes, table.levels, bw, np.minimum(table.tiles, folds), compute_s, latency_s)
        # least time, then fewest bytes, then fewest tiles, then the first order (the flattening
        # is order-major), then the first candidate
        keys = (time.ravel(), table.moved.ravel(), np.broadcast_to(table.tiles, t_mem.shape).ravel())
        flat = _first_best(*keys)
        t_mem, time = t_mem.ravel(), time.ravel()
        best = flat
    else:  # the same choice: the first least time in the table's ranking
        rank, busy, tiles = ranked
        t_mem, time = _times(busy, table.levels, bw, np.minimum(tiles, folds), compute_s, latency_s)
        best = int(time.argmin())
        flat = int(rank[best])
    return candidate_tiling(table, flat, float(t_mem[best]), float(time[best]))


def candidate_tiling(table: _Table, flat: int, memory_s: float, time_s: float) -> MatmulTiling:
    """The table's candidate at ``flat`` (order-major) as ``tile_matmul`` returns it, with its
    busiest channel's time and its time (a family of chips picks its members' at once:
    ``archsim.sim.family``)."""
    o, i = divmod(flat, table.moved.shape[1])
    return MatmulTiling(int(table.mt[i]), int(table.kt[i]), int(table.nt[i]), ORDERS[o], int(table.tiles[i]),
                        candidate_traffic(table, flat), memory_s, time_s)


def candidate_traffic(table: _Table, flat: int) -> Traffic:
    """The traffic of the table's candidate at ``flat`` (order-major), kept by the table."""
    traffic = table.memo.get(flat)
    if traffic is None:  # Python floats: numpy scalars are slow
        o, i = divmod(flat, table.moved.shape[1])
        traffic = table.memo[flat] = Traffic.total_of(Traffic.of(lv, float(r[o, i]), float(w[o, i]))
                                                      for lv, r, w in zip(table.levels, table.reads, table.writes))
    return traffic


def ranked_now(table: _Table) -> tuple[np.ndarray, tuple[np.ndarray, ...], np.ndarray]:
    """``table.ranked()``, made now if the table has not been used before (a family's op times
    use a table for many bandwidths at once: ``archsim.sim.family``)."""
    return table.ranked() or table.ranked()


def _times(busy, levels, bw, steps, compute_s, latency_s):
    """Each candidate's busiest channel's time and its time with compute overlapped."""
    t_mem = busy[0] / bw[Level.VMEM]
    for lv, moved in zip(levels[1:], busy[1:]):
        t_mem = np.maximum(t_mem, moved / bw[lv])
    return t_mem, overlapped_time(t_mem, compute_s, steps, latency_s)


def _first_best(*keys: np.ndarray) -> int:
    """The first index with the least first key, ties going to the next keys in turn (a
    lexicographic argmin; a full sort of every candidate costs 50x more)."""
    index = np.arange(keys[0].size)
    for key in keys:
        values = key[index]
        index = index[values == values.min()]
        if index.size == 1:
            break
    return int(index[0])


def clear_tilings() -> None:
    tile_matmul.cache_clear()
    _table.cache_clear()
    _shared.cache_clear()
