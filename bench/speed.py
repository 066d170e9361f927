"""Simulator speed: GEMM evaluations, building and summarising every bundled workload, and
running each on TPUv4i.

    python bench/speed.py            # print the figures
    python bench/speed.py --record   # also append them to bench/history.csv

Times are wall-clock seconds of simulation (config loading excluded), best of several runs.
"cold" evaluations clear the per-shape tiling cache first; "warm" ones hit it, as a sweep
over many design points with recurring shapes does.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import platform
import random
import subprocess
import time
from pathlib import Path

from archsim.api import gemm_workload, load_hardware, load_workload, simulate
from archsim.ir.summary import summarize
from archsim.hw.tiling import tile_matmul

ROOT = Path(__file__).resolve().parent.parent
HISTORY = Path(__file__).with_name("history.csv")


def best_of(fn, repeats: int = 5) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def cold(fn):
    def run():
        tile_matmul.cache_clear()
        fn()
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--record", action="store_true", help="append the figures to bench/history.csv")
    args = parser.parse_args()

    # a large HBM so that every bundled workload fits one chip (multi-chip systems come later)
    hw = load_hardware(ROOT / "hw_configs" / "tpuv4i.yaml", ["hbm.capacity=64 GiB"])
    figures: dict[str, float] = {}

    big = gemm_workload(2048, 4096, 11008)
    figures["gemm_2048x4096x11008_cold_s"] = best_of(cold(lambda: simulate(hw, big)))
    figures["gemm_2048x4096x11008_warm_s"] = best_of(lambda: simulate(hw, big))

    rng = random.Random(0)
    shapes = [(rng.randint(1, 8192), rng.randint(1, 8192), rng.randint(1, 8192)) for _ in range(200)]
    workloads = [gemm_workload(*s) for s in shapes]
    elapsed = best_of(cold(lambda: [simulate(hw, w) for w in workloads]), repeats=2)
    figures["gemm_distinct_shapes_per_s"] = len(shapes) / elapsed

    for path in sorted((ROOT / "workloads").glob("*.yaml")):
        figures[f"build_summarise_{path.stem}_s"] = best_of(lambda: summarize(load_workload(path)))
    for path in sorted((ROOT / "workloads").glob("*.yaml")):
        workload = load_workload(path)
        figures[f"run_{path.stem}_cold_s"] = best_of(cold(lambda: simulate(hw, workload)), repeats=3)
        figures[f"run_{path.stem}_warm_s"] = best_of(lambda: simulate(hw, workload), repeats=3)

    width = max(map(len, figures))
    for name, value in figures.items():
        unit = "" if name.endswith("per_s") else " ms"
        shown = f"{value:,.0f}" if name.endswith("per_s") else f"{value * 1e3:.3f}"
        print(f"{name:<{width}}  {shown}{unit}")
    print("(SCALE-Sim v3 takes about 30 s for 256x1152x1152 and hours for 2048x4096x11008: REFERENCE.md section 3)")

    if args.record:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout.strip()
        row = {"date": datetime.date.today().isoformat(), "commit": commit, "python": platform.python_version(), **figures}
        new = not HISTORY.exists()
        with HISTORY.open("a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(row))
            if new:
                writer.writeheader()
            writer.writerow(row)
        print(f"recorded in {HISTORY}")


if __name__ == "__main__":
    main()
