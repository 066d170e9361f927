"""Evaluate a workload on a chip: place tensors, cost every op, gather the result."""

from __future__ import annotations

from types import MappingProxyType

from archsim.config.dumps import section_text
from archsim.config.schema import HardwareConfig
from archsim.hw.area import clear_areas
from archsim.hw.energy import Energy, EnergyModel, clear_energy_models
from archsim.hw.leakage import clear_static_powers
from archsim.hw.matrix import build_matrix_unit
from archsim.hw.matrix.base import clear_matrix_units
from archsim.hw.memory import Level, Placement, Traffic
from archsim.hw.placement import workload_shape, clear_placements, place, without_preload
from archsim.hw.tiling import Channels, TilingError, clear_tilings
from archsim.hw.timing import access_latency, channel_times, overlapped_seconds
from archsim.hw.vector import vector_cycles
from archsim.ir import ops
from archsim.ir.fused import Fused
from archsim.ir.graph import PRELOAD_PHASE, Workload
from archsim.ir.tensor import Tensor
from archsim.memo import BoundedMemo, cached_property
from archsim.passes import compile_for
from archsim.sim.cost import OpCost, busy_of
from archsim.sim.family import Family, op_timer
from archsim.sim.family_runs import family_run
from archsim.sim.family_timing import run_time
from archsim.sim.fingerprint import CostFingerprint
from archsim.sim.flash_cost import tpu_flash_cost
from archsim.sim.matmul_cost import clear_matmul_plans, tpu_matmul_cost
from archsim.sim.fused import clear_epilogues, tpu_fused_cost
from archsim.sim.result import RunResult, op_terms, scheduled_run
from archsim.sim.vector_cost import clear_vector_plans, tpu_vector_cost
from archsim.sim.schedule import charge_serial, clear_schedules, prefetched_time, schedule_run
from archsim.sim.scheduled_ops import clear_scheduled_ops, scheduled_ops
from archsim.sim.op_rules import UnsupportedOpError, bottleneck, collective_group
from archsim.system.topology import topology_of

__all__ = ["Simulator", "UnsupportedOpError", "clear_caches", "collective_group", "simulate"]


class Simulator:
    """A chip ready to evaluate workloads. Immutable after construction; reuse it freely."""

    def __init__(self, hw: HardwareConfig, placement_policy: str = "time_knapsack", dispatch: str = "program",
                 family: Family | None = None):
        """``dispatch``: how ops are launched, which decides the fixed cost each pays
        (``hw.dispatch``): ``program``, the ops of one compiled program (a whole model run), or
        ``call``, every op launched on its own from the host (per-op microbenchmarks): then the
        compiler's passes and overlap do not apply, whatever ``hw.compiler`` says (nothing fuses or
        overlaps across separate launches). ``family``: chips alike but for HBM's bandwidth
        (``archsim.sim.family``), whose op times the placement search makes with its own."""
        if dispatch not in ("program", "call"):
            raise ValueError(f"dispatch must be 'program' or 'call', not {dispatch!r}")
        self.hw = hw
        self.placement_policy = placement_policy
        self.dispatch = dispatch
        self.overlaps = dispatch == "program" and hw.compiler.overlaps
        self.energy = EnergyModel.of(hw)
        self._fingerprint = CostFingerprint.of(hw) if family is None else family.fingerprint_of(hw)
        self._latencies: dict[tuple[Level, ...], float] = {}
        self._prefetch_buffer = hw.prefetch_buffer
        self.family = family

    # made when first read: a sweep point whose op costs its family or the memos hold reads neither
    @cached_property
    def matrix_unit(self):
        return build_matrix_unit(self.hw.mxu)

    @cached_property
    def topology(self):
        return topology_of(self.hw)

    @cached_property
    def channels(self) -> Channels:
        levels = [lv for lv in Level if getattr(self.hw, lv.value) is not None]
        return Channels(
            vmem_capacity=self.hw.vmem.capacity,
            bandwidth=tuple((lv, getattr(self.hw, lv.value).achievable_bandwidth) for lv in levels),
        )

    @cached_property
    def unit_texts(self) -> tuple[str, str, float]:
        """What an op's plan reads of the chip beside the op (``matmul_cost._plan``,
        ``vector_cost._plan``): the matrix and vector units' sections, as text, and the clock."""
        return section_text(self.hw.mxu), section_text(self.hw.vpu), self.hw.clock

    def run(self, workload: Workload) -> RunResult:
        """Evaluate every candidate placement; keep the fastest (then the least energy). The
        graph is first what the chip's compiler makes of it (``archsim.passes.compile_for``)."""
        if self.dispatch == "program":  # ops launched one by one (``call``) fuse and overlap nothing
            workload = compile_for(self.hw, workload)
        overlapping = self.overlaps and any(len(phase.graph) > 1 for phase in workload.phases)
        try:
            placements = self._placements(workload, overlapping)
            feasible = [p for p in placements if p.feasible]
            times = [] if overlapping else [self._latency(workload, p) for p in feasible]
        except TilingError as exc:  # an op that fits no VMEM tiling fits none under any placement
            return RunResult.infeasible(self.hw, workload, str(exc))
        if not feasible:
            return RunResult.infeasible(self.hw, workload, placements[0].reason)
        if overlapping:  # the plans ranked by their schedules: a plan's serial time can mislead
            # the search weighs a preload against serial op times; with prefetch, reading the
            # same tensors from HBM as they are needed may be faster: each plan without its preload too
            results = [self._timed(workload, p) for p in feasible]
            fastest = min(r.latency_s for r in results)
            for plan in [without_preload(p) for p in feasible if p.preload]:
                if not self._slower(workload, plan, fastest):  # else neither the fastest nor a tie
                    results.append(self._timed(workload, plan))
            fastest = min(r.latency_s for r in results)
            return _least_energy([self._charged(workload, r) for r in results if r.latency_s == fastest])
        # the whole result only for the fastest plans (their energies break a tie)
        fastest = min(times)
        return _least_energy([self.run_with(workload, p) for p, t in zip(feasible, times) if t == fastest])

    def _placements(self, workload: Workload, overlapping: bool) -> tuple[Placement, ...]:
        """The placement search's plans, shared by chips alike in everything costs read and in
        their capacities (the same workload run again, a sweep's repeated points). Overlapped,
        the search weighs each op with its weights prefetched. A family's member (a sweep's
        point, which its sweep evaluates once) keeps none: on the bundled sweeps none was read
        back, and each took a memo's entry (its plans freed cold, 256 points later)."""
        hw = self.hw
        share = (workload, workload_shape(workload), self.placement_policy, self.dispatch,
                 overlapping and hw.prefetch_buffer, self._fingerprint.key((Level.CMEM, Level.HBM)))
        if self.family is not None:
            return place(hw, workload, self.placement_policy, op_timer(self, overlapping), share)
        key = (share, hw.cmem.capacity if hw.cmem is not None else 0.0, hw.hbm.capacity)
        plans = _PLANS.get(key)
        if plans is None:
            plans = _PLANS.put(key, place(hw, workload, self.placement_policy, op_timer(self, overlapping), share))
        return plans

    def _latency(self, workload: Workload, placement: Placement) -> float:
        """The run's time under ``placement``: ``run_with(...).latency_s`` to the bit (the same
        sums in the same order), without building the result."""
        total = self._preload_cost(placement.preload).latency_s if placement.preload else 0.0
        home = placement.home
        for phase in workload.phases:
            once = 0.0
            for op in phase.graph.ops():
                once += self.op_time(op, tuple(map(home.__getitem__, op.tensor_names))) * op.copies
            total += phase.repeat * once
        return total

    def run_with(self, workload: Workload, placement: Placement) -> RunResult:
        """Evaluate with a given placement."""
        return self._charged(workload, self._timed(workload, placement))

    def _charged(self, workload: Workload, timed: RunResult) -> RunResult:
        """``timed`` with each scheduled op's static energy charged by its span."""
        if not timed.overlapped:
            return timed
        return timed.restated(self.hw, static_power=self.energy.static_power)

    def _timed(self, workload: Workload, placement: Placement) -> RunResult:
        """The run under ``placement``, its time final; scheduled, its ops' static energy not yet
        charged (``_charged``: only the fastest plans need their energies). A scheduled run is
        shared by chips alike in everything costs read, their prefetch buffer and the plan's
        homes (a sweep's points differing only in capacities, where their plans agree): its
        ops' static energies are charged afresh, its other totals carried over."""
        if not self.overlaps:
            return self._timed_afresh(workload, placement)
        key = self._timed_key(workload, placement)
        timed = _TIMED.get(key)
        if timed is not None:
            return timed.restated(self.hw)
        # a family's member reads its run off the family's, made for every member at once
        timed = (self.family is not None and family_run(self, workload, placement)) or \
            self._timed_afresh(workload, placement)
        if timed.overlapped:  # a run of one op per phase, or infeasible: not shared
            _TIMED.put(key, timed)
        return timed

    def _slower(self, workload: Workload, placement: Placement, than: float) -> bool:
        """Whether the run under ``placement`` is known to take longer than ``than`` seconds
        without timing it in full: on a family's member, scheduled from the family's op timings
        (``family_timing``: its ``latency_s`` to the bit). Kept as ``_timed`` keeps runs."""
        if self.family is None:
            return False
        key = self._timed_key(workload, placement)
        if _TIMED.get(key) is not None:  # timed in full already: no cheaper
            return False
        latency = _RUN_TIMES.get(key)
        if latency is None:
            latency = run_time(self, workload, placement)
            if latency is None:
                return False
            _RUN_TIMES.put(key, latency)
        return latency > than

    def _timed_key(self, workload: Workload, placement: Placement) -> tuple:
        return (self._fingerprint.key((Level.CMEM, Level.HBM)), self.dispatch, self._prefetch_buffer, workload,
                workload_shape(workload), placement.homes)

    def _timed_afresh(self, workload: Workload, placement: Placement) -> RunResult:
        costs: list[OpCost] = []
        if placement.preload:
            costs.append(self._preload_cost(placement.preload))
        serial = not self.overlaps or all(len(phase.graph) == 1 for phase in workload.phases)  # nothing to overlap
        try:
            if serial:
                for phase in workload.phases:
                    for op in phase.graph.ops():
                        costs.append(self.op_cost(op, placement, phase.name, phase.repeat))
            else:  # each op's cost, prefetch, schedule parts and totals' terms, kept with the cost
                terms = [op_terms(c) for c in costs]
                made = scheduled_ops(self, workload, placement, costs, terms)
        except TilingError as exc:
            return RunResult.infeasible(self.hw, workload, str(exc))
        if serial:
            return RunResult(self.hw, workload, charge_serial(costs, self.energy.static_power), dispatch=self.dispatch)
        return scheduled_run(self.hw, workload, tuple(costs), schedule_run(self.hw, workload, placement, costs, made),
                             terms)

    def benchmark_placement(self, op: ops.Op) -> Placement:
        """Where a microbenchmark calling ``op`` on its own finds its tensors: in HBM (a
        compiler's on-chip placement lasts one program, not the next call)."""
        return Placement(MappingProxyType({name: Level.HBM for name in op.tensor_names}), (), True)

    # -- per-unit cost models -------------------------------------------------------------

    def op_cost(self, op: ops.Op, placement: Placement, phase: str, repeat: int) -> OpCost:
        """The cost of one execution. Ops alike but for names (the projections of every decode
        step, the same GEMM under several placements, on chips alike in what costs read) are
        costed once."""
        levels = tuple(map(placement.home.__getitem__, op.tensor_names))
        return self._shared_cost(op, levels).relabeled(phase, op.name, repeat, op.copies)

    def op_time(self, op: ops.Op, levels: tuple[Level, ...]) -> float:
        """One execution's time with the op's tensors (``op.tensor_names``) at these levels:
        what the placement search weighs."""
        return self._shared_cost(op, levels).latency_s

    def _overlapped_op_time(self, op: ops.Op, levels: tuple[Level, ...]) -> float:
        """``op_time`` as an overlapped run pays it: the op's weights and caches prefetched.
        Shared as the op's cost is (an on-chip op's by design points that differ in HBM), for
        chips alike in their prefetch buffer."""
        buffer = self._prefetch_buffer
        key = (self._fingerprint.key(levels), self.dispatch, op.signature_number, levels, buffer)
        time = _PREFETCHED.get(key)
        if time is None:
            homes = _homes(op, levels)
            if self.family is not None and Level.HBM in levels:  # every member's at once, if not made yet
                time = self.family.prefetched_of(self, op, levels)
                if time is None:
                    time = self.family.share_prefetched(self, op, levels, homes,
                                                        lambda: self._shared_cost(op, levels, homes))
                if time is not None:
                    return _PREFETCHED.put(key, time)
            time = _PREFETCHED.put(key, prefetched_time(op, self._shared_cost(op, levels, homes), homes, buffer))
        return time

    def _shared_cost(self, op: ops.Op, levels: tuple[Level, ...], homes: Placement | None = None) -> OpCost:
        """``homes``: the op's tensors at ``levels`` (``_homes``), if the caller has made it."""
        key = (self._fingerprint.key(levels), self.dispatch, op.signature_number, levels)
        cost = _COSTS.get(key)
        if cost is None:
            body = self._cost(op, homes or _homes(op, levels), "", 1)  # labels are set per use
            cost = body.with_dispatch(self.hw.dispatch.exposed(self.dispatch, op.kind, body.latency_s),
                                      self.energy.static_power)
            if self.family is not None:  # the family's time for it, if made, is this one's
                self.family.check(self, op, levels, cost)
            _COSTS.put(key, cost)
        return cost

    def core_cost(self, op: ops.Op, placement: Placement) -> OpCost:
        """A fused op's main op's cost (``Fused.core``, unlabelled, no dispatch). Shared as
        ``_shared_cost``'s are: fused ops alike in their core and its tensors' homes (the same
        GEMM with its epilogue's extra input in HBM or in CMEM) cost it once."""
        levels = tuple(map(placement.home.__getitem__, op.tensor_names))
        key = (self._fingerprint.key(levels), op.signature_number, levels)
        cost = _CORES.get(key)
        if cost is None:
            cost = _CORES.put(key, self._cost(op, placement, "", 1))
        return cost.relabeled("", op.name, 1, op.copies)

    def _cost(self, op: ops.Op, placement: Placement, phase: str, repeat: int) -> OpCost:
        if isinstance(op, Fused):
            return tpu_fused_cost(self, op, placement)
        if isinstance(op, ops.MatMul):
            return self._matmul_cost(op, placement, phase, repeat)
        if isinstance(op, ops.FlashAttention):
            return tpu_flash_cost(self, op, placement, phase, repeat)
        if isinstance(op, ops.VectorOp):
            return self._vector_cost(op, placement, phase, repeat)
        if isinstance(op, (ops.EmbeddingLookup, ops.CacheWrite)):
            return self._dma_cost(op, placement, phase, repeat)
        if isinstance(op, ops.Collective):
            return self._collective_cost(op, placement, phase, repeat)
        raise UnsupportedOpError(f"op {op.name!r}: no cost model for {type(op).__name__}")

    def _matmul_cost(self, op: ops.MatMul, placement: Placement, phase: str, repeat: int) -> OpCost:
        return tpu_matmul_cost(self, op, placement, phase, repeat)

    def _access_latency(self, levels: tuple[Level, ...]) -> float:
        """``access_latency`` of these levels and VMEM (every matmul streams through it)."""
        latency = self._latencies.get(levels)
        if latency is None:
            latency = self._latencies[levels] = access_latency(self.hw, set(levels) | {Level.VMEM})
        return latency

    def _vector_cost(self, op: ops.VectorOp, placement: Placement, phase: str, repeat: int) -> OpCost:
        return tpu_vector_cost(self, op, placement, phase, repeat)

    def _dma_cost(self, op: ops.Op, placement: Placement, phase: str, repeat: int) -> OpCost:
        if isinstance(op, ops.CacheWrite):
            moved = op.written_bytes
            traffic = self._stream_traffic(op.inputs, (), placement, through_vmem=False)
            traffic += Traffic.of(placement.level(op.outputs[0]), write=moved)
        else:  # embedding: gather rows of the table into the output
            table, out = op.inputs[0], op.outputs[0]
            traffic = Traffic.of(placement.level(table), read=out.elements * table.dtype.bytes)
            traffic += Traffic.of(placement.level(out), write=out.bytes)
        return self._streamed(op, phase, repeat, traffic, 0.0, 0, 1, ops.VectorWork(0, 0), "dma")

    def _collective_cost(self, op: ops.Collective, placement: Placement, phase: str, repeat: int) -> OpCost:
        """A tensor-parallel group's collective: the ICI transfer, the chip reading its buffer
        and writing the result, and the reduction's adds on the VPU, all streamed together."""
        group = collective_group(self.hw, op)
        collective = {ops.AllReduce: self.topology.all_reduce, ops.AllToAll: self.topology.all_to_all}.get(
            type(op), self.topology.all_gather)
        transfer = collective(op.bytes, group)
        work = op.vector_work
        cycles = vector_cycles(self.hw.vpu, work)
        compute_s = cycles / self.hw.clock
        traffic = self._stream_traffic(op.inputs, op.outputs, placement, through_vmem=False)
        times = channel_times(self.hw, traffic)
        memory_s = max(times.values(), default=0.0)
        latency = max(transfer.time_s, memory_s, compute_s)
        # the transfer's link energy is the whole group's; this chip's share is 1/group
        energy = self.energy.op_energy(latency, traffic, vector=work) + Energy(ici=transfer.energy_j / op.group)
        busiest = "ici" if transfer.time_s >= max(memory_s, compute_s) else bottleneck(compute_s, times, "vpu")
        return OpCost(
            phase=phase, name=op.name, kind=op.kind, unit=op.unit.value, repeat=repeat, copies=op.copies, macs=0,
            vector_ops=work.alu + work.special, compute_cycles=cycles, compute_s=compute_s, memory_s=memory_s,
            latency_s=latency, traffic=traffic, energy=energy, bottleneck=busiest, ici_bytes=transfer.sent_per_chip,
            busy=busy_of(("ici", transfer.time_s), ("vpu", compute_s), channels=times),
        )

    def _preload_cost(self, tensors: tuple[Tensor, ...]) -> OpCost:
        moved = sum(t.total_bytes for t in tensors)
        traffic = Traffic.of(Level.HBM, read=moved) + Traffic.of(Level.CMEM, write=moved)
        op = ops.Preload("preload.cmem", tensors, ())
        # No dispatch cost: the preload is the placement's own DMA as the program starts, not an
        # op a user launches (the placement search prices it by its bytes and latency alone).
        return self._streamed(op, PRELOAD_PHASE, 1, traffic, 0.0, 0, 1, ops.VectorWork(0, 0), "dma")

    # -- shared pieces --------------------------------------------------------------------

    def _stream_traffic(self, inputs, outputs, placement: Placement, through_vmem: bool, scale: float = 1.0) -> Traffic:
        """Each input read once from its home and each output written once (``scale`` x their
        bytes: a padded layout), through VMEM when the VPU touches them."""
        # Traffic's fields (vmem, cmem, hbm: read, write), each summed in the order the reads and
        # writes come, as adding up a Traffic per tensor would (its other fields add 0.0)
        moved = [0.0] * len(_TRAFFIC_FIELDS)
        vmem = _FIELD[Level.VMEM]
        home = placement.home
        for t in inputs:
            size = t.bytes * scale
            moved[_FIELD[home[t.name]]] += size
            if through_vmem:  # DMA writes it into VMEM, the unit reads it
                moved[vmem] += size
                moved[vmem + 1] += size
        for t in outputs:
            size = t.bytes * scale
            moved[_FIELD[home[t.name]] + 1] += size
            if through_vmem:
                moved[vmem] += size
                moved[vmem + 1] += size
        return Traffic(*moved)

    def _streamed(self, op, phase, repeat, traffic, compute_s, cycles, steps, work: ops.VectorWork, unit) -> OpCost:
        times = channel_times(self.hw, traffic)
        memory_s = max(times.values(), default=0.0)
        latency = overlapped_seconds(memory_s, compute_s, steps, access_latency(self.hw, times))
        return OpCost.made(
            phase=phase, name=op.name, kind=op.kind, unit=unit, repeat=repeat, copies=op.copies, macs=0,
            vector_ops=work.alu + work.special, compute_cycles=cycles, compute_s=compute_s, memory_s=memory_s,
            latency_s=latency, traffic=traffic, energy=self.energy.op_energy(latency, traffic, vector=work),
            bottleneck=bottleneck(compute_s, times, unit), busy=busy_of((unit, compute_s), channels=times),
        )


def _homes(op: ops.Op, levels: tuple[Level, ...]) -> Placement:
    """A placement of the op's tensors (``op.tensor_names``) at ``levels``, to cost it by."""
    return Placement(MappingProxyType(dict(zip(op.tensor_names, levels))), (), True)


_TRAFFIC_FIELDS = Traffic._fields()[0]  # vmem_read, vmem_write, cmem_read, ...
_FIELD = {level: _TRAFFIC_FIELDS.index(f"{level.value}_read") for level in Level}  # its write: the next field


def _least_energy(results: list[RunResult]) -> RunResult:
    """The first of the results with the least energy; a lone one without totalling its energy
    (a run's energy sums every op's and adds static power: most runs have one fastest plan)."""
    return results[0] if len(results) == 1 else min(results, key=lambda r: r.energy.total)


# Distinct (chip, op, placement) costs kept per process: a sweep's design points share the ops
# of their workloads, and points that differ only in capacities share every cost.
_COSTS: BoundedMemo[OpCost] = BoundedMemo(size=50_000)  # about 2 kB each: 100 MB at most
_CORES: BoundedMemo[OpCost] = BoundedMemo(size=50_000)  # fused ops' main ops' costs, keyed as _COSTS
_PLANS: BoundedMemo[tuple[Placement, ...]] = BoundedMemo(size=256)  # a few plans of a workload each
_PREFETCHED: BoundedMemo[float] = BoundedMemo(size=50_000)  # an op's time with prefetch, keyed as _COSTS
# scheduled runs, their static energies to charge: found again by the run itself (a plan timed,
# then weighed against its plan without preload) and by the capacity sibling just after it
# (``Points.grouped`` puts them one after another): 4 held find as many as 256 did on the bundled
# sweeps, and a run dropped is freed while its memory is still in cache (``placement._WALKS``)
_TIMED: BoundedMemo[RunResult] = BoundedMemo(size=4)
_RUN_TIMES: BoundedMemo[float] = BoundedMemo(size=256)  # runs' times from a family's timings, keyed as _TIMED


def clear_caches() -> None:
    """Forget every cost, timing, tiling and placement computed so far (benchmarks time cold
    runs with it; results never depend on it)."""
    from archsim.gpu.engine import clear_gpu_caches  # the GPU model imports this module
    from archsim.passes.flash import clear_passes

    _COSTS.clear()
    _CORES.clear()
    clear_energy_models()
    clear_areas()
    clear_static_powers()
    clear_passes()
    _PLANS.clear()
    _PREFETCHED.clear()
    _TIMED.clear()
    _RUN_TIMES.clear()
    clear_scheduled_ops()
    clear_matmul_plans()
    clear_epilogues()
    clear_vector_plans()
    clear_schedules()
    clear_gpu_caches()
    clear_matrix_units()
    clear_tilings()
    clear_placements()


def simulate(hw: HardwareConfig, workload: Workload) -> RunResult:
    """Evaluate ``workload`` on ``hw``."""
    return Simulator(hw).run(workload)
