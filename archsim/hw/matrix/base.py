"""The common interface of matrix-unit timing models, and their registry by config ``kind``."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Protocol

from archsim.dtypes import DType
from archsim.memo import BoundedMemo


@dataclass(frozen=True)
class MatmulShape:
    """A (batched) matrix product as the matrix units see it."""

    batch: int
    m: int
    k: int
    n: int
    dtype: DType  # operand type the MACs run at
    b_batched: bool = False  # each batch element brings its own B (attention) or shares one

    @property
    def macs(self) -> int:
        return self.batch * self.m * self.k * self.n


@dataclass(frozen=True)
class ArrayTiming:
    """What the matrix units do for one matmul, without memory stalls."""

    compute_cycles: int  # cycles the busiest unit is busy
    folds: int  # folds over all units: the pieces in which operands reach the arrays
    macs: int
    peak_macs_per_cycle: int  # of all units together
    # Operand bytes moved between the scratchpad (VMEM) and the arrays by the dataflow.
    a_reads: float
    b_reads: float
    out_writes: float
    weight_write_bytes: float = 0.0  # weights written into compute-in-memory arrays

    @property
    def utilization(self) -> float:
        """Fraction of the units' peak MAC slots used while computing."""
        return self.macs / (self.compute_cycles * self.peak_macs_per_cycle) if self.compute_cycles else 0.0



class MatrixUnitModel(Protocol):
    def timing(self, shape: MatmulShape, out_dtype: DType) -> ArrayTiming: ...

    def supports(self, dtype: DType) -> bool: ...


_KINDS: dict[str, Callable[[object], MatrixUnitModel]] = {}


def register_matrix_unit(kind: str):
    """Class decorator: the model for configs whose ``mxu.kind`` is ``kind``."""

    def decorate(cls):
        _KINDS[kind] = cls
        return cls

    return decorate


def build_matrix_unit(config, feed_bytes_per_cycle: float | None = None) -> MatrixUnitModel:
    """The model of ``config``'s kind; ``feed_bytes_per_cycle`` is what the scratchpad can feed
    the units (a mapper may weigh it). Models are shared by content, with their timings: design
    points whose matrix units are alike (a sweep over memories) reuse every timing."""
    try:
        factory = _KINDS[config.kind]
    except KeyError:
        raise ValueError(f"no matrix-unit model registered for kind {config.kind!r}") from None
    feed = feed_bytes_per_cycle if feed_bytes_per_cycle is not None else math.inf
    key = (repr(config.model_dump()), feed)
    return _BUILT.get(key) or _BUILT.put(key, _Memoised(factory(config, feed)))


class _Memoised:
    """A model whose timings are kept: each is a pure function of (shape, output type)."""

    def __init__(self, model: MatrixUnitModel):
        self.model = model
        self._timings: BoundedMemo[ArrayTiming] = BoundedMemo(size=4096)

    def supports(self, dtype: DType) -> bool:
        return self.model.supports(dtype)

    def __getattr__(self, name: str):  # the model's own attributes (config, ...)
        if name == "model":  # not yet set (unpickling)
            raise AttributeError(name)
        return getattr(self.model, name)

    def timing(self, shape: MatmulShape, out_dtype: DType) -> ArrayTiming:
        key = (shape, out_dtype)
        return self._timings.get(key) or self._timings.put(key, self.model.timing(shape, out_dtype))


_BUILT: BoundedMemo[_Memoised] = BoundedMemo(size=256)


def clear_matrix_units() -> None:
    _BUILT.clear()
