"""Evaluate a workload on a GPU: every tensor in HBM (the L2 is a cache, not a placement), every
op a kernel: matmuls as tiled kernels (``archsim.gpu.gemm``), vector ops as one kernel each
streaming their data (``kernels`` says how often it reads its input), collectives as NCCL runs
them (``archsim.gpu.collectives``), each paying the kernel's launch (``dispatch``).

**The L2 between kernels.** A tensor is *warm* when a kernel finds it in L2 as it starts: its
reads hit L2, not HBM (its writes still reach HBM: the L2 writes dirty lines back). In a run, an
activation is warm for its readers when it fits in half the L2's usable capacity and every
reader runs right after the kernel that wrote it (a chain of ops, not a residual read much
later): ``l2_resident``. A microbenchmark repeating one call finds its inputs warm when the
call's whole working set fits there (``benchmark_placement``): the measurements of
``experiments/data/silicon`` reuse their inputs from call to call. A warm tensor's home in the
``Placement`` is ``Level.CMEM``.

The interface is the TPU-style chip's (``archsim.sim.engine.Simulator``): ``run``, ``run_with``,
``op_cost``, ``op_time``, ``benchmark_placement``, ``topology``; the results are the same
``RunResult`` and ``OpCost``.
"""

from __future__ import annotations

import math
from types import MappingProxyType

from archsim.config.gpu import GpuConfig, KernelConfig
from archsim.gpu.collectives import collective_time
from archsim.gpu.fused import gpu_fused_cost
from archsim.gpu.gemm import GemmShape, plan_gemm
from archsim.gpu.power import gpu_energy_model
from archsim.hw.energy import Energy
from archsim.hw.memory import Level, Placement, Traffic
from archsim.hw.placement import place
from archsim.ir import ops
from archsim.ir.fused import Fused
from archsim.ir.graph import Workload
from archsim.ir.tensor import Role
from archsim.memo import BoundedMemo
from archsim.sim.cost import OpCost, busy_of
from archsim.passes import compile_for
from archsim.sim.op_rules import UnsupportedOpError, collective_group, compute_dtype, wider
from archsim.sim.result import RunResult
from archsim.sim.schedule import charge_static, schedule_run
from archsim.system.topology import topology_of

_DEFAULT_KERNEL = KernelConfig()


class GpuSimulator:
    """A GPU ready to evaluate workloads. Immutable after construction; reuse it freely."""

    def __init__(self, hw: GpuConfig, placement_policy: str = "time_knapsack", dispatch: str = "program"):
        if dispatch not in ("program", "call"):
            raise ValueError(f"dispatch must be 'program' or 'call', not {dispatch!r}")
        self.hw = hw
        self.placement_policy = placement_policy
        self.dispatch = dispatch
        self.overlaps = dispatch == "program" and hw.compiler.overlaps
        self.energy = gpu_energy_model(hw)
        self.topology = topology_of(hw)
        # every value an op's cost may read (the system's too: a collective's group and links)
        self._key = repr(hw.model_dump(exclude={"name", "description", "sweep", "explore", "tdp", "periphery_area"}))

    def run(self, workload: Workload) -> RunResult:
        """Every tensor in HBM, the run feasible when its footprint fits the HBM; activations
        passed from one kernel to the next through L2 are warm (``l2_resident``). The graph is
        first what the libraries make of it (``archsim.passes.compile_for``)."""
        if self.dispatch == "program":  # ops launched one by one (``call``) fuse and overlap nothing
            workload = compile_for(self.hw, workload)
        plans = place(self.hw, workload, self.placement_policy, self.op_time)
        feasible = [p for p in plans if p.feasible]
        if not feasible:
            return RunResult.infeasible(self.hw, workload, plans[0].reason)
        warm = l2_resident(workload, self.hw.l2.resident_capacity)
        home = {name: Level.CMEM if name in warm else level for name, level in feasible[0].home.items()}
        return self.run_with(workload, Placement(MappingProxyType(home), (), True))

    def benchmark_placement(self, op: ops.Op) -> Placement:
        """Where a microbenchmark calling ``op`` again and again finds its tensors: when the
        call's whole working set (inputs and outputs) fits in half the L2's usable capacity, it
        stays there between calls and the inputs are warm; otherwise every tensor is in HBM."""
        warm = sum(t.bytes for t in op.tensors) <= self.hw.l2.resident_capacity
        inputs = {t.name for t in op.inputs}
        return Placement(MappingProxyType({t.name: Level.CMEM if warm and t.name in inputs else Level.HBM
                                           for t in op.tensors}), (), True)

    def run_with(self, workload: Workload, placement: Placement) -> RunResult:
        costs = [self.op_cost(op, placement, phase.name, phase.repeat)
                 for phase in workload.phases for op in phase.graph.ops()]
        if not self.overlaps or all(len(phase.graph) == 1 for phase in workload.phases):  # nothing to overlap
            return RunResult(self.hw, workload, tuple(costs), dispatch=self.dispatch)
        schedules = schedule_run(self.hw, workload, placement, costs)
        return RunResult(self.hw, workload, charge_static(costs, schedules, self.energy.static_power), schedules=schedules)

    def op_cost(self, op: ops.Op, placement: Placement, phase: str, repeat: int) -> OpCost:
        warm = tuple(placement.home[t.name] is Level.CMEM for t in op.inputs)
        return self._shared_cost(op, warm).relabeled(phase, op.name, repeat, op.copies)

    def op_time(self, op: ops.Op, levels: tuple[Level, ...]) -> float:
        """One execution's time with the op's tensors at ``levels`` (``op.tensor_names``' order:
        an input at ``Level.CMEM`` is warm in L2)."""
        return self._shared_cost(op, tuple(lv is Level.CMEM for lv in levels[:len(op.inputs)])).latency_s

    def _shared_cost(self, op: ops.Op, warm: tuple[bool, ...]) -> OpCost:
        key = (self._key, self.dispatch, op.signature_number, warm)
        cost = _COSTS.get(key)
        if cost is None:
            body = self._cost(op, warm)
            cost = _COSTS.put(key, body.with_dispatch(self.hw.dispatch.exposed(self.dispatch, op.kind, body.latency_s),
                                                   self.energy.static_power))
        return cost

    def _cost(self, op: ops.Op, warm: tuple[bool, ...]) -> OpCost:
        if isinstance(op, Fused):
            return gpu_fused_cost(self, op, warm)
        if isinstance(op, ops.MatMul):
            return self._matmul_cost(op, warm)
        if isinstance(op, ops.FlashAttention):
            return self._flash_cost(op, warm)
        if isinstance(op, ops.VectorOp):
            return self._vector_cost(op, warm)
        if isinstance(op, (ops.EmbeddingLookup, ops.CacheWrite)):
            return self._dma_cost(op, warm)
        if isinstance(op, ops.Collective):
            return self._collective_cost(op, warm)
        raise UnsupportedOpError(f"op {op.name!r}: no GPU cost model for {type(op).__name__}")

    def _matmul_cost(self, op: ops.MatMul, warm: tuple[bool, ...]) -> OpCost:
        hw = self.hw
        dtype = compute_dtype(op)
        if dtype not in hw.sm.tensor_macs_per_cycle:
            supported = ", ".join(d.value for d in hw.matrix_dtypes)
            raise UnsupportedOpError(f"op {op.name!r}: the tensor cores of {hw.name} do not support {dtype} "
                                     f"(supported: {supported})")
        batch, m = (op.batch, op.m) if op.b_batched else (1, op.batch * op.m)
        plan = plan_gemm(hw, GemmShape(batch, m, op.k, op.n, dtype, op.a.dtype.bytes, op.b.dtype.bytes,
                                       op.out.dtype.bytes, *warm[:2]))
        traffic = (Traffic.of(Level.HBM, read=plan.hbm_read, write=plan.hbm_write)
                   + Traffic.of(Level.CMEM, read=plan.l2_read, write=plan.l2_write)
                   + Traffic.of(Level.VMEM, read=plan.smem_bytes, write=plan.smem_bytes))
        times = {Level.HBM: plan.hbm_s, Level.CMEM: plan.l2_s}
        memory_s = max(times.values())
        convert = self._conversion(op, dtype, batch, m, plan.tile)
        convert_s = convert.alu / hw.vector_ops_per_second
        # the conversion runs on the CUDA cores beside the tensor cores: only what outlasts them adds
        latency = plan.time_s + max(0.0, convert_s - plan.compute_s)
        compute_s = max(plan.compute_s, convert_s)
        unit = "mxu" if plan.compute_s >= convert_s else "vpu"
        return OpCost(
            phase="", name=op.name, kind=op.kind, unit=op.unit.value, repeat=1, copies=op.copies, macs=op.macs,
            vector_ops=convert.alu, compute_cycles=compute_s * hw.clock, compute_s=compute_s, memory_s=memory_s,
            latency_s=latency, traffic=traffic,
            # the GEMM's own MACs, as for every chip kind: a padded tile's extra MACs multiply
            # zeros, which toggle little; the time they take is charged as static power
            energy=self.energy.op_energy(latency, traffic, op.macs, dtype, vector=convert),
            bottleneck=_bottleneck(compute_s, times, unit), peak_macs_per_s=hw.peak_macs_per_second(dtype),
            tiling=plan.describe(), busy=busy_of(("sm", compute_s), channels=times),
        )

    def _conversion(self, op: ops.MatMul, dtype, batch: int, m: int, tile: tuple[int, int]) -> ops.VectorWork:
        """The CUDA cores' work converting an operand stored narrower than the MACs' type
        (weight-only quantisation) as the blocks load it: A once per column of tiles, B once per
        row, ``gemm.convert_ops_per_element`` ops an element."""
        elements = 0
        if op.a.dtype.bytes < dtype.bytes:
            elements += batch * m * op.k * math.ceil(op.n / tile[1])
        if op.b.dtype.bytes < dtype.bytes:
            elements += batch * op.k * op.n * math.ceil(m / tile[0])
        if not elements:
            return ops.VectorWork(0, 0)
        per_element = self.hw.gemm.convert_ops_per_element
        if per_element is None:
            raise UnsupportedOpError(
                f"op {op.name!r} multiplies {op.a.dtype} by {op.b.dtype} at {dtype}: converting the narrower operand "
                "needs gemm.convert_ops_per_element in the GPU config (CUDA-core ops per element)")
        return ops.VectorWork(elements * per_element, 0)

    def _flash_cost(self, op: ops.FlashAttention, warm: tuple[bool, ...]) -> OpCost:
        """A flash-attention kernel: one thread block per (KV head, query block), in waves over
        the SMs; its matmuls at the tensor cores' sustained rate, its online softmax on the CUDA
        cores and special-function units beside them; Q read once, K and V once from HBM (the
        query blocks of a head run in one wave and share them in L2) and once per query block
        from L2; the output written once."""
        hw, sm = self.hw, self.hw.sm
        q, k, v = op.inputs
        out = op.outputs[0]
        dtype = wider(op.name, q.dtype, k.dtype)
        if dtype not in sm.tensor_macs_per_cycle:
            raise UnsupportedOpError(f"op {op.name!r}: the tensor cores of {hw.name} do not support {dtype}")
        q_blocks = -(-(op.group * op.q_len) // op.block)
        tiles = op.batch * q_blocks
        rate = sm.tensor_macs_per_cycle[dtype] * sm.tensor_efficiency * hw.clock  # MACs/s of one SM
        tensor_s = math.ceil(tiles / sm.count) * (op.macs / tiles) / rate
        work = op.vector_work
        vector_s = max(work.alu / hw.vector_ops_per_second, work.special / (sm.count * sm.special_ops_per_cycle * hw.clock))
        compute_s = max(tensor_s, vector_s)
        per_input = [q.bytes, k.bytes, v.bytes]
        from_hbm = sum(b for b, hot in zip(per_input, warm) if not hot)
        l2_read = q.bytes + (k.bytes + v.bytes) * q_blocks
        traffic = (Traffic.of(Level.HBM, read=from_hbm, write=out.bytes)
                   + Traffic.of(Level.CMEM, read=l2_read, write=from_hbm + out.bytes)
                   + Traffic.of(Level.VMEM, read=l2_read, write=l2_read))
        times = {Level.HBM: from_hbm / hw.hbm.achievable_bandwidth + out.bytes / hw.hbm.achievable_write_bandwidth,
                 Level.CMEM: (l2_read + out.bytes) / hw.l2.achievable_bandwidth}
        memory_s = max(times.values())
        latency = hw.hbm.latency + max(compute_s, memory_s)
        unit = "mxu" if tensor_s >= vector_s else "vpu"
        return OpCost(
            phase="", name=op.name, kind=op.kind, unit=op.unit.value, repeat=1, copies=op.copies, macs=op.macs,
            vector_ops=work.alu + work.special, compute_cycles=compute_s * hw.clock, compute_s=compute_s,
            memory_s=memory_s, latency_s=latency, traffic=traffic,
            energy=self.energy.op_energy(latency, traffic, op.macs, dtype, vector=work),
            bottleneck=_bottleneck(compute_s, times, unit), peak_macs_per_s=hw.peak_macs_per_second(dtype),
            tiling=f"flash {op.block}x{op.block} blocks, {tiles} blocks in {math.ceil(tiles / sm.count)} waves"
                   + (", causal" if op.causal else ""),
            busy=busy_of(("sm", compute_s), channels=times),
        )

    def _vector_cost(self, op: ops.VectorOp, warm: tuple[bool, ...]) -> OpCost:
        """One kernel: its main input read ``input_reads`` times (``kernels``), other inputs once,
        outputs written once, through L2 from and to HBM (a warm input's reads from L2 only); the
        lanes' and special-function units' work beside the transfers."""
        hw = self.hw
        kernel = hw.kernels.get(op.kind, _DEFAULT_KERNEL)
        long_row = kernel.row_limit is not None and op.row_length > kernel.row_limit
        reads = kernel.long_row_reads if long_row else kernel.input_reads
        per_input = [t.bytes * (reads if i == 0 else 1) for i, t in enumerate(op.inputs)]
        return self._streamed(op, per_input, warm, sum(t.bytes for t in op.outputs), op.vector_work)

    def _dma_cost(self, op: ops.Op, warm: tuple[bool, ...]) -> OpCost:
        if isinstance(op, ops.CacheWrite):
            per_input, write = [t.bytes for t in op.inputs], op.written_bytes
        else:  # embedding: gather rows of the table
            table, out = op.inputs[0], op.outputs[0]
            per_input, write = [out.elements * table.dtype.bytes], out.bytes
        return self._streamed(op, per_input, warm, write, ops.VectorWork(0, 0), unit="dma")

    def _streamed(self, op: ops.Op, per_input: list[float], warm: tuple[bool, ...], write: float,
                  work: ops.VectorWork, unit: str = "vpu") -> OpCost:
        """Each input's bytes read (from HBM unless warm) and ``write`` bytes written, all
        through L2, with the lanes' work beside them."""
        hw = self.hw
        read = sum(per_input)
        from_hbm = sum(b for b, hot in zip(per_input, warm) if not hot)
        traffic = Traffic.of(Level.HBM, read=from_hbm, write=write) + Traffic.of(Level.CMEM, read=read, write=write)
        hbm_s = from_hbm / hw.hbm.achievable_bandwidth + write / hw.hbm.achievable_write_bandwidth
        times = {Level.HBM: hbm_s, Level.CMEM: (read + write) / hw.l2.achievable_bandwidth}
        memory_s = max(times.values())
        compute_s = max(work.alu / hw.vector_ops_per_second,
                        work.special / (hw.sm.count * hw.sm.special_ops_per_cycle * hw.clock))
        latency = hw.hbm.latency + max(memory_s, compute_s)
        return OpCost(
            phase="", name=op.name, kind=op.kind, unit=unit, repeat=1, copies=op.copies, macs=0,
            vector_ops=work.alu + work.special, compute_cycles=compute_s * hw.clock, compute_s=compute_s,
            memory_s=memory_s, latency_s=latency, traffic=traffic,
            energy=self.energy.op_energy(latency, traffic, vector=work), bottleneck=_bottleneck(compute_s, times, unit),
            busy=busy_of(("sm", compute_s), channels=times),
        )

    def _collective_cost(self, op: ops.Collective, warm: tuple[bool, ...]) -> OpCost:
        """NCCL's fastest algorithm for the size over the tensor-parallel group, its reads and
        writes of the buffers and its adds overlapped with the transfer."""
        hw = self.hw
        collective_group(hw, op)
        transfer = collective_time(hw, op.kind, op.bytes, op.group)
        streamed = self._streamed(op, [t.bytes for t in op.inputs], warm, sum(t.bytes for t in op.outputs),
                                  op.vector_work)
        latency = max(transfer.time_s, streamed.latency_s)
        # the bytes this GPU sends, over the system's links (a switch's crossing included): as a
        # point-to-point send of them to a peer, which is what the ring's steps are
        links = self.topology.send(transfer.sent_per_gpu, 0, 1).energy_j
        energy = self.energy.op_energy(latency, streamed.traffic, vector=op.vector_work) + Energy(ici=links)
        busiest = "ici" if transfer.time_s >= streamed.latency_s else streamed.bottleneck
        return OpCost(
            phase="", name=op.name, kind=op.kind, unit=op.unit.value, repeat=1, copies=op.copies, macs=0,
            vector_ops=streamed.vector_ops, compute_cycles=streamed.compute_cycles, compute_s=streamed.compute_s,
            memory_s=streamed.memory_s, latency_s=latency, traffic=streamed.traffic, energy=energy,
            bottleneck=busiest, ici_bytes=transfer.sent_per_gpu,
            tiling=f"NCCL {transfer.algorithm}/{transfer.protocol}",
            busy=busy_of(("sm", streamed.compute_s), ("ici", transfer.time_s), channels=dict(streamed.busy[1:])),
        )


def l2_resident(workload: Workload, capacity: float) -> frozenset[str]:
    """Activations a GPU's L2 hands from kernel to kernel: at most ``capacity`` bytes, written
    by one op and read only by the op that runs right after it (in each phase's order)."""
    writer: dict[str, tuple[int, int]] = {}
    readers: dict[str, set[tuple[int, int]]] = {}
    sizes: dict[str, float] = {}
    for p, phase in enumerate(workload.phases):
        for i, op in enumerate(phase.graph.ops()):
            for t in op.inputs:
                readers.setdefault(t.name, set()).add((p, i))
            for t in op.outputs:
                if t.role is Role.ACTIVATION:
                    if t.name in writer:
                        writer[t.name] = (-1, -1)  # written twice: not a simple hand-over
                    else:
                        writer[t.name] = (p, i)
                    sizes[t.name] = t.bytes
    return frozenset(name for name, (p, i) in writer.items()
                     if i >= 0 and sizes[name] <= capacity and readers.get(name) == {(p, i + 1)})


_COSTS: BoundedMemo[OpCost] = BoundedMemo(size=20_000)


def clear_gpu_caches() -> None:
    _COSTS.clear()


def _bottleneck(compute_s: float, times: dict[Level, float], unit: str) -> str:
    level, memory_s = max(times.items(), key=lambda kv: kv[1])
    return unit if compute_s >= memory_s else level.value

