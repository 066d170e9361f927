"""archsim explore's evidence (slow: a benchmark, not a test).

    python bench/explore.py                 # (a) and (b): about 15 minutes on 2 cores
    python bench/explore.py --only small    # (a) alone
    python bench/explore.py --record        # also append the figures to bench/history.csv

(a) A space small enough to enumerate: 12,800 CIM-TPU designs (MXU grid x count x VMEM x CMEM x
    HBM bandwidth x clock) on the DiT-XL/2 block workload, swept exhaustively (its results are
    kept in --cache and reused), against explore with 5% of the evaluations, for several
    seeds: the hypervolume ratio of explore's front to the exhaustive front (latency, energy,
    area; both normalised between the exhaustive ideal and nadir, reference point 1.1).
(b) A hardware x cache-schedule space of 5.6e12 designs (six hardware axes, continuous HBM
    bandwidth and clock among them, x 13 schedules) on DiT-XL/2 256x256 (50 steps, CFG) under an
    area constraint, explored for at most --minutes on the process pool: evaluations, time and
    the front.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from archsim import units  # noqa: E402
from archsim.dse.explore import explore, hypervolume  # noqa: E402
from archsim.dse.pareto import pareto_mask  # noqa: E402
from archsim.dse.plan import plan_sweep  # noqa: E402
from archsim.dse.runner import run_points  # noqa: E402
from archsim.dse.store import ResultStore  # noqa: E402

HISTORY = Path(__file__).with_name("history.csv")
TARGET_RATIO = 0.99
RANDOM_DRAWS = 20  # uniform samples of the same budget, for comparison
SMALL_AXES = {  # explore's form, and the sweep's of the same values
    "mxu.cim.grid": ("[[8, 8], [16, 8], [16, 16], [32, 16]]", None),
    "mxu.count": ("{from: 1, to: 8, step: 1}", "{from: 1, to: 8, steps: 8}"),
    "vmem.capacity": ("[4 MiB, 8 MiB, 16 MiB, 32 MiB]", None),
    "cmem.capacity": ("[64 MiB, 128 MiB, 256 MiB, 512 MiB, 1 GiB]", None),
    "hbm.bandwidth": ("{from: 400 GB/s, to: 2 TB/s, step: 400 GB/s}", "{from: 400 GB/s, to: 2 TB/s, steps: 5}"),
    "clock": ("[0.9 GHz, 1.05 GHz, 1.2 GHz, 1.4 GHz]", None),
}
SMALL_SIZE = 4 * 8 * 4 * 5 * 5 * 4
OBJECTIVES = ("latency_s", "energy_j", "area_mm2")
SCHEDULES = (["none"] + [f"icc:period={p}" for p in (2, 3, 4)] + [f"icc:period=2,rank={r}" for r in (32, 64, 256)]
             + [f"reuse:period={p}" for p in (2, 3, 4, 5)] + ["taylorseer", "toca"])


def small_spec(section: str, budget: int, seed: int) -> str:
    axes = "\n".join(f"    {k}: {e if section == 'explore' or s is None else s}" for k, (e, s) in SMALL_AXES.items())
    tail = (f"  budget: {{evaluations: {budget}}}\n  population: 32\n  seed: {seed}\n" if section == "explore"
            else "  baseline: null\n")
    return (f"extends: {ROOT / 'hw_configs' / 'cim_tpu.yaml'}\n{section}:\n  axes:\n{axes}\n"
            f"  workloads: [{ROOT / 'workloads' / 'dit_xl_2_block_512.yaml'}]\n"
            f"  objectives: [latency, energy, area]\n{tail}")


def large_spec(seconds: float) -> str:
    schedules = ", ".join(f'"{s}"' for s in SCHEDULES)
    return f"""extends: {ROOT / 'hw_configs' / 'cim_tpu.yaml'}
explore:
  axes:
    mxu.cim.grid: [[8, 8], [16, 8], [16, 16], [32, 16]]
    mxu.count: {{from: 1, to: 16, step: 1}}
    vmem.capacity: {{from: 4 MiB, to: 128 MiB, step: 4 MiB}}
    cmem.capacity: {{from: 128 MiB, to: 1 GiB, step: 32 MiB}}
    hbm.bandwidth: {{from: 300 GB/s, to: 3 TB/s, scale: log}}
    clock: {{from: 0.8 GHz, to: 1.6 GHz}}
  workload_axes:
    schedule: [{schedules}]
  workloads: [{ROOT / 'workloads' / 'dit_xl_2.yaml'}]
  baseline: {ROOT / 'hw_configs' / 'tpuv4i.yaml'}
  objectives: [latency, energy, area]
  constraints: [{{key: area, max: 450 mm^2}}]
  budget: {{seconds: {seconds:g}}}
  population: 100
"""


def exhaustive(cache: Path, jobs: int) -> tuple[dict[str, np.ndarray], float]:
    """The small space's every design: point key -> (latency, energy, area); the sweep's
    seconds (0 when its results were all in the cache)."""
    cache.mkdir(parents=True, exist_ok=True)
    spec = cache / "sweep.yaml"
    spec.write_text(small_spec("sweep", 0, 0))
    plan = plan_sweep([spec])
    assert len(plan.points) == SMALL_SIZE, len(plan.points)
    store = ResultStore(cache / "results")
    start = time.perf_counter()
    stats = run_points(plan.points, store, "pool", jobs, progress=sys.stderr.isatty())
    seconds = time.perf_counter() - start if stats.evaluated else 0.0
    frame = store.frame()
    ok = frame[(frame["status"] == "ok") & frame["key"].isin({p.key for p in plan.points})]
    return {k: np.array(v, dtype=float) for k, v in zip(ok["key"], ok[list(OBJECTIVES)].to_numpy())}, seconds


def small(figures: dict, cache: Path, seeds: int, jobs: int) -> None:
    budget = SMALL_SIZE // 20  # 5%
    print(f"(a) {SMALL_SIZE:,} CIM-TPU designs x DiT-XL/2 block 512 (latency, energy, area): exhaustive vs "
          f"explore with {budget} evaluations (5%)")
    values, sweep_s = exhaustive(cache, jobs)
    every = np.array(list(values.values()))
    ideal, nadir = every.min(axis=0), every.max(axis=0)
    full = hypervolume(every, ideal, nadir)
    keys = list(values)
    front = {keys[i] for i in np.flatnonzero(pareto_mask(every, ["min"] * len(OBJECTIVES)))}
    print(f"  exhaustive: {len(values):,} feasible designs" + (f", swept in {sweep_s:.0f} s" if sweep_s else
                                                             " (cached)") + f"; front {len(front)} designs, "
          f"hypervolume {full:.4f}")
    rng = np.random.default_rng(0)
    draws = [rng.choice(len(every), budget, replace=False) for _ in range(RANDOM_DRAWS)]
    uniform = [hypervolume(every[draw], ideal, nadir) / full for draw in draws]
    hits = [len(front & {keys[i] for i in draw}) for draw in draws]
    print(f"  uniform random sample of {budget} designs ({RANDOM_DRAWS} draws): hypervolume ratio mean "
          f"{np.mean(uniform):.2%}, worst {np.min(uniform):.2%}; {np.mean(hits):.1f} of the front's "
          f"{len(front)} designs on average")
    ratios, recovered, to_target = [], [], []
    for seed in range(seeds):
        with tempfile.TemporaryDirectory() as tmp:
            spec = Path(tmp) / "explore.yaml"
            spec.write_text(small_spec("explore", budget, seed))
            start = time.perf_counter()
            outcome = explore(spec, Path(tmp) / "out", executor="pool", jobs=jobs, echo=lambda line: None)
            seconds = time.perf_counter() - start
        keyed = [(d, p.key) for d, f in outcome.evaluated.items() if f is not None for p in outcome.space.points(d)]
        found = np.array([values[k] for _, k in keyed])
        ratio = hypervolume(found, ideal, nadir) / full
        ratios.append(ratio)
        recovered.append(len(front & {k for _, k in keyed}))
        reach = next((g["evaluations"] for g in outcome.generations if hypervolume(np.array(
            [values[k] for d, k in keyed if outcome.generation_of[d] <= g["generation"]]), ideal, nadir) / full
            >= TARGET_RATIO), None)
        to_target.append(reach or budget)
        print(f"  explore seed {seed}: {len(outcome.evaluated)} evaluations in {seconds:.1f} s, front "
              f"{len(outcome.front())} designs ({recovered[-1]} of the exhaustive front's {len(front)}), "
              f"hypervolume ratio {ratio:.2%}, {TARGET_RATIO:.0%} reached after {reach} evaluations")
    mean, worst = float(np.mean(ratios)), float(np.min(ratios))
    verdict = "meets" if worst >= TARGET_RATIO else "MISSES"
    print(f"  hypervolume ratio: mean {mean:.2%}, worst {worst:.2%} over {seeds} seeds ({verdict} the "
          f"{TARGET_RATIO:.0%} target)")
    figures["explore_small_hv_ratio_mean"] = (mean, "fraction")
    figures["explore_small_hv_ratio_worst"] = (worst, "fraction")
    figures["explore_small_front_recovered_mean"] = (float(np.mean(recovered)) / len(front), "fraction")
    figures["explore_small_evaluations_to_99pct_worst"] = (max(to_target), "designs")
    figures["explore_small_random_hv_ratio_mean"] = (float(np.mean(uniform)), "fraction")
    figures["explore_small_evaluations"] = (budget, "designs")
    figures["explore_small_space"] = (SMALL_SIZE, "designs")


def large(figures: dict, minutes: float, jobs: int) -> None:
    seconds = minutes * 60 * 0.9  # the last generation and the reports within the minutes
    with tempfile.TemporaryDirectory() as tmp:
        spec = Path(tmp) / "explore.yaml"
        spec.write_text(large_spec(seconds))
        start = time.perf_counter()
        outcome = explore(spec, Path(tmp) / "out", executor="pool", jobs=jobs, echo=lambda line: None)
        wall = time.perf_counter() - start
    space = outcome.space
    print(f"(b) {space.size:.3g} hardware x schedule designs x DiT-XL/2 256 (50 steps, CFG), area <= 450 mm^2, "
          f"{jobs} workers: {len(outcome.evaluated):,} evaluations ({outcome.simulated:,} points simulated, "
          f"{len(outcome.feasible()[0]):,} feasible) in {wall:.0f} s, {len(outcome.generations)} generations")
    hv = [g["hypervolume"] for g in outcome.generations]
    marks = sorted({0, len(hv) // 4, len(hv) // 2, 3 * len(hv) // 4, len(hv) - 1}) if hv else []
    print("  hypervolume by generation (final bounds): "
          + ", ".join(f"{outcome.generations[i]['generation']}: {hv[i]:.4f}" for i in marks))
    front = sorted(outcome.front(), key=lambda d: outcome.evaluated[d][0])
    print(f"  front: {len(front)} designs (latency ms, energy J, area mm^2)")
    for d in front:
        f = outcome.evaluated[d]
        hw, wl = space.overrides(d)
        shown = " ".join(f"{k}={_pretty(v)}" for k, v in hw + wl)
        print(f"    {f[0] * 1e3:8.2f} {f[1]:8.3f} {f[2]:7.1f}  {shown}")
    figures["explore_large_space"] = (float(space.size), "designs")
    figures["explore_large_evaluations"] = (len(outcome.evaluated), "designs")
    figures["explore_large_points_simulated"] = (outcome.simulated, "points")
    figures["explore_large_s"] = (wall, "s")
    figures["explore_large_front"] = (len(front), "designs")


def _pretty(value) -> str:
    """'4194304.0 B' as '4 MiB', [16, 8] as 16x8."""
    if isinstance(value, list):
        return "x".join(map(str, value))
    if isinstance(value, str):
        try:
            exact, dim = units.parse_quantity_exact(value)
            return units.format_quantity(float(exact), dim)
        except units.UnitError:
            return value
    return str(value)


def record(figures: dict) -> None:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout.strip()
    if subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True,
                      cwd=ROOT).stdout.strip():
        commit += "+dirty"
    with HISTORY.open("a", newline="") as f:
        writer = csv.writer(f)
        for name, (value, unit) in figures.items():
            writer.writerow([datetime.date.today().isoformat(), commit, platform.python_version(), name,
                             f"{value:.6g}", unit])
    print(f"recorded in {HISTORY}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=["small", "large"], action="append", help="run only these parts")
    parser.add_argument("--seeds", type=int, default=3, help="explore runs of (a), seeds 0, 1, ...")
    parser.add_argument("--minutes", type=float, default=10.0, help="(b)'s time limit")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "archsim-bench-explore",
                        help="where (a)'s exhaustive results are kept between runs")
    parser.add_argument("--record", action="store_true", help="append the figures to bench/history.csv")
    args = parser.parse_args()
    print(f"archsim explore benchmark: Python {platform.python_version()}, {os.cpu_count()} cores, {args.jobs} workers")
    figures: dict = {}
    parts = args.only or ["small", "large"]
    try:
        if "small" in parts:
            small(figures, args.cache, args.seeds, args.jobs)
        if "large" in parts:
            large(figures, args.minutes, args.jobs)
    finally:
        if args.record and figures:
            record(figures)


if __name__ == "__main__":
    main()
