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
    keep = np.ones(n, dtype=bool)
    block = max(1, 2**22 // max(n, 1))
    for start in range(0, n, block):
        chunk = v[start:start + block]
        no_worse = (v[None, :, :] <= chunk[:, None, :]).all(axis=2)
        better = (v[None, :, :] < chunk[:, None, :]).any(axis=2)
        keep[start:start + block] = ~(no_worse & better).any(axis=1)
    return keep


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
