"""A sweep's points in chunks, the unit a worker evaluates and a results part holds.

A chunk's points alike in all but HBM's bandwidth and the capacities form a family, whose op
times its first point makes for every member at once (``archsim.sim.family``): on the bundled
DiT sweep that first point costs some 24 ms, nearly a third of its family's 125 points' time. A
family cut in two by a chunk's end makes those arrays twice, once in each chunk: with 512-point
chunks of 125-point families, one family in five. So the default chunks end where a family
begins, if one begins in a chunk's last quarter (500 points there: 4.8% less CPU a point in one
process, the codes alternated over the first 8,000 points; 6% on the pool;
docs/design/batched_sweep.md). Which chunk evaluates a point changes none of its results.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from archsim.dse.plan import Points
from archsim.dse.spec import Point
from archsim.sim.family import family_free


def default_chunk_size(todo: int, workers: int) -> int:
    """Four chunks a worker, of up to 512 points (a part each; at most some 2,000 parts: a part
    costs 6 ms to write). A chunk's points alike but for HBM's bandwidth share op times
    (``archsim.sim.family``): chunks of 64 cost 30% more CPU a point."""
    return max(1, min(max(512, math.ceil(todo / 2048)), math.ceil(todo / (4 * workers))))


def chunked(todo: Sequence[Point], size: int | None = None, workers: int = 1,
            at_families: bool | None = None) -> "Chunks":
    """``todo`` in chunks of ``size`` points (``default_chunk_size`` if None), ending where a
    family begins if ``at_families`` (by default, when ``size`` is None: a size the user asks for
    is kept exactly; ``Points`` only: a list's points are cut every ``size``)."""
    if at_families is None:
        at_families = size is None
    size = size or default_chunk_size(len(todo), workers)
    starts = todo.family_starts(family_free) if at_families and isinstance(todo, Points) else None
    return Chunks(todo, chunk_bounds(len(todo), size, starts))


def chunk_bounds(n: int, size: int, starts: np.ndarray | None = None) -> list[int]:
    """Where the chunks of ``n`` points begin, and ``n``: every ``size`` points, or, given the
    positions where families begin (``starts``, ascending), at the last one within a chunk's
    reach if it lies in the chunk's last quarter (so no chunk is shorter than three quarters of
    ``size`` but the last, and the number of chunks grows by at most a third)."""
    if size < 1:
        raise ValueError(f"a chunk holds at least one point, not {size}")
    bounds = [0]
    while bounds[-1] < n:
        at = bounds[-1]
        end = min(at + size, n)
        if end < n and starts is not None and len(starts):
            k = int(np.searchsorted(starts, end, side="right")) - 1  # the last family to begin by ``end``
            if k >= 0 and starts[k] > at + (3 * size) // 4:
                end = int(starts[k])
        bounds.append(end)
    return bounds


class Chunks(Sequence):
    """``todo`` cut at ``bounds`` (``chunk_bounds``), each chunk made when it is asked for."""

    def __init__(self, todo: Sequence[Point], bounds: list[int]):
        self.todo, self.bounds = todo, bounds

    def __len__(self) -> int:
        return len(self.bounds) - 1

    def __getitem__(self, i: int) -> list[Point]:
        if not 0 <= i < len(self):
            raise IndexError(i)
        return list(self.todo[self.bounds[i]:self.bounds[i + 1]])
