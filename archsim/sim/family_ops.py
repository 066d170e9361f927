"""Each op kind's cost model as arrays over a family of chips' members (``archsim.sim.family``):
what ``family.prefetched_times`` reads of an op's cost, for every member's HBM bandwidth at once.

The arrays repeat the scalar cost models' arithmetic operation for operation:
``archsim.sim.matmul_cost`` (its mappings, each tiled by ``archsim.hw.tiling``'s table and its
tie-breaks), ``vector_cost`` (pass by pass), ``flash_cost`` (its channels and overlap), the
engine's streamed DMA ops and ``fused.combine``. Elementwise ``+ - * /`` and ``maximum`` and
``minimum`` round as Python's float operations do, so each member gets the bits its own scalar
path gives (``tests/test_family.py`` compares every member's time with prefetch, every op kind).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import reduce
from typing import TYPE_CHECKING, Callable

import numpy as np

from archsim.hw.memory import Level, Placement, Traffic
from archsim.hw.tiling import _table, _times, ranked_now
from archsim.hw.timing import access_latency
from archsim.ir import ops
from archsim.ir.fused import Fused
from archsim.sim import matmul_cost, vector_cost
from archsim.sim.fused import _epilogue

if TYPE_CHECKING:
    from archsim.sim.cost import OpCost
    from archsim.sim.engine import Simulator

_LEVELS = tuple(Level)  # channel_times' order
_NAMES, _TRAFFIC = Traffic._fields()  # Traffic's fields, and all of them read at once
_AT = {lv: (_NAMES.index(f"{lv.value}_read"), _NAMES.index(f"{lv.value}_write")) for lv in _LEVELS}
_CHANNEL_NAMES = frozenset(lv.value for lv in _LEVELS)  # a cost's ``busy`` names its channels so


@dataclass
class _Times:
    """One op's time and what it holds, per member: arrays over the family (or floats, alike
    for every member). ``held``: the unit held from start to end and its seconds; ``others``:
    other units' work; ``ch``: each memory channel's seconds (0 where a member moves nothing);
    ``reads``/``writes``: its traffic per level; ``memory``: the cost's ``memory_s`` (its busiest
    channel's time, a vector op's passes' summed)."""

    latency: object
    compute: object
    held: tuple[str, object]
    others: dict[str, object]
    ch: dict[Level, object]
    reads: dict[Level, object]
    writes: dict[Level, object]
    memory: object


def _op_times(sim: Simulator, op: ops.Op, homes: Placement, cost_of: Callable[[], OpCost], bw: dict) -> _Times | None:
    """As ``Simulator._cost`` picks the model (without the dispatch cost)."""
    if isinstance(op, Fused):
        core = op.core
        main = _op_times(sim, core, homes, lambda: sim.core_cost(core, homes), bw)
        return None if main is None else _fused(sim, op, homes, main, bw)
    if isinstance(op, ops.MatMul):
        return _matmul(sim, op, homes, bw)
    if isinstance(op, ops.FlashAttention):
        return _flash(sim, op, cost_of(), bw)
    if isinstance(op, ops.VectorOp):
        return _vector(sim, op, homes, bw)
    if isinstance(op, (ops.EmbeddingLookup, ops.CacheWrite)):
        return _streamed(sim, cost_of().traffic, "dma", bw)
    return None


def _channels(traffic: Traffic, bw: dict) -> dict[Level, object]:
    """``channel_times``: each level's bytes over its bandwidth, for the levels that move any."""
    out = {}
    for level in _LEVELS:
        moved = traffic.total(level)
        if moved:
            out[level] = moved / bw[level]
    return out


def _fields(traffic: Traffic) -> tuple[dict, dict]:
    values = _TRAFFIC(traffic)
    return {lv: values[r] for lv, (r, _) in _AT.items()}, {lv: values[w] for lv, (_, w) in _AT.items()}


def _at_most_one(share: float) -> float:
    """``numpy.minimum(1.0, share)`` of a float (a NaN stays one): a prefetch's share of a
    channel's bytes, where every member moves the same."""
    return share if share < 1.0 or share != share else 1.0


def _every(mask: np.ndarray) -> bool:
    """``mask.all()`` without its Python wrapper (a third of the time on a family's 25 members)."""
    return np.count_nonzero(mask) == mask.size


def _most(values, default=0.0):
    return reduce(np.maximum, values) if values else default


def _streamed(sim: Simulator, traffic: Traffic, unit: str, bw: dict) -> _Times:
    """``Simulator._streamed`` of an op without compute (a DMA: one step)."""
    times = _channels(traffic, bw)
    memory = _most(list(times.values()))
    latency = access_latency(sim.hw, times) + np.maximum(memory, memory / 1 + 0.0)
    reads, writes = _fields(traffic)
    return _Times(latency, 0.0, (unit, 0.0), {}, times, reads, writes, memory)


def _flash(sim: Simulator, op: ops.FlashAttention, cost: OpCost, bw: dict) -> _Times:
    """``flash_cost.tpu_flash_cost`` from the asking member's ``cost``: its traffic, its units'
    times (``busy``: the arrays', then the vector unit's if any) and its compute time read no
    bandwidth, so they are every member's; its channels' times and its latency are timed here."""
    times = _channels(cost.traffic, bw)
    memory = _most(list(times.values()))
    steps = max(op.batch * op.group * op.tiles, 1)  # overlapped_seconds' steps
    latency = access_latency(sim.hw, times) + np.maximum(memory, memory / steps + cost.compute_s)
    held, *others = [(unit, seconds) for unit, seconds in cost.busy if unit not in _CHANNEL_NAMES]
    reads, writes = _fields(cost.traffic)
    return _Times(latency, cost.compute_s, held, dict(others), times, reads, writes, memory)


def _vector(sim: Simulator, op: ops.VectorOp, homes: Placement, bw: dict) -> _Times:
    """``vector_cost.tpu_vector_cost``: its passes one after another."""
    plan = vector_cost._plan(sim, op, homes)
    clock, steps = sim.hw.clock, max(plan.steps, 1)
    times: dict[Level, object] = {}
    latency = memory_s = 0.0
    for moved, cycles in plan.passes:
        pass_times = _channels(moved, bw)
        memory = _most(list(pass_times.values()))
        latency = latency + (access_latency(sim.hw, pass_times) + np.maximum(memory, memory / steps + cycles / clock))
        memory_s = memory_s + memory
        for level, t in pass_times.items():
            times[level] = times.get(level, 0.0) + t
    reads, writes = _fields(plan.traffic)
    return _Times(latency, plan.compute_s, ("vpu", plan.compute_s), {}, times, reads, writes, memory_s)


def _matmul(sim: Simulator, op: ops.MatMul, homes: Placement, bw: dict) -> _Times:
    """``matmul_cost.tpu_matmul_cost``: per member, the least (time, bytes moved) of the units'
    mappings, each at its best tiling (the first least time in its table's ranking). The scalar
    path skips a mapping whose compute time alone exceeds the best time so far: such a mapping's
    time exceeds it too (``latency + max(t_mem, t_mem / steps + C) >= latency + C`` in floats),
    so it is neither chosen nor tied with: the arrays skip it where that holds for every member
    (two thirds of the later mappings of a DiT sweep), and evaluate it for all where not (which
    changes no member's choice). A tie in time goes to the fewer bytes moved (``_kept_moved``). The
    result reads the op, its homes and the family's chips alone: kept with the family
    (``Family.matmuls``), a fused op's main matmul at homes met before is not timed again."""
    levels = (homes.level(op.a), homes.level(op.b), homes.level(op.out))
    family = sim.family if sim.family is not None and bw[Level.HBM] is sim.family.hbm else None
    made = family.matmuls.get((op.signature_number, levels)) if family is not None else None
    if made is not None:  # the arrays read nothing else: the units, the clock, VMEM and the bandwidths are the family's
        return made
    plan = matmul_cost._plan(sim, op)
    latency = sim._access_latency(levels)
    n = bw[Level.HBM].shape[0]
    column = {lv: (b[:, None] if isinstance(b, np.ndarray) else b) for lv, b in bw.items()}
    rows = np.arange(n)
    tables, best = [], None
    for j, mapping in enumerate(plan.mappings):
        if best is not None and _every(latency + mapping.compute_s > best[0]):  # the scalar path's skip, on
            tables.append(None)  # every member: its time exceeds each one's best (never chosen, never a tie)
            continue
        array = mapping.array
        table = _table(plan.shape, plan.out_bytes, plan.acc_bytes, levels,
                       (array.a_reads, array.b_reads, array.out_writes), sim.channels.vmem_capacity)
        rank, busy, tiles = ranked_now(table)
        t_mem, time = _times(busy, table.levels, column, np.minimum(tiles, array.folds), mapping.compute_s, latency)
        if time.shape[0] != n or time.ndim == 1:  # alike for every member (no level at HBM's bandwidth)
            time = np.broadcast_to(time, (n, time.shape[-1]))
        if t_mem.shape != time.shape:
            t_mem = np.broadcast_to(t_mem, time.shape)
        first = time.argmin(axis=1)
        t, flat, memory, moved = time[rows, first], rank[first], t_mem[rows, first], _kept_moved(table, rank)[first]
        tables.append(table)
        if best is None:
            best = [t, np.zeros(n, dtype=np.int64), flat, memory, moved]
            continue
        better = (t < best[0]) | ((t == best[0]) & (moved < best[4]))  # a tie in time: the fewer bytes moved
        best = [np.where(better, t, best[0]), np.where(better, j, best[1]), np.where(better, flat, best[2]),
                np.where(better, memory, best[3]), np.where(better, moved, best[4])]
    time, chosen, flat, memory, _ = best
    if sim.family is not None:  # each member's choice, for its full cost (``matmul_pick``)
        sim.family.picks[(op.signature_number, levels)] = (plan, tables, chosen.tolist(), flat.tolist(),
                                                           memory.tolist(), time.tolist())
    picked = list(zip(chosen.tolist(), flat.tolist()))  # a few distinct candidates among the members
    values = {pick: _candidate_fields(tables[pick[0]], pick[1]) for pick in dict.fromkeys(picked)}
    if len(values) == 1:  # every member's the same candidate (two thirds of a DiT sweep's): floats, every member's
        row = values[picked[0]]
        reads, writes = {lv: row[r] for lv, (r, _) in _AT.items()}, {lv: row[w] for lv, (_, w) in _AT.items()}
        mapping = plan.mappings[picked[0][0]]
        array_s, compute_s = mapping.array_s, mapping.compute_s
        vpu = 0.0 if array_s >= compute_s else compute_s  # the conversion outlasting the arrays
    else:
        fields = np.array([values[pick] for pick in picked])
        reads = {lv: fields[:, r] for lv, (r, _) in _AT.items()}
        writes = {lv: fields[:, w] for lv, (_, w) in _AT.items()}
        array_s = np.array([m.array_s for m in plan.mappings])[chosen]
        compute_s = np.array([m.compute_s for m in plan.mappings])[chosen]
        vpu = np.where(array_s >= compute_s, 0.0, compute_s)
    ch = {}
    for level in _LEVELS:  # channel_times: a level no member moves bytes at is absent
        moved = reads[level] + writes[level]
        if np.count_nonzero(moved) if isinstance(moved, np.ndarray) else moved:
            ch[level] = moved / bw[level]
    made = _Times(time, compute_s, ("mxu", array_s), {"vpu": vpu}, ch, reads, writes, memory)
    if family is not None:
        family.matmuls[(op.signature_number, levels)] = made
    return made


def _candidate_fields(table, flat: int) -> tuple[float, ...]:
    """``Traffic``'s fields of ``candidate_traffic(table, flat)``, made without the ``Traffic``
    objects and kept by the table: each field summed from 0.0 over the table's levels in order
    (VMEM's twice where an operand's home is VMEM too), the levels another field's adding 0.0,
    which changes no value."""
    key = ("fields", flat)
    fields = table.memo.get(key)
    if fields is None:
        o, i = divmod(flat, table.moved.shape[1])
        values = [0.0] * len(_NAMES)
        for level, reads, writes in zip(table.levels, table.reads, table.writes):
            r, w = _AT[level]
            values[r] = values[r] + float(reads[o, i])
            values[w] = values[w] + float(writes[o, i])
        fields = table.memo[key] = tuple(values)
    return fields


def _kept_moved(table, kept: np.ndarray) -> np.ndarray:
    """``candidate_traffic(table, flat).moved`` of each ranked candidate (``kept``: their flat
    indices), kept by the table. A candidate's ``Traffic`` sums, field by field from 0.0, each of
    the table's levels' bytes (VMEM's twice where an operand's home is VMEM too), the other
    levels adding 0.0, which changes no value; ``moved`` adds the fields in their order."""
    moved = table.memo.get("kept_moved")
    if moved is None:
        fields = []
        for level in _LEVELS:  # Traffic's fields: each level's read, then its write
            at = [k for k, home in enumerate(table.levels) if home is level]
            for values in (table.reads, table.writes) if at else ():
                field = values[at[0]].ravel()[kept]
                for k in at[1:]:
                    field = field + values[k].ravel()[kept]
                fields.append(field)
        moved = fields[0]
        for field in fields[1:]:  # a level absent: its fields' 0.0 added, which changes nothing
            moved = moved + field
        table.memo["kept_moved"] = moved
    return moved


def _fused(sim: Simulator, op: Fused, homes: Placement, main: _Times, bw: dict) -> _Times:
    """``fused.combine`` (its module docstring's step 3) of the main op's times and the epilogue."""
    epi_s, extra = _epilogue(sim, op, homes)
    on_vector = op.main.unit is ops.Unit.VPU
    compute = main.compute + epi_s if on_vector else np.maximum(main.compute, epi_s)
    ch = dict(main.ch)
    for level, seconds in _channels(extra, bw).items():
        ch[level] = ch.get(level, 0.0) + seconds
    memory, main_memory = _most(list(ch.values())), _most(list(main.ch.values()))
    latency = main.latency + np.maximum(0.0, np.maximum(compute, memory) - np.maximum(main.compute, main_memory))
    name, held = main.held
    others = dict(main.others)
    if name == "vpu":
        held = held + epi_s if on_vector else np.maximum(held, epi_s)
    elif epi_s > 0:
        others["vpu"] = others.get("vpu", 0.0) + epi_s
    reads, writes = _fields(extra)
    return _Times(latency, compute, (name, held), others, ch,
                  {lv: main.reads[lv] + reads[lv] for lv in _LEVELS}, {lv: main.writes[lv] + writes[lv] for lv in _LEVELS},
                  main.memory + np.maximum(0.0, memory - main_memory))
