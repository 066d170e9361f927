"""Rules every chip's cost model applies to an op before costing it (the TPU engine, the GPU
engine and the flash-attention cost share them): the type the MACs run at, an operand's storage
type, the chips of a collective's group, and which resource bounds an op."""

from __future__ import annotations

from archsim.dtypes import DType
from archsim.errors import ArchsimError
from archsim.hw.memory import Level
from archsim.ir import ops


class UnsupportedOpError(ArchsimError):
    pass


def bottleneck(compute_s: float, times: dict[Level, float], unit: str) -> str:
    """The unit when compute dominates, else the busiest memory level."""
    level, memory_s = max(times.items(), key=lambda kv: kv[1], default=(None, 0.0))
    return unit if compute_s >= memory_s or level is None else level.value


def compute_dtype(op: ops.MatMul) -> DType:
    """Mixed operands run at the wider type (the narrower is converted). Two types of one width
    (int8 and fp8, bf16 and fp16) have no wider one to meet in: an error, not a guess."""
    return wider(op.name, op.a.dtype, op.b.dtype)


def wider(name: str, a: DType, b: DType) -> DType:
    if a is not b and a.bytes == b.bytes:
        raise UnsupportedOpError(f"op {name!r} multiplies {a} by {b}: two types of one width; give both "
                                 "operands one type")
    return a if a.bytes >= b.bytes else b


def stored(stored: DType, compute: DType) -> DType | None:
    """An operand's storage type where it is narrower than the type the MACs run at."""
    return stored if stored.bytes < compute.bytes else None


def collective_group(hw, op: ops.Collective) -> range:
    """The chips of ``op``'s group as the system numbers them (tensor rank first, then stage,
    then replica; every group is alike): a tensor-parallel group's neighbours, or an
    expert-parallel group's replicas of one stage and rank."""
    p = hw.system.parallelism
    ranks, what, stride = (p.expert, "expert-parallel", p.pipeline * p.tensor) if isinstance(op, ops.AllToAll) \
        else (p.tensor, "tensor-parallel", 1)
    if op.group != ranks:
        raise UnsupportedOpError(f"op {op.name!r} is lowered for {op.group} {what} ranks, but the system maps {ranks}")
    return range(0, ranks * stride, stride)
