"""archsim sensitivity (issue 19, first part): the ASSUMPTION marks it finds, the values it sets,
its figures against a hand calculation, the verdict and the command's errors."""

from __future__ import annotations

import json

import pytest
from conftest import ROOT, run_cli

from archsim.api import load_hardware, load_workload, simulate
from archsim.dse.sensitivity import KINDS, assumptions, marked_keys, marked_kinds, sensitivity, setting

HW = ROOT / "hw_configs"
WORKLOADS = ROOT / "workloads"


def test_marks_inline_and_above_and_a_child_owns_what_it_sets_again(tmp_path):
    parent = tmp_path / "parent.yaml"
    parent.write_text(
        "name: p\n"
        "vmem:\n"
        "  latency: 5 ns   # ASSUMPTION: a few cycles\n"
        "  # ASSUMPTION: not published\n"
        "  bandwidth: 1 TB/s\n"
        "\n"
        "  capacity: 16 MiB   # measured\n"
        "static_power: 30 W  # ASSUMPTION\n"
        "ici:  {links: 2}    # ASSUMPTION: a flow mapping is not one number\n")
    child = tmp_path / "child.yaml"
    child.write_text(f"extends: {parent.name}\nstatic_power: 40 W  # a measured figure\n")
    assert set(marked_keys(parent)) == {"vmem.latency", "vmem.bandwidth", "static_power"}
    assert marked_keys(parent)["vmem.bandwidth"] == f"{parent}:4"
    assert set(marked_keys(child)) == {"vmem.latency", "vmem.bandwidth"}


def test_mark_kinds_fitted_and_cited_and_the_strongest_mark_of_a_key_wins(tmp_path):
    path = tmp_path / "marks.yaml"
    path.write_text(
        "name: p\n"
        "clock: 1 GHz            # [J21] 1050 MHz\n"
        "vmem:\n"
        "  latency: 5 ns         # [V3FIT] carried over\n"
        "  # [FIT] 84 rows: 387 GB/s achieved\n"
        "  bandwidth: 1 TB/s\n"
        "  # [J21] a cited figure, but\n"
        "  # ASSUMPTION: this chip's is not published\n"
        "  capacity: 16 MiB      # [J21]\n"
        "  ports: 2              # fitted on the vector rows\n"
        "  banks: 4              # no mark: measured here\n")
    assert marked_kinds(path, KINDS) == {
        "clock": (f"{path}:2", "cited"), "vmem.latency": (f"{path}:4", "fitted"),
        "vmem.bandwidth": (f"{path}:5", "fitted"), "vmem.capacity": (f"{path}:8", "assumption"),
        "vmem.ports": (f"{path}:10", "fitted")}
    assert set(marked_keys(path)) == {"vmem.capacity"}  # the default: assumptions only
    assert set(marked_keys(path, ("cited",))) == {"clock"}
    with pytest.raises(ValueError, match="unknown mark kind 'guess'"):
        marked_keys(path, ("guess",))


def test_fitted_fields_vary_as_a_class_and_the_verdict_says_fields_not_assumptions(tmp_path):
    r = run_cli("sensitivity", str(HW / "tpuv4i.yaml"), str(WORKLOADS / "llama2_7b_layer_decode.yaml"),
                "--vs", str(HW / "tpuv3.yaml"), "--marks", "fitted", "--out", str(tmp_path / "t"), "--json")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    fitted = {f["field"] for f in data["fields"] if not f["baseline_only"]}
    assert fitted == {"dispatch.call.activation", "dispatch.call.all_reduce", "dispatch.call.default",
                      "dispatch.call.layernorm", "dispatch.call.softmax", "hbm.efficiency",
                      "mxu.weight_load_overlap", "mxu.weight_load_rows_per_cycle", "vpu.pass_cycles_per_vreg",
                      "vpu.reduce_step_cycles"}
    assert {f["mark"] for f in data["fields"]} == {"fitted"}
    assert "every assumption" not in data["verdict"]
    r = run_cli("sensitivity", str(HW / "tpuv4i.yaml"), str(WORKLOADS / "llama2_7b_layer_decode.yaml"),
                "--marks", "guess", "--out", str(tmp_path / "t"))
    assert r.returncode == 2 and "--marks" in r.stderr and "Traceback" not in r.stderr


def test_settings_scale_the_si_value_and_round_counts():
    hw = load_hardware(HW / "tpuv4i.yaml")
    assert setting(hw, "leakage.always_on", 2.0) == "leakage.always_on=10.0 W"
    assert setting(hw, "vmem.latency", 0.5) == f"vmem.latency={5e-9 * 0.5!r} s"
    assert setting(hw, "ici.links", 0.5) == "ici.links=1"  # a count stays a whole number
    assert setting(hw, "ici.links", 0.1) == "ici.links=1"  # and at least 1
    assert setting(hw, "name", 2.0) is None and setting(hw, "no.such", 2.0) is None
    assert load_hardware(HW / "tpuv4i.yaml", [setting(hw, "leakage.always_on", 2.0)]).leakage.always_on == 10.0


def test_always_on_power_moves_energy_by_its_share_and_latency_not_at_all():
    # energy at k x always-on power = E + (k - 1) x P x T, the run's time unchanged
    path, workload = HW / "tpuv4i.yaml", WORKLOADS / "llama2_7b_layer_decode.yaml"
    base, ref, swings = sensitivity(path, workload, (0.5, 2.0), ["leakage.always_on"])
    (swing,) = swings
    hw = load_hardware(path)
    run = simulate(hw, load_workload(workload, hw=hw))
    p_t = hw.leakage.always_on * run.latency_s
    assert ref is None and swing.versus == (None, None)
    assert swing.latency == (1.0, 1.0)
    assert swing.energy == (pytest.approx((run.energy.total - 0.5 * p_t) / run.energy.total, rel=1e-12),
                            pytest.approx((run.energy.total + p_t) / run.energy.total, rel=1e-12))


def test_a_shared_assumption_varies_on_both_chips_and_the_verdict_names_flips():
    # Design B against TPUv4i on the DiT block: the always-on power is 5 W on both (varied on both:
    # the speedup stays); a CIM core's int8 MACs per cycle only Design B has: at x0.05 it falls behind
    design_b, tpu = HW / "cim_design_b.yaml", HW / "tpuv4i.yaml"
    workload = WORKLOADS / "dit_xl_2_block_512.yaml"
    base, ref, swings = sensitivity(design_b, workload, (0.05, 2.0), ["leakage.always_on", "mxu.cim.macs_per_cycle.int8"], tpu)
    by = {s.field: s for s in swings}
    assert by["leakage.always_on"].shared and not by["mxu.cim.macs_per_cycle.int8"].shared
    speedup = ref.latency_s / base.latency_s
    assert by["leakage.always_on"].versus == (pytest.approx(speedup, rel=1e-12), pytest.approx(speedup, rel=1e-12))
    assert speedup > 1 and by["mxu.cim.macs_per_cycle.int8"].versus[0] < 1
    from archsim.dse.sensitivity import verdict
    said = verdict("B", base, ref, swings, "TPUv4i")
    assert said.startswith("B is faster than TPUv4i") and "mxu.cim.macs_per_cycle.int8 at x0.05" in said


def test_the_command_writes_a_table_a_tornado_and_json(tmp_path):
    out = tmp_path / "tornado"
    r = run_cli("sensitivity", str(HW / "cim_design_b.yaml"), str(WORKLOADS / "llama2_7b_layer_decode.yaml"),
                "--vs", str(HW / "tpuv4i.yaml"), "--out", str(out), "--json")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    fields = {f["field"] for f in data["fields"]}
    assert {"leakage.always_on", "mxu.cim.psum_buffer", "mxu.cim.weight_write_energy"} <= fields
    assert data["verdict"] and out.with_suffix(".png").read_bytes()[:4] == b"\x89PNG"
    # TPUv4i's own assumptions (the systolic PE's area) are varied on it alone: Design B unchanged
    own = next(f for f in data["fields"] if f["field"] == "mxu.pe_area")
    assert own["baseline_only"] and own["latency_ratio"] == [1.0, 1.0]
    r = run_cli("sensitivity", str(HW / "tpuv4i.yaml"), str(WORKLOADS / "llama2_7b_layer_decode.yaml"),
                "--fields", "leakage.always_on", "--out", str(out))
    assert r.returncode == 0 and "leakage.always_on" in r.stdout and "+66" not in r.stdout


@pytest.mark.parametrize("args, message", [(["--fields", "no.such"], "not a numeric field"),
                                           (["--range", "0,2"], "expected positive factors"),
                                           (["--range", "a"], "expected positive factors")])
def test_bad_options_exit_2_with_a_reason(args, message, tmp_path):
    r = run_cli("sensitivity", str(HW / "tpuv4i.yaml"), str(WORKLOADS / "llama2_7b_layer_decode.yaml"), *args,
                "--out", str(tmp_path / "t"))
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr


def test_morris_screening_is_seeded_and_ranks_what_moves_the_run():
    # every field at once: the CIM cores' clock moves Design B's DiT block most; a field no cost
    # reads (the ICI's area, one chip) has no effect; the same seed, the same numbers
    from archsim.dse.morris import morris

    args = (HW / "cim_design_b.yaml", WORKLOADS / "dit_xl_2_block_512.yaml",
            ["mxu.cim.clock_ratio", "ici.area", "mxu.cim.psum_buffer"], 0.5, 2.0)
    a, b = morris(*args, trajectories=3), morris(*args, trajectories=3)
    assert a == b
    by = {e.field: e for e in a}
    assert a[0].field == "mxu.cim.clock_ratio" and by["ici.area"].mu_star == 0 == by["ici.area"].sigma
    # one trajectory over one field is one elementary effect: its latency ratio's change over
    # the step, which a hand walk reproduces (levels 4: delta 2/3 of the log range, from 0 or 1/3)
    (only,) = morris(HW / "cim_design_b.yaml", WORKLOADS / "dit_xl_2_block_512.yaml", ["mxu.cim.clock_ratio"],
                     0.5, 2.0, trajectories=1)
    import math

    import numpy as np
    start = np.random.default_rng(0).choice(np.array([0.0, 1 / 3]), size=1)[0]
    hw = load_hardware(HW / "cim_design_b.yaml")
    base = simulate(hw, load_workload(WORKLOADS / "dit_xl_2_block_512.yaml", hw=hw)).latency_s

    def ratio(u):
        factor = math.exp(math.log(0.5) + u * (math.log(2.0) - math.log(0.5)))
        varied = load_hardware(HW / "cim_design_b.yaml", [setting(hw, "mxu.cim.clock_ratio", factor)])
        return simulate(varied, load_workload(WORKLOADS / "dit_xl_2_block_512.yaml", hw=varied)).latency_s / base

    assert only.mu_star == pytest.approx(abs(ratio(start + 2 / 3) - ratio(start)) / (2 / 3), rel=1e-12)


def test_morris_needs_a_range(tmp_path):
    r = run_cli("sensitivity", str(HW / "tpuv4i.yaml"), str(WORKLOADS / "llama2_7b_layer_decode.yaml"),
                "--range", "2", "--morris", "2", "--fields", "leakage.always_on", "--out", str(tmp_path / "t"))
    assert r.returncode == 2 and "range of two factors" in r.stderr


@pytest.mark.parametrize("config", sorted(p.relative_to(HW).as_posix() for p in HW.rglob("*.yaml")))
def test_every_bundled_config_has_assumptions_sensitivity_can_set(config):
    # each marked field of every bundled chip and system resolves to a number, and its x2
    # setting is a valid config or one the config refuses with a clear error (a share above 1,
    # 8 pipeline stages of tiles that no longer fit shared memory): sensitivity shows it as n/a
    from archsim.errors import ArchsimError

    path = HW / config
    hw = load_hardware(path)
    found = [a.path for a in assumptions(path, hw)]
    assert found, config
    for key in found:
        text = setting(hw, key, 2.0)
        assert text is not None and text.startswith(f"{key}=")
        try:
            load_hardware(path, [text])
        except ArchsimError as exc:
            assert str(exc) and "Traceback" not in str(exc)


@pytest.mark.parametrize("workload", sorted(p.name for p in WORKLOADS.glob("*.yaml")))
def test_sensitivity_runs_on_every_bundled_workload(workload):
    # one assumption (always-on power) at x2 on a one-chip config each: a speedup and a verdict
    chip = "a100_80gb.yaml" if "175b" in workload else "tpuv4i.yaml"
    base, ref, swings = sensitivity(HW / "cim_design_b.yaml" if chip == "tpuv4i.yaml" else HW / chip,
                                    WORKLOADS / workload, (2.0,), ["leakage.always_on"], HW / chip)
    if not (base.feasible and ref.feasible):
        pytest.skip(base.reason or ref.reason)
    (swing,) = swings
    assert swing.latency == (1.0,) and swing.energy[0] > 1


def test_the_energy_gain_moves_with_each_chips_own_leakage_and_the_verdict_says_so():
    # Design A against TPUv4i on the DiT block, logic leakage x2 on both: each chip's energy grows
    # by its own logic area x 0.0716 W/mm^2 over its own run time (latency unchanged)
    from archsim.dse.sensitivity import verdict
    from archsim.hw.leakage import SRAM_COMPONENTS, static_breakdown

    design_a, tpu = HW / "cim_design_a.yaml", HW / "tpuv4i.yaml"
    workload = WORKLOADS / "dit_xl_2_block_512.yaml"
    base, ref, swings = sensitivity(design_a, workload, (2.0,), ["leakage.logic"], tpu)
    (swing,) = swings

    def grown(run):
        logic_w = sum(v for k, v in static_breakdown(run.hw).as_dict().items()
                      if k not in SRAM_COMPONENTS and k != "always_on")
        return run.energy.total + logic_w * run.latency_s

    assert swing.shared and swing.energy_gain == pytest.approx(ref.energy.total / base.energy.total, rel=1e-12)
    assert swing.energy_versus[0] == pytest.approx(grown(ref) / grown(base), rel=1e-9)
    assert swing.energy_versus[0] < 1 < swing.energy_gain  # the gain flips
    said = verdict("A", base, ref, swings, "TPUv4i")
    assert "A uses less energy than TPUv4i" in said and "leakage.logic at x2" in said


def test_a_level_comparison_is_level_and_a_ratio_near_1_keeps_its_side():
    from types import SimpleNamespace as NS

    from archsim.dse.sensitivity import Swing, verdict

    run = lambda s, j: NS(feasible=True, latency_s=s, energy=NS(total=j))  # noqa: E731
    swings = [Swing("hbm.bandwidth", "x", (0.5, 2.0), (1.0, 1.0), (1.0, 1.0), (1.0, 1.00271),
                    energy_versus=(1.0, 0.99994))]
    said = verdict("B", run(1.0, 1.0), run(1.0, 1.0), swings, "A")
    assert said == ("B is as fast as A (1x) except: hbm.bandwidth at x2 (1.0027x). "
                    "B uses the same energy as A (1x) except: hbm.bandwidth at x2 (0.9999x).")
