"""An infeasible run says what would make it fit (archsim.system.fit), checked by a run."""

from __future__ import annotations

import json

from archsim.api import load_hardware, load_workload, simulate
from archsim.config.loader import parse_overrides
from archsim.system.fit import MAX_FACTOR, find_fit
from tests.conftest import HW, WORKLOADS, run_cli

TPUV4I = HW / "tpuv4i.yaml"
LLAMA = WORKLOADS / "llama2_7b.yaml"


def test_llama2_7b_on_one_tpuv4i_fits_on_two_in_tensor_parallel():
    # bf16 weights alone are 6.74e9 parameters x 2 B = 12.6 GiB > 8 GiB; split over two chips,
    # 6.3 GiB each, with the 1280-token KV cache (2 x 32 layers x 4096 x 1280 x 2 B = 0.625 GiB,
    # halved) under 8 GiB
    hw = load_hardware(TPUV4I)
    assert not simulate(hw, load_workload(LLAMA, [], hw)).feasible
    fit = find_fit(TPUV4I, [], LLAMA, [])
    assert fit.sets == ("system.chips=2", "system.parallelism.tensor=2")
    two = load_hardware(TPUV4I, parse_overrides(list(fit.sets)))
    result = simulate(two, load_workload(LLAMA, [], two))
    assert result.feasible and result.latency_s == fit.latency_s


def test_nothing_fits_a_chip_with_almost_no_memory():
    assert find_fit(TPUV4I, parse_overrides(["hbm.capacity=1 MiB"]), LLAMA, []) is None


def test_the_cli_prints_the_flags_and_json_carries_them():
    text = run_cli("run", str(TPUV4I), str(LLAMA))
    assert text.returncode == 1  # infeasible
    assert "fits      with --set system.chips=2 --set system.parallelism.tensor=2 (checked: latency" in text.stdout
    data = json.loads(run_cli("run", str(TPUV4I), str(LLAMA), "--json").stdout)
    assert data["feasible"] is False and data["fits_with"] == ["system.chips=2", "system.parallelism.tensor=2"]
    none = run_cli("run", str(TPUV4I), str(LLAMA), "--set", "hbm.capacity=1 MiB")
    assert f"fits      on no mapping up to {MAX_FACTOR} times its chips" in none.stdout
