"""CIM matrix units, and the energy and area model."""

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from archsim.api import gemm_workload, load_hardware, load_workload, simulate
from archsim.dtypes import DType
from archsim.hw.area import chip_area
from archsim.hw.energy import COMPONENTS, Energy, EnergyModel
from archsim.hw.matrix import MatmulShape, build_matrix_unit
from archsim.hw.memory import ZERO_TRAFFIC
from archsim.hw.leakage import static_power
from tests.conftest import HW, TPUV4I, WORKLOADS, TPUV4I_PLAIN

CIM = HW / "cim_tpu.yaml"
AT_22NM = ["technology.node=22 nm"]


def test_table_ii_energy_ratio_at_22nm():
    # [CIM] Table II at 22 nm: CIM-MXU 7.26 TOPS/W, 9.43x a systolic MXU of equal MACs/cycle.
    systolic = load_hardware(TPUV4I, AT_22NM)
    cim = load_hardware(CIM, AT_22NM)
    assert systolic.mxu.macs_per_cycle(DType.INT8) == cim.mxu.macs_per_cycle(DType.INT8) == 16384
    e_sys = EnergyModel.of(systolic).mac[DType.INT8]
    e_cim = EnergyModel.of(cim).mac[DType.INT8]
    assert 2 / e_cim / 1e12 == pytest.approx(7.26, rel=1e-3)
    assert e_sys / e_cim == pytest.approx(9.43, rel=1e-3)
    # scaling to 7 nm keeps the ratio
    assert EnergyModel.of(load_hardware(TPUV4I)).mac[DType.INT8] / EnergyModel.of(load_hardware(CIM)).mac[DType.INT8] \
        == pytest.approx(9.43, rel=1e-3)


def test_table_ii_area_ratio():
    systolic, cim = load_hardware(TPUV4I, AT_22NM), load_hardware(CIM, AT_22NM)
    assert systolic.mxu.unit_area / cim.mxu.unit_area == pytest.approx(2.02, rel=2e-3)
    # 1.31 TOPS/mm^2 at 1.05 GHz for the CIM-MXU
    tops = 2 * cim.mxu.macs_per_cycle(DType.INT8) * cim.clock / 1e12
    assert tops / (cim.mxu.unit_area * 1e6) == pytest.approx(1.31, rel=1e-3)


def test_node_scaling_follows_the_table():
    at7, at22 = load_hardware(TPUV4I), load_hardware(TPUV4I, AT_22NM)
    assert EnergyModel.of(at7).mac[DType.INT8] / EnergyModel.of(at22).mac[DType.INT8] == pytest.approx(0.11 / 0.30)
    assert chip_area(at7).mxu / chip_area(at22).mxu == pytest.approx(1 / 4.0)


@pytest.mark.parametrize("hw_file", [TPUV4I, CIM])
@pytest.mark.parametrize("workload", ["gpt3_30b_layer_prefill.yaml", "dit_xl_2_block_512.yaml", "llada_8b_odb.yaml"])
def test_energy_components_sum_to_total(hw_file, workload):
    r = simulate(load_hardware(hw_file, ["hbm.capacity=64 GiB"]), load_workload(WORKLOADS / workload))
    assert sum(r.energy.as_dict().values()) == pytest.approx(r.energy.total, rel=1e-12)
    table = r.table()
    assert (table["energy_j"] * table["count"]).sum() == pytest.approx(r.energy.total, rel=1e-12)
    for c in COMPONENTS:
        assert (table[f"energy_{c}_j"] * table["count"]).sum() == pytest.approx(getattr(r.energy, c), rel=1e-12, abs=1e-18)
    assert r.energy.static == pytest.approx(static_power(r.hw) * r.latency_s, rel=1e-12)
    assert r.power_w == pytest.approx(r.energy.total / r.latency_s)


def test_zero_work_costs_only_static_energy(tpuv4i):
    model = EnergyModel.of(tpuv4i)
    assert model.op_energy(1e-3, ZERO_TRAFFIC) == Energy(static=static_power(tpuv4i) * 1e-3)
    assert model.op_energy(0.0, ZERO_TRAFFIC).total == 0


@pytest.mark.parametrize("hw_file", [TPUV4I, CIM])
def test_energy_is_linear_in_repeat_counts(hw_file):
    """Under one placement, energy is affine in the step count (the preload is paid once)."""
    from archsim.config.loader import parse_overrides
    from archsim.hw.memory import place
    from archsim.sim.engine import Simulator

    hw = load_hardware(hw_file)
    def workload(steps):
        return load_workload(WORKLOADS / "dit_xl_2.yaml", parse_overrides([f"steps={steps}"]))
    for placement in place(hw, workload(8)):
        e2, e4, e8 = (Simulator(hw).run_with(workload(n), placement).energy.total for n in (2, 4, 8))
        assert e8 - e4 == pytest.approx(2 * (e4 - e2), rel=1e-9)


# -- CIM timing ----------------------------------------------------------------------------

def cim_unit(*overrides):
    hw = load_hardware(CIM, ["mxu.count=1", *overrides])
    return hw, build_matrix_unit(hw.mxu)


def test_grid_split_serves_short_reductions():
    _, unit = cim_unit()
    # attention scores of DiT-XL/2 at 512x512: 128 (batch x heads) matrices, K = head dim 72
    t = unit.timing(MatmulShape(128, 1024, 72, 1024, DType.INT8, b_batched=True), DType.INT8)
    whole_grid = unit.model._timing(MatmulShape(128, 1024, 72, 1024, DType.INT8, b_batched=True), DType.INT8, 16, 1)
    assert t.compute_cycles * 15 < whole_grid.compute_cycles  # 16 groups instead of 1 row in 16


def test_gemm_that_fits_loads_weights_once():
    hw, unit = cim_unit()
    # one fold: K <= 16 x 128 = 2048, N <= 8 x 32 = 256; 64 rows x 32 cycles + 8-cycle fill; 128-cycle load
    t = unit.timing(MatmulShape(1, 64, 2048, 256, DType.INT8), DType.INT8)
    assert t.compute_cycles == 128 + 64 * 32 + 8
    assert t.weight_write_bytes == 2048 * 256


def test_gemm_that_does_not_fit_reloads():
    hw, unit = cim_unit()
    t = unit.timing(MatmulShape(1, 8, 4096, 512, DType.INT8), DType.INT8)  # 2 x 2 folds
    compute, load = 8 * 32 + 8, 128
    assert t.compute_cycles == load + 3 * max(compute, load) + compute
    serial = build_matrix_unit(load_hardware(CIM, ["mxu.count=1", "mxu.cim.reload_overlap=false"]).mxu)
    assert serial.timing(MatmulShape(1, 8, 4096, 512, DType.INT8), DType.INT8).compute_cycles == 4 * (load + compute)


def test_partial_sums_beyond_the_buffer_reload_weights():
    _, unit = cim_unit()
    # 4 KiB buffer / (32 outputs x 4 B) = 32 rows per chunk when K needs several folds
    t = unit.timing(MatmulShape(1, 100, 4096, 256, DType.INT8), DType.INT8)
    assert t.weight_write_bytes == 4 * 4096 * 256  # 4 chunks of 32 rows
    one_k_fold = unit.timing(MatmulShape(1, 100, 2048, 256, DType.INT8), DType.INT8)
    assert one_k_fold.weight_write_bytes == 2048 * 256  # no partial sums to keep


dims = st.integers(1, 6000)


@settings(max_examples=80, deadline=None)
@given(dims, dims, dims, st.sampled_from([[8, 8], [16, 8], [16, 16]]), st.integers(1, 8), st.sampled_from(["int8", "bf16"]))
def test_overlapped_reload_never_slower(m, k, n, grid, count, dtype):
    grid_option = f"mxu.cim.grid=[{grid[0]}, {grid[1]}]"
    shape = MatmulShape(1, m, k, n, DType(dtype))
    fast = build_matrix_unit(load_hardware(CIM, [grid_option, f"mxu.count={count}"]).mxu).timing(shape, DType(dtype))
    slow = build_matrix_unit(load_hardware(CIM, [grid_option, f"mxu.count={count}", "mxu.cim.reload_overlap=false"]).mxu).timing(shape, DType(dtype))
    assert fast.compute_cycles <= slow.compute_cycles
    assert fast.macs / (fast.compute_cycles * fast.peak_macs_per_cycle) <= 1


@settings(max_examples=40, deadline=None)
@given(dims, dims, dims)
def test_cim_latency_at_or_above_roofline(m, k, n):
    hw = load_hardware(CIM)
    r = simulate(hw, gemm_workload(m, k, n))
    assert r.latency_s >= max(r.macs / hw.peak_macs_per_second(DType.INT8), k * n / hw.hbm.bandwidth)


def test_decode_gemm_cim_beats_systolic_under_scalesim():
    # GPT-3-30B decode projection at batch 8: M=8, K=N=7168, int8.
    # (both at HBM's peak bandwidth: the calibrated efficiency is pinned elsewhere)
    systolic = simulate(load_hardware(TPUV4I_PLAIN, ["mxu.fold_model=scalesim"]), gemm_workload(8, 7168, 7168))
    cim = simulate(load_hardware(CIM, ["hbm.efficiency=1"]), gemm_workload(8, 7168, 7168))
    # systolic: 784 folds per MXU, each 8 + 256 + 126 cycles of mostly fill and drain
    assert systolic.ops[0].compute_cycles == 784 * (8 + 2 * 128 + 128 - 2) - 1
    # CIM: the mapper splits each 16x8 grid into two 8-row groups (K tile 1024 divides 7168,
    # 2048 would leave half a fold idle): 196 folds over 8 groups, 25 on the busiest, each
    # 8 rows x 32 cycles + 8 fill, 128-cycle reloads hidden; HBM-bound
    assert cim.ops[0].compute_cycles == 128 + 24 * 264 + 264
    assert cim.ops[0].bottleneck == "hbm"
    speedup = systolic.latency_s / cim.latency_s
    assert 3.3 < speedup < 3.6, speedup
    assert systolic.energy.mxu > 3 * cim.energy.mxu


def test_changing_kind_replaces_the_inherited_section(tmp_path):
    hw = load_hardware(CIM)
    assert hw.mxu.kind == "cim" and not hasattr(hw.mxu, "rows")
    assert hw.vmem == load_hardware(TPUV4I).vmem  # the rest is inherited


def test_designs_a_and_b():
    a, b = load_hardware(HW / "cim_design_a.yaml"), load_hardware(HW / "cim_design_b.yaml")
    assert (a.mxu.count, a.mxu.cim.grid) == (4, (8, 8)) and (b.mxu.count, b.mxu.cim.grid) == (8, (16, 8))
    assert a.sweep.axes is None and load_hardware(CIM).sweep.axes == {
        "mxu.cim.grid": [[8, 8], [16, 8], [16, 16]], "mxu.count": [2, 4, 8]}
    assert math.isclose(chip_area(b).mxu, 2 * chip_area(load_hardware(CIM)).mxu)


def test_op_energy_by_hand_on_a_chip_without_cmem():
    # per action: MAC 1 pJ (bf16), weight write 2 pJ/B, ALU op 3 pJ, transcendental 4 pJ; VMEM
    # reads 0.1 and writes 0.2 pJ/B, HBM 5 and 6 pJ/B, no CMEM; 10 W static over 1 us
    from archsim.dtypes import DType
    from archsim.hw.energy import EnergyModel
    from archsim.hw.memory import Level, Traffic
    from archsim.ir.ops import VectorWork

    model = EnergyModel(mac={DType.BF16: 1e-12}, weight_write=2e-12, vpu_alu=3e-12, vpu_special=4e-12,
                        read={Level.VMEM: 1e-13, Level.HBM: 5e-12}, write={Level.VMEM: 2e-13, Level.HBM: 6e-12},
                        ici=0.0, static_power=10.0)
    e = model.op_energy(1e-6, Traffic(1.0, 2.0, 3.0, 4.0, 5.0, 6.0), 10, DType.BF16, 7.0, VectorWork(8, 9))
    assert e.mxu == pytest.approx(10 * 1e-12 + 7 * 2e-12)
    assert e.vpu == pytest.approx(8 * 3e-12 + 9 * 4e-12)
    assert e.vmem == pytest.approx(1 * 1e-13 + 2 * 2e-13)
    assert (e.cmem, e.ici) == (0.0, 0.0)  # CMEM traffic on a chip without one costs nothing here
    assert e.hbm == pytest.approx(5 * 5e-12 + 6 * 6e-12)
    assert e.static == pytest.approx(1e-5)
    assert model.op_energy(1e-6, Traffic(hbm_read=1.0)).mxu == 0.0  # no MACs: no MAC energy
