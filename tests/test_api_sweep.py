"""The Python API for the whole design-space job (archsim.api.sweep, pareto, plot_pareto,
plot_breakdowns, report, load_results), the one typed results table it returns and
results.parquet and results.csv hold, the summary printed after a sweep, and
experiments/api_example.py run as a user would."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

from archsim import api
from archsim.errors import ArchsimError
from tests.conftest import HW, ROOT, WORKLOADS, run_cli

DECODE = WORKLOADS / "gpt3_30b_layer_decode.yaml"
SWEEP = f"""extends: {HW / 'cim_tpu.yaml'}
name: small-cim
sweep:
  axes:
    mxu.cim.grid: [[8, 8], [16, 8]]
    mxu.count: [2, 4]
    hbm.bandwidth: {{from: 300 GB/s, to: 600 GB/s, steps: 2}}
  objectives: [latency, energy, area]
"""
BANDWIDTH = "set.hbm.bandwidth [B/s]"


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    """(the sweep file, its results folder, the table api.sweep returned): 8 designs and the
    TPUv4i baseline on one decode layer, in this process."""
    folder = tmp_path_factory.mktemp("api")
    path = folder / "small.yaml"
    path.write_text(SWEEP)
    out = folder / "out"
    table = api.sweep(path, workloads=[DECODE], out=out, executor="serial")
    return path, out, table


def test_sweep_returns_the_typed_table_results_parquet_holds(swept):
    _, out, table = swept
    assert len(table) == 9 and (table["status"] == "ok").all()
    assert table.attrs["objectives"] == ["latency", "energy", "area"]
    on_disk = pd.read_parquet(out / "results.parquet")
    pd.testing.assert_frame_equal(on_disk, table, check_exact=True)
    assert list(table.columns[:12]) == ["key", "design_id", "design", "role", "config", "hardware", "workload",
                                        "workload_file", "workload_id", "status", "reason", "pareto"]
    assert table["pareto"].dtype == bool and table["pareto"].any()
    assert sorted(table["design_id"], key=lambda d: int(d[1:])) == [f"D{i}" for i in range(1, 10)]
    assert table.loc[table["role"] == "baseline", "design_id"].tolist() == ["D1"]  # the baseline first
    for column in ("latency_s", "energy_j", "area_mm2", "speedup_vs_baseline", "energy_vs_baseline",
                   "mxu_energy_reduction", "power_w", "cycles"):
        assert pd.api.types.is_numeric_dtype(table[column]), (column, table[column].dtype)
    base = table[table["role"] == "baseline"].iloc[0]
    assert table["speedup_vs_baseline"].to_numpy() == pytest.approx(base["latency_s"] / table["latency_s"].to_numpy())


def test_swept_values_are_typed_quantities_in_si_units_with_the_unit_in_the_name(swept):
    _, out, table = swept
    for frame in (table, pd.read_parquet(out / "results.parquet")):
        assert "set.hbm.bandwidth" not in frame.columns and frame[BANDWIDTH].dtype == np.float64
        assert sorted(frame[BANDWIDTH].dropna().unique()) == [300e9, 600e9]
        assert pd.api.types.is_integer_dtype(frame["set.mxu.count"])
        assert sorted(frame["set.mxu.count"].dropna().unique()) == [2, 4]
        assert sorted(frame["set.mxu.cim.grid"].dropna().unique()) == ["16x8", "8x8"]  # a list: its items joined
        baseline = frame[frame["role"] == "baseline"].iloc[0]
        assert pd.isna(baseline[BANDWIDTH]) and pd.isna(baseline["set.mxu.count"])
    row = table[(table[BANDWIDTH] == 600e9) & (table["set.mxu.count"] == 4) & (table["set.mxu.cim.grid"] == "16x8")]
    assert row["design"].tolist() == ["small-cim grid=16x8 count=4 bandwidth=600 GB/s"]
    text = [c for c in table.columns if table[c].dtype == object or pd.api.types.is_string_dtype(table[c])]
    assert set(text) <= {"key", "design_id", "design", "role", "config", "hardware", "workload", "workload_file",
                         "workload_id", "status", "reason", "set.mxu.cim.grid", "code", "config_hash"}, text


def test_csv_parquet_and_the_api_have_the_same_columns_in_the_same_order(swept):
    path, out, table = swept
    proc = run_cli("sweep", str(path), "--workload", str(DECODE), "--out", str(out), "--executor", "serial",
                   "--no-progress", "--csv")
    assert proc.returncode == 0, proc.stderr
    assert "(9 already done)" in proc.stderr  # the API's results, resumed by the CLI
    parquet, csv = pd.read_parquet(out / "results.parquet"), pd.read_csv(out / "results.csv")
    assert list(csv.columns) == list(parquet.columns) == list(table.columns)
    assert csv["key"].tolist() == parquet["key"].tolist() == table["key"].tolist()
    np.testing.assert_array_equal(csv[BANDWIDTH], parquet[BANDWIDTH])  # numbers, not JSON text
    assert csv["pareto"].tolist() == parquet["pareto"].tolist()


def test_old_results_without_typed_columns_still_load(swept, tmp_path):
    """A results.parquet written before the typed table (swept values as JSON text, no design,
    pareto or ratio columns) reads as today's table, by the API and the CLI."""
    from archsim.dse.store import ResultStore

    _, out, table = swept
    raw = ResultStore(out, create=False).frame()  # the rows as the parts hold them
    assert set(raw["set.mxu.count"].dropna()) == {"2", "4"} and "design" not in raw  # JSON text, no derived columns
    old = tmp_path / "old"
    old.mkdir()
    raw.to_parquet(old / "results.parquet", index=False)
    (old / "sweep.json").write_text('{"objectives": ["latency", "energy", "area"]}')
    loaded = api.load_results(old)
    pd.testing.assert_frame_equal(loaded, table, check_exact=True)
    assert run_cli("pareto", str(old), "--x", "latency", "--y", "area").returncode == 0
    plotted = run_cli("plot", str(old), "--color", "set.hbm.bandwidth")  # the swept key, without its unit
    assert plotted.returncode == 0, plotted.stderr
    assert (old / "pareto_latency_energy.png").is_file() and (old / "summary.txt").is_file()
    parts_only = tmp_path / "parts-only"
    parts_only.mkdir()
    shutil.copytree(out / "parts", parts_only / "parts")
    pd.testing.assert_frame_equal(api.load_results(parts_only, ["latency", "energy", "area"]), table, check_exact=True)


def test_pareto_is_each_workloads_non_dominated_rows(swept):
    _, _, table = swept
    front = api.pareto(table, ["latency", "area"])
    ok = table[table["status"] == "ok"]
    values = ok[["latency_s", "area_mm2"]].to_numpy()

    def dominated(v):
        return bool(((values <= v).all(axis=1) & (values < v).any(axis=1)).any())

    expected = {k for k, v in zip(ok["key"], values) if not dominated(v)}
    assert set(front["key"]) == expected and front["pareto"].all()
    assert front["latency_s"].is_monotonic_increasing  # by the first objective
    assert set(api.pareto(table)["key"]) == set(table.loc[table["pareto"], "key"])  # the sweep's objectives
    with pytest.raises(ArchsimError, match="unknown objective 'speed'"):
        api.pareto(table, ["speed", "area"])


def test_plots_return_the_files_they_write(swept, tmp_path):
    _, _, table = swept
    paths = api.plot_pareto(table, "latency", "area", tmp_path / "figs" / "front.png", color="set.hbm.bandwidth")
    assert {"front.png", "front.svg"} <= {p.name for p in paths} and all(p.stat().st_size for p in paths)
    paths = api.plot_breakdowns(table, tmp_path / "figs" / "breakdown")
    assert {p.name for p in paths} >= {"breakdown.png", "breakdown.svg"} and all(p.is_file() for p in paths)
    with pytest.raises(ArchsimError, match="'set.nope' is not a column"):
        api.plot_pareto(table, "latency", "area", tmp_path / "x", color="set.nope")


def test_report_writes_the_html_report_or_says_why_not(swept, tmp_path, monkeypatch):
    import importlib.util

    _, out, table = swept
    page = api.report(out, tmp_path / "report.html", title="small CIM sweep")
    assert page == tmp_path / "report.html" and "small CIM sweep" in page.read_text()
    assert api.report(table, tmp_path / "again.html").is_file()
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "archsim.dse.html_report" else real(name, *a))
    with pytest.raises(ArchsimError, match="needs archsim.dse.html_report"):
        api.report(table, tmp_path / "none.html")


def test_sweep_sets_apply_to_every_design_and_a_temporary_folder_by_default(swept):
    path, _, table = swept
    loud = api.sweep([path], workloads=[DECODE], sets=["leakage.always_on=1000 W"])
    assert len(loud) == 9 and not set(loud["key"]) & set(table["key"])  # other hardware, other points
    both = table.merge(loud, on="design_id", suffixes=("", "_loud"))
    assert (both["energy_static_j_loud"] > both["energy_static_j"]).all()
    with pytest.raises(ArchsimError, match="unknown executor 'threads'"):
        api.sweep(path, executor="threads")


def test_the_summary_fits_120_columns_front_first_at_most_limit_rows(swept):
    from archsim.dse.summary import summary_table

    _, _, table = swept
    text = summary_table(table, ["latency", "energy", "area"])
    assert max(map(len, text.splitlines())) <= 120, text
    assert "speedup" in text and "bandwidth" in text and "300 GB/s" in text
    short = summary_table(table, ["latency", "area"], limit=3).splitlines()
    assert short[0] == "gpt3-30b-layer-decode: 9 designs, 2 on the Pareto front over latency, area (*)"
    front = api.pareto(table, ["latency", "area"])["design_id"].tolist()
    assert [r.split()[0] for r in short[2:4]] == front == ["D1", "D3"]  # the front first, by latency
    assert short[4].split()[0] not in front and short[5] == "6 more designs: see results.parquet"
    short = summary_table(table, ["energy", "area"], limit=2).splitlines()
    assert [r.split()[0] for r in short[2:5]] == ["D3", "D5", "D1"]  # and the baseline, beyond the limit
    assert short[5] == "6 more designs: see results.parquet"
    narrow = summary_table(table, ["latency", "energy", "area"], width=60).splitlines()
    assert "designs:" in narrow and any(line.strip().startswith("D2  small-cim grid=8x8") for line in narrow)
    assert "hardware" not in narrow[1]  # the swept values went to the key below


def test_the_api_module_imports_no_pandas():
    code = "import sys, archsim.api; print(sorted(m for m in ('pandas', 'matplotlib', 'archsim.dse.runner') if m in sys.modules))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "[]", proc.stdout + proc.stderr


def test_the_api_example_runs_end_to_end(tmp_path):
    """experiments/api_example.py: a sweep, its front, a plot, a table; in well under 30 s;
    again, the same output without evaluating anything twice."""
    script = ROOT / "experiments" / "api_example.py"
    start = time.perf_counter()
    first = subprocess.run([sys.executable, str(script), "--out", str(tmp_path)], capture_output=True, text=True,
                           cwd=ROOT, timeout=120)
    assert first.returncode == 0, first.stderr
    assert time.perf_counter() - start < 30
    lines = first.stdout.splitlines()
    assert lines[0].startswith("10 designs on gpt3-30b-layer-prefill; ") and "on the latency-area front:" in lines[0]
    assert lines[1].split() == ["id", "design", "latency", "[ms]", "energy", "[mJ]", "area", "[mm^2]", "speedup"]
    n = int(lines[0].split("; ")[1].split()[0])
    assert n >= 2 and len(lines) == n + 3 and all(line.strip().endswith("x") for line in lines[2:2 + n])
    assert lines[-1] == f"plot: {tmp_path / 'pareto_latency_area.png'}"
    assert (tmp_path / "pareto_latency_area.png").stat().st_size and (tmp_path / "pareto_latency_area.svg").is_file()
    parts = sorted(p.name for p in (tmp_path / "results" / "parts").glob("part-*.parquet"))
    again = subprocess.run([sys.executable, str(script), "--out", str(tmp_path)], capture_output=True, text=True,
                           cwd=ROOT, timeout=120)
    assert again.returncode == 0 and again.stdout == first.stdout, again.stderr
    assert sorted(p.name for p in (tmp_path / "results" / "parts").glob("part-*.parquet")) == parts
