"""The TPUv3 and TPU v4 configs and the GPT-3 175B layer workloads: each file validates, its
peaks and memories equal hand calculations from the published figures, every figure is cited,
and the tensor-parallel layer's ops match a hand count of LLMCompass's 12 measured categories."""

from __future__ import annotations

import re

import pytest

from archsim.api import load_hardware, load_workload
from archsim.dtypes import DType
from archsim.hw.leakage import static_power
from conftest import HW, ROOT, WORKLOADS, run_cli

TPUV3 = HW / "tpuv3.yaml"
TPUV4 = HW / "tpuv4.yaml"
TPUV3_8 = HW / "systems" / "tpuv3_8.yaml"
PREFILL = WORKLOADS / "gpt3_175b_layer_prefill.yaml"
DECODE = WORKLOADS / "gpt3_175b_layer_decode.yaml"
SOURCES = ROOT / "docs" / "sources" / "tpu.md"
SILICON = ROOT / "experiments" / "data" / "silicon"

GiB, MiB = 2**30, 2**20


@pytest.fixture(scope="module")
def v3():
    return load_hardware(TPUV3)


@pytest.fixture(scope="module")
def v4():
    return load_hardware(TPUV4)


@pytest.fixture(scope="module")
def v3_8():
    return load_hardware(TPUV3_8)


# -- the chips ------------------------------------------------------------------------------

def test_tpuv3_core_peak_and_memories(v3):
    # one TensorCore: 2 MXUs x 16384 MACs x 2 flops x 0.94 GHz = 61.6 TFLOPS bf16
    assert 2 * v3.peak_macs_per_second(DType.BF16) == pytest.approx(2 * 16384 * 2 * 0.94e9, rel=1e-12)
    assert 2 * v3.peak_macs_per_second(DType.BF16) == pytest.approx(61.6e12, rel=1e-3)
    # a chip is two cores: Cloud's 123 TFLOPS bf16 per chip
    assert 2 * 2 * v3.peak_macs_per_second(DType.BF16) == pytest.approx(123e12, rel=2e-3)
    assert set(v3.mxu.pe_macs_per_cycle) == {DType.BF16}  # no int8 on v3
    assert (v3.mxu.count, v3.mxu.rows, v3.mxu.cols, v3.mxu.dataflow) == (2, 128, 128, "ws")
    assert v3.vmem.capacity == 16 * MiB
    assert v3.cmem is None
    # half the chip's 32 GiB and 900 GB/s
    assert v3.hbm.capacity == 16 * GiB
    assert v3.hbm.bandwidth == 450e9
    assert 2 * v3.hbm.bandwidth == 900e9
    assert v3.technology.node == pytest.approx(16e-9)


def test_tpuv3_vector_unit_is_llmcompass_1024_ops_per_cycle(v3):
    # 8 sublanes x 128 lanes, one op each per cycle: LLMCompass's VectorUnit(128 * 8, ...)
    assert v3.vpu.lanes == 8 * 128
    assert v3.vpu.lane_width == 128
    assert v3.vpu.lanes * v3.vpu.alu_ops_per_lane_per_cycle == 1024


def test_tpuv4_megacore_peak_and_memories(v4):
    # 2 TensorCores x 4 MXUs x 16384 MACs x 2 x 1.05 GHz = 275.3 TFLOPS, bf16 and int8 alike
    for dtype in (DType.BF16, DType.INT8):
        assert 2 * v4.peak_macs_per_second(dtype) == pytest.approx(8 * 16384 * 2 * 1.05e9, rel=1e-12)
        assert 2 * v4.peak_macs_per_second(dtype) == pytest.approx(275e12, rel=2e-3)
    assert (v4.mxu.count, v4.mxu.rows, v4.mxu.cols) == (2 * 4, 128, 128)
    # 2 cores x 1024 lanes (8 x 128), 2 ALUs each
    assert v4.vpu.lanes == 2 * 8 * 128
    assert v4.vpu.lanes * v4.vpu.alu_ops_per_lane_per_cycle == 4096
    assert v4.vmem.capacity == 2 * 16 * MiB
    assert v4.cmem is not None and v4.cmem.capacity == 128 * MiB
    assert v4.hbm.capacity == 32 * GiB
    assert v4.hbm.bandwidth == 1.2e12
    assert v4.technology.node == pytest.approx(7e-9)


def test_tpuv4_reuses_the_tpuv4i_energy_figures(v4):
    v4i = load_hardware(HW / "tpuv4i.yaml")
    assert v4.mxu.stated_at == v4i.mxu.stated_at
    assert v4.mxu.mac_energy == v4i.mxu.mac_energy
    assert v4.mxu.pe_area == v4i.mxu.pe_area
    assert (v4.vpu.alu_op_energy, v4.vpu.special_op_energy) == (v4i.vpu.alu_op_energy, v4i.vpu.special_op_energy)
    assert v4.vmem.read_energy == v4i.vmem.read_energy
    assert v4.cmem.read_energy == v4i.cmem.read_energy
    assert v4.hbm.read_energy == v4i.hbm.read_energy


def test_tpuv3_energies_are_tpuv4i_figures_scaled_to_16_nm(v3):
    from archsim.hw.energy import scale_factor

    # DeepScaleTool energy per op relative to 65 nm: 0.22 at 16 nm, 0.11 at 7 nm, 0.30 at 22 nm
    assert scale_factor(v3, v3.vpu.stated_at, "energy") == pytest.approx(0.22 / 0.11)
    assert scale_factor(v3, v3.mxu.stated_at, "energy") == pytest.approx(0.22 / 0.30)
    assert v3.mxu.mac_energy[DType.BF16] * 0.22 / 0.30 == pytest.approx(11.24e-12, rel=1e-3)


def test_ici_links(v3, v4):
    # v3: a core's two neighbours in the ring of 8 cores, at scaling-book's 1e11 B/s one way
    assert (v3.ici.links, v3.ici.link_bandwidth) == (2, 100e9)
    # v4: 6 neighbours of a 3-D torus at 4.5e10 B/s one way
    assert (v4.ici.links, v4.ici.link_bandwidth) == (6, 45e9)


def test_power_is_the_measured_maximum(v3, v4):
    assert v3.tdp == 262 / 2  # per core
    assert v4.tdp == 192
    assert 0 < static_power(v3) < 123 / 2 and 0 < static_power(v4) < 90  # under the measured minimum


def test_tpuv3_8_system(v3, v3_8):
    assert v3_8.system.chips == 8
    assert v3_8.system.topology.kind == "ring"
    p = v3_8.system.parallelism
    assert (p.tensor, p.pipeline, p.data) == (8, 1, 1)
    # the chip is tpuv3.yaml's, unchanged
    assert v3_8.model_dump(exclude={"name", "system"}) == v3.model_dump(exclude={"name", "system"})


# -- every figure is cited -------------------------------------------------------------------

MY_CONFIGS = [TPUV3, TPUV4, TPUV3_8]


@pytest.mark.parametrize("path", MY_CONFIGS, ids=lambda p: p.name)
def test_every_value_is_commented(path):
    """As tests/test_config.py asks of bundled configs (systems/ too, here): a comment on the
    value's line or above its run of values."""
    from tests.test_config import assert_every_value_commented

    assert_every_value_commented(path, ("name", "description", "kind", "extends"))


@pytest.mark.parametrize("path", [TPUV3, TPUV4], ids=lambda p: p.name)
def test_every_source_tag_is_defined_and_documented(path):
    text = path.read_text()
    header = [line for line in text.splitlines() if line.startswith("#   [")]
    defined = {re.match(r"#   \[(\w+)\]", line).group(1) for line in header}
    comments = " ".join(line.split("#", 1)[1] for line in text.splitlines() if "#" in line)
    used = set(re.findall(r"\[([A-Z][A-Za-z0-9]+)\]", comments))
    assert used <= defined, f"tags used but not defined in the header: {sorted(used - defined)}"
    assert defined <= used, f"tags defined but never used: {sorted(defined - used)}"
    sources = SOURCES.read_text()
    for tag in defined:
        assert f"[{tag}]" in sources, f"[{tag}] is not described in {SOURCES.name}"


def test_silicon_data_copied_with_its_readme():
    for name in ("tpuv3_core.csv", "a100_80gb.csv", "gpt3_175b_layer.csv"):
        assert (SILICON / name).is_file()
    rows = (SILICON / "gpt3_175b_layer.csv").read_text().splitlines()
    assert rows[0] == "system,tensor_parallel,phase,category,measured_s,source"
    assert len(rows) == 1 + 2 * 2 * 12  # 2 systems x 2 phases x 12 categories
    assert "tpuv3_core.csv" in (SILICON / "README.md").read_text()


# -- the GPT-3 175B layer at tensor parallel 8 --------------------------------------------------

B, S, D, H, F, TP = 8, 2048, 12288, 96, 49152, 8
DH = D // H
KV_DECODE = 2048 + 1024 + 1  # LLMCompass's 3072-entry cache and the new token

# LLMCompass's 12 categories -> archsim op names (as the workload files' header comments say)
CATEGORIES = {
    "Q_K_V": ("block.attn.q", "block.attn.k", "block.attn.v"),
    "Q_mul_K": ("block.attn.score",),
    "A_mul_V": ("block.attn.context_mm",),
    "Wo_proj": ("block.attn.o",),
    "W1_proj": ("block.mlp.fc1",),
    "W2_proj": ("block.mlp.fc2",),
    "Softmax": ("block.attn.softmax",),
    "LayerNorm_MHA": ("block.norm1",),
    "LayerNorm_FFN": ("block.norm2",),
    "GeLU": ("block.mlp.act",),
    "AllReduce_MHA": ("block.attn.o.all_reduce",),
    "AllReduce_FFN": ("block.mlp.fc2.all_reduce",),
}
NOT_MEASURED = {"block.residual1", "block.residual2"}
DECODE_ONLY = {"block.attn.k_append", "block.attn.v_append"}


def hand_macs(tokens: int, kv: int) -> dict[str, int]:
    """MACs of one rank of 8 per category, counted by hand from the layer's shapes."""
    heads = H // TP
    return {
        "Q_K_V": 3 * B * tokens * D * (D // TP),
        "Q_mul_K": B * heads * tokens * DH * kv,
        "A_mul_V": B * heads * tokens * kv * DH,
        "Wo_proj": B * tokens * (D // TP) * D,
        "W1_proj": B * tokens * D * (F // TP),
        "W2_proj": B * tokens * (F // TP) * D,
    }


def ops_of(path, hw):
    (phase,) = load_workload(path, hw=hw).phases
    return {op.name: op for op in phase.graph.ops()}


@pytest.mark.parametrize("path,tokens,kv", [(PREFILL, S, S), (DECODE, 1, KV_DECODE)], ids=["prefill", "decode"])
def test_layer_ops_per_category_match_a_hand_count(v3_8, path, tokens, kv):
    ops = ops_of(path, v3_8)
    extra = NOT_MEASURED | (DECODE_ONLY if tokens == 1 else set())
    assert set(ops) == {name for names in CATEGORIES.values() for name in names} | extra
    for category, macs in hand_macs(tokens, kv).items():
        assert sum(ops[name].macs for name in CATEGORIES[category]) == macs, category
    rows = B * tokens
    # Q_K_V on the prefill: 3 * 8*2048 * 12288 * 12288/8
    if tokens == S:
        assert hand_macs(tokens, kv)["Q_K_V"] == 3 * 8 * 2048 * 12288 * 12288 // 8
    softmax = ops[CATEGORIES["Softmax"][0]]
    assert (softmax.rows, softmax.row_length) == (B * (H // TP) * tokens, kv)
    for category in ("LayerNorm_MHA", "LayerNorm_FFN"):
        norm = ops[CATEGORIES[category][0]]
        assert (norm.kind, norm.rows, norm.row_length) == ("layernorm", rows, D)
    gelu = ops[CATEGORIES["GeLU"][0]]
    assert (gelu.function, gelu.elements) == ("gelu", rows * F // TP)
    for category in ("AllReduce_MHA", "AllReduce_FFN"):
        reduce = ops[CATEGORIES[category][0]]
        assert (reduce.kind, reduce.group, reduce.bytes) == ("all_reduce", TP, rows * D * 2)  # bf16
    for op in ops.values():
        for tensor in op.tensors:
            assert tensor.dtype == DType.BF16


def test_the_ranks_together_run_the_whole_layer(v3_8, v3):
    """8 ranks' MACs are the unsplit layer's (tensor parallelism adds no matrix work)."""
    for path in (PREFILL, DECODE):
        whole = load_workload(path, hw=v3).macs
        assert TP * load_workload(path, hw=v3_8).macs == whole
    assert load_workload(PREFILL, hw=v3).macs == 12 * B * S * D * D + 2 * B * H * S * S * DH


def test_decode_on_the_tpuv3_8_runs_with_ops():
    # launched op by op, as LLMCompass measured it: every measured category is a row of its own
    result = run_cli("run", str(TPUV3_8.relative_to(ROOT)), str(DECODE.relative_to(ROOT)), "--ops", "--dispatch", "call")
    assert result.returncode == 0, result.stderr
    for names in CATEGORIES.values():
        for name in names:
            assert re.search(rf"^\s*{re.escape(name)}\s", result.stdout, re.M), name
