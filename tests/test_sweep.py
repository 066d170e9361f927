"""Design-space sweeps: specs, execution, the resumable store, Pareto fronts, plots."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from archsim.dse.pareto import pareto_mask
from archsim.dse.plan import plan_sweep
from archsim.dse.runner import run_points
from archsim.dse.store import ResultStore
from tests.conftest import HW, ROOT, TPUV4I, WORKLOADS, run_cli


def brute_force_front(v, senses):
    v = v * np.where(np.array(senses) == "max", -1.0, 1.0)
    keep = []
    for i in range(len(v)):
        dominated = any((v[j] <= v[i]).all() and (v[j] < v[i]).any() for j in range(len(v)) if j != i)
        keep.append(not dominated)
    return np.array(keep, dtype=bool)


@settings(max_examples=200, deadline=None)
@given(st.integers(2, 3).flatmap(lambda k: st.tuples(
    arrays(np.float64, st.tuples(st.integers(0, 40), st.just(k)), elements=st.sampled_from([0.0, 1.0, 2.0, 2.5, 3.0, 7.0])),
    st.lists(st.sampled_from(["min", "max"]), min_size=k, max_size=k))))
def test_pareto_matches_brute_force(case):
    values, senses = case
    assert (pareto_mask(values, senses) == brute_force_front(values, senses)).all()


@settings(max_examples=150, deadline=None)
@given(st.integers(3, 4).flatmap(lambda k: arrays(np.float64, st.tuples(st.integers(0, 60), st.just(k)),
                                                  elements=st.sampled_from([0.0, 1.0, 2.0, 2.5, 3.0, 7.0]))),
       st.sampled_from([1, 2, 5, 16]), st.sampled_from([1, 7, 2**22]))
def test_pareto_in_blocks_and_chunks_matches_brute_force(values, block, cells):
    # the sorted front in blocks of a few rows, its comparisons in chunks of a few cells: the
    # same front as every pair compared
    from archsim.dse import pareto

    old = pareto._BLOCK, pareto._CELLS
    pareto._BLOCK, pareto._CELLS = block, cells
    try:
        got = pareto_mask(values, ["min"] * values.shape[1])
    finally:
        pareto._BLOCK, pareto._CELLS = old
    assert (got == brute_force_front(values, ["min"] * values.shape[1])).all()



def test_pareto_of_many_equal_rows_is_their_distinct_rows_front():
    # a sweep whose rows repeat a few figures (here 300,000 rows, 6 distinct over 3 objectives):
    # equal rows share their fate, so the front costs the distinct rows only (before, every copy
    # of a front row joined the front and each block was compared with them all: minutes)
    import time

    distinct = np.array([[1.0, 5.0, 2.0], [2.0, 4.0, 2.0], [2.0, 4.0, 3.0], [3.0, 3.0, 1.0],
                         [1.0, 5.0, 2.5], [0.5, 9.0, 9.0]])
    expected = np.array([True, True, False, True, False, True])  # by hand: [2,4,2] beats [2,4,3]; [1,5,2] beats [1,5,2.5]
    assert (brute_force_front(distinct, ["min"] * 3) == expected).all()
    rows = np.random.default_rng(0).integers(0, len(distinct), 300_000)
    start = time.perf_counter()
    got = pareto_mask(distinct[rows], ["min"] * 3)
    assert time.perf_counter() - start < 5
    assert (got == expected[rows]).all()

def sweep_file(tmp_path, body: str, name="sweep.yaml"):
    path = tmp_path / name
    path.write_text(f"extends: {TPUV4I}\n" + textwrap.dedent(body))
    return path


SMALL = f"""
sweep:
  axes:
    hbm.bandwidth: {{from: 300 GB/s, to: 1.2 TB/s, steps: 5}}
    mxu.count: [2, 4]
  workloads:
    - {WORKLOADS / 'llama2_7b_layer_decode.yaml'}
    - {{file: {WORKLOADS / 'gpt3_30b_layer_decode.yaml'}, set: {{batch: 4, precision: {{weights: int8, activations: bf16}}}}}}
  objectives: [latency, energy, area]
"""


def test_plan_expands_ranges_zips_and_workloads(tmp_path):
    plan = plan_sweep([sweep_file(tmp_path, SMALL)])
    assert len(plan.points) == 5 * 2 * 2 and plan.fields == ("hbm.bandwidth", "mxu.count")
    bandwidths = sorted({dict(p.overrides)["hbm.bandwidth"] for p in plan.points})
    assert "300000000000.0 B/s" in bandwidths and "1200000000000.0 B/s" in bandwidths
    log = sweep_file(tmp_path, SMALL.replace("steps: 5}", "steps: 3, scale: log}"), "log.yaml")
    assert "600000000000.0 B/s" in {dict(p.overrides)["hbm.bandwidth"] for p in plan_sweep([log]).points}
    zipped = sweep_file(tmp_path, SMALL + "  zip:\n    - {vmem.capacity: [8 MiB, 16 MiB], cmem.capacity: [64 MiB, 128 MiB]}\n", "zip.yaml")
    assert len(plan_sweep([zipped]).points) == 5 * 2 * 2 * 2


def test_constraints_exclude_points_before_work(tmp_path):
    body = SMALL.replace("mxu.count: [2, 4]", "mxu.count: [2, 4, 64]") + "  constraints:\n    - {key: area, max: 400 mm^2}\n    - {key: mxu.count, min: 3}\n"
    plan = plan_sweep([sweep_file(tmp_path, body)])
    counts = {dict(p.overrides)["mxu.count"] for p in plan.points}
    assert counts == {4} and plan.excluded == 10  # 2 is below the minimum; 64 MXUs exceed 400 mm^2


@pytest.mark.parametrize("body, message", [
    ("sweep:\n  axes:\n    mxu.cuont: [1, 2]\n  workloads: [" + str(WORKLOADS / "llama2_7b_layer_decode.yaml") + "]\n", "mxu.cuont: unknown key"),
    ("sweep:\n  axes:\n    mxu.count: []\n", "sweep.axes.mxu.count: a sweep axis needs at least one value"),
    ("sweep:\n  axes:\n    hbm.bandwidth: [1 GHz]\n  workloads: [" + str(WORKLOADS / "llama2_7b_layer_decode.yaml") + "]\n", "'1 GHz' is a frequency"),
    ("sweep:\n  axes:\n    mxu.count: [2]\n  workloads: [nope.yaml]\n", "workload nope.yaml not found"),
])
def test_bad_specs_fail_before_any_work(tmp_path, body, message):
    path = sweep_file(tmp_path, body)
    out = tmp_path / "out"
    proc = run_cli("sweep", str(path), "--out", str(out), "--executor", "serial", "--no-progress")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert message in proc.stderr, proc.stderr
    assert not list(out.glob("parts/*.parquet"))


def _sorted(frame):
    """Rows by key, columns by name: a raw frame's columns come in the order its parts were
    written (which chunk finishes first varies; the typed results table orders them itself)."""
    columns = sorted(c for c in frame.columns if c not in ("traceback",))
    return frame[columns].sort_values("key").reset_index(drop=True)


def test_pool_and_dask_equal_serial(tmp_path):
    plan = plan_sweep([sweep_file(tmp_path, SMALL)])
    frames = {}
    for executor in ("serial", "pool", "dask"):
        store = ResultStore(tmp_path / executor)
        stats = run_points(plan.points, store, executor, workers=2, chunk_size=3, progress=False)
        assert stats.evaluated == len(plan.points)
        frames[executor] = _sorted(store.frame())
    assert (frames["serial"]["status"] == "ok").all()
    pd.testing.assert_frame_equal(frames["serial"], frames["pool"])
    pd.testing.assert_frame_equal(frames["serial"], frames["dask"])


def test_resume_skips_finished_points(tmp_path):
    plan = plan_sweep([sweep_file(tmp_path, SMALL)])
    store = ResultStore(tmp_path / "out")
    first = run_points(plan.points[:7], store, "serial", progress=False)
    second = run_points(plan.points, store, "serial", progress=False)
    assert (first.evaluated, second.skipped, second.evaluated) == (7, 7, len(plan.points) - 7)
    assert store.frame()["key"].is_unique and len(store.frame()) == len(plan.points)


def test_sigkill_loses_nothing_and_duplicates_nothing(tmp_path):
    """Killed mid-sweep (its parts being compacted as they accumulate: 160 one-point parts), the
    re-run evaluates only the rest; the rows saved before are kept as they were."""
    body = SMALL.replace("steps: 5}", "steps: 40}")  # 160 points
    path = sweep_file(tmp_path, body)
    out = tmp_path / "out"
    args = [sys.executable, "-c", "from archsim.cli import main; main()", "sweep", str(path), "--out", str(out),
            "--executor", "serial", "--chunk-size", "1", "--no-progress"]
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    saved = lambda: ResultStore(out, create=False).frame() if (out / "parts").is_dir() else pd.DataFrame()  # noqa: E731
    deadline = time.time() + 60
    while time.time() < deadline and len(saved()) < 20:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    before = saved()
    assert 20 <= len(before) < 160 and before["key"].is_unique
    rerun = run_cli("sweep", str(path), "--out", str(out), "--executor", "serial", "--no-progress")
    assert rerun.returncode == 0, rerun.stderr
    assert f"({len(before)} already done)" in rerun.stderr
    frame = pd.read_parquet(out / "results.parquet")
    assert len(frame) == 160 and frame["key"].is_unique
    after = _sorted(ResultStore(out, create=False).frame())
    kept = after[after["key"].isin(before["key"])].reset_index(drop=True)
    pd.testing.assert_frame_equal(kept[before.columns], _sorted(before)[before.columns])  # saved rows kept as they were


def test_a_crashing_point_is_recorded_and_the_sweep_goes_on(tmp_path, monkeypatch):
    from archsim.sim.engine import Simulator

    plan = plan_sweep([sweep_file(tmp_path, SMALL)])
    real = Simulator.run
    def flaky(self, workload):
        if self.hw.mxu.count == 2 and self.hw.hbm.bandwidth == 300e9:
            raise RuntimeError("boom")
        return real(self, workload)
    monkeypatch.setattr(Simulator, "run", flaky)
    store = ResultStore(tmp_path / "out")
    run_points(plan.points, store, "serial", progress=False)
    frame = store.frame()
    assert (frame["status"] == "error").sum() == 2 and (frame["status"] == "ok").sum() == len(plan.points) - 2
    assert frame.loc[frame["status"] == "error", "reason"].str.contains("boom").all()


def test_infeasible_points_are_kept_with_their_reason(tmp_path):
    body = SMALL.replace("mxu.count: [2, 4]", "hbm.capacity: [64 MiB, 8 GiB]")
    plan = plan_sweep([sweep_file(tmp_path, body)])
    store = ResultStore(tmp_path / "out")
    run_points(plan.points, store, "serial", progress=False)
    frame = store.frame()
    bad = frame[frame["status"] == "infeasible"]
    assert len(bad) == len(plan.points) // 2 and bad["reason"].str.contains("missing").all()


def test_bundled_sweep_is_the_readme_main_job(tmp_path):
    """`archsim sweep hw_configs/cim_*.yaml`: the Table IV space and designs A/B against TPUv4i."""
    files = sorted(str(p) for p in HW.glob("cim_*.yaml"))
    out = tmp_path / "out"
    proc = run_cli("sweep", *files, "--out", str(out), "--jobs", "2", "--no-progress", "--csv")
    assert proc.returncode == 0, proc.stderr
    frame = pd.read_parquet(out / "results.parquet")
    assert len(frame) == (9 + 2 + 1) * 3 and (frame["status"] == "ok").all()
    assert {"gpt3-30b-layer-prefill", "gpt3-30b-layer-decode", "dit-xl-2-block-512"} == set(frame["workload"])
    for name in ("pareto_latency_energy.png", "pareto_latency_energy.svg", "breakdown.png", "summary.txt", "results.csv"):
        assert (out / name).is_file(), name
    assert "CIM-Design-B" in proc.stdout and "speedup" in proc.stdout
    pareto = run_cli("pareto", str(out), "--x", "latency", "--y", "energy", "--json")
    assert pareto.returncode == 0, pareto.stderr
    front = json.loads(pareto.stdout)
    assert front and all({"workload", "design", "latency_s", "energy_j"} <= set(r) for r in front)
    assert run_cli("plot", str(out), "--x", "latency", "--y", "area", "--color", "set.mxu.count").returncode == 0
    assert (out / "pareto_latency_area.png").is_file()


def test_roofline_plot(tmp_path):
    proc = run_cli("roofline", str(TPUV4I), str(WORKLOADS / "llada_8b_fast_dllm.yaml"), "--set", "hbm.capacity=32 GiB",
                   "--out", str(tmp_path / "roof"))
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "roof.png").is_file() and (tmp_path / "roof.svg").is_file()


def test_set_applies_to_every_point_and_keys(tmp_path):
    path = sweep_file(tmp_path, SMALL)
    plain, loud = tmp_path / "plain", tmp_path / "loud"
    assert run_cli("sweep", str(path), "--out", str(plain), "--executor", "serial", "--no-progress").returncode == 0
    proc = run_cli("sweep", str(path), "--out", str(loud), "--executor", "serial", "--no-progress",
                   "--set", "leakage.always_on=1000 W")
    assert proc.returncode == 0, proc.stderr
    a, b = pd.read_parquet(plain / "results.parquet"), pd.read_parquet(loud / "results.parquet")
    assert not set(a["key"]) & set(b["key"])  # other hardware, other points
    on = ["set.hbm.bandwidth [B/s]", "set.mxu.count", "workload_id"]  # typed: SI floats, the unit in the name
    both = a.merge(b, on=on, suffixes=("_plain", "_loud"))
    assert len(both) == len(a) == 20
    assert (both["energy_static_j_loud"] > 30 * both["energy_static_j_plain"]).all()  # 1025 W vs 30 W


def test_editing_the_sweep_keeps_finished_points_and_reports_only_the_plan(tmp_path):
    path = sweep_file(tmp_path, SMALL)
    out = tmp_path / "out"
    assert run_cli("sweep", str(path), "--out", str(out), "--executor", "serial", "--no-progress").returncode == 0
    path.write_text(path.read_text().replace("mxu.count: [2, 4]", "mxu.count: [4, 8]"))
    proc = run_cli("sweep", str(path), "--out", str(out), "--executor", "serial", "--no-progress")
    assert proc.returncode == 0 and "(10 already done)" in proc.stderr, proc.stderr
    frame = pd.read_parquet(out / "results.parquet")
    assert set(frame["set.mxu.count"]) == {4, 8} and len(frame) == 20


def test_baseline_ratios_are_per_workload_and_exact(tmp_path):
    from archsim.dse.report import enrich

    body = SMALL + "  baseline: " + str(TPUV4I) + "\n"
    plan = plan_sweep([sweep_file(tmp_path, body)])
    store = ResultStore(tmp_path / "out")
    run_points(plan.points, store, "serial", progress=False)
    frame = enrich(store.frame(), ["latency", "energy"])
    for _, group in frame.groupby("workload_id"):
        base = group[group["role"] == "baseline"]
        assert len(base) == 1
        b = base.iloc[0]
        for _, row in group.iterrows():
            assert row["speedup_vs_baseline"] == pytest.approx(b["latency_s"] / row["latency_s"])
            assert row["mxu_energy_reduction"] == pytest.approx(b["energy_mxu_j"] / row["energy_mxu_j"])
        assert group.loc[base.index, "speedup_vs_baseline"].iloc[0] == pytest.approx(1.0)


def test_pareto_ignores_unknown_values():
    v = np.array([[1, 5], [np.nan, 1], [2, 2], [3, np.inf]])
    assert pareto_mask(v, ["min", "min"]).tolist() == [True, False, True, False]
    v3 = np.array([[1, 5, 1], [np.nan, 1, 1], [2, 2, 2]])
    assert pareto_mask(v3, ["min", "min", "min"]).tolist() == [True, False, True]


def test_failed_points_are_retried(tmp_path, monkeypatch):
    from archsim.sim.engine import Simulator

    plan = plan_sweep([sweep_file(tmp_path, SMALL)])
    store = ResultStore(tmp_path / "out")
    real = Simulator.run
    monkeypatch.setattr(Simulator, "run", lambda self, w: (_ for _ in ()).throw(MemoryError("transient")))
    run_points(plan.points[:3], store, "serial", progress=False)
    monkeypatch.setattr(Simulator, "run", real)
    stats = run_points(plan.points[:3], store, "serial", progress=False)
    assert stats.evaluated == 3 and (store.frame()["status"] == "ok").all()


def test_more_cim_units_never_slower():
    from archsim.api import gemm_workload, load_hardware, simulate

    for m, k, n in [(64, 64, 4096), (28672, 1024, 7168), (8, 7168, 7168), (8, 2048, 256)]:
        latencies = [simulate(load_hardware(HW / "cim_tpu.yaml", [f"mxu.count={c}", "mxu.cim.grid=[16, 16]"]),
                              gemm_workload(m, k, n)).latency_s for c in (1, 2, 4, 8, 16)]
        assert all(b <= a * (1 + 1e-9) for a, b in zip(latencies, latencies[1:])), (m, k, n, latencies)


def test_feasible_points_make_no_reference_cycles():
    # a pool worker runs its chunks with the cyclic collector off and collects only after a
    # chunk with a failed point (or every COLLECT_EVERY chunks): feasible points must leave no
    # cyclic garbage, on TPU and CIM chips, overlapped or not, LLM layers and a DiT block. In a
    # process of its own: another test's threads (a Dask cluster's) make garbage meanwhile
    script = textwrap.dedent(f"""
        import gc, glob
        from archsim.dse.evaluate import evaluate_chunk
        from archsim.dse.plan import plan_sweep
        from archsim.sim.engine import clear_caches
        points = list(plan_sweep(sorted(glob.glob({str(HW / "cim_*.yaml")!r}))).points)
        evaluate_chunk(points[:3])  # what the first evaluation imports
        clear_caches()
        gc.collect()
        gc.disable()
        rows = evaluate_chunk(points)
        print(len(rows), sum(r["status"] == "ok" for r in rows), gc.collect())
        """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["36", "36", "0"]  # every point evaluated and ok, no cycle left


def test_a_pool_worker_collects_after_a_failed_point_or_every_few_chunks(tmp_path, monkeypatch):
    import archsim.dse.runner as runner

    passes = []
    monkeypatch.setattr(runner.gc, "collect", lambda *a: passes.append(1) or 0)
    monkeypatch.setattr(runner.gc, "freeze", lambda: None)
    monkeypatch.setattr(runner.gc, "unfreeze", lambda: passes.append("all"))
    monkeypatch.setattr(runner, "COLLECT_EVERY", 3)
    monkeypatch.setattr(runner, "_chunks_since_collect", 0)
    body = SMALL.replace("mxu.count: [2, 4]", "hbm.capacity: [64 MiB, 8 GiB]")  # 64 MiB holds no plan
    points = list(plan_sweep([sweep_file(tmp_path, body)]).points)
    good = [p for p in points if "8 GiB" in str(p.overrides)][:2]
    bad = [p for p in points if "64 MiB" in str(p.overrides)][:1]
    assert runner._run_chunk(good)[0]["status"] == "ok" and passes == []
    assert runner._run_chunk(bad)[0]["status"] == "infeasible" and passes == [1]  # this chunk's objects
    runner._run_chunk(good)  # the third chunk since the last pass over everything: unfrozen, collected
    assert passes == [1, "all", 1]
    runner._run_chunk(good), runner._run_chunk(good)
    assert passes == [1, "all", 1]
    runner._run_chunk(good)
    assert passes == [1, "all", 1, "all", 1]
    assert runner.gc.isenabled()


def test_chunks_running_at_once_share_the_collector(monkeypatch):
    # threads of one process (a Dask worker with several) each run a chunk: the collector is off
    # while either runs, the last to finish collects (a failed point's cycles) and freezes, and
    # the collector comes back only as it was before the first began
    import archsim.dse.runner as runner

    events = []
    monkeypatch.setattr(runner.gc, "collect", lambda *a: events.append("collect") or 0)
    monkeypatch.setattr(runner.gc, "freeze", lambda: events.append("freeze"))
    monkeypatch.setattr(runner, "_chunks_since_collect", 0)
    started, release = threading.Event(), threading.Event()

    def slow(points):
        started.set()
        release.wait(10)
        return [{"status": "ok"}]

    def failing(points):
        assert not runner.gc.isenabled()
        return [{"status": "invalid"}]

    first = threading.Thread(target=runner._run_chunk, args=([], slow))
    first.start()
    assert started.wait(10) and not runner.gc.isenabled()
    assert runner._run_chunk([], failing) == [{"status": "invalid"}]
    assert events == [] and not runner.gc.isenabled()  # the first still runs
    release.set()
    first.join(10)
    assert events == ["collect", "freeze"] and runner.gc.isenabled()
    runner.gc.disable()
    try:
        runner._run_chunk([], lambda points: [{"status": "ok"}])
        assert not runner.gc.isenabled()  # it was off: it stays off
    finally:
        runner.gc.enable()
    assert events == ["collect", "freeze", "freeze"]


@given(st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=4),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
                    max_leaves=6))
@settings(max_examples=300, deadline=None)
def test_a_rows_axis_values_are_their_json_whatever_came_before(value):
    # a row's set.* columns are the axis values' JSON, kept by type and repr (evaluate._json_text):
    # 1, 1.0 and True, 0.0 and -0.0, [1] and [1.0] each keep their own text
    from archsim.dse.evaluate import _json_text

    for seen in (1, 1.0, True, 0.0, -0.0, [1], [1.0], [True], "1", None):
        _json_text(seen)
    assert _json_text(value) == json.dumps(value)
    assert [_json_text(v) for v in (1, 1.0, True, 0.0, -0.0, [1], [1.0])] == \
        ["1", "1.0", "true", "0.0", "-0.0", "[1]", "[1.0]"]
