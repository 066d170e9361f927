"""Fault tolerance of sweeps, end to end: a pool worker that dies, a Dask worker killed
mid-sweep, a full disk, SIGKILL of the main process, and a results folder that holds damaged
or foreign files. After each, the re-run's results are the plan's points, each exactly once,
all ok, and equal bit for bit to an uninterrupted serial run.

Whatever kills a process runs in real processes (``archsim sweep`` in a fresh interpreter,
its pool workers, a local Dask cluster's workers); the runs around it (set-up, re-runs, a
full disk) call the same CLI entry point in this process, which is faster.

Faults are injected deterministically by this module, which worker processes import too:
``install()`` (run by the ``archsim sweep`` subprocesses, from the ``ARCHSIM_TEST_FAULTS``
environment variable) replaces the runner's ``evaluate_chunk`` with ``faulty_chunk`` bound to a
spec (so the spec travels with the task, to forked pool workers and to Dask workers alike), and
makes the main process's result writes fail like a full disk or kill it mid-write. Kills are
counted in marker files, so "die on this point once" holds across processes. Plots are
stubbed out in the subprocesses (they cost seconds and are not what is tested).
"""

from __future__ import annotations

import errno
import functools
import io
import json
import os
import pickle
import signal
import subprocess
import sys
import time
import types
import uuid
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parent.parent
TESTS = ROOT / "tests"
FAULTS_ENV = "ARCHSIM_TEST_FAULTS"
TPUV4I = ROOT / "hw_configs" / "tpuv4i.yaml"
DECODE = ROOT / "workloads" / "gpt3_30b_layer_decode.yaml"

# 12 points of one small workload (about 15 ms each)
SWEEP = """extends: {hw}
sweep:
  axes:
    mxu.count: [1, 2, 4, 8]
    hbm.bandwidth: [300 GB/s, 600 GB/s, 900 GB/s]
  workloads: [{workload}]
  objectives: [latency, energy, area]
"""


# ----------------------------------------------------------------------------------------------
# fault injection (also imported by pool and Dask worker processes)


def faulty_chunk(spec: dict, points: list) -> list[dict]:
    """``evaluate_chunk`` with faults: before evaluating a point named in ``spec["kill"]`` the
    process dies (``exit``: os._exit; ``sigkill``: SIGKILL of itself; ``hang``: it writes its
    pid to ``victim-KEY`` and waits for the test to SIGKILL it), the first ``times`` times.
    Every evaluation is logged to ``evaluated.log`` as ``key pid``."""
    from archsim.dse.evaluate import evaluate_point

    state = Path(spec["dir"])
    rows = []
    for point in points:
        for fault in spec.get("kill", ()):
            if point.key == fault["key"] and len(list(state.glob(f"killed-{point.key}-*"))) < fault["times"]:
                (state / f"killed-{point.key}-{uuid.uuid4().hex}").write_text(str(os.getpid()))
                if fault["how"] == "exit":
                    os._exit(1)
                elif fault["how"] == "sigkill":
                    os.kill(os.getpid(), signal.SIGKILL)
                tmp = state / f".victim-{uuid.uuid4().hex}"
                tmp.write_text(str(os.getpid()))
                tmp.rename(state / f"victim-{point.key}")
                deadline = time.time() + 60  # bounded: a test that fails to kill fails, not hangs
                while time.time() < deadline:
                    time.sleep(0.05)
        row = evaluate_point(point)
        with open(state / "evaluated.log", "a") as log:
            log.write(f"{point.key} {os.getpid()}\n")
        rows.append(row)
    return rows


def _kind(tmp) -> str | None:
    """What an atomic write's temporary is for: a part, the results table, sweep.json, ..."""
    tmp = Path(tmp) if isinstance(tmp, (str, os.PathLike)) else None
    if tmp is None or not tmp.name.startswith(".tmp-"):
        return None
    if tmp.parent.name == "parts":
        return "part"
    return {".parquet": "results", ".json": "json", ".txt": "txt", ".csv": "csv"}.get(tmp.suffix)


def disk_faults(spec: dict, setattr_=setattr) -> None:
    """Make the main process's writes of ``spec["target"]`` (part, results, json, txt) fail
    after ``spec["after"]`` of them succeeded: each failing write leaves half its bytes in the
    temporary file, then raises ENOSPC (``how: enospc``: the disk stays full) or SIGKILLs the
    process (``how: sigkill``)."""
    real_parquet, real_text = pd.DataFrame.to_parquet, Path.write_text
    done = [0]

    def maybe_fail(tmp, data: bytes) -> None:
        if _kind(tmp) != spec["target"]:
            return
        done[0] += 1
        if done[0] <= spec["after"]:
            return
        Path(tmp).write_bytes(data[: len(data) // 2])
        if spec["how"] == "sigkill":
            os.kill(os.getpid(), signal.SIGKILL)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp))

    def to_parquet(self, path=None, *args, **kwargs):
        if _kind(path) != spec["target"]:
            return real_parquet(self, path, *args, **kwargs)
        buffer = io.BytesIO()
        real_parquet(self, buffer, *args, **kwargs)
        maybe_fail(path, buffer.getvalue())
        Path(path).write_bytes(buffer.getvalue())

    def write_text(self, data, *args, **kwargs):
        maybe_fail(self, data.encode())
        return real_text(self, data, *args, **kwargs)

    setattr_(pd.DataFrame, "to_parquet", to_parquet)
    setattr_(Path, "write_text", write_text)


def no_plots(monkeypatch=None) -> None:
    import archsim.dse

    stub = types.ModuleType("archsim.dse.plots")
    stub.plot_pareto = stub.plot_breakdowns = lambda *args, **kwargs: []
    if monkeypatch is None:
        sys.modules["archsim.dse.plots"] = archsim.dse.plots = stub
    else:
        monkeypatch.setitem(sys.modules, "archsim.dse.plots", stub)
        monkeypatch.setattr(archsim.dse, "plots", stub, raising=False)


def install() -> None:
    """In an ``archsim sweep`` subprocess, before the CLI runs."""
    import archsim.dse.runner as runner

    spec = json.loads(os.environ.get(FAULTS_ENV, "{}"))
    no_plots()
    if "dir" in spec:
        runner.evaluate_chunk = functools.partial(faulty_chunk, spec)
    if spec.get("disk"):
        disk_faults(spec["disk"])


class Payload:
    """What a malicious part would run if the reader unpickled it: creates a marker file."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


# ----------------------------------------------------------------------------------------------
# helpers


def write_sweep(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "sweep.yaml"  # the same name everywhere: the config column is the file name
    path.write_text(SWEEP.format(hw=TPUV4I, workload=DECODE))
    return path


def sweep_cmd(path: Path, out: Path, *args: str, faults: dict | None = None, wait=True):
    """``archsim sweep`` in a fresh interpreter, with ``faults`` injected."""
    env = dict(os.environ, PYTHONWARNINGS="ignore", **{FAULTS_ENV: json.dumps(faults or {})})
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), str(ROOT), env.get("PYTHONPATH", "")])
    argv = [sys.executable, "-c", "import test_faults; test_faults.install(); from archsim.cli import main; main()",
            "sweep", str(path), "--out", str(out), "--no-progress", *args]
    if not wait:
        return subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)
    return subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def sweep_here(monkeypatch, capsys, path: Path, out: Path, *args: str) -> tuple[int, str]:
    """``archsim sweep`` in this process (faults already monkeypatched): exit code, stderr."""
    from archsim.cli import main

    no_plots(monkeypatch)
    monkeypatch.setattr(sys, "argv", ["archsim", "sweep", str(path), "--out", str(out), "--no-progress",
                                      "--executor", "serial", *args])
    capsys.readouterr()
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = exc.code or 0
    return code, capsys.readouterr().err


def plan_keys(path: Path) -> list[str]:
    from archsim.dse.plan import plan_sweep

    return [p.key for p in plan_sweep([path]).points]


def canonical(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.drop(columns=[c for c in ("traceback",) if c in frame]).sort_values("key").reset_index(drop=True)


def assert_complete(out: Path, reference: pd.DataFrame) -> pd.DataFrame:
    """results.parquet holds the plan's points, each once, all ok, equal bit for bit to the
    uninterrupted serial run; no temporary is left behind."""
    frame = pd.read_parquet(out / "results.parquet")
    assert frame["key"].is_unique
    assert set(frame["key"]) == set(reference["key"])
    assert (frame["status"] == "ok").all(), frame.loc[frame["status"] != "ok", ["key", "status", "reason"]]
    pd.testing.assert_frame_equal(canonical(frame), canonical(reference), check_exact=True)
    assert not leftovers(out)
    return frame


def leftovers(out: Path) -> list[Path]:
    return sorted(p for p in [*out.glob(".tmp-*"), *out.glob("parts/.tmp-*")] if p.name != ".tmp-notes.txt")


def part_files(out: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in out.glob("parts/part-*.parquet")}


def evaluations(state: Path) -> dict[str, list[str]]:
    """key -> the pids that evaluated it."""
    seen: dict[str, list[str]] = {}
    log = state / "evaluated.log"
    for line in (log.read_text().splitlines() if log.is_file() else ()):
        key, pid = line.split()
        seen.setdefault(key, []).append(pid)
    return seen


def alive(pid: int) -> bool:
    """Running (a zombie, or a pid that is gone, is not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def await_victim(state: Path, key: str, proc=None, timeout: float = 60) -> int:
    """The pid of the worker that reached ``key`` in hang mode, once it is waiting there."""
    victim = state / f"victim-{key}"
    deadline = time.time() + timeout
    while not victim.is_file():
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"the sweep ended before reaching the victim point: {proc.communicate()}")
        assert time.time() < deadline, "the victim point was never reached"
        time.sleep(0.05)
    return int(victim.read_text())


@pytest.fixture(scope="module")
def reference_store(tmp_path_factory):
    """The uninterrupted serial run every scenario must reproduce, consolidated."""
    from archsim.dse.plan import plan_sweep
    from archsim.dse.runner import run_points
    from archsim.dse.store import ResultStore

    folder = tmp_path_factory.mktemp("reference")
    path = write_sweep(folder)
    store = ResultStore(folder / "out")
    plan = plan_sweep([path])
    run_points(plan.points, store, "serial", progress=False)
    store.consolidate(objectives=plan.objectives)  # Pareto over the sweep's objectives, as archsim sweep does
    return store


@pytest.fixture(scope="module")
def reference(reference_store) -> pd.DataFrame:
    """The uninterrupted serial run's results table."""
    frame = pd.read_parquet(reference_store.root / "results.parquet")
    assert len(frame) == 12 and (frame["status"] == "ok").all()
    return frame


@pytest.fixture(scope="module")
def reference_rows(reference_store) -> pd.DataFrame:
    """The uninterrupted serial run's raw rows, as its parts hold them (swept values as JSON text)."""
    return reference_store.frame()


@pytest.fixture
def state(tmp_path) -> Path:
    folder = tmp_path / "faults"
    folder.mkdir()
    return folder


# ----------------------------------------------------------------------------------------------
# 1. pool workers die


def test_pool_worker_deaths(tmp_path, state, reference, monkeypatch, capsys):
    """12 points in 4 chunks of 3 on 2 workers. Chunk 0's worker exits (os._exit) before its
    2nd point once; chunk 2's worker is SIGKILLed by the test while it holds its 3rd point; chunk
    1 SIGKILLs its worker every time. Chunks 0 and 2 are retried on fresh processes and finish;
    chunk 1 is given up after two deaths and recorded as error rows; no other chunk is blamed or
    evaluated twice. The re-run (the fault gone) evaluates chunk 1 only and completes."""
    path = write_sweep(tmp_path)
    keys = plan_keys(path)
    chunks = [keys[i:i + 3] for i in range(0, 12, 3)]
    out = tmp_path / "out"
    faults = {"dir": str(state), "kill": [{"key": chunks[0][1], "how": "exit", "times": 1},
                                          {"key": chunks[1][0], "how": "sigkill", "times": 99},
                                          {"key": chunks[2][2], "how": "hang", "times": 1}]}
    proc = sweep_cmd(path, out, "--executor", "pool", "--jobs", "2", "--chunk-size", "3", faults=faults, wait=False)
    try:
        os.kill(await_victim(state, chunks[2][2], proc), signal.SIGKILL)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, err  # the other points ran
    assert "12 evaluated (0 already done)" in err
    seen = evaluations(state)
    again = {chunks[0][0], chunks[2][0], chunks[2][1]}  # evaluated before their worker died
    assert {k for k, pids in seen.items() if len(pids) > 1} == again
    assert all(len(set(seen[k])) == 2 for k in again)  # the retry ran on a fresh process
    assert not set(chunks[1]) & set(seen) and len(list(state.glob(f"killed-{chunks[1][0]}-*"))) == 2

    frame = pd.read_parquet(out / "results.parquet")
    assert frame["key"].is_unique and set(frame["key"]) == set(keys)
    bad = frame[frame["key"].isin(chunks[1])]
    assert (bad["status"] == "error").all(), bad
    assert bad["reason"].str.contains("a worker process died evaluating this point's chunk 2 times").all()
    good = frame[~frame["key"].isin(chunks[1])]
    assert (good["status"] == "ok").all()  # no other chunk was blamed
    # (the error rows lack most columns, so this table's integer columns are floats; the front
    # and the design ids are those of this table, with the lost points' designs unknown)
    columns = [c for c in reference.columns if c not in ("pareto", "design_id", "design")]
    pd.testing.assert_frame_equal(canonical(good[columns]), canonical(reference.loc[reference["key"].isin(good["key"]), columns]),
                                  check_exact=True, check_dtype=False)

    code, err = sweep_here(monkeypatch, capsys, path, out, "--executor", "pool", "--jobs", "2", "--chunk-size", "3")
    assert code == 0, err
    assert "3 evaluated (9 already done)" in err
    assert_complete(out, reference)  # the error rows gave way, and the types are the serial run's


# ----------------------------------------------------------------------------------------------
# 2. Dask workers are killed


@pytest.fixture(scope="module")
def dask_cluster():
    """Two worker processes under nannies, which restart a killed worker; the scheduler runs in
    this process, so a test can set how many worker deaths a task survives."""
    pytest.importorskip("distributed")
    from distributed import LocalCluster

    if str(TESTS) not in sys.path:  # the workers import this module for faulty_chunk
        sys.path.insert(0, str(TESTS))
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                           dashboard_address=None, silence_logs=50)
    try:
        yield cluster
    finally:
        cluster.close()


def test_dask_worker_killed_mid_sweep_is_rescheduled(tmp_path, state, reference, dask_cluster):
    """On a Dask cluster, the test SIGKILLs the worker process that is in the middle of chunk 1
    (after its first point): Dask runs the chunk again on a live worker and the sweep completes
    with every point once."""
    dask_cluster.scheduler.allowed_failures = 3  # Dask's default
    path = write_sweep(tmp_path)
    keys = plan_keys(path)
    chunks = [keys[i:i + 3] for i in range(0, 12, 3)]
    out = tmp_path / "out"
    faults = {"dir": str(state), "kill": [{"key": chunks[1][1], "how": "hang", "times": 1}]}
    proc = sweep_cmd(path, out, "--scheduler", dask_cluster.scheduler_address, "--chunk-size", "3", faults=faults,
                     wait=False)
    try:
        os.kill(await_victim(state, chunks[1][1], proc), signal.SIGKILL)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, err
    assert "12 evaluated (0 already done)" in err
    assert_complete(out, reference)
    seen = evaluations(state)
    assert len(seen[chunks[1][0]]) == 2 and len(set(seen[chunks[1][0]])) == 2  # again, on another worker
    assert len(seen[chunks[1][1]]) == 1


def test_dask_chunk_that_kills_its_workers_becomes_errors_then_rerun_completes(
        tmp_path, state, reference, dask_cluster, monkeypatch, capsys):
    """Chunk 2 SIGKILLs every worker that runs it, until Dask gives up on it (KilledWorker;
    here after the first death): its points become error rows instead of crashing the sweep,
    the others are ok, and the re-run completes them."""
    dask_cluster.scheduler.allowed_failures = 0
    path = write_sweep(tmp_path)
    keys = plan_keys(path)
    chunks = [keys[i:i + 3] for i in range(0, 12, 3)]
    out = tmp_path / "out"
    address = dask_cluster.scheduler_address
    faults = {"dir": str(state), "kill": [{"key": chunks[2][1], "how": "sigkill", "times": 99}]}
    import archsim.dse.runner as runner

    with monkeypatch.context() as patch:  # in this process: nothing here needs a process of its own
        patch.setattr(runner, "evaluate_chunk", functools.partial(faulty_chunk, faults))
        code, err = sweep_here(monkeypatch, capsys, path, out, "--scheduler", address, "--chunk-size", "3")
    assert code == 0, err
    frame = pd.read_parquet(out / "results.parquet")
    assert frame["key"].is_unique and set(frame["key"]) == set(keys)
    bad = frame[frame["key"].isin(chunks[2])]
    assert (bad["status"] == "error").all() and bad["reason"].str.contains("KilledWorker").all(), bad
    # (Dask may also give up on a chunk queued on the dying worker: the re-run does it too)
    assert frame.loc[frame["status"] != "ok", "reason"].str.contains("KilledWorker").all()
    n_bad = int((frame["status"] != "ok").sum())

    dask_cluster.scheduler.allowed_failures = 3
    code, err = sweep_here(monkeypatch, capsys, path, out, "--scheduler", address, "--chunk-size", "3")
    assert code == 0, err
    assert f"{n_bad} evaluated ({12 - n_bad} already done)" in err
    assert_complete(out, reference)


# ----------------------------------------------------------------------------------------------
# 3. a full disk


def test_disk_full_writing_a_part(tmp_path, reference, reference_rows, monkeypatch, capsys):
    """The third part write fails with ENOSPC (after half the file was written) while pool
    workers are busy: exit code 2 at once, with one message saying so and that a re-run
    resumes; the two parts written before are kept whole; no temporary file is left. The
    re-run evaluates the rest and leaves the old parts untouched."""
    path = write_sweep(tmp_path)
    out = tmp_path / "out"
    faults = {"disk": {"target": "part", "after": 2, "how": "enospc"}}
    first = sweep_cmd(path, out, "--executor", "pool", "--jobs", "2", "--chunk-size", "2", faults=faults)
    assert first.returncode == 2, first.stderr
    assert "Traceback" not in first.stderr and "internal error" not in first.stderr
    assert "No space left on device" in first.stderr and "run the sweep again to resume" in first.stderr
    assert first.stderr.count("error:") == 1
    before = part_files(out)
    assert len(before) == 2 and not leftovers(out) and not (out / "results.parquet").exists()
    kept = pd.concat([pd.read_parquet(out / "parts" / name) for name in before])
    assert len(kept) == 4 and (kept["status"] == "ok").all()
    rows = reference_rows  # parts hold raw rows (swept values as JSON text), not the typed table
    rows = rows[rows["key"].isin(kept["key"])]
    # the parts kept hold the columns of their own rows (which chunks finish first varies):
    # the reference's other columns are empty for these points
    others = [c for c in rows.columns if c not in kept.columns]
    assert rows[others].isna().all().all(), others
    pd.testing.assert_frame_equal(canonical(kept), canonical(rows[list(kept.columns)]), check_exact=True)

    code, err = sweep_here(monkeypatch, capsys, path, out, "--executor", "pool", "--jobs", "2", "--chunk-size", "2")
    assert code == 0, err
    assert "8 evaluated (4 already done)" in err
    assert_complete(out, reference)
    assert all(part_files(out)[name] == mtime for name, mtime in before.items())


def test_disk_full_writing_the_table_and_reports(tmp_path, reference, monkeypatch, capsys):
    """The disk is full when the results table is written, then (the next run) sweep.json, then
    summary.txt: each run exits 2 naming the file and saying a re-run finishes the job, leaves
    no partial file and no temporary; the points are evaluated once."""
    path = write_sweep(tmp_path)
    out = tmp_path / "out"
    real_parquet, real_text = pd.DataFrame.to_parquet, Path.write_text
    for target, name in [("results", "results.parquet"), ("json", "sweep.json"), ("txt", "summary.txt")]:
        monkeypatch.setattr(pd.DataFrame, "to_parquet", real_parquet)
        monkeypatch.setattr(Path, "write_text", real_text)
        disk_faults({"target": target, "after": 0, "how": "enospc"}, monkeypatch.setattr)
        code, err = sweep_here(monkeypatch, capsys, path, out)
        assert code == 2, err
        assert f"error: {out / name}: cannot write" in err and "No space left on device" in err, err
        assert "run the sweep again" in err and "Traceback" not in err
        assert not (out / name).exists() and not leftovers(out)
        assert ("12 evaluated (0 already done)" if target == "results" else "0 evaluated (12 already done)") in err
    assert json.loads((out / "sweep.json").read_text())["objectives"] == ["latency", "energy", "area"]
    monkeypatch.setattr(pd.DataFrame, "to_parquet", real_parquet)
    monkeypatch.setattr(Path, "write_text", real_text)
    code, err = sweep_here(monkeypatch, capsys, path, out, "--csv")
    assert code == 0, err
    assert "0 evaluated (12 already done)" in err
    assert_complete(out, reference)
    assert "gpt3-30b-layer-decode" in (out / "summary.txt").read_text() and len(pd.read_csv(out / "results.csv")) == 12


# ----------------------------------------------------------------------------------------------
# 4. SIGKILL of the main process (before any part is written: tests/test_sweep.py)


def test_sigkill_while_writing_a_part(tmp_path, state, reference, monkeypatch, capsys):
    """SIGKILL of the main process halfway through the third part's write, while its pool
    workers are busy: the workers exit too (nothing is left running); the half-written
    temporary is left in parts/ and, like complete Parquet temporaries planted there and beside
    the table with wrong values for every point, is never read as results; the re-run deletes
    them (and no file of another name) and completes."""
    path = write_sweep(tmp_path)
    out = tmp_path / "out"
    faults = {"dir": str(state), "disk": {"target": "part", "after": 2, "how": "sigkill"}}
    first = sweep_cmd(path, out, "--executor", "pool", "--jobs", "2", "--chunk-size", "2", faults=faults)
    assert first.returncode == -signal.SIGKILL
    workers = {int(pid) for pids in evaluations(state).values() for pid in pids}
    assert len(workers) == 2
    deadline = time.time() + 10
    while any(map(alive, workers)) and time.time() < deadline:
        time.sleep(0.1)
    assert not any(map(alive, workers)), "pool workers outlived the killed sweep"
    before = part_files(out)
    assert len(before) == 2 and len(list(out.glob("parts/.tmp-*.parquet"))) == 1
    bogus = reference.assign(latency_s=-1.0)
    bogus.to_parquet(out / "parts" / f".tmp-{uuid.uuid4().hex}.parquet", index=False)
    bogus.to_parquet(out / f".tmp-{uuid.uuid4().hex}.parquet", index=False)
    (out / ".tmp-notes.txt").write_text("not archsim's")

    code, err = sweep_here(monkeypatch, capsys, path, out, "--chunk-size", "2")
    assert code == 0, err
    assert "8 evaluated (4 already done)" in err
    assert_complete(out, reference)
    assert not list(out.glob("parts/.tmp-*")) and (out / ".tmp-notes.txt").is_file()
    assert all(part_files(out)[name] == mtime for name, mtime in before.items())


def test_sigkill_while_writing_the_results_table(tmp_path, reference, monkeypatch, capsys):
    """A run is SIGKILLed while rewriting results.parquet (after it evaluated 6 points whose
    parts were lost): the table of the run before is still whole, byte for byte, the 6 points
    are in parts, the temporary is left; the re-run evaluates nothing and rewrites the table."""
    path = write_sweep(tmp_path)
    out = tmp_path / "out"
    assert sweep_here(monkeypatch, capsys, path, out, "--chunk-size", "3")[0] == 0
    table = (out / "results.parquet").read_bytes()
    for name in sorted(part_files(out))[:2]:
        (out / "parts" / name).unlink()
    faults = {"disk": {"target": "results", "after": 0, "how": "sigkill"}}
    killed = sweep_cmd(path, out, "--executor", "serial", "--chunk-size", "3", faults=faults)
    assert killed.returncode == -signal.SIGKILL
    assert "6 evaluated (6 already done)" in killed.stderr
    assert (out / "results.parquet").read_bytes() == table
    assert len(list(out.glob(".tmp-*.parquet"))) == 1 and len(part_files(out)) == 4

    code, err = sweep_here(monkeypatch, capsys, path, out)
    assert code == 0, err
    assert "0 evaluated (12 already done)" in err
    assert_complete(out, reference)


def test_a_second_sweep_on_the_same_folder_is_refused_while_the_first_runs(tmp_path, state, reference,
                                                                            monkeypatch, capsys):
    """Two runs writing one folder would delete each other's temporaries: the second stops with
    a clear error; the lock dies with the first run's process (SIGKILLed mid-chunk here)."""
    path = write_sweep(tmp_path)
    keys = plan_keys(path)
    out = tmp_path / "out"
    faults = {"dir": str(state), "kill": [{"key": keys[5], "how": "hang", "times": 1}]}
    first = sweep_cmd(path, out, "--executor", "serial", "--chunk-size", "2", faults=faults, wait=False)
    try:
        victim = await_victim(state, keys[5], first)
        code, err = sweep_here(monkeypatch, capsys, path, out)
        assert code == 2 and "another sweep is writing to this results folder" in err, err
        os.kill(victim, signal.SIGKILL)  # serial: the victim is the first run's main process
        first.communicate(timeout=60)
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
    assert first.returncode == -signal.SIGKILL
    code, err = sweep_here(monkeypatch, capsys, path, out, "--chunk-size", "2")
    assert code == 0 and "8 evaluated (4 already done)" in err, err
    assert_complete(out, reference)


# ----------------------------------------------------------------------------------------------
# 5. what a results folder may hold


def test_damaged_and_foreign_files_in_the_results_folder(tmp_path, reference, monkeypatch, capsys):
    """Parts truncated by half and emptied, a Parquet file of another tool, one carrying a
    pickle (the arrow.py_extension_type trick, CVE-2023-47248) that would create a marker file,
    a FIFO and a folder named like parts, a corrupt results table: `archsim pareto` says the
    table is unreadable (exit 2); the re-run warns about each unreadable part, moves it aside,
    evaluates the lost points again, runs nothing from the folder and rewrites the table."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from archsim.cli import main

    path = write_sweep(tmp_path)
    out = tmp_path / "out"
    code, err = sweep_here(monkeypatch, capsys, path, out, "--chunk-size", "3")
    assert code == 0, err
    names = sorted(part_files(out))
    truncated, emptied = out / "parts" / names[0], out / "parts" / names[1]
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 2])
    emptied.write_bytes(b"")
    pd.DataFrame({"x": [1, 2]}).to_parquet(out / "parts" / "part-foreign.parquet")
    marker = tmp_path / "pwned"
    evil = pa.field("x", pa.binary(), metadata={b"ARROW:extension:name": b"arrow.py_extension_type",
                                                b"ARROW:extension:metadata": pickle.dumps(Payload(marker))})
    pq.write_table(pa.table({"x": pa.array([b"1"])}).cast(pa.schema([evil])), out / "parts" / "part-evil.parquet")
    os.mkfifo(out / "parts" / "part-fifo.parquet")
    (out / "parts" / "part-folder.parquet").mkdir()
    (out / "results.parquet").write_bytes(b"PAR1 not really")

    monkeypatch.setattr(sys, "argv", ["archsim", "pareto", str(out)])
    with pytest.raises(SystemExit) as exit_:
        main()
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "results.parquet: not a readable Parquet results file" in err, err
    assert "run the sweep again" in err

    rerun = sweep_cmd(path, out, "--executor", "serial", "--chunk-size", "3")  # a subprocess: a FIFO read would hang
    assert rerun.returncode == 0, rerun.stderr
    assert "6 evaluated (6 already done)" in rerun.stderr
    for name in (names[0], names[1], "part-foreign.parquet", "part-evil.parquet"):
        assert f"{name}: unreadable results part" in rerun.stderr, rerun.stderr
        assert (out / "parts" / (name + ".unreadable")).is_file() and not (out / "parts" / name).exists()
    assert "evaluated again" in rerun.stderr and "Traceback" not in rerun.stderr
    assert not marker.exists()
    assert_complete(out, reference)

    code, err = sweep_here(monkeypatch, capsys, path, out)
    assert code == 0 and "0 evaluated (12 already done)" in err, err
    monkeypatch.setattr(sys, "argv", ["archsim", "pareto", str(out)])
    main()
    assert "TPUv4i" in capsys.readouterr().out
