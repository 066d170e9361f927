"""Instructions a sweep point (issue 22): a measure of a point's work that reruns to within a
few percent, where this shared machine's timings move by a fifth between runs of one code.

    python bench/instructions.py               # the DiT sweep (1,024 points) and the decode layer (4,096)
    python bench/instructions.py --record      # also append the figures to bench/history.csv
    python bench/instructions.py --ref b540630 # the same for another commit too, beside this one
    python bench/instructions.py --dit-points 4096  # a longer DiT window (more families' later points)

Each figure: valgrind's cachegrind (no cache simulation) counts the instructions of evaluating a
sweep's first N points, in the order and the chunks a worker takes them (up to 512 points, ending
where families begin: ``archsim.dse.chunks``), less those of the same run stopped before
evaluating (imports, planning, chunking), over N. The sweeps are
``bench/run.py``'s DiT-XL/2 sweep (``sweep_point_instructions_m``) and ``bench/scale.py``'s
10^6-point LLaMA-2 decode-layer space (``scale_point_instructions_m``). ``PYTHONHASHSEED`` is
fixed; runs of one code still differ by 1 to 3% (objects' addresses move dictionaries' probes).
Fewer instructions is not the same fraction less time: a point's time is also the interpreter's
instruction cache (docs/design/batched_sweep.md). Needs valgrind, which the repo does not
install (``apt-get install valgrind``): without it, it says so and exits 2.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SWEEPS = {"dit": ("sweep_point_instructions_m", 1024), "decode": ("scale_point_instructions_m", 4096)}
CHUNK = 512  # a worker's chunk (``chunks.default_chunk_size`` on these sweeps), at most


def child(root: Path, which: str, points: int, evaluate: bool) -> None:
    """Plan the sweep and, if ``evaluate``, evaluate its first ``points`` in chunks (run under
    cachegrind by ``count``; ``root``: the checkout whose archsim and benchmarks run)."""
    sys.path[:0] = [str(root), str(root / "bench")]
    import gc

    import numpy as np

    import run as bench_run
    import scale as bench_scale
    from archsim.dse.evaluate import evaluate_chunk
    from archsim.dse.plan import plan_sweep
    from archsim.sim.fingerprint import CostFingerprint

    with tempfile.TemporaryDirectory() as tmp:
        spec = Path(tmp) / "sweep.yaml"
        spec.write_text(bench_run.sweep_spec(10_000) if which == "dit" else bench_scale.spec(1_000_000))
        chosen = plan_sweep([spec]).points.grouped(CostFingerprint.unread).subset(np.arange(points))
        try:  # as the sweep's workers take them: ending where families begin
            from archsim.dse.chunks import chunked
            chunks = list(chunked(chosen, CHUNK, at_families=True))
        except ImportError:  # a commit before archsim.dse.chunks (--ref): every CHUNK points, as it cut them
            chunks = [list(chosen[first:first + CHUNK]) for first in range(0, points, CHUNK)]
        gc.disable()  # as every executor runs chunks (``runner._run_chunk``)
        if evaluate:
            for chunk in chunks:
                evaluate_chunk(chunk)


def count(root: Path, which: str, points: int, evaluate: bool) -> int:
    """The instructions of ``child`` under cachegrind."""
    cmd = ["valgrind", "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null",
           sys.executable, str(Path(__file__).resolve()), "--child", str(root), which, str(points)]
    env = dict(os.environ, PYTHONHASHSEED="0", PYTHONPATH=os.pathsep.join(
        [str(root), *filter(None, [os.environ.get("PYTHONPATH")])]))
    done = subprocess.run(cmd + ([] if evaluate else ["--setup"]), capture_output=True, text=True, env=env, cwd=root)
    found = re.search(r"I\s+refs:\s+([\d,]+)", done.stderr)
    if done.returncode or not found:
        raise SystemExit(f"cachegrind failed on {root} ({which}):\n{done.stderr[-2000:]}")
    return int(found.group(1).replace(",", ""))


def per_point(root: Path, which: str, points: int) -> float:
    """Millions of instructions a point."""
    return (count(root, which, points, True) - count(root, which, points, False)) / points / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--record", action="store_true", help="append the figures to bench/history.csv")
    parser.add_argument("--ref", help="also count another commit's (checked out in a temporary git worktree)")
    parser.add_argument("--dit-points", type=int, default=SWEEPS["dit"][1], metavar="N",
                        help="the DiT sweep's first N points (recorded as sweep_point_instructions_m_N if not 1,024)")
    parser.add_argument("--child", nargs=3, metavar=("ROOT", "SWEEP", "POINTS"), help=argparse.SUPPRESS)
    parser.add_argument("--setup", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.dit_points < 1:
        parser.error("--dit-points must be at least 1")
    if args.child:
        root, which, points = args.child
        child(Path(root), which, int(points), not args.setup)
        return
    if shutil.which("valgrind") is None:
        print("bench/instructions.py needs valgrind (apt-get install valgrind)", file=sys.stderr)
        raise SystemExit(2)
    figures = []
    with tempfile.TemporaryDirectory() as tmp:
        other = None
        if args.ref:
            other = Path(tmp) / "ref"
            subprocess.run(["git", "worktree", "add", "--detach", "-q", str(other), args.ref], cwd=ROOT, check=True)
        try:
            sweeps = dict(SWEEPS)
            if args.dit_points != SWEEPS["dit"][1]:  # another window: its own figure
                sweeps["dit"] = (f"{SWEEPS['dit'][0]}_{args.dit_points}", args.dit_points)
            for which, (name, points) in sweeps.items():
                value = per_point(ROOT, which, points)
                beside = f", {args.ref}: {per_point(other, which, points):.3f}" if other else ""
                print(f"{name:30s} {value:8.3f} M instructions a point ({points:,} points{beside})", flush=True)
                figures.append((name, value, "M instructions"))
        finally:
            if other is not None:
                subprocess.run(["git", "worktree", "remove", "--force", str(other)], cwd=ROOT, check=False)
    if args.record:
        sys.path.insert(0, str(ROOT / "bench"))
        from scale import record

        record(figures)


if __name__ == "__main__":
    main()
