"""Sweep scale: a 10^6-point grid sweep end to end, and reading back a 100,000-point folder.

    python bench/scale.py                    # 10^6 points on the pool (2 workers), then readback
    python bench/scale.py --points 100000    # a smaller sweep (its time extrapolated to 10^6)
    python bench/scale.py --sample 40000     # 40,000 points of the 10^6 space, extrapolated
    python bench/scale.py --readback-only    # only the 100,000-row readback figures
    python bench/scale.py --stub-eval        # the machinery alone: rows copied, not simulated
    python bench/scale.py --record           # also append the figures to bench/history.csv

1. Sweep: CIM-TPU designs (MXU count, HBM bandwidth, VMEM and CMEM size: values many enough
   for the point count) on the LLaMA-2-7B decode layer, planned lazily, run on the process pool,
   compacted as it goes, then consolidated (``results.parquet``) as ``archsim sweep`` does.
   Reports the plan's time and memory, the run's wall time and points/s, the readback and
   consolidation times, and the peak resident memory of the sweep's process and of its
   workers (``resource.getrusage``: the largest of each; targets: 10^6 points in under 10
   minutes, under 2 GiB), and a worker's CPU a point (``scale_point_cpu_ms``: the workers'
   CPU over the points; target 0.3 ms). A point of this decode layer costs some 0.66 ms of a
   worker's CPU over the whole run (its hardware validated, its operands placed, its plans
   scheduled; some 30% of it costing the ops of each new HBM bandwidth), so 10^6 simulated
   points take 6 to 7 minutes on 2 cores (380 s measured; 572 to 581 s before the shared
   costs' memo evicted in constant time). A smaller grid (``--points``) underestimates that:
   its few bandwidths' op costs all stay in a worker's caches, the 10^6 space's 2,000 do not;
   ``--sample N`` runs N points of the 10^6 space itself (8 runs of consecutive points, in the
   order a sweep runs them, spread over it), faster than the whole run.
   ``--stub-eval`` measures everything else at 10^6 (planning, chunks handed
   to the pool, parts written and compacted, readback, memory): each worker returns a copy of
   one of 8 rows evaluated beforehand, under the point's key and swept values.
2. Readback: 100,000 rows (8 real points evaluated, replicated under distinct keys) written
   through the store in 64-row chunks as a sweep writes them: once without compaction (1,563
   parts, as before compaction existed) and once compacted as ``run_points`` compacts; the
   times of ``ResultStore.frame``, ``done_keys``, ``consolidate`` and ``load_results``.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import math
import platform
import resource
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HISTORY = Path(__file__).with_name("history.csv")
WORKLOAD = ROOT / "workloads" / "llama2_7b_layer_decode.yaml"
TARGETS = {"scale_point_cpu_ms": 0.3, "scale_sweep_1m_s": 600.0, "scale_sweep_1m_extrapolated_s": 600.0, "scale_sweep_1m_sampled_s": 600.0, "scale_peak_rss_mib": 2048.0,
           "scale_stub_peak_rss_mib": 2048.0, "scale_readback_100k_s": 5.0}


def spec(points: int) -> str:
    """A grid of about ``points`` designs: 5 x 10 x 10 x the bandwidth steps left."""
    steps = max(1, math.ceil(points / 500))
    return textwrap.dedent(f"""
        extends: {ROOT / 'hw_configs' / 'cim_tpu.yaml'}
        sweep:
          baseline: null
          axes:
            mxu.cim.grid: [[16, 8]]           # cim_tpu.yaml's axis, to one value
            mxu.count: [1, 2, 4, 6, 8]
            vmem.capacity: {{from: 4 MiB, to: 40 MiB, steps: 10}}
            cmem.capacity: {{from: 64 MiB, to: 640 MiB, steps: 10}}
            hbm.bandwidth: {{from: 300 GB/s, to: 3 TB/s, steps: {steps}}}
          workloads: [{WORKLOAD}]
        """)


def children_cpu_s() -> float:
    """CPU seconds (user and system) of this process's children that have exited (the pool's
    workers, once ``run_points`` returns)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def peak_mib() -> tuple[float, float]:
    """Peak resident memory (MiB) of this process and of its largest child (Linux: KiB)."""
    return (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)


ROWS: list[dict] = []  # --stub-eval: the rows the workers copy


def stub_chunk(points: list) -> list[dict]:
    """``evaluate_chunk`` without the simulation: a copy of an evaluated row per point."""
    import json

    from archsim.dse.evaluate import FIELD_PREFIX

    return [dict(ROWS[i % len(ROWS)], key=p.key, **{FIELD_PREFIX + k: json.dumps(v) for k, v in p.overrides})
            for i, p in enumerate(points)]


def sampled(points: int, workers: int, figures: list, windows: int = 8) -> None:
    """``points`` of the 10^6-point space, in ``windows`` runs of consecutive points (in the
    order ``run_points`` evaluates them) spread evenly over it, run on the pool; the wall time
    extrapolated to 10^6. Unlike a smaller grid (whose few bandwidths' costs a worker keeps
    all of), each point meets the costs a 10^6 sweep would: it is the honest estimate short of
    the full run."""
    import numpy as np

    from archsim.dse.plan import plan_sweep
    from archsim.dse.runner import run_points
    from archsim.dse.store import ResultStore
    from archsim.sim.fingerprint import CostFingerprint

    with tempfile.TemporaryDirectory(prefix="archsim-scale-") as tmp:
        path = Path(tmp) / "sweep.yaml"
        path.write_text(spec(1_000_000))
        plan = plan_sweep([path]).points.grouped(CostFingerprint.unread)
        size = points // windows
        starts = np.linspace(0, len(plan) - size, windows).astype(int)
        chosen = plan.subset(np.concatenate([np.arange(s, s + size) for s in starts]))
        cpu = children_cpu_s()
        stats = run_points(chosen, ResultStore(Path(tmp) / "out"), "pool", workers, progress=sys.stderr.isatty())
        point_ms = (children_cpu_s() - cpu) / stats.evaluated * 1e3
        print(f"a pool worker's CPU a point: {point_ms:.3f} ms")
        figures.append(("scale_point_cpu_ms", point_ms, "ms"))
        estimate = stats.seconds * len(plan) / stats.evaluated
        print(f"sample: {stats.evaluated:,} of the 10^6 points ({windows} runs of {size:,}) in {stats.seconds:.1f} s = "
              f"{stats.points_per_second:.0f} points/s on {workers} workers; 10^6 points: about {estimate:.0f} s")
        figures += [(f"scale_sample_{stats.evaluated}_points_per_s", stats.points_per_second, "points/s"),
                    ("scale_sweep_1m_sampled_s", estimate, "s")]


def sweep(points: int, workers: int, figures: list, stub: bool = False, consolidate: bool = True) -> None:
    from archsim.dse import runner
    from archsim.dse.evaluate import evaluate_chunk
    from archsim.dse.plan import plan_sweep
    from archsim.dse.runner import run_points
    from archsim.dse.results_file import load_results
    from archsim.dse.store import ResultStore

    with tempfile.TemporaryDirectory(prefix="archsim-scale-") as tmp:
        path = Path(tmp) / "sweep.yaml"
        path.write_text(spec(points))
        start = time.perf_counter()
        plan = plan_sweep([path])
        plan_s = time.perf_counter() - start
        n = len(plan.points)
        figures.append((f"scale_plan_{n}_s", plan_s, "s"))
        figures.append(("scale_plan_rss_mib", peak_mib()[0], "MiB"))
        print(f"plan: {n:,} points in {plan_s:.1f} s, peak RSS {peak_mib()[0]:.0f} MiB")
        if stub:  # before the pool forks: its workers inherit the rows and the stub
            ROWS[:] = evaluate_chunk(list(plan.points[:8]))
            runner.evaluate_chunk = stub_chunk
        tag = "stub_" if stub else ""
        store = ResultStore(Path(tmp) / "out")
        cpu = children_cpu_s()
        stats = run_points(plan.points, store, "pool", workers, progress=sys.stderr.isatty())
        point_ms = (children_cpu_s() - cpu) / max(1, stats.evaluated) * 1e3
        print(f"run: {stats.evaluated:,} points in {stats.seconds:.1f} s = {stats.points_per_second:.0f} points/s "
              f"on {workers} workers ({point_ms:.3f} ms of a worker's CPU a point); "
              f"{len(list(store.parts.glob('part-*.parquet')))} parts")
        if not stub:
            figures.append(("scale_point_cpu_ms", point_ms, "ms"))
        start = time.perf_counter()
        keys = store.done_keys()
        done_s = time.perf_counter() - start
        start = time.perf_counter()
        frame = store.frame()
        frame_s = time.perf_counter() - start
        ok, rows = int((frame["status"] == "ok").sum()), len(frame)
        del frame
        figures.append((f"scale_{'stub_' if stub else ''}frame_{n}_s", frame_s, "s"))
        consolidate_s = load_s = 0.0
        if consolidate:  # the typed table (archsim.dse.report.results_table: the Pareto front, labels)
            start = time.perf_counter()
            table = store.consolidate(plan.points.key_set(), plan.objectives)
            consolidate_s = time.perf_counter() - start
            start = time.perf_counter()
            load_results(table)
            load_s = time.perf_counter() - start
        wall = plan_s + stats.seconds + consolidate_s
        own, child = peak_mib()
        print(f"readback: done_keys {done_s:.1f} s ({len(keys):,}), frame {frame_s:.1f} s ({ok:,} of {rows:,} ok), "
              f"consolidate {consolidate_s:.1f} s, load_results {load_s:.1f} s")
        print(f"end to end {wall:.0f} s; peak RSS: sweep process {own:.0f} MiB, largest worker {child:.0f} MiB")
        if n < 1_000_000:
            print(f"extrapolated to 10^6 points: {wall * 1_000_000 / n:.0f} s")
        figures += [(f"scale_{tag}sweep_{n}_points_per_s", stats.points_per_second, "points/s"),
                    (f"scale_{tag}sweep_{n}_s", wall, "s"), (f"scale_{tag}done_keys_{n}_s", done_s, "s"),
                    *([(f"scale_{tag}consolidate_{n}_s", consolidate_s, "s")] if consolidate else []),
                    (f"scale_{tag}peak_rss_mib", own, "MiB"),
                    (f"scale_{tag}worker_peak_rss_mib", child, "MiB")]
        if n == 1_000_000 and not stub:
            figures.append(("scale_sweep_1m_s", wall, "s"))
        elif not stub:
            figures.append(("scale_sweep_1m_extrapolated_s", wall * 1_000_000 / n, "s"))


def synthetic(out: Path, rows: int = 100_000, chunk: int = 64, compact: bool = True) -> None:
    """``rows`` rows written as a sweep writes them, from 8 evaluated points under new keys."""
    from archsim.dse.evaluate import evaluate_chunk
    from archsim.dse.plan import plan_sweep
    from archsim.dse.store import ResultStore

    path = out.parent / "synthetic.yaml"
    path.write_text(f"extends: {ROOT / 'hw_configs' / 'cim_tpu.yaml'}\nsweep:\n  baseline: null\n  axes:\n"
                    f"    mxu.cim.grid: [[16, 8]]\n    mxu.count: [1, 2, 4, 8]\n    hbm.bandwidth: [300 GB/s, 600 GB/s]\n"
                    f"  workloads: [{WORKLOAD}]\n")
    base = evaluate_chunk(list(plan_sweep([path]).points))
    store = ResultStore(out)
    with store.writer():
        for start in range(0, rows, chunk):
            store.write([dict(base[i % len(base)], key=f"{i:020x}") for i in range(start, min(rows, start + chunk))])
            if compact:
                store.compact()


def readback(figures: list) -> None:
    from archsim.dse.results_file import load_results
    from archsim.dse.store import RESULTS, ResultStore

    with tempfile.TemporaryDirectory(prefix="archsim-readback-") as tmp:
        for compact in (False, True):
            out = Path(tmp) / ("compacted" if compact else "parts")
            start = time.perf_counter()
            synthetic(out, compact=compact)
            write_s = time.perf_counter() - start
            store = ResultStore(out, create=False)
            parts = len(list(store.parts.glob("part-*.parquet")))
            times = {}
            for name, fn in [("frame", store.frame), ("done_keys", store.done_keys),
                             ("load_results", lambda: load_results(out)), ("consolidate", store.consolidate),
                             ("load_table", lambda: load_results(out / RESULTS))]:
                start = time.perf_counter()
                fn()
                times[name] = time.perf_counter() - start
            which = "compacted" if compact else "uncompacted"
            print(f"100,000 rows, {which}: {parts} parts (written in {write_s:.1f} s); "
                  + ", ".join(f"{k} {v:.2f} s" for k, v in times.items()))
            figures += [(f"scale_readback_100k_{which}_{k}_s", v, "s") for k, v in times.items()]
            if compact:
                figures.append(("scale_readback_100k_s", times["load_results"], "s"))


def record(figures: list) -> None:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip() or "unknown"
    with HISTORY.open("a", newline="") as f:
        writer = csv.writer(f)
        for name, value, unit in figures:
            writer.writerow([datetime.date.today().isoformat(), commit, platform.python_version(), name,
                             f"{value:.6g}", unit])
    print(f"{len(figures)} figures appended to {HISTORY}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--readback-only", action="store_true")
    parser.add_argument("--stub-eval", action="store_true", help="copy evaluated rows instead of simulating")
    parser.add_argument("--no-consolidate", action="store_true", help="read the parts back, but write no table")
    parser.add_argument("--no-readback", action="store_true")
    parser.add_argument("--sample", type=int, default=0, metavar="N",
                        help="run N points of the 10^6 space (8 runs spread over it) and extrapolate")
    parser.add_argument("--record", action="store_true", help="append the figures to bench/history.csv")
    args = parser.parse_args()
    figures: list = []
    if args.sample:
        sampled(args.sample, args.workers, figures)
    elif not args.readback_only:
        sweep(args.points, args.workers, figures, args.stub_eval, not args.no_consolidate)
    if not args.no_readback:
        readback(figures)
    for name, value, unit in figures:
        target = TARGETS.get(name)
        print(f"{name:45s} {value:12.4g} {unit}" + (f"  (target {target:g})" if target else ""))
    if args.record:
        record(figures)


if __name__ == "__main__":
    main()
