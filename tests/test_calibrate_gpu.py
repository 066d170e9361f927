"""The calibration pieces the GPU model added, pinned by hand: the dispatch fit's call_overlap
projection (``fit._best_offset``), ``parameters.uncalibrated`` on the bundled A100 (its NCCL
fields), and where a microbenchmark finds a TPU-style chip's tensors (``benchmark_placement``)."""

from __future__ import annotations

from types import MappingProxyType

import numpy as np
import pytest

from archsim.api import load_hardware
from archsim.calibrate.fit import _best_offset
from archsim.calibrate.parameters import uncalibrated
from archsim.dtypes import DType
from archsim.hw.memory import Level, Placement
from archsim.ir.ops import Activation, Gemm
from archsim.ir.tensor import Role, Tensor
from archsim.sim.engine import Simulator
from tests.conftest import HW, TPUV4I_PLAIN

A100 = HW / "a100_80gb.yaml"
US = 1e-6


# -- the dispatch fit's projection -------------------------------------------------------------

def test_best_offset_hides_no_more_of_a_call_than_its_work():
    # one kind's rows: work 1 and 2 us, both measured at 10 us; the kind's kernels hide up to
    # 5 us of a call. A call of d >= 2 us costs each row work + d - min(5, work, d) = d: the
    # hidden part is capped by the row's own work (1 and 2 us), so d = 10 us fits both rows
    # exactly (cost 0). Capped by the overlap alone, min(5, d), the rows would take work + d - 5
    # and want d = 14 and 13 us.
    work, measured = np.array([1 * US, 2 * US]), np.array([10 * US, 10 * US])
    assert _best_offset(work, measured, 0.0, 100 * US, 5 * US) == pytest.approx(10 * US, rel=1e-6)
    # an overlap far beyond the work hides the work's worth only: still 10 us
    assert _best_offset(work, measured, 0.0, 100 * US, 1.0) == pytest.approx(10 * US, rel=1e-6)
    # a single row with no overlap: work + d = measured, d = 9 us
    assert _best_offset(work[:1], measured[:1], 0.0, 100 * US) == pytest.approx(9 * US, rel=1e-6)


# -- uncalibrated() on a GPU -------------------------------------------------------------------

def test_uncalibrated_resets_the_a100s_fitted_fields_nccls_included():
    bundled = load_hardware(A100)
    # the bundled config's fitted values, which the reset must not keep
    assert bundled.collectives.protocols["ll"].bandwidth_share == 0.05809
    assert bundled.collectives.protocols["ll128"].base_latency == pytest.approx(37.31 * US, rel=1e-12)
    assert bundled.collectives.protocols["simple"].base_latency == pytest.approx(63.54 * US, rel=1e-12)
    assert bundled.dispatch.call_overlap and bundled.l2.efficiency == 0.5951
    plain = load_hardware(A100, uncalibrated(bundled))
    ll, ll128, simple = (plain.collectives.protocols[p] for p in ("ll", "ll128", "simple"))
    # NCCL's fitted fields at the ideal machine's: the whole bus, no fixed latency
    assert ll.bandwidth_share == 1.0 and ll128.base_latency == 0.0 and simple.base_latency == 0.0
    # the protocols' cited fields kept: LL's 6.6 us and 87.7 GB/s cap, the hop latencies, LL128's 0.92
    assert (ll.base_latency, ll.hop_latency, ll.max_bus_bandwidth) == pytest.approx((6.6 * US, 0.6 * US, 87.7e9))
    assert (ll128.bandwidth_share, ll128.hop_latency, simple.hop_latency) == pytest.approx((0.92, 1.9 * US, 3.4 * US))
    # the GPU's other calibration fields at their schema defaults
    assert plain.dispatch.call == {"default": 0.0} and plain.dispatch.call_overlap == {}
    assert plain.dispatch.program == bundled.dispatch.program  # a program's launch is not fitted
    assert (plain.hbm.efficiency, plain.l2.efficiency, plain.sm.tensor_efficiency, plain.nvlink.efficiency) == \
        (1.0, 1.0, 1.0, 1.0)
    assert plain.hbm.write_efficiency is None
    # nothing else moved
    collectives = bundled.collectives.model_copy(update={"protocols": {
        "ll": bundled.collectives.protocols["ll"].model_copy(update={"bandwidth_share": 1.0}),
        "ll128": bundled.collectives.protocols["ll128"].model_copy(update={"base_latency": 0.0}),
        "simple": bundled.collectives.protocols["simple"].model_copy(update={"base_latency": 0.0})}})
    assert plain.collectives == collectives
    assert plain.model_copy(update={"dispatch": bundled.dispatch, "hbm": bundled.hbm, "l2": bundled.l2,
                                    "sm": bundled.sm, "nvlink": bundled.nvlink,
                                    "collectives": bundled.collectives}) == bundled


# -- benchmark_placement on a TPU-style chip ---------------------------------------------------

def test_a_tpu_style_chips_benchmark_placement_is_every_tensor_in_hbm():
    # TPUv4i (128 MiB of CMEM): a GEMM whose 1.1 MiB would fit the CMEM many times over, and a
    # GELU; a call timed on its own finds every tensor, weights included, in HBM, nothing
    # preloaded (a GPU keeps such a call's inputs warm in its L2: tests/test_gpu_model.py)
    sim = Simulator(load_hardware(TPUV4I_PLAIN))
    a, w = Tensor("g.a", (256, 512), DType.BF16), Tensor("g.w", (512, 512), DType.BF16, Role.WEIGHT)
    gemm = Gemm("g", (a, w), (Tensor("g.y", (256, 512), DType.BF16),), 1, 256, 512, 512, False)
    x, y = Tensor("x", (64, 1024), DType.BF16), Tensor("y", (64, 1024), DType.BF16)
    gelu = Activation("act", (x,), (y,), 64, 1024, "gelu")
    for op in (gemm, gelu):
        where = sim.benchmark_placement(op)
        assert dict(where.home) == {t.name: Level.HBM for t in op.tensors}
        assert where.preload == () and where.feasible
    # the GELU so placed reads its 128 KiB input from HBM and writes its output there
    c = sim.op_cost(gelu, sim.benchmark_placement(gelu), "p", 1)
    assert c.traffic.read(Level.HBM) == 128 * 1024 and c.traffic.write(Level.HBM) == 128 * 1024
    # the same GELU with its tensors in CMEM moves nothing through HBM: the placement matters
    on_chip = Placement(MappingProxyType({"x": Level.CMEM, "y": Level.CMEM}), (), True)
    assert sim.op_cost(gelu, on_chip, "p", 1).traffic.read(Level.HBM) == 0
