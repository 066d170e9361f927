"""Sweep throughput: 1,000 design points x 2 workloads (DiT-XL/2 50-step generation at
256x256 with CFG, and a whole GPT-3-30B decode of 255 tokens), serially on a sample, on the
local process pool and on a local Dask cluster, with 1 and 2 workers.

    python bench/sweep_speed.py [--points 1000]

Wall time is end to end (planning, evaluation, writing Parquet parts, consolidation).
"""

from __future__ import annotations

import argparse
import tempfile
import textwrap
import time
from pathlib import Path

from archsim.dse.plan import plan_sweep
from archsim.dse.runner import run_points
from archsim.dse.store import ResultStore

ROOT = Path(__file__).resolve().parent.parent


def spec(points: int) -> str:
    bandwidths = max(1, points // (3 * 4 * 3))
    return textwrap.dedent(f"""
        extends: {ROOT / 'hw_configs' / 'cim_tpu.yaml'}
        hbm: {{capacity: 64 GiB}}          # a GPT-3-30B's weights on one chip, for the benchmark
        sweep:
          baseline: null                   # cim_tpu.yaml's TPUv4i baseline cannot hold GPT-3-30B
          axes:
            mxu.cim.grid: [[8, 8], [16, 8], [16, 16]]
            mxu.count: [2, 4, 6, 8]
            cmem.capacity: [64 MiB, 128 MiB, 256 MiB]
            hbm.bandwidth: {{from: 400 GB/s, to: 1.6 TB/s, steps: {bandwidths}}}
          workloads:
            - {ROOT / 'workloads' / 'dit_xl_2.yaml'}
            - {{file: {ROOT / 'workloads' / 'gpt3_30b.yaml'}, set: {{phases: [decode]}}}}
        """)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--points", type=int, default=1000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.yaml"
        path.write_text(spec(args.points))
        start = time.perf_counter()
        plan = plan_sweep([path])
        plan_s = time.perf_counter() - start
        designs = len(plan.points) // 2
        print(f"{designs} design points x 2 workloads = {len(plan.points)} evaluations; planned in {plan_s:.2f} s")
        runs = [("serial", 1, plan.points[:100]), ("pool", 1, plan.points), ("pool", 2, plan.points),
                ("dask", 2, plan.points)]
        for executor, workers, points in runs:
            store = ResultStore(Path(tmp) / f"{executor}-{workers}")
            start = time.perf_counter()
            run_points(points, store, executor, workers, progress=False)
            store.consolidate()
            wall = time.perf_counter() - start
            frame = store.frame()
            failed = (frame["status"] != "ok").sum()
            for _, row in frame[frame["status"] != "ok"].head(3).iterrows():
                print(f"    not ok: {row['status']}: {row['reason'][:160]}")
            print(f"{executor:6s} x{workers}: {len(points):5d} evaluations in {wall:6.2f} s wall "
                  f"= {len(points) / wall:7.1f} evaluations/s ({len(points) / 2 / wall:6.1f} design points/s), "
                  f"{failed} not ok")


if __name__ == "__main__":
    main()
