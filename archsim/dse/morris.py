"""Global screening of a run's assumptions: Morris's elementary effects, every field varying at
once (``archsim sensitivity --morris N``).

Method: M. D. Morris, "Factorial sampling plans for preliminary computational experiments",
Technometrics 33(2), 1991, with the mean of absolute effects (mu*) of F. Campolongo, J. Cariboni
and A. Saltelli, "An effective screening design for sensitivity analysis of large models",
Environmental Modelling & Software 22, 2007. Each of ``trajectories`` random walks starts at a
point of a ``levels``-level grid over the factors' range (in log space: a factor of 0.5 is as far
below 1 as 2 is above), then moves one field at a time by delta = levels / (2 (levels - 1)) of
the range, in a random order. A field's elementary effect is the change of the figure over that
move; mu* (mean absolute effect) ranks the fields, sigma (their spread) shows interactions and
nonlinearity. Seeded: the same inputs give the same numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from archsim.dse.sensitivity import setting


@dataclass(frozen=True)
class Effect:
    field: str
    mu_star: float  # mean |elementary effect| on the figure (its relative change over a step)
    sigma: float  # standard deviation of the effects: interactions, nonlinearity
    speedup_mu_star: float | None  # the same for the speedup over the baseline


def morris(hw_path: str | Path, workload_path: str | Path, fields: Sequence[str], low: float, high: float,
           trajectories: int = 10, levels: int = 4, seed: int = 0, baseline: str | Path | None = None,
           wsets: Sequence[str] = ()) -> list[Effect]:
    """Each field's mu* and sigma on the run's latency (relative to the unchanged run), largest
    first; ``shared`` fields (same value on the baseline) vary on both chips."""
    from archsim.api import load_hardware, load_workload, simulate
    from archsim.dse.sensitivity import field_value

    hw = load_hardware(hw_path)
    bhw = load_hardware(baseline) if baseline is not None else None
    base = simulate(hw, load_workload(workload_path, list(wsets), hw=hw)).latency_s
    shared = {f for f in fields if bhw is not None and field_value(bhw, f) is not None
              and field_value(bhw, f) == field_value(hw, f)}
    lo, hi = math.log(low), math.log(high)
    delta = levels / (2 * (levels - 1))
    rng = np.random.default_rng(seed)

    def run(point: np.ndarray) -> tuple[float, float | None]:
        factors = {f: math.exp(lo + u * (hi - lo)) for f, u in zip(fields, point)}
        varied = load_hardware(hw_path, [setting(hw, f, x) for f, x in factors.items()])
        r = simulate(varied, load_workload(workload_path, list(wsets), hw=varied))
        t = r.latency_s / base if r.feasible else math.nan
        if bhw is None:
            return t, None
        bvaried = load_hardware(baseline, [setting(bhw, f, factors[f]) for f in sorted(shared)])
        b = simulate(bvaried, load_workload(workload_path, list(wsets), hw=bvaried))
        return t, (b.latency_s / r.latency_s if r.feasible and b.feasible else math.nan)

    effects: dict[str, list[float]] = {f: [] for f in fields}
    speedups: dict[str, list[float]] = {f: [] for f in fields}
    grid = np.arange(levels) / (levels - 1)
    for _ in range(trajectories):
        point = rng.choice(grid[grid <= 1 - delta + 1e-12], size=len(fields))
        y, s = run(point)
        for i in rng.permutation(len(fields)):
            step = delta if point[i] + delta <= 1 + 1e-12 else -delta
            point = point.copy()
            point[i] += step
            y2, s2 = run(point)
            effects[fields[i]].append((y2 - y) / step)
            if s is not None:
                speedups[fields[i]].append((s2 - s) / step)
            y, s = y2, s2
    out = []
    for f in fields:
        e = np.array(effects[f], dtype=float)
        sp = np.array(speedups[f], dtype=float)
        out.append(Effect(f, float(np.nanmean(np.abs(e))), float(np.nanstd(e)),
                          float(np.nanmean(np.abs(sp))) if bhw is not None else None))
    out.sort(key=lambda e: (-e.mu_star, e.field))
    return out
