"""Input errors of issue 15, each through the CLI as a user meets it: exit code 2 and one clear
message naming the file (or option) and the key, or, for valid input that was refused, success.

Each test fails without its fix. They run the CLI in-process (``run_main``, with a deadline)
on tiny files written to a temporary folder.
"""

from __future__ import annotations

import json
import textwrap

import pytest

from archsim.config.yamlio import read_yaml_text
from archsim.dse.plan import plan_sweep
from archsim.errors import ConfigError
from tests.conftest import TPUV4I, WORKLOADS
from tests.test_fuzz import check_outcome, run_main

DECODE = WORKLOADS / "gpt3_30b_layer_decode.yaml"


def config(tmp_path, body: str, name: str = "hw.yaml"):
    """A config extending TPUv4i with ``body`` (YAML, dedented)."""
    path = tmp_path / name
    path.write_text(f"extends: {TPUV4I}\n" + textwrap.dedent(body))
    return path


def fails(args, *fragments: str, names: str) -> str:
    """Run ``archsim ARGS``: exit code 2, every line an error, ``names`` and each fragment in it."""
    code, out, err = run_main(*map(str, args))
    check_outcome(code, out, err, 2, list(fragments), names)
    return err


# ------------------------------------------------------------------ YAML: merge keys, numbers

def test_merge_key_with_an_explicit_override_is_read(tmp_path):
    """YAML 1.1 merge: a key written in the mapping overrides the one it merges."""
    path = config(tmp_path, """
        vmem: &memory {capacity: 16 MiB, bandwidth: 13.5 TB/s, latency: 5 ns, read_energy: 1.75 pJ/B,
                       write_energy: 1.75 pJ/B, area_per_byte: 0.875 mm^2/MiB}
        cmem:
          <<: *memory
          capacity: 128 MiB
        """)
    code, out, err = run_main("validate", str(path), "--json")
    assert code == 0, err
    cmem = json.loads(out)[str(path)]["cmem"]
    assert cmem["capacity"] == 128 * 2**20 and cmem["bandwidth"] == 13.5e12


def test_a_real_duplicate_key_is_still_refused(tmp_path):
    path = config(tmp_path, """
        vmem: &memory {capacity: 16 MiB}
        cmem:
          <<: *memory
          capacity: 128 MiB
          capacity: 64 MiB
        """)
    fails(["validate", path], f"{path}:7:", "duplicate key 'capacity'", names=str(path))


def test_merge_precedence():
    """The merged anchor's own key beats the one it inherits (PyYAML 6 gets this wrong), the
    first of several merged mappings wins, and only one merge key per mapping."""
    data = read_yaml_text("a: &a {x: 1, <<: {x: 2}}\nb: {<<: *a}\n"
                          "p: &p {y: 1}\nq: &q {y: 2, z: 3}\nr: {<<: [*p, *q]}\n", "t.yaml")
    assert data["b"] == {"x": 1} and data["r"] == {"y": 1, "z": 3}
    with pytest.raises(ConfigError, match="duplicate merge key"):
        read_yaml_text("a: &a {x: 1}\nb: {<<: *a, <<: *a}\n", "t.yaml")


@pytest.mark.parametrize("value, digit", [("１６ MiB", "１"), ("١٦ MiB", "١"), ("۱۶ MiB", "۱")])
def test_digits_other_than_ascii_are_refused(tmp_path, value, digit):
    path = config(tmp_path, f"vmem: {{capacity: '{value}'}}\n")
    fails(["validate", path], f"{path}: vmem.capacity: '{value}' has the digit '{digit}'", "ASCII digits 0-9",
          names=str(path))


def test_an_explicitly_tagged_number_in_another_script_is_refused(tmp_path):
    path = config(tmp_path, "mxu: {count: !!int '١٦'}\n")
    fails(["validate", path], f"{path}:2:", "mxu.count: '١٦' has characters other than ASCII", names=str(path))


def test_a_leading_zero_is_refused_not_read_as_octal(tmp_path):
    path = config(tmp_path, "mxu: {count: 010}\n")
    fails(["validate", path], f"{path}:2:", "mxu.count: 010 has a leading zero", "octal", "(e.g. 10)",
          names=str(path))
    fails(["validate", TPUV4I, "--set", "mxu.count=010"], "--set mxu.count=010", "has a leading zero",
          names="--set mxu.count=010")


def test_a_base_60_number_is_refused(tmp_path):
    path = config(tmp_path, "vpu: {lanes: 1:30}\n")
    fails(["validate", path], "vpu.lanes: 1:30 is a base-60 number", names=str(path))


def test_two_spellings_of_one_node_are_refused(tmp_path):
    path = config(tmp_path, "technology: {scaling: {7.0 nm: {energy: 0.2, area: 1.0}}}\n")
    fails(["validate", path], "technology.scaling: '7 nm' and '7.0 nm' are the same node", names=str(path))


# ------------------------------------------------------------------ sweeps

TINY_SWEEP = f"""
    sweep:
      axes:
        mxu.count: [2, 4]
      workloads: [{WORKLOADS / 'dit_xl_2_block_512.yaml'}]
    """


def sweep_args(path, out, *more):
    return ["sweep", path, "--out", out, "--executor", "serial", "--no-progress", *more]


def test_sweep_workload_option_replaces_the_files_workloads(tmp_path):
    import pandas as pd

    path = config(tmp_path, TINY_SWEEP)
    code, out, err = run_main(*map(str, sweep_args(path, tmp_path / "out", "--workload", DECODE)))
    assert code == 0, err
    frame = pd.read_parquet(tmp_path / "out" / "results.parquet")
    assert sorted(frame["set.mxu.count"]) == [2, 4] and set(frame["workload"]) == {"gpt3-30b-layer-decode"}
    assert (frame["status"] == "ok").all()
    fails(sweep_args(path, tmp_path / "out2", "--workload", tmp_path / "nope.yaml"),
          f"--workload {tmp_path / 'nope.yaml'}: file not found", names="nope.yaml")
    fails(sweep_args(path, tmp_path / "out2", "--workload", TPUV4I),
          f"--workload {TPUV4I}: this is a hardware config, not a workload", names=str(TPUV4I))


def test_an_invalid_combination_of_axis_values_names_the_sweep_file_and_axis(tmp_path):
    import pandas as pd

    path = config(tmp_path, f"""\
        sweep:
          axes:
            vmem.capacity: [8 MiB, 64 MiB]
            cmem.capacity: [32 MiB, 128 MiB]
          workloads: [{DECODE}]
          baseline: null
        """)
    code, out, err = run_main(*map(str, sweep_args(path, tmp_path / "out")))
    assert code == 0, err
    frame = pd.read_parquet(tmp_path / "out" / "results.parquet")
    (reason,) = frame.loc[frame["status"] == "invalid", "reason"]
    # each value is valid alone: the pair is not, and the row says where it was set (no --set)
    assert reason == (f"{path}: sweep axis cmem.capacity=32 MiB: cmem.capacity: is smaller than vmem.capacity; "
                      "CMEM backs VMEM")


def test_constraints_that_exclude_every_point_say_which(tmp_path):
    path = config(tmp_path, TINY_SWEEP + "  constraints: [{key: area, max: 1 mm^2}]\n")
    fails(sweep_args(path, tmp_path / "out"), f"{path}: sweep.constraints: the constraints exclude all 2 design points",
          "sweep.constraints.0 (area max 1 mm^2) excludes 2: area ranges from 322.5 to 349.1 mm^2", names=str(path))
    assert not list((tmp_path / "out").glob("parts/*.parquet"))


@pytest.mark.parametrize("constraint, message", [
    ("{key: hbm.bandwidth, max: 4 GB}",
     "sweep.constraints.0.max: '4 GB' is a size; a bound on hbm.bandwidth (a bandwidth) must be one too, such as "
     "'614 GB/s'"),
    ("{key: hbm.bandwidth, min: 4}", "sweep.constraints.0.min: 4 is a plain number; a bound on hbm.bandwidth"),
    ("{key: mxu.count, max: 3 GB}", "sweep.constraints.0.max: '3 GB' is a size; a bound on mxu.count (a plain number)"),
    ("{key: mxu.mac_energy.bf16, max: 1 W}", "sweep.constraints.0.max: '1 W' is a power; a bound on mxu.mac_energy.bf16 "
     "(an energy)"),
])
def test_a_bound_in_another_unit_than_its_key_is_refused(tmp_path, constraint, message):
    path = config(tmp_path, TINY_SWEEP + f"  constraints: [{constraint}]\n")
    fails(sweep_args(path, tmp_path / "out"), f"{path}: {message}", names=str(path))


def test_a_bound_in_its_keys_unit_is_accepted(tmp_path):
    path = config(tmp_path, TINY_SWEEP + "  constraints: [{key: hbm.bandwidth, min: 600 GB/s}, {key: mxu.count, max: 3}]\n")
    plan = plan_sweep([path])
    assert [dict(p.overrides) for p in plan.points] == [{"mxu.count": 2}] and plan.excluded == 1


def test_a_sweep_workloads_set_error_names_the_sweep_file_and_key(tmp_path):
    path = config(tmp_path, f"""
        sweep:
          workloads: [{DECODE}, {{file: {WORKLOADS / 'dit_xl_2.yaml'}, set: {{steps: -1}}}}]
        """)
    err = fails(sweep_args(path, tmp_path / "out"), f"{path}: sweep.workloads.1.set.steps: steps: Input should be "
                "greater than 0", names=str(path))
    assert "--set" not in err


# ------------------------------------------------------------------ messages that name their real source

DIT = WORKLOADS / "dit_xl_2.yaml"


def test_wset_and_schedule_errors_name_their_option():
    err = fails(["run", TPUV4I, DECODE, "--wset", "batch=abc"], "--wset batch=abc: batch: Input should be a valid integer",
                names="--wset batch=abc")
    assert "--set" not in err
    fails(["run", TPUV4I, DECODE, "--wset", "batch"], "--wset batch: expected KEY.PATH=VALUE, e.g. --wset batch=16",
          names="--wset batch")
    err = fails(["run", TPUV4I, DIT, "--schedule", "icc:period=x"],
                "--schedule icc:period=x: schedule.period: Input should be a valid integer", names="--schedule icc:period=x")
    assert "--set" not in err
    err = fails(["compare-schedules", TPUV4I, "--workload", DIT, "--wset", "steps=x"], "--wset steps=x: steps:",
                names="--wset steps=x")
    assert "--set" not in err


def test_swapped_hardware_and_workload_say_so_in_two_lines():
    err = fails(["run", DECODE, TPUV4I], f"the arguments are swapped: {DECODE} is a workload and {TPUV4I} a hardware "
                "config", f"expected archsim run HW.yaml [HW2.yaml ...] WORKLOAD.yaml, here: archsim run {TPUV4I} {DECODE}",
                names=str(DECODE))
    assert len(err.strip().splitlines()) == 2
    err = fails(["compare-schedules", DIT, "--workload", TPUV4I], "the arguments are swapped",
                f"here: archsim compare-schedules {TPUV4I} --workload {DIT}", names=str(DIT))
    assert len(err.strip().splitlines()) == 2


def test_a_workload_where_a_chip_belongs_and_a_chip_where_a_workload_belongs():
    err = fails(["validate", DECODE], f"{DECODE}: kind: this is a workload (kind: transformer_block), not a hardware "
                "config", names=str(DECODE))
    assert len(err.strip().splitlines()) == 1
    fails(["run", TPUV4I, TPUV4I], f"{TPUV4I}: this is a hardware config, not a workload", names=str(TPUV4I))


def test_validate_checks_the_sweep_section_as_sweep_does(tmp_path):
    bad_axis = config(tmp_path, TINY_SWEEP.replace("[2, 4]", "[0, 4]"))
    fails(["validate", bad_axis], f"{bad_axis}: sweep.axes: sweep axis mxu.count = 0: mxu.count: Input should be greater "
          "than 0", names=str(bad_axis))
    missing = config(tmp_path, "sweep: {workloads: [nope.yaml]}\n", "missing.yaml")
    fails(["validate", missing], f"{missing}: sweep.workloads.0: workload nope.yaml not found", names=str(missing))
    bad_set = config(tmp_path, f"sweep: {{workloads: [{{file: {DIT}, set: {{stepz: 5}}}}]}}\n", "set.yaml")
    fails(["validate", bad_set], f"{bad_set}: sweep.workloads.0.set.stepz: stepz: unknown key", names=str(bad_set))
    code, out, err = run_main("validate", str(config(tmp_path, TINY_SWEEP, "good.yaml")))
    assert code == 0 and "good.yaml: valid" in out, err
