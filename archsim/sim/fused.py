"""The cost of a fused op (``archsim.ir.fused.Fused``), one formula for both chip kinds; this
module holds it and the TPU-style chip's part, archsim/gpu/fused.py the GPU's.

1. *The main op* is costed as its chip costs it (its own ``_cost``) on a copy whose output is the
   group's final output: that tensor's name (so the placement finds its home), dtype and role,
   the main op's shape (a cache's: the new entries' shape, the bytes written). A norm or
   vector-chain prologue's main op reads the prologue's data input in place of the intermediate
   (``Fused.main_inputs``). This gives ``main``: compute_s, latency_s, traffic, energy and the
   time of each memory channel (its ``busy`` entries).
2. *The epilogue*: its vector work ``W`` (``Fused.epilogue_work``) takes, on a TPU, one pass
   of the vector unit over the kernel's output, ``epi_s = pass_cycles(vpu, W, output elements) /
   clock`` (its ALU and transcendental work plus ``pass_cycles_per_vreg`` per register: the pops,
   stores and loop a fused kernel still runs) after a matmul, or ``vector_cycles(vpu, W) / clock``
   after a vector op (the work joins its last pass, which already pays per register); and
   ``max(W.alu / vector_ops_per_second, W.special / (SMs x special ops per cycle x clock))`` on a
   GPU (as a streamed vector kernel's); its extra inputs are read (``Fused.extra_reads``) from
   their home through VMEM on a TPU (``Simulator._stream_traffic``, padded as the main vector op's
   rows), from HBM unless warm, through L2, on a GPU: ``extra`` traffic, ``extra_ch`` per channel.
3. *Together*:

       compute = main.compute_s + epi_s           if the main op runs on the vector unit,
               = max(main.compute_s, epi_s)       else (the epilogue runs beside the arrays,
                                                   tile by tile);
       ch[c]   = main_ch[c] + extra_ch[c]         per memory channel c;
       latency = main.latency_s + max(0, max(compute, max ch) - max(main.compute_s, max main_ch))
       energy  = main.energy + op_energy(latency - main.latency_s, extra, vector=W)

   (the energy model is linear: this is ``op_energy(latency, all traffic, macs, dtype, vector=all
   work)`` with the main op's own terms, a CIM weight write or a conversion, kept). The busiest
   channel of the main op's own traffic, not its ``memory_s``, is the reference: a multi-pass
   vector op's ``memory_s`` sums its passes' busiest channels, against which added traffic could
   pass for free. ``busy``: the main op's held unit (its time plus ``epi_s`` when that is the
   vector unit, as a GPU's SMs are), the vector unit's ``epi_s`` beside a matmul, each channel's
   ``ch[c]``. The engine's ``_shared_cost`` adds one dispatch: the group is one kernel.

Sources: [XLA-FUSION] (fused element-wise work in a dot's output and a reduction's loop),
[CUBLASLT] (GEMM epilogues), [VLLM] (fused kernels); docs/sources/compiler.md.
"""

from __future__ import annotations


from archsim.hw.memory import Level, Placement, Traffic
from archsim.hw.timing import channel_times
from archsim.hw.vector import padded_row, pass_cycles, vector_cycles
from archsim.ir import ops
from archsim.ir.fused import Fused
from archsim.memo import BoundedMemo
from archsim.sim.cost import OpCost

_CHANNELS = frozenset(level.value for level in Level)


def core_op(op: Fused) -> ops.Op:
    """The main op as the kernel runs it (``Fused.core``, built once per fused op)."""
    return op.core


def tpu_fused_cost(sim, op: Fused, placement: Placement) -> OpCost:
    """The fused op on a TPU-style chip (``Simulator``)."""
    hw = sim.hw
    core = core_op(op)
    main = sim.core_cost(core, placement)
    epi_s, extra = _epilogue(sim, op, placement)
    return combine(op, main, op.epilogue_work, epi_s, extra, channel_times(hw, extra), sim.energy, hw.clock, "vpu")


def _epilogue(sim, op: Fused, placement: Placement) -> tuple[float, Traffic]:
    """The epilogue's vector time and its extra inputs' traffic. They read the vector unit, the
    clock and the extra inputs' homes, no bandwidth or capacity: made once for design points
    alike in those (a sweep's memory axes) and kept by ``sim.unit_texts`` and those homes."""
    home = placement.home
    key = (sim.unit_texts, op.signature_number, tuple(home[tensor.name] for tensor, _ in op.extra_reads))
    found = _EPILOGUES.get(key)
    if found is not None:
        return found
    hw = sim.hw
    core = core_op(op)
    work = op.epilogue_work
    if isinstance(core, ops.VectorOp):  # the work joins the main op's last pass, whose registers it pays for
        epi_s = vector_cycles(hw.vpu, work) / hw.clock
    else:  # one pass of the vector unit over the kernel's output tiles, its per-register cost included
        epi_s = (pass_cycles(hw.vpu, work, core.outputs[0].elements) if work.alu or work.special else 0) / hw.clock
    # the extra inputs are laid out in the main vector op's rows, padded as its own data is
    scale = padded_row(hw.vpu, core.row_length) / core.row_length if isinstance(core, ops.VectorOp) else 1.0
    extra = Traffic()
    for tensor, times in op.extra_reads:
        extra += sim._stream_traffic((tensor,), (), placement, through_vmem=True, scale=scale).scaled(times)
    return _EPILOGUES.put(key, (epi_s, extra))


_EPILOGUES: BoundedMemo[tuple[float, Traffic]] = BoundedMemo(size=4096)  # a few per fused op and chip


def clear_epilogues() -> None:
    _EPILOGUES.clear()
    _DESCRIBED.clear()


def combine(op: Fused, main: OpCost, work: ops.VectorWork, epi_s: float, extra: Traffic, extra_ch: dict,
            energy, clock: float, vector_unit: str) -> OpCost:
    """The formula of the module docstring, step 3: ``main`` the main op's cost, ``extra_ch`` the
    extra traffic's seconds per channel (Level -> s), ``vector_unit`` the name of the resource
    vector work holds in ``busy`` (``vpu``; a GPU's ``sm``)."""
    on_vector = op.main.unit is ops.Unit.VPU
    compute = main.compute_s + epi_s if on_vector else max(main.compute_s, epi_s)
    main_ch = {name: s for name, s in main.busy if name in _CHANNELS}
    ch = dict(main_ch)
    for level, seconds in extra_ch.items():
        ch[level.value] = ch.get(level.value, 0.0) + seconds
    memory = max(ch.values(), default=0.0)
    main_memory = max(main_ch.values(), default=0.0)
    latency = main.latency_s + max(0.0, max(compute, memory) - max(main.compute_s, main_memory))
    held, *others = [(r, s) for r, s in main.busy if r not in _CHANNELS] or [(main.unit, main.compute_s)]
    if held[0] == vector_unit:
        held = (held[0], held[1] + epi_s if on_vector else max(held[1], epi_s))
    elif epi_s > 0:
        spent = dict(others)
        spent[vector_unit] = spent.get(vector_unit, 0.0) + epi_s
        others = list(spent.items())
    busy = (held, *(o for o in others if o[1] > 0), *((c, s) for c, s in ch.items() if s > 0))
    unit = main.unit if compute == main.compute_s else "vpu"
    busiest = max(ch, key=ch.get) if ch else unit
    return main.replaced(
        vector_ops=main.vector_ops + work.alu + work.special,
        compute_cycles=main.compute_cycles + (compute - main.compute_s) * clock, compute_s=compute,
        memory_s=main.memory_s + max(0.0, memory - main_memory), latency_s=latency, traffic=main.traffic + extra,
        energy=main.energy + energy.op_energy(latency - main.latency_s, extra, vector=work),
        bottleneck=unit if compute >= memory else busiest, busy=busy, tiling=_described(op, main.tiling))


def _described(op: Fused, tiling: str) -> str:
    """``describe``, kept by the op's signature (its members' kinds and functions) and the tiling."""
    key = (op.signature_number, tiling)
    text = _DESCRIBED.get(key)
    if text is None:
        text = _DESCRIBED.put(key, describe(op, tiling))
    return text


_DESCRIBED: BoundedMemo[str] = BoundedMemo(size=4096)


def describe(op: Fused, tiling: str) -> str:
    """The main op's tiling and what fused: '... + norm2 normalise prologue + gelu, add'."""
    def name(member: ops.Op) -> str:
        if isinstance(member, ops.CacheWrite):
            return "cache write"
        return getattr(member, "function", "") or member.kind

    parts = [tiling] if tiling else []
    parts += [f"{name(p)} prologue" for p in op.prologue]
    if op.epilogue:
        parts.append(", ".join(name(e) for e in op.epilogue))
    return " + ".join(parts)
