"""A run's totals are its ops' values times their executions (phase repeat x copies), summed:
MACs, traffic per level, energy per component, bytes sent to other chips, matrix-unit
utilisation. Values by hand, on three made-up ops."""

from __future__ import annotations

import pytest

from archsim.api import load_hardware
from archsim.hw.energy import Energy
from archsim.hw.memory import Traffic
from archsim.sim.cost import OpCost
from archsim.sim.result import RunResult, op_terms, scheduled_run, sums_of
from conftest import TPUV4I


def _op(phase, name, repeat, copies, macs, peak, latency, traffic, energy, ici):
    return OpCost(phase=phase, name=name, kind="k", unit="mxu", repeat=repeat, copies=copies, macs=macs,
                  vector_ops=0, compute_cycles=0.0, compute_s=latency, memory_s=0.0, latency_s=latency,
                  traffic=traffic, energy=energy, peak_macs_per_s=peak, ici_bytes=ici)


@pytest.fixture(scope="module")
def run():
    ops = (
        # 2 repeats x 3 copies = 6 executions
        _op("p", "a", 2, 3, 100, 1e3, 0.5, Traffic(hbm_read=10.0, vmem_write=1.0), Energy(mxu=1.0, hbm=0.25), 4.0),
        # 2 executions; no matrix unit (peak 0): not in the utilisation
        _op("p", "b", 2, 1, 40, 0.0, 0.25, Traffic(cmem_read=8.0), Energy(vpu=2.0, static=1.0), 0.0),
        # 3 executions, in a phase run once
        _op("q", "c", 1, 3, 10, 2e3, 1.0, Traffic(hbm_read=2.0, hbm_write=5.0), Energy(hbm=0.5, ici=3.0), 1.5),
    )
    return RunResult(load_hardware(TPUV4I), None, ops)


def test_macs_and_ici_bytes_count_every_execution(run):
    assert run.macs == 100 * 6 + 40 * 2 + 10 * 3
    assert run.ici_bytes == 4.0 * 6 + 1.5 * 3


def test_traffic_and_energy_per_field(run):
    assert run.traffic == Traffic(vmem_write=6.0, cmem_read=16.0, hbm_read=60.0 + 6.0, hbm_write=15.0)
    assert run._ops_energy == Energy(mxu=6.0, vpu=4.0, hbm=1.5 + 1.5, ici=9.0, static=2.0)


def test_utilization_is_mac_slots_used_over_the_run(run):
    # one after another: 2 x (3 x 0.5 + 0.25) + 3 x 1.0 = 6.5 s; busy at peak 600/1e3 + 30/2e3 s
    assert run.latency_s == 6.5
    assert run.utilization == pytest.approx((600 / 1e3 + 30 / 2e3) / 6.5, rel=1e-15)


def test_an_ops_terms_by_hand(run):
    a, b, _ = run.ops
    # 6 executions of op a: 600 MACs, 24 bytes sent, 600 / 1e3 s at peak; its traffic's and
    # energy's fields (in their order: VMEM, CMEM, HBM read and write; the components) times 6
    assert op_terms(a) == (600, 24.0, 0.6, (0.0, 6.0, 0.0, 0.0, 60.0, 0.0), (6.0, 0.0, 0.0, 0.0, 1.5, 0.0, 0.0))
    assert op_terms(b)[2] is None  # no matrix unit: nothing at peak


def test_a_run_summed_from_kept_terms_is_the_run_summed_from_its_ops(run):
    kept = scheduled_run(run.hw, None, run.ops, (), [op_terms(c) for c in run.ops])
    fresh = RunResult(run.hw, None, run.ops)
    assert kept.__dict__["_sums"] == fresh._sums == sums_of(map(op_terms, run.ops))


def test_the_time_by_unit_and_by_bound_by_hand(run):
    """A row reads ``latency_by('unit')`` and ``('bound')``, made in one pass: each op's time
    added to the run (one after another here: its latency) times its executions, by group."""
    import dataclasses

    a, b, c = run.ops
    ops = (a, dataclasses.replace(b, unit="vpu", memory_s=1.0), dataclasses.replace(c, memory_s=2.0))
    mixed = RunResult(run.hw, None, ops)
    by_unit = {"mxu": 0.5 * 6 + 1.0 * 3, "vpu": 0.25 * 2}
    by_bound = {"compute": 0.5 * 6, "memory": 0.25 * 2 + 1.0 * 3}
    assert mixed.latency_by("bound") == by_bound and mixed.latency_by("unit") == by_unit
    again = RunResult(run.hw, None, ops)  # asked the other way round, and another column
    assert again.latency_by("unit") == by_unit and again.latency_by("bound") == by_bound
    assert again.latency_by("phase") == {"p": 0.5 * 6 + 0.25 * 2, "q": 3.0}
    mixed.latency_by("unit")["mxu"] = 0.0  # the caller's own copy
    assert mixed.latency_by("unit") == by_unit


def test_an_additive_replaced_is_dataclasses_replace():
    import dataclasses

    e = Energy(mxu=1.0, vpu=2.0, static=3.0)
    assert e.replaced(static=-0.0, hbm=4.0) == dataclasses.replace(e, static=-0.0, hbm=4.0)
    assert str(e.replaced(static=-0.0).static) == "-0.0" and e.static == 3.0
    with pytest.raises(TypeError, match="no field 'watts'"):
        e.replaced(watts=1.0)
