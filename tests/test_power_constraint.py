"""Power as a sweep constraint (issue 19): ``{key: power, max: ...}`` checked after each run; a
point over it is reported infeasible with its power, the sweep goes on."""

from __future__ import annotations

import pandas as pd
from conftest import ROOT, run_cli

from archsim.api import load_hardware, load_workload, simulate
from archsim.dse.plan import plan_sweep

TPUV4I = ROOT / "hw_configs" / "tpuv4i.yaml"
LAYER = ROOT / "workloads" / "llama2_7b_layer_decode.yaml"


def sweep_file(tmp_path, bound: str):
    path = tmp_path / "power.yaml"
    path.write_text(f"extends: {TPUV4I}\nname: p\nsweep:\n  axes:\n    leakage.always_on: [10 W, 200 W]\n"
                    f"  constraints:\n    - {{key: power, max: {bound}}}\n  workloads:\n    - {LAYER}\n")
    return path


def test_points_over_the_power_bound_are_infeasible_with_their_power(tmp_path):
    # the two points' average power, computed here: the 200 W point is over a bound between them
    powers = {}
    for watts in (10, 200):
        hw = load_hardware(TPUV4I, [f"leakage.always_on={watts} W"])
        powers[watts] = simulate(hw, load_workload(LAYER, hw=hw)).power_w
    bound = (powers[10] + powers[200]) / 2
    out = tmp_path / "out"
    r = run_cli("sweep", str(sweep_file(tmp_path, f"{bound:.6g} W")), "--out", str(out), "--executor", "serial",
                "--no-progress")
    assert r.returncode == 0, r.stderr
    rows = pd.read_parquet(out / "results.parquet").sort_values("power_w")
    assert list(rows.status) == ["ok", "infeasible"]
    assert rows.power_w.tolist() == [powers[10], powers[200]]
    assert f"average power {powers[200]:.4g} W is outside sweep.constraints.0 (power max {bound:.6g} W)" \
        == rows.reason.iloc[1]


def test_the_bound_is_part_of_the_points_key(tmp_path):
    a = plan_sweep([sweep_file(tmp_path, "100 W")]).points
    b = plan_sweep([sweep_file(tmp_path, "120 W")]).points
    assert {p.key for p in a}.isdisjoint({p.key for p in b})
    assert a[0].power_limits == ((0, None, 100.0),)


def test_a_power_bound_in_another_unit_is_a_usage_error(tmp_path):
    r = run_cli("sweep", str(sweep_file(tmp_path, "100 mm^2")), "--out", str(tmp_path / "o"))
    assert r.returncode == 2 and "power" in r.stderr and "Traceback" not in r.stderr, r.stderr
