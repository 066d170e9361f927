"""The cost of a flash-attention kernel (``ops.FlashAttention``) on a TPU-style chip; the GPU's is
``GpuSimulator._flash_cost``."""

from __future__ import annotations

from archsim.hw.matrix import MatmulShape
from archsim.hw.memory import Level, Placement, Traffic
from archsim.hw.timing import access_latency, channel_times, overlapped_seconds
from archsim.hw.vector import vector_cycles
from archsim.ir import ops
from archsim.sim.cost import OpCost, busy_of
from archsim.sim.op_rules import UnsupportedOpError, bottleneck, wider


def tpu_flash_cost(sim, op: ops.FlashAttention, placement: Placement, phase: str, repeat: int) -> OpCost:
    """A flash-attention kernel: its two matmuls over the computed score blocks on the
    matrix units (each at its fastest mapping), its online softmax on the vector unit, and its
    operands streamed through VMEM (K and V once per query block unless one KV head's fit a
    share of VMEM, ``compiler.kv_share``), the three overlapped block by block."""
    q, k, v = op.inputs
    dtype = wider(op.name, q.dtype, k.dtype)
    if not sim.matrix_unit.supports(dtype):
        raise UnsupportedOpError(f"op {op.name!r}: the matrix units do not support {dtype}")
    rows = op.group * op.q_len
    keys = -(-op.pairs // op.q_len)  # keys per query row, on average over the blocks computed
    out = op.outputs[0]
    cycles = 0.0
    for shape in (MatmulShape(op.batch, rows, op.dh, keys, dtype, True, None, None),
                  MatmulShape(op.batch, rows, keys, op.dh, dtype, True, None, None)):
        cycles += min(a.compute_cycles for a in sim.matrix_unit.mappings(shape, out.dtype))
    work = op.vector_work
    array_s, vector_s = cycles / sim.hw.clock, vector_cycles(sim.hw.vpu, work) / sim.hw.clock
    q_blocks = -(-rows // op.block)
    kv_reads = 1 if (k.bytes + v.bytes) / op.batch <= sim.hw.vmem.capacity * sim.hw.compiler.kv_share else q_blocks
    traffic = Traffic()
    for tensor, times in ((q, 1), (k, kv_reads), (v, kv_reads)):
        traffic += Traffic.of(placement.level(tensor), read=tensor.bytes * times)
        traffic += Traffic.of(Level.VMEM, read=tensor.bytes * times, write=tensor.bytes * times)
    traffic += Traffic.of(placement.level(out), write=out.bytes) + Traffic.of(Level.VMEM, read=out.bytes,
                                                                              write=out.bytes)
    times = channel_times(sim.hw, traffic)
    memory_s = max(times.values())
    compute_s = max(array_s, vector_s)
    steps = op.batch * op.group * op.tiles
    latency = overlapped_seconds(memory_s, compute_s, steps, access_latency(sim.hw, times))
    unit = "mxu" if array_s >= vector_s else "vpu"
    return OpCost(
        phase=phase, name=op.name, kind=op.kind, unit=op.unit.value, repeat=repeat, copies=op.copies,
        macs=op.macs, vector_ops=work.alu + work.special, compute_cycles=compute_s * sim.hw.clock,
        compute_s=compute_s, memory_s=memory_s, latency_s=latency, traffic=traffic,
        energy=sim.energy.op_energy(latency, traffic, op.macs, dtype, vector=work),
        bottleneck=bottleneck(compute_s, times, unit), peak_macs_per_s=sim.hw.peak_macs_per_second(dtype),
        tiling=f"flash {op.block}x{op.block} blocks" + (", causal" if op.causal else ""),
        busy=busy_of(("mxu", array_s), ("vpu", vector_s), channels=times),
    )
