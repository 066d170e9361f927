"""archsim explore: its spec, the seeded search, resuming from the store, outputs, constraints,
and a space small enough that the search must find the exhaustive front."""

import json
import textwrap

import pandas as pd
import pytest

from archsim.config.explore import ContinuousRange, ExploreSpec, StepRange
from archsim.config.sweep import RangeSpec
from archsim.dse.explore import explore
from archsim.dse.explore_space import plan_space
from archsim.dse.plan import plan_sweep
from archsim.errors import ConfigError
from tests.conftest import HW, WORKLOADS, run_cli

BLOCK = WORKLOADS / "dit_xl_2_block_512.yaml"  # one DiT-XL/2 block, one step: ~20 ms a point
AXES = """
    mxu.cim.grid: [[8, 8], [16, 8], [16, 16]]
    mxu.count: {from: 1, to: 8, step: 1}
    vmem.capacity: [8 MiB, 16 MiB]
"""  # 48 designs


def spec_file(tmp_path, body: str, axes: str = AXES, name: str = "explore.yaml"):
    path = tmp_path / name
    path.write_text(f"extends: {HW / 'cim_tpu.yaml'}\nexplore:\n  axes:" + textwrap.indent(textwrap.dedent(axes), "    ")
                    + textwrap.indent(textwrap.dedent(body), "  "))
    return path


def quiet(*args, **kwargs):
    return explore(*args, executor="serial", echo=lambda line: None, **kwargs)


BASIC = f"""
workloads: [{BLOCK}]
objectives: [latency, energy, area]
budget: {{evaluations: 20}}
population: 6
seed: 3
"""


def test_unknown_key_names_file_and_key(tmp_path):
    path = spec_file(tmp_path, BASIC + "budgett: {evaluations: 5}\n")
    out = run_cli("explore", str(path), "--out", str(tmp_path / "out"))
    assert out.returncode == 2
    assert f"{path}: explore.budgett: unknown key" in out.stderr


@pytest.mark.parametrize("axis, key, words", [
    ("{from: 1, to: 16, step: 4}", "explore.axes.mxu.count.to", "whole number of steps"),
    ("{from: 8, to: 1, step: 1}", "explore.axes.mxu.count.to", "below from"),
    ("{from: 0, to: 16, scale: log}", "explore.axes.mxu.count.from", "positive ends"),
    ("{from: 1 GB/s, to: 2 GHz}", "explore.axes.mxu.count.to", "different units"),
    ("[]", "explore.axes.mxu.count", "at least one value"),
])
def test_bad_ranges_are_errors_naming_the_key(tmp_path, axis, key, words):
    path = spec_file(tmp_path, BASIC, axes=f"\n    mxu.count: {axis}\n")
    with pytest.raises(ConfigError) as err:
        plan_space(path, tmp_path / "out")
    assert f"{path}: {key}:" in str(err.value) and words in str(err.value)


def test_an_axis_value_the_config_refuses_is_an_error_before_any_run(tmp_path):
    path = spec_file(tmp_path, BASIC, axes="\n    mxu.count: [1, 0]\n")
    with pytest.raises(ConfigError, match=r"explore.axes.mxu.count: value 0"):
        plan_space(path, tmp_path / "out")


def test_a_schedule_the_workload_refuses_is_an_error_naming_the_workload_axis(tmp_path):
    path = spec_file(tmp_path, f"""
workload_axes:
  schedule: [none, "icc:period=0"]
workloads: [{{file: {BLOCK}, set: {{steps: 4}}}}]
""", axes="\n    mxu.count: [2, 4]\n")
    with pytest.raises(ConfigError) as err:
        plan_space(path, tmp_path / "out")
    assert str(err.value) == (f"{path}: explore.workload_axes.schedule: value 'icc:period=0': schedule.period: "
                              "Input should be greater than 0 (got 0)")


def test_a_file_without_explore_section(tmp_path):
    out = run_cli("explore", str(HW / "tpuv4i.yaml"), "--out", str(tmp_path / "out"))
    assert out.returncode == 2 and "explore: no explore: section" in out.stderr


def test_range_values_are_a_sweeps_and_continuous_ones_rounded():
    grid = StepRange.model_validate({"from": "300 GB/s", "to": "1.2 TB/s", "step": "100 GB/s"})
    assert [grid.value(i) for i in range(grid.size)] == RangeSpec.model_validate(
        {"from": "300 GB/s", "to": "1.2 TB/s", "steps": 10}).values()
    counts = StepRange.model_validate({"from": 2, "to": 10, "step": 2})
    assert [counts.value(i) for i in range(counts.size)] == [2, 4, 6, 8, 10]
    log = ContinuousRange.model_validate({"from": "300 GB/s", "to": "2 TB/s", "scale": "log"})
    assert log.value(0) == "300000000000.0 B/s" and log.value(log.size - 1) == "2000000000000.0 B/s"
    assert log.value(1) == "300100000000.0 B/s"  # 4 significant digits
    spec = ExploreSpec.model_validate({"axes": {"mxu.count": [1, 2], "hbm.bandwidth": {"from": "1 TB/s", "to": "2 TB/s"}},
                                       "workloads": ["w.yaml"]})
    assert spec.size == 2 * 1001


def test_same_seed_same_designs_and_another_seed_others(tmp_path):
    path = spec_file(tmp_path, BASIC)
    a, b = quiet(path, tmp_path / "a"), quiet(path, tmp_path / "b")
    assert list(a.evaluated) == list(b.evaluated) and len(a.evaluated) == 20
    assert a.keys == b.keys
    c = quiet(path, tmp_path / "c", seed=4)
    assert list(c.evaluated) != list(a.evaluated)


def test_resume_evaluates_nothing_twice_and_a_larger_budget_continues(tmp_path):
    path = spec_file(tmp_path, BASIC)
    first = quiet(path, tmp_path / "out")
    assert first.simulated == 20
    again = quiet(path, tmp_path / "out")
    assert again.simulated == 0 and list(again.evaluated) == list(first.evaluated)
    more = quiet(path, tmp_path / "out", evaluations=30)
    assert more.simulated == 10 and list(more.evaluated)[:20] == list(first.evaluated)
    fresh = quiet(path, tmp_path / "fresh", evaluations=30)  # a resumed search is the uninterrupted one
    assert list(fresh.evaluated) == list(more.evaluated)


def test_constraints_are_respected_and_count_as_evaluations(tmp_path):
    path = spec_file(tmp_path, BASIC + "constraints: [{key: area, max: 320 mm^2}]\n")
    outcome = quiet(path, tmp_path / "out")
    assert len(outcome.evaluated) == 20
    excluded = [d for d in outcome.evaluated if outcome.space.violation(d) > 0]
    assert excluded and all(outcome.evaluated[d] is None for d in excluded)
    assert outcome.simulated == 20 - len(excluded)
    assert all(f[2] <= 320 for f in outcome.evaluated.values() if f is not None)


def test_the_command_writes_a_sweeps_outputs_and_explore_json(tmp_path):
    path = spec_file(tmp_path, BASIC + f"baseline: {HW / 'tpuv4i.yaml'}\n")
    out_dir = tmp_path / "out"
    out = run_cli("explore", str(path), "--out", str(out_dir), "--executor", "serial", "--csv")
    assert out.returncode == 0, out.stderr
    assert "generation 1: " in out.stderr and "hypervolume" in out.stderr
    for name in ("results.parquet", "results.csv", "summary.txt", "report.html", "sweep.json", "explore.json"):
        assert (out_dir / name).is_file(), name
    record = json.loads((out_dir / "explore.json").read_text())
    assert record["evaluations"] == 20 and record["seed"] == 3 and record["space_size"] == 48
    hv = [g["hypervolume"] for g in record["generations"]]
    assert hv == sorted(hv) and hv[-1] > 0  # against the final bounds: never falls
    frame = pd.read_parquet(out_dir / "results.parquet")
    assert len(frame) == 21 and (frame["role"] == "baseline").sum() == 1
    assert frame["pareto"].sum() == len(record["front"])


def test_finds_the_exhaustive_front_of_a_small_space_shared_with_a_sweep(tmp_path):
    path = spec_file(tmp_path, BASIC.replace("evaluations: 20", "evaluations: 100"))
    out_dir = tmp_path / "out"
    outcome = quiet(path, out_dir)
    assert outcome.stopped == "space evaluated whole" and len(outcome.evaluated) == 48
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(f"""extends: {HW / 'cim_tpu.yaml'}
sweep:
  axes:
    mxu.cim.grid: [[8, 8], [16, 8], [16, 16]]
    mxu.count: {{from: 1, to: 8, steps: 8}}
    vmem.capacity: [8 MiB, 16 MiB]
  workloads: [{BLOCK}]
  baseline: null
  objectives: [latency, energy, area]
""")
    plan = plan_sweep([sweep])
    assert {p.key for p in plan.points} == outcome.keys  # the same designs are the same points
    out = run_cli("sweep", str(sweep), "--out", str(out_dir), "--executor", "serial", "--no-progress")
    assert out.returncode == 0 and "0 evaluated (48 already done)" in out.stderr
    frame = pd.read_parquet(out_dir / "results.parquet")
    front = {p.key for d in outcome.front() for p in outcome.space.points(d)}
    assert set(frame.loc[frame["pareto"], "key"]) == front


def test_schedule_axis_is_part_of_the_design(tmp_path):
    path = spec_file(tmp_path, f"""
workload_axes:
  schedule: [none, "icc:period=2", "reuse:period=2"]
workloads: [{{file: {BLOCK}, set: {{steps: 4}}}}]
objectives: [latency, energy]
budget: {{evaluations: 12}}
population: 6
""", axes="\n    mxu.count: [2, 4]\n")
    out_dir = tmp_path / "out"
    out = run_cli("explore", str(path), "--out", str(out_dir), "--executor", "serial")
    assert out.returncode == 0, out.stderr
    frame = pd.read_parquet(out_dir / "results.parquet")
    assert sorted(frame["set.workload.schedule"]) == sorted(["none", "icc:period=2", "reuse:period=2"] * 2)
    assert frame["workload_id"].nunique() == 1 and frame["workload_variant_id"].nunique() == 3
    latency = frame.pivot(index="set.mxu.count", columns="set.workload.schedule", values="latency_s")
    assert (latency["reuse:period=2"] < latency["none"]).all()  # a cached step skips attention and MLP
    assert frame["design_id"].nunique() == 6
