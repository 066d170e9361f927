"""Design points alike but for their CMEM and HBM capacities share work (issue 22): the placement
search's climb up the activation ladder (``archsim.hw.placement._Walk``) and the scheduled runs
of the plans they agree on (``Simulator._timed``, ``RunResult.restated``). Sharing must change
no bit of any result, in whatever order the points come."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from archsim.api import load_hardware, load_workload
from archsim.dtypes import DType
from archsim.ir.graph import OpGraph, Phase, Workload
from archsim.ir.ops import Gemm
from archsim.ir.tensor import Role, Tensor
from archsim.hw import placement
from archsim.sim import engine
from archsim.sim.engine import Simulator, clear_caches

ROOT = Path(__file__).resolve().parent.parent
CMEM_MIB = (32, 48, 96, 200, 320, 640)
HBM_MIB = (160, 8192)  # the first too small for some plans


def _designs():
    return [(cmem, hbm) for cmem in CMEM_MIB for hbm in HBM_MIB]


def _result_text(cmem: int, hbm: int, workload) -> str:
    hw = load_hardware(ROOT / "hw_configs" / "cim_tpu.yaml",
                       [f"cmem.capacity={cmem} MiB", f"hbm.capacity={hbm} MiB", "hbm.bandwidth=900 GB/s"])
    result = Simulator(hw).run(workload)
    table = result.table().to_dict(orient="list") if result.feasible else {}
    return json.dumps({"summary": result.summary(), "table": table}, sort_keys=True, default=str)


def _weights_worth_promoting() -> Workload:
    """Decode-like GEMMs whose int8 weights (16, 32 and 8 MiB) are read 100, 2 and 50 times: which
    the CMEM holds changes with its size."""
    out = []
    for i, (m, k, n, repeat) in enumerate(((8, 4096, 4096, 100), (4096, 4096, 8192, 2), (8, 2048, 4096, 50))):
        x, w = Tensor(f"x{i}", (m, k), DType.INT8), Tensor(f"w{i}", (k, n), DType.INT8, Role.WEIGHT)
        y = Tensor(f"y{i}", (m, n), DType.INT8)
        out.append(Phase(f"p{i}", OpGraph([Gemm(f"g{i}", (x, w), (y,), 1, m, k, n, False)]), repeat))
    return Workload("weights", tuple(out))


# the decode layer reads each weight once: every CMEM keeps the same plan (its schedule shared);
# the DiT block's plans change with CMEM (3 distinct latencies over these sizes)
@pytest.mark.parametrize("workload_file, latencies", [("llama2_7b_layer_decode.yaml", 1), ("dit_xl_2_block_512.yaml", 3),
                                                     ("(weights worth promoting)", 2)])
def test_points_differing_in_capacities_share_work_and_change_no_bit(workload_file, latencies):
    workload = (load_workload(ROOT / "workloads" / workload_file) if workload_file.endswith(".yaml")
                else _weights_worth_promoting())
    cold = {}
    for design in _designs():
        clear_caches()
        cold[design] = _result_text(*design, workload)
    clear_caches()
    ascending = {design: _result_text(*design, workload) for design in _designs()}
    # one climb of the ladder served every capacity; the plans they agree on were scheduled once
    assert len(placement._WALKS) == 1
    # (a phase of one op has nothing to overlap: no schedule to share)
    assert 1 <= len(engine._TIMED) < len(_designs()) or workload_file.startswith("(")
    descending = {design: _result_text(*design, workload) for design in reversed(_designs())}
    assert ascending == cold
    assert descending == cold
    # the capacities do change the results: the plans differ, and so does the static power
    assert len({cold[(cmem, 8192)] for cmem in CMEM_MIB}) == len(CMEM_MIB)
    assert len({json.loads(text)["summary"]["latency_s"] for text in cold.values()
                if "latency_s" in json.loads(text)["summary"]}) == latencies


def test_threads_sharing_a_climb_change_no_bit():
    """A Dask worker runs several threads: points alike but for capacities, evaluated at once,
    share one climb (it holds a lock while it climbs) and give the results they give alone."""
    from concurrent.futures import ThreadPoolExecutor

    workload = load_workload(ROOT / "workloads" / "dit_xl_2_block_512.yaml")
    cold = {}
    for design in _designs():
        clear_caches()
        cold[design] = _result_text(*design, workload)
    for _ in range(3):
        clear_caches()
        with ThreadPoolExecutor(max_workers=4) as pool:
            shared = dict(zip(_designs(), pool.map(lambda d: _result_text(*d, workload), _designs())))
        assert shared == cold


def test_static_energies_are_charged_when_the_ops_are_first_read():
    # an overlapped run's ops carry static energies charged by their scheduled spans; a sweep's
    # row reads totals alone, so the charge waits until the ops are read: then they, and the
    # totals read before and after, are those of the ops charged at once
    import pickle

    from archsim.sim.result import RunResult
    from archsim.sim.schedule import charge_static

    clear_caches()
    hw = load_hardware(ROOT / "hw_configs" / "cim_tpu.yaml")
    workload = load_workload(ROOT / "workloads" / "dit_xl_2_block_512.yaml")
    result = Simulator(hw).run(workload)
    assert result.schedules is not None and "ops" not in result.__dict__  # not charged yet
    by_unit, by_bound, energy = result.latency_by("unit"), result.latency_by("bound"), result.energy
    assert "ops" not in result.__dict__  # the row's figures read no op's static energy
    charged = charge_static(result.uncharged, result.schedules, Simulator(hw).energy.static_power)
    assert result.ops == charged and any(c.energy.static > 0 for c in result.ops)
    at_once = RunResult(hw, result.workload, charged, schedules=result.schedules)
    assert (at_once.latency_by("unit"), at_once.latency_by("bound")) == (by_unit, by_bound)
    # the groups are kept (and shared by the runs restated from this one); each caller gets its own copy
    by_unit["mxu"] = -1.0
    assert result.latency_by("unit") == at_once.latency_by("unit") != by_unit
    assert result._latency_groups is Simulator(hw).run(workload)._latency_groups  # the shared schedule's
    assert at_once.energy == energy == result.energy and at_once.latency_s == result.latency_s
    again = pickle.loads(pickle.dumps(result))
    assert again.ops == result.ops and again.summary() == result.summary()
