"""Energy and area values pinned against hand calculations (issue 15): per-action energies at
the chip's node, each component of an op's energy (MACs, CIM weight writes, vector ops, bytes
per level, static power x time), and the area per component.

Engine-level cases have a single mapping (one systolic MXU; one CIM unit with a one-row grid,
so a single grid split) and operands that all fit VMEM, so no mapper choice moves them.
"""

from __future__ import annotations

import pytest

from archsim.api import load_hardware, run_gemm, simulate
from archsim.dtypes import DType
from archsim.hw.area import chip_area
from archsim.hw.energy import Energy, EnergyModel, scale_factor
from archsim.hw.memory import Level, Traffic
from archsim.ir.ops import VectorWork
from tests.conftest import HW, TPUV4I_PLAIN as TPUV4I


@pytest.fixture(scope="module")
def tpuv4i():
    """TPUv4i with its calibration fields neutral: the hand calculations here are written for it."""
    return load_hardware(TPUV4I)
from tests.test_values_memory import softmax_workload

CIM = HW / "cim_tpu.yaml"
I8, BF16 = DType.INT8, DType.BF16
REL = 1e-12
pJ = 1e-12
mm2 = 1e-6
TO_7NM = 0.11 / 0.30  # DeepScaleTool energy factors, 22 nm -> 7 nm (tpuv4i.yaml)
# TPUv4i energies per byte: VMEM 1.75 pJ/B, CMEM 3.5 pJ/B, HBM 3.9 pJ/bit, ICI 5 pJ/bit
VMEM_E, CMEM_E, HBM_E, ICI_E = 1.75 * pJ, 3.5 * pJ, 3.9 * pJ * 8, 5 * pJ * 8
# Static power (tpuv4i.yaml leakage): 0.0716 W/mm^2 over the modelled die, by hand from the areas
# pinned in test_chip_area_per_component (MXUs 53.051392, VPU 10, VMEM 14, CMEM 112, ICI 10,
# periphery 150 mm^2), plus 5 W always on
DIE_MM2 = 53.051392 + 10 + 14 + 112 + 10 + 150
STATIC_W = 0.0716 * DIE_MM2 + 5.0  # 29.99208 W
LOAD_E = 2.90 * pJ * TO_7NM  # a byte of weight into a systolic PE (stated at 22 nm like the MACs)


def test_per_action_energies_at_7nm(tpuv4i):
    e = EnergyModel.of(tpuv4i)
    # MACs stated at 22 nm: 2.598 pJ (int8), 15.33 pJ (bf16) x 0.11 / 0.30
    assert e.mac[I8] == pytest.approx(2.598 * pJ * TO_7NM, rel=REL)
    assert e.mac[BF16] == pytest.approx(15.33 * pJ * TO_7NM, rel=REL)
    assert e.weight_write == pytest.approx(LOAD_E, rel=REL)  # a systolic array's weight loads
    # the rest is stated at the chip's node: no scaling
    assert (e.vpu_alu, e.vpu_special) == (pytest.approx(0.845 * pJ, rel=REL), pytest.approx(12.68 * pJ, rel=REL))
    assert e.read == {Level.VMEM: pytest.approx(VMEM_E, rel=REL), Level.CMEM: pytest.approx(CMEM_E, rel=REL),
                      Level.HBM: pytest.approx(HBM_E, rel=REL)}
    assert e.write == e.read
    assert e.ici == pytest.approx(ICI_E, rel=REL)
    assert e.static_power == pytest.approx(STATIC_W, rel=REL)


def test_cim_energies_at_7nm():
    e = EnergyModel.of(load_hardware(CIM))
    assert e.mac[I8] == pytest.approx(0.2755 * pJ * TO_7NM, rel=REL)
    assert e.mac[BF16] == pytest.approx(1.625 * pJ * TO_7NM, rel=REL)
    assert e.weight_write == pytest.approx(2.90 * pJ * TO_7NM, rel=REL)


def test_a_component_stated_at_another_node_is_scaled_by_the_table():
    hw = load_hardware(TPUV4I, ["vmem.stated_at=22 nm", "vpu.stated_at=45 nm", "ici.stated_at=28 nm",
                                "hbm.stated_at=16 nm"])
    e = EnergyModel.of(hw)
    assert e.read[Level.VMEM] == pytest.approx(VMEM_E * TO_7NM, rel=REL)
    assert e.write[Level.VMEM] == pytest.approx(VMEM_E * TO_7NM, rel=REL)
    assert e.read[Level.HBM] == pytest.approx(HBM_E * 0.11 / 0.22, rel=REL)
    assert e.read[Level.CMEM] == pytest.approx(CMEM_E, rel=REL)
    assert e.vpu_alu == pytest.approx(0.845 * pJ * 0.11 / 0.63, rel=REL)
    assert e.vpu_special == pytest.approx(12.68 * pJ * 0.11 / 0.63, rel=REL)
    assert e.ici == pytest.approx(ICI_E * 0.11 / 0.37, rel=REL)
    assert scale_factor(hw, 22e-9, "area") == pytest.approx(1.0 / 4.0, rel=REL)
    assert scale_factor(hw, None, "energy") == 1.0
    # at 22 nm the 22 nm figures are taken as they are
    at22 = EnergyModel.of(load_hardware(TPUV4I, ["technology.node=22 nm"]))
    assert at22.mac[I8] == pytest.approx(2.598 * pJ, rel=REL)
    assert at22.read[Level.HBM] == pytest.approx(HBM_E, rel=REL)  # stated at the chip's node


def test_points_sharing_their_units_share_per_action_energies_not_static_power(tpuv4i):
    """A sweep's points with the same unit sections (objects) and memory energies share the
    per-action energies; each has its own static power (a larger CMEM leaks more), and a memory
    whose energy differs has its own."""
    big = tpuv4i.model_copy(update={"cmem": tpuv4i.cmem.model_copy(update={"capacity": 2 * tpuv4i.cmem.capacity})})
    costly = tpuv4i.model_copy(update={"hbm": tpuv4i.hbm.model_copy(update={"read_energy": 2 * tpuv4i.hbm.read_energy})})
    base, larger, dearer = EnergyModel.of(tpuv4i), EnergyModel.of(big), EnergyModel.of(costly)
    assert larger.mac is base.mac and larger.read is base.read  # shared
    assert larger.static_power == pytest.approx(STATIC_W + 0.0716 * 112, rel=REL)  # CMEM 112 -> 224 mm^2
    assert dearer.read[Level.HBM] == pytest.approx(2 * HBM_E, rel=REL) and dearer.read is not base.read
    assert base.read[Level.HBM] == pytest.approx(HBM_E, rel=REL)


def test_op_energy_adds_each_action():
    model = EnergyModel(mac={I8: 2.0}, weight_write=3.0, vpu_alu=5.0, vpu_special=7.0,
                        read={Level.VMEM: 11.0, Level.CMEM: 13.0, Level.HBM: 17.0},
                        write={Level.VMEM: 19.0, Level.CMEM: 23.0, Level.HBM: 29.0}, ici=31.0, static_power=37.0)
    traffic = Traffic(100, 200, 300, 400, 500, 600)
    e = model.op_energy(2.0, traffic, macs=1000, dtype=I8, weight_write_bytes=50, vector=VectorWork(7, 3))
    assert e == Energy(
        mxu=1000 * 2 + 50 * 3,  # MACs and weight writes
        vpu=7 * 5 + 3 * 7,  # ALU and special ops
        vmem=100 * 11 + 200 * 19, cmem=300 * 13 + 400 * 23, hbm=500 * 17 + 600 * 29,  # bytes read, written
        ici=0.0, static=37 * 2.0)  # static power x time
    assert model.op_energy(0.5, Traffic()) == Energy(static=18.5)
    # a chip without CMEM has no CMEM energies
    bare = EnergyModel(mac={I8: 2.0}, weight_write=0.0, vpu_alu=0.0, vpu_special=0.0,
                       read={Level.VMEM: 1.0, Level.HBM: 2.0}, write={Level.VMEM: 1.0, Level.HBM: 2.0},
                       ici=0.0, static_power=0.0)
    assert bare.op_energy(0.0, Traffic(1, 1, 0, 0, 1, 1)).total == 1 + 1 + 2 + 2


def test_systolic_gemm_energy_per_component():
    # 64 x 256 x 512 int8 on one MXU: bytes per level as pinned in test_values_memory
    r = run_gemm(load_hardware(TPUV4I, ["mxu.count=1"]), 64, 256, 512)
    (op,) = r.ops
    macs = 64 * 256 * 512
    e = op.energy
    # the MACs (7.99 uJ) and the weight tile loaded into the PEs once: 256 x 512 bytes (0.139 uJ)
    assert e.mxu == pytest.approx(macs * 2.598 * pJ * TO_7NM + 256 * 512 * LOAD_E, rel=REL)
    assert e.vmem == pytest.approx((229376 + 180224) * VMEM_E, rel=REL)
    assert e.cmem == pytest.approx((64 * 256 + 64 * 512) * CMEM_E, rel=REL)
    assert e.hbm == pytest.approx(256 * 512 * HBM_E, rel=REL)
    assert (e.vpu, e.ici) == (0.0, 0.0)
    one_mxu = STATIC_W - 0.0716 * 53.051392 * 3 / 4  # a die with one MXU of four leaks less
    assert e.static == pytest.approx(one_mxu * op.latency_s, rel=REL)
    assert r.energy.static == pytest.approx(one_mxu * r.latency_s, rel=REL)
    assert r.energy.total == pytest.approx(e.mxu + e.vmem + e.cmem + e.hbm + one_mxu * r.latency_s, rel=REL)
    assert r.tops_per_w == pytest.approx(2 * macs / r.energy.total / 1e12, rel=REL)


def test_cim_gemm_energy_counts_weight_writes():
    # one CIM unit with a 1 x 8 grid (one grid split): K tile 128, N tile 256. 16 x 256 x 512
    # int8 is 2 x 2 folds of 16 rows: 128 + 3 x (16 x 32 + 8) + 520 = 2208 cycles; every weight
    # written once (M fits one psum chunk): 256 x 512 bytes
    hw = load_hardware(CIM, ["mxu.count=1", "mxu.cim.grid=[1, 8]"])
    r = run_gemm(hw, 16, 256, 512)
    (op,) = r.ops
    macs, weights = 16 * 256 * 512, 256 * 512
    assert op.compute_cycles == 2208
    mac_e, write_e = 0.2755 * pJ * TO_7NM, 2.90 * pJ * TO_7NM
    assert op.energy.mxu == pytest.approx(macs * mac_e + weights * write_e, rel=REL)
    assert weights * write_e / op.energy.mxu == pytest.approx(0.397, abs=1e-3)  # 40% of the MXU's energy
    # VMEM: the arrays read A once per N fold (2 x 4 KiB) and B once per load, write C (8 KiB);
    # the DMA fills A and B and drains C
    a, c = 16 * 256, 16 * 512
    assert op.traffic.vmem_read == c + 2 * a + weights
    assert op.traffic.vmem_write == a + weights + c
    assert op.energy.vmem == pytest.approx((2 * c + 3 * a + 2 * weights) * VMEM_E, rel=REL)


def test_vector_op_energy(tpuv4i):
    # softmax over 8 x 1000 bf16 in three passes: 5 ALU ops an element (40000) at 0.845 pJ, two
    # exps an element and a reciprocal a row (16008) at 12.68 pJ; x (16000 B) read from CMEM by
    # every pass, y written once: 64000 B of CMEM traffic, each byte also written to and read
    # from VMEM (128000 B)
    (op,) = simulate(tpuv4i, softmax_workload(8, 1000)).ops
    assert op.energy.vpu == pytest.approx(40000 * 0.845 * pJ + 16008 * 12.68 * pJ, rel=REL)
    assert op.energy.vmem == pytest.approx(128000 * VMEM_E, rel=REL)
    assert op.energy.cmem == pytest.approx(64000 * CMEM_E, rel=REL)
    assert (op.energy.mxu, op.energy.hbm) == (0.0, 0.0)
    assert op.energy.static == pytest.approx(STATIC_W * op.latency_s, rel=REL)


def test_preload_energy(tpuv4i):
    from tests.test_values_memory import two_weights

    preload = simulate(tpuv4i, two_weights(8)).ops[0]
    assert preload.phase == "preload"
    # 1 MiB read from HBM and written into CMEM
    assert preload.energy.hbm == pytest.approx(2**20 * HBM_E, rel=REL)
    assert preload.energy.cmem == pytest.approx(2**20 * CMEM_E, rel=REL)
    assert preload.energy.static == pytest.approx(STATIC_W * preload.latency_s, rel=REL)


def test_chip_area_per_component(tpuv4i):
    a = chip_area(tpuv4i)
    # 4 MXUs of 128 x 128 PEs of 3.238e-3 mm^2 at 22 nm, x 1/4.0 at 7 nm: 53.051392 mm^2
    assert a.mxu == pytest.approx(4 * 16384 * 3.238e-3 * mm2 / 4.0, rel=REL)
    assert a.vmem == pytest.approx(16 * 0.875 * mm2, rel=REL)  # 16 MiB at 0.875 mm^2/MiB
    assert a.cmem == pytest.approx(128 * 0.875 * mm2, rel=REL)
    assert (a.vpu, a.ici, a.periphery) == (pytest.approx(10 * mm2), pytest.approx(10 * mm2), pytest.approx(150 * mm2))
    assert a.total == pytest.approx((53.051392 + 14 + 112 + 10 + 10 + 150) * mm2, rel=REL)
    # CIM: 4 units x 16 x 8 cores x 0.2052 mm^2 at 22 nm, / 4.0
    assert chip_area(load_hardware(CIM)).mxu == pytest.approx(4 * 128 * 0.2052 * mm2 / 4.0, rel=REL)
    # an SRAM stated at 22 nm shrinks with the area table; 8 MXUs double the MXU area
    assert chip_area(load_hardware(TPUV4I, ["vmem.stated_at=22 nm"])).vmem == pytest.approx(14 * mm2 / 4.0, rel=REL)
    assert chip_area(load_hardware(TPUV4I, ["mxu.count=8"])).mxu == pytest.approx(2 * a.mxu, rel=REL)
    assert chip_area(load_hardware(TPUV4I, ["cmem=null"])).cmem == 0.0


def test_area_and_static_power_kept_by_the_sections_they_read(tpuv4i):
    """A sweep's points share their sections as objects: the area and the static power are kept
    by those they read, so a design differing in HBM alone shares them, one differing in CMEM's
    capacity or the leakage does not (by hand: 128 MiB more CMEM is 112 mm^2 more)."""
    from archsim.hw.leakage import static_power

    def copy(hw, **sections):
        return hw.model_copy(update={name: getattr(hw, name).model_copy(update=values)
                                     for name, values in sections.items()})

    faster = copy(tpuv4i, hbm={"bandwidth": 2 * tpuv4i.hbm.bandwidth})
    bigger = copy(tpuv4i, cmem={"capacity": 2 * tpuv4i.cmem.capacity})
    leakier = copy(tpuv4i, leakage={"sram": 0.2 / mm2})
    assert chip_area(faster) is chip_area(tpuv4i)
    assert EnergyModel.of(faster) is EnergyModel.of(tpuv4i)
    assert chip_area(bigger).cmem == pytest.approx(224 * mm2, rel=REL)
    assert chip_area(tpuv4i).cmem == pytest.approx(112 * mm2, rel=REL)
    assert EnergyModel.of(bigger).static_power == pytest.approx(STATIC_W + 0.0716 * 112, rel=REL)
    assert EnergyModel.of(tpuv4i).static_power == pytest.approx(STATIC_W, rel=REL)
    # SRAM (VMEM 14, CMEM 112 mm^2) at 0.2 W/mm^2 instead of 0.0716
    assert static_power(leakier) == pytest.approx(STATIC_W + (0.2 - 0.0716) * 126, rel=REL)
    assert static_power(tpuv4i) == pytest.approx(STATIC_W, rel=REL)
    assert EnergyModel.of(tpuv4i.model_copy(update={"leakage": None, "static_power": 0.0})).static_power == 0.0


def test_static_power_follows_the_die(tpuv4i):
    from archsim.hw.leakage import static_breakdown, static_power

    s = static_breakdown(tpuv4i)
    assert s.mxu == pytest.approx(0.0716 * 53.051392, rel=REL)
    assert (s.vmem, s.cmem) == (pytest.approx(0.0716 * 14, rel=REL), pytest.approx(0.0716 * 112, rel=REL))
    assert s.periphery == pytest.approx(0.0716 * 150, rel=REL) and s.always_on == 5.0
    assert static_power(tpuv4i) == pytest.approx(STATIC_W, rel=REL)
    # SRAM and logic densities apart: 256 MiB of CMEM (224 mm^2) at 0.2 W/mm^2 adds 224 x 0.2 - 112 x 0.0716
    big = load_hardware(TPUV4I, ["cmem.capacity=256 MiB", "leakage.sram=0.2 W/mm^2"])
    assert static_power(big) == pytest.approx(STATIC_W + 224 * 0.2 - 112 * 0.0716 + 14 * (0.2 - 0.0716), rel=REL)
    # CIM Design A: 4 units of 8 x 8 cores of 0.2052 mm^2 at 22 nm (x 1/4 at 7 nm) = 13.1328 mm^2
    a = static_breakdown(load_hardware(HW / "cim_design_a.yaml"))
    assert a.mxu == pytest.approx(0.0716 * 4 * 64 * 0.2052 / 4.0, rel=REL)
    assert a.total == pytest.approx(STATIC_W - 0.0716 * (53.051392 - 13.1328), rel=REL)
    # one measured figure instead of the model: all of it always on
    flat = load_hardware(TPUV4I, ["leakage=null", "static_power=42 W"])
    assert static_power(flat) == 42.0 == static_breakdown(flat).always_on



def test_a_split_stream_loads_its_weight_tile_into_every_array(tpuv4i):
    # 1024 x 128 x 128 int8: one 128 x 128 fold on 4 MXUs, the stream split 4 ways (256 rows each:
    # 128 load + 256 + 254 skew - 1 = 637 cycles), so each array holds its own copy of the tile
    (op,) = run_gemm(tpuv4i, 1024, 128, 128).ops
    assert op.compute_cycles == 128 + 256 + 254 - 1
    assert op.energy.mxu == pytest.approx(1024 * 128 * 128 * 2.598 * pJ * TO_7NM + 4 * 128 * 128 * LOAD_E, rel=REL)
