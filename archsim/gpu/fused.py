"""A fused op's cost on a GPU (``GpuSimulator``): the formula of archsim/sim/fused.py with the
GPU's main-op cost and epilogue rates. The main op is the GPU's own kernel for it (a cuBLASLt
GEMM with an epilogue [CUBLASLT], a fused element-wise kernel [VLLM]); the epilogue's work runs on
the CUDA cores and special-function units as a streamed kernel's does (``_streamed``), and its
extra inputs are read from HBM unless warm in L2, all through L2.
"""

from __future__ import annotations

from archsim.hw.memory import Level, Traffic
from archsim.ir.fused import Fused
from archsim.sim.cost import OpCost
from archsim.sim.fused import combine, core_op


def gpu_fused_cost(sim, op: Fused, warm: tuple[bool, ...]) -> OpCost:
    hw = sim.hw
    core = core_op(op)
    main = sim._cost(core, warm[:len(core.inputs)])
    work = op.epilogue_work
    epi_s = max(work.alu / hw.vector_ops_per_second,
                work.special / (hw.sm.count * hw.sm.special_ops_per_cycle * hw.clock))
    read = from_hbm = 0.0
    for (tensor, times), hot in zip(op.extra_reads, warm[len(core.inputs):]):
        read += tensor.bytes * times
        from_hbm += 0.0 if hot else tensor.bytes * times
    extra = Traffic.of(Level.HBM, read=from_hbm) + Traffic.of(Level.CMEM, read=read)
    extra_ch = {Level.HBM: from_hbm / hw.hbm.achievable_bandwidth, Level.CMEM: read / hw.l2.achievable_bandwidth}
    return combine(op, main, work, epi_s, extra, extra_ch, sim.energy, hw.clock, "sm")
