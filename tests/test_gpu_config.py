"""GPU configs (``kind: gpu``) as a user writes them: bad input gives exit code 2 and a few clear
lines naming the file (or option) and the key, never a traceback; overrides and sweeps over GPU
keys work. The CLI runs in-process (``tests.test_fuzz.run_main``) on tiny files extending
tests/data/gpu_plain.yaml (a 4-SM test GPU) or the bundled configs.
"""

from __future__ import annotations

import json
import textwrap

import pytest

from archsim.api import load_hardware
from archsim.dse.plan import plan_sweep
from archsim.errors import ConfigError
from tests.conftest import HW, ROOT, TPUV4I, WORKLOADS
from tests.test_fuzz import check_outcome, run_main

PLAIN = ROOT / "tests" / "data" / "gpu_plain.yaml"
A100 = HW / "a100_80gb.yaml"
DECODE = WORKLOADS / "gpt3_30b_layer_decode.yaml"
OP_KINDS = ("gemm, attn_score, attn_context, attention, softmax, layernorm, rmsnorm, activation, elementwise, embedding, "
            "cache_write, all_reduce, all_gather")


def config(tmp_path, body: str, base=PLAIN, name: str = "gpu.yaml"):
    """A config extending ``base`` with ``body`` (YAML, dedented)."""
    path = tmp_path / name
    path.write_text(f"extends: {base}\n" + textwrap.dedent(body))
    return path


def fails(args, *fragments: str, names: str) -> str:
    """``archsim ARGS``: exit code 2, every line an error, ``names`` and each fragment in it."""
    code, out, err = run_main(*map(str, args))
    check_outcome(code, out, err, 2, list(fragments), names)
    return err


def valid(args) -> str:
    code, out, err = run_main(*map(str, args))
    check_outcome(code, out, err, 0, [], None)
    return out


# -- unknown keys, kinds -----------------------------------------------------------------------

def test_an_unknown_key_names_the_file_the_key_path_and_the_expected_keys(tmp_path):
    path = config(tmp_path, "sm: {count: 4, bogus: 1}\n")
    fails(["validate", path], f"{path}: sm.bogus: unknown key; expected one of: alu_op_energy, alu_ops_per_cycle, "
          "area, count, mac_energy, on_die, registers, shared_energy, shared_memory, special_op_energy, "
          "special_ops_per_cycle, stated_at, tensor_efficiency, tensor_macs_per_cycle", names=str(path))
    path = config(tmp_path, "gemm: {k_tiles: 64}\n")
    fails(["validate", path], f"{path}: gemm.k_tiles: unknown key; expected one of: clusters, "
          "convert_ops_per_element, k_tile, split_k, stages, tiles", names=str(path))
    path = config(tmp_path, "collectives: {algorithm: [ring]}\n")
    fails(["validate", path], f"{path}: collectives.algorithm: unknown key; expected one of: algorithms, protocols, "
          "tree_bandwidth_share", names=str(path))
    path = config(tmp_path, "hbm: {write_eficiency: 0.5}\n")
    fails(["validate", path], f"{path}: hbm.write_eficiency: unknown key; expected one of: area_per_byte, bandwidth, "
          "capacity, efficiency, latency, read_energy, stated_at, write_efficiency, write_energy", names=str(path))


def test_an_unknown_key_in_a_table_of_sections_names_the_key_path(tmp_path):
    path = config(tmp_path, "kernels: {softmax: {input_read: 2}}\n")
    fails(["validate", path], f"{path}: kernels.softmax.input_read: unknown key", names=str(path))
    path = config(tmp_path, "collectives: {protocols: {ll: {hop_latncy: 1 us}}}\n")
    fails(["validate", path], f"{path}: collectives.protocols.ll.hop_latncy: unknown key", names=str(path))


def test_an_unknown_key_in_a_table_of_sections_lists_the_expected_keys(tmp_path):
    path = config(tmp_path, "kernels: {softmax: {input_read: 2}}\n")
    fails(["validate", path], "expected one of: input_reads, long_row_reads, row_limit", names=str(path))


def test_an_unknown_chip_kind(tmp_path):
    path = config(tmp_path, "kind: fpga\n")
    fails(["validate", path], f"{path}: kind: unknown chip kind 'fpga'; expected one of: tpu, gpu", names=str(path))
    path = config(tmp_path, "kind: 3\n")
    fails(["validate", path], f"{path}: kind: unknown chip kind 3; expected one of: tpu, gpu", names=str(path))


def test_a_tpu_section_in_a_gpu_config_and_a_gpu_section_in_a_tpu_config(tmp_path):
    path = config(tmp_path, "mxu: {count: 2}\n")
    fails(["validate", path], f"{path}: mxu: unknown key; expected one of: clock, collectives, compiler, description, "
          "dispatch, explore, gemm, hbm, kernels, kind, l2, leakage, name, nvlink, periphery_area, sm, static_power, "
          "sweep, system, tdp, technology", names=str(path))
    path = config(tmp_path, "sm: {count: 2}\n", base=TPUV4I, name="tpu.yaml")
    fails(["validate", path], f"{path}: sm: unknown key; expected one of: clock, cmem, compiler, description, dispatch, "
          "explore, hbm, ici, kind, leakage, mxu, name, periphery_area, static_power, sweep, system, tdp, technology, "
          "vmem, vpu", names=str(path))
    # and on the command line
    fails(["validate", PLAIN, "--set", "vpu.lanes=8"], "--set vpu.lanes=8", "vpu: unknown key",
          names="--set vpu.lanes=8")


# -- the GPU's own consistency checks ----------------------------------------------------------

def test_a_gemm_tile_too_big_for_shared_memory(tmp_path):
    # 512x512 over 2 stages of K 32 at 2 bytes: 2 x 1024 x 32 x 2 B = 128 KiB > 96 KiB
    path = config(tmp_path, "gemm: {tiles: [[128, 128], [512, 512]]}\n")
    fails(["validate", path], f"{path}: gemm.tiles.1: 512x512 tiles over 2 stages of K 32 need 128 KiB of shared "
          "memory; the SM has 96 KiB", names=str(path))
    # a smaller SM makes the base file's tiles too big: named where the tiles are written
    fails(["validate", PLAIN, "--set", "sm.shared_memory=24 KiB"], "gemm.tiles.0: 128x128 tiles over 2 stages of K 32 "
          "need 32 KiB of shared memory; the SM has 24 KiB", names=str(PLAIN))
    # exactly full is fine: 512x256 needs 2 x 768 x 32 x 2 B = 96 KiB of shared memory, and its
    # 512 x 256 fp32 accumulators 512 KiB of registers: with 512 KiB, both exactly full
    valid(["validate", config(tmp_path, "gemm: {tiles: [[512, 256]]}\nsm: {registers: 512 KiB}\n")])


def test_a_gemm_tile_whose_accumulators_exceed_the_registers(tmp_path):
    # 512x256 fits the 96 KiB of shared memory (exactly) but its fp32 accumulators need
    # 512 x 256 x 4 B = 512 KiB of registers; the SM has 256 KiB
    path = config(tmp_path, "gemm: {tiles: [[64, 64], [512, 256]]}\n")
    fails(["validate", path], f"{path}: gemm.tiles.1: 512x256 tiles need 512 KiB of registers for their "
          "accumulators; the SM has 256 KiB", names=str(path))
    # one byte short of a tile's accumulators: 512 KiB - 1 B
    fails(["validate", config(tmp_path, "gemm: {tiles: [[512, 256]]}\nsm: {registers: 524287 B}\n")],
          "gemm.tiles.0: 512x256 tiles need 512 KiB of registers", names="gemm.tiles.0")
    # fewer registers than the base file's 128x128 tile's 64 KiB: named where the tiles are written
    fails(["validate", PLAIN, "--set", "sm.registers=32 KiB"], "gemm.tiles.0: 128x128 tiles need 64 KiB of "
          "registers for their accumulators; the SM has 32 KiB", names=str(PLAIN))
    # exactly one 128x128 tile's accumulators (64 KiB) is fine
    valid(["validate", PLAIN, "--set", "sm.registers=64 KiB"])


def test_tensor_macs_for_a_dtype_without_its_mac_energy(tmp_path):
    path = config(tmp_path, "sm: {tensor_macs_per_cycle: {int8: 2048}}\n")
    fails(["validate", path], "sm.mac_energy: no MAC energy for int8 (listed in tensor_macs_per_cycle)",
          names=str(PLAIN))
    valid(["validate", config(tmp_path, "sm: {tensor_macs_per_cycle: {int8: 2048}, mac_energy: {int8: 0.5 pJ}}\n")])


def test_call_overlap_with_an_unknown_op_kind(tmp_path):
    path = config(tmp_path, "dispatch: {call_overlap: {gemmm: 1 us}}\n")
    fails(["validate", path], f"{path}: dispatch.call_overlap: unknown op kind 'gemmm'; expected default or one of: "
          f"{OP_KINDS}", names=str(path))
    path = config(tmp_path, "kernels: {softmaxx: {input_reads: 2}}\n")
    fails(["validate", path], f"unknown op kind 'softmaxx'; expected one of: {OP_KINDS}", names="gpu")


def test_split_k_and_clusters_must_offer_the_plain_kernel(tmp_path):
    path = config(tmp_path, "gemm: {split_k: [2, 4]}\n")
    fails(["validate", path], f"{path}: gemm.split_k: must include 1 (no split)", names=str(path))
    path = config(tmp_path, "gemm: {clusters: [[2, 2]]}\n")
    fails(["validate", path], f"{path}: gemm.clusters: must include [1, 1] (no cluster)", names=str(path))


def test_collective_protocols_and_algorithms_are_nccls(tmp_path):
    path = config(tmp_path, "collectives: {algorithms: [ring, nvls]}\n")
    fails(["validate", path], f"{path}: collectives.algorithms.1: Input should be 'ring' or 'tree' (got 'nvls')",
          names=str(path))
    path = config(tmp_path, "collectives: {protocols: {ll256: {base_latency: 1 us, hop_latency: 1 us, "
                            "bandwidth_share: 0.5}}}\n")
    fails(["validate", path], "collectives.protocols.ll256: bad key: Input should be 'll', 'll128' or 'simple'",
          names=str(path))


def test_collectives_need_the_ring_and_a_share_of_the_bus(tmp_path):
    path = config(tmp_path, "collectives: {algorithms: [tree]}\n")
    fails(["validate", path], f"{path}: collectives.algorithms: must include ring", names=str(path))
    # a protocol or tree delivering no bandwidth would divide by zero: at least 1e-3
    fails(["validate", PLAIN, "--set", "collectives.protocols.ll.bandwidth_share=0"],
          "collectives.protocols.ll.bandwidth_share: Input should be greater than or equal to 0.001 (got 0)",
          names="--set collectives.protocols.ll.bandwidth_share=0")
    fails(["validate", PLAIN, "--set", "collectives.tree_bandwidth_share=0.0009"],
          "collectives.tree_bandwidth_share: Input should be greater than or equal to 0.001 (got 0.0009)",
          names="--set collectives.tree_bandwidth_share=0.0009")
    valid(["validate", PLAIN, "--set", "collectives.tree_bandwidth_share=0.001",
           "--set", "collectives.protocols.simple.bandwidth_share=0.001"])
    # a conversion cost is a count of ops, not negative
    fails(["validate", PLAIN, "--set", "gemm.convert_ops_per_element=-1"],
          "gemm.convert_ops_per_element: Input should be greater than or equal to 0 (got -1)",
          names="--set gemm.convert_ops_per_element=-1")


def test_a_system_of_gpus_needs_the_links_for_its_topology(tmp_path):
    path = config(tmp_path, """\
        system: {chips: 8, topology: {kind: ring}, parallelism: {tensor: 8}}
        nvlink: {links: 1}
        """)
    fails(["validate", path], f"{path}: nvlink.links: 1 links per GPU, but a ring of 8 GPUs needs 2", names=str(path))


def test_more_sms_enabled_than_on_the_die():
    fails(["validate", PLAIN, "--set", "sm.count=8"], "sm.on_die: 5 SMs on the die, fewer than the 8 enabled",
          names="sm.on_die")
    fails(["validate", PLAIN, "--set", "sm.count=0"], "--set sm.count=0: sm.count: Input should be greater than 0",
          names="--set sm.count=0")


def test_a_gemm_in_a_dtype_the_tensor_cores_lack_is_an_error_not_a_traceback():
    fails(["gemm", PLAIN, "--m", "64", "--k", "64", "--n", "64", "--dtype", "int8"],
          "op 'gemm': the tensor cores of GPU plain do not support int8 (supported: fp16, bf16)", names="GPU plain")


# -- overrides, sweeps -------------------------------------------------------------------------

def test_set_overrides_a_gpu_key():
    data = json.loads(valid(["validate", A100, "--set", "sm.count=64", "--json"]))
    assert data[str(A100)]["sm"]["count"] == 64
    hw = load_hardware(A100, ["sm.count=64"])
    assert hw.sm.count == 64 and hw.peak_macs_per_second(hw.matrix_dtypes[0]) == 64 * 1024 * 1.41e9
    # and the run uses it: a GEMM bound by the tensor cores takes 108/64 as long (the same
    # tiles and waves: 8192^2 output in 256x128 tiles is 2048 blocks, many waves either way)
    full = json.loads(valid(["gemm", A100, "--m", "8192", "--k", "8192", "--n", "8192", "--dtype", "bf16", "--json"]))
    half = json.loads(valid(["gemm", A100, "--m", "8192", "--k", "8192", "--n", "8192", "--dtype", "bf16", "--json",
                             "--set", "sm.count=64"]))
    assert half["latency_s"] > 1.5 * full["latency_s"]


def test_a_sweep_over_gpu_keys_validates_and_plans(tmp_path):
    path = config(tmp_path, f"""\
        sweep:
          axes:
            sm.count: [2, 4]
            hbm.bandwidth: [100 GB/s, 200 GB/s]
          workloads: [{DECODE}]
          constraints: [{{key: sm.count, max: 3}}]
        """)
    plan = plan_sweep([path])
    points = sorted((dict(p.overrides)["sm.count"], dict(p.overrides)["hbm.bandwidth"]) for p in plan.points)
    assert points == [(2, "100 GB/s"), (2, "200 GB/s")] and plan.excluded == 2
    # a misspelt axis is reported against the file before any work
    bad = config(tmp_path, f"""\
        sweep:
          axes:
            sm.cuont: [2, 4]
          workloads: [{DECODE}]
        """, name="bad.yaml")
    fails(["sweep", bad, "--out", tmp_path / "out", "--executor", "serial", "--no-progress"],
          f"{bad}: sweep.axes.sm.cuont: unknown key; expected one of: alu_op_energy", names=str(bad))
    with pytest.raises(ConfigError, match="sweep.axes.sm.cuont"):
        plan_sweep([bad])
    # an axis naming a TPU key is not a key of this GPU config
    tpu_axis = config(tmp_path, f"""\
        sweep:
          axes:
            mxu.count: [2, 4]
          workloads: [{DECODE}]
        """, name="tpu_axis.yaml")
    with pytest.raises(ConfigError, match="sweep.axes.mxu.count"):
        plan_sweep([tpu_axis])


def test_sweep_axes_inside_tables_of_sections_validate_and_plan(tmp_path):
    # a key of one section of a table of sections: kernels.<kind>, collectives.protocols.<p>,
    # technology.scaling.<node>
    path = config(tmp_path, f"""\
        sweep:
          axes:
            kernels.softmax.input_reads: [1, 2]
            collectives.protocols.ll.bandwidth_share: [0.5, 1.0]
            technology.scaling.7 nm.energy: [1.0, 2.0]
          workloads: [{DECODE}]
        """)
    valid(["validate", path])
    plan = plan_sweep([path])
    assert len(plan.points) == 8 and plan.excluded == 0
    last = dict(plan.points[-1].overrides)
    assert last == {"kernels.softmax.input_reads": 2, "collectives.protocols.ll.bandwidth_share": 1.0,
                    "technology.scaling.7 nm.energy": 2.0}
    hw = load_hardware(path, [f"{key}={value}" for key, value in last.items()])
    assert hw.kernels["softmax"].input_reads == 2 and hw.collectives.protocols["ll"].bandwidth_share == 1.0
    assert hw.technology.factors(7e-9).energy == 2.0


@pytest.mark.parametrize("axis, expected", [
    ("kernels.softmax.input_read", "input_reads, long_row_reads, row_limit"),
    ("collectives.protocols.ll.bandwidth_shar", "bandwidth_share, base_latency, hop_latency, max_bus_bandwidth"),
    ("technology.scaling.7 nm.energi", "area, energy"),
])
def test_a_misspelt_sweep_axis_inside_a_table_of_sections_lists_that_sections_keys(tmp_path, axis, expected):
    path = config(tmp_path, f"""\
        sweep:
          axes:
            {axis}: [1, 2]
          workloads: [{DECODE}]
        """)
    fails(["validate", path], f"{path}: sweep.axes.{axis}: unknown key; expected one of: {expected}",
          names=str(path))
    with pytest.raises(ConfigError, match=f"sweep.axes.{axis}: unknown key; expected one of: {expected}$"):
        plan_sweep([path])


def test_a_sweep_over_sm_count_runs(tmp_path):
    import pandas as pd

    path = config(tmp_path, f"""\
        sweep:
          axes:
            sm.count: [2, 4]
          workloads: [{WORKLOADS / 'llama2_7b_layer_decode.yaml'}]
        """)
    valid(["sweep", path, "--out", tmp_path / "out", "--executor", "serial", "--no-progress"])
    frame = pd.read_parquet(tmp_path / "out" / "results.parquet")
    assert (frame["status"] == "ok").all() and sorted(frame["set.sm.count"]) == [2, 4]
    two, four = (frame[frame["set.sm.count"] == v].iloc[0] for v in (2, 4))
    assert two["latency_s"] > four["latency_s"]
