"""Non-dominated (Pareto) sets over two or more objectives, vectorised.

A point dominates another when it is no worse in every objective and better in at least
one; equal points do not dominate each other (both stay on the front).
"""

from __future__ import annotations

import numpy as np

from archsim.config.sweep import OBJECTIVES


def pareto_mask(values: np.ndarray, senses: list[str]) -> np.ndarray:
    """Boolean mask of the non-dominated rows of ``values`` (n x k); senses 'min' or 'max'."""
    v = np.asarray(values, dtype=float)
    if v.ndim != 2 or v.shape[1] != len(senses):
        raise ValueError("values must be n x k with one sense per column")
    v = v * np.where(np.array(senses) == "max", -1.0, 1.0)  # all minimised
    finite = np.isfinite(v).all(axis=1)  # a point with an unknown objective is on no front
    if not finite.all():
        keep = np.zeros(len(v), dtype=bool)
        keep[finite] = pareto_mask(v[finite], ["min"] * v.shape[1])
        return keep
    n = len(v)
    if n == 0:
        return np.zeros(0, dtype=bool)
    if v.shape[1] == 2:
        return _front_2d(v)
    # equal rows share their fate (neither dominates the other; what dominates one dominates
    # both): the front of the distinct rows, so a sweep whose designs tie (the same figures
    # under another swept value) costs its distinct rows only
    distinct, inverse = np.unique(v, axis=0, return_inverse=True)
    if len(distinct) < n:
        return _front_sorted(distinct)[inverse.reshape(-1)]
    return _front_sorted(v)


_BLOCK = 1024  # rows compared at once: a block against itself and against the front so far
_CELLS = 2**22  # comparisons held in memory at once (a few tens of MB of booleans)


def _front_sorted(v: np.ndarray) -> np.ndarray:
    """The non-dominated rows, in O(n x front) comparisons rather than O(n^2): a row can be
    dominated only by rows before it in lexicographic order (a dominating row is no worse in
    every objective and better in one), and a dominated row is dominated by some non-dominated
    one (the last of a chain of dominators). So the rows, in that order and in blocks, are each
    checked against the front of the blocks before and against their own block."""
    order = np.lexsort(v.T[::-1])  # by the first objective, then the second, ...
    s = v[order]
    keep_sorted = np.zeros(len(s), dtype=bool)
    front = np.zeros((0, s.shape[1]))
    for start in range(0, len(s), _BLOCK):
        block = s[start:start + _BLOCK]
        alive = ~_dominated_by(block, front) if len(front) else np.ones(len(block), dtype=bool)
        # among themselves, only the rows the front leaves: a row a dominated row dominates is
        # dominated by that row's dominator too
        alive[alive] = ~_dominated_by(block[alive], block[alive])
        keep_sorted[start:start + len(block)] = alive
        front = np.concatenate([front, block[alive]])
    keep = np.zeros(len(v), dtype=bool)
    keep[order] = keep_sorted
    return keep


def _dominated_by(rows: np.ndarray, by: np.ndarray) -> np.ndarray:
    """Which of ``rows`` some row of ``by`` dominates (all minimised)."""
    out = np.zeros(len(rows), dtype=bool)
    step = max(1, _CELLS // max(1, len(by)))
    for start in range(0, len(rows), step):
        chunk = rows[start:start + step]
        no_worse = np.ones((len(chunk), len(by)), dtype=bool)
        better = np.zeros((len(chunk), len(by)), dtype=bool)
        for j in range(rows.shape[1]):  # an objective at a time: 2-D comparisons, no 3-D reduction
            a, b = by[None, :, j], chunk[:, None, j]
            no_worse &= a <= b
            better |= a < b
        out[start:start + step] = (no_worse & better).any(axis=1)
    return out


def _front_2d(v: np.ndarray) -> np.ndarray:
    order = np.lexsort((v[:, 1], v[:, 0]))  # by x, then y
    x, y = v[order, 0], v[order, 1]
    keep_sorted = np.zeros(len(v), dtype=bool)
    best_y = np.inf
    i = 0
    while i < len(x):
        j = i
        while j < len(x) and x[j] == x[i]:
            j += 1
        group_min = y[i]  # sorted by y within equal x
        if group_min < best_y:  # equal-x rows with the group's minimum y are not dominated
            keep_sorted[i:j] = y[i:j] == group_min
            best_y = group_min
        i = j
    keep = np.zeros(len(v), dtype=bool)
    keep[order] = keep_sorted
    return keep


def objective_columns(names: list[str]) -> tuple[list[str], list[str]]:
    unknown = [n for n in names if n not in OBJECTIVES]
    if unknown:
        raise ValueError(f"unknown objective {unknown[0]!r}; expected one of: {', '.join(OBJECTIVES)}")
    return [OBJECTIVES[n][0] for n in names], [OBJECTIVES[n][1] for n in names]
