"""The common interface of matrix-unit timing models, and their registry by config ``kind``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol

from archsim.dtypes import DType
from archsim.config.dumps import section_text
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
    # The operands' storage types when narrower than ``dtype`` (weight-only quantisation, W4A8):
    # they are stored and moved at these widths and converted on the way into the arrays.
    a_stored: DType | None = None
    b_stored: DType | None = None

    @property
    def macs(self) -> int:
        return self.batch * self.m * self.k * self.n

    @property
    def a_dtype(self) -> DType:
        """A's type in memory."""
        return self.a_stored or self.dtype

    @property
    def b_dtype(self) -> DType:
        """B's type in memory."""
        return self.b_stored or self.dtype

    @property
    def a_bytes(self) -> float:
        """A's bytes in memory."""
        return self.batch * self.m * self.k * self.a_dtype.bytes

    @property
    def b_bytes(self) -> float:
        """B's bytes in memory (once, when the batch shares it)."""
        return (self.batch if self.b_batched else 1) * self.k * self.n * self.b_dtype.bytes


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
    # Stationary operand bytes put into the arrays: written into compute-in-memory arrays, or
    # loaded into a systolic array's PE registers (each charged its own energy per byte).
    weight_write_bytes: float = 0.0
    # Of compute_cycles, those the busiest unit spends streaming operands through (issuing
    # MACs); the rest loads stationary operands, fills and drains.
    stream_cycles: int = 0

    @property
    def utilization(self) -> float:
        """Fraction of the units' peak MAC slots used while computing."""
        return self.macs / (self.compute_cycles * self.peak_macs_per_cycle) if self.compute_cycles else 0.0



class MatrixUnitModel(Protocol):
    def mappings(self, shape: MatmulShape, out_dtype: DType) -> tuple[ArrayTiming, ...]:
        """The ways the units can run the matmul, none of them dominated (``undominated``).
        The engine picks among them by the op's time with memory, which the units cannot see;
        a model offers every mapping a smaller group of its units could run, so more units
        never leave the op slower."""
        ...

    def supports(self, dtype: DType) -> bool: ...


def undominated(timings) -> tuple[ArrayTiming, ...]:
    """The distinct timings no other one beats or equals on every count that slows an op
    down: cycles, scratchpad reads (operands fed to the arrays) and weight writes, and folds,
    of which more is better (transfers overlap compute fold by fold). Kept in first-seen order."""
    distinct = list(dict.fromkeys(timings))
    if len(distinct) > _PAIRS_IN_PYTHON:
        kept = _undominated_arrays(distinct)
        if kept is not None:
            return kept

    def worse(x: ArrayTiming, y: ArrayTiming) -> bool:  # y is at least as good as x everywhere
        return (y.compute_cycles <= x.compute_cycles and y.folds >= x.folds and y.a_reads <= x.a_reads
                and y.b_reads <= x.b_reads and y.weight_write_bytes <= x.weight_write_bytes)

    # x goes when another beats it, or equals it everywhere and came first
    return tuple(x for i, x in enumerate(distinct)
                 if not any(worse(x, y) and (j < i or not worse(y, x)) for j, y in enumerate(distinct) if j != i))


_PAIRS_IN_PYTHON = 8  # more timings than this (a CIM unit's splits times its counts): compared as arrays


def _undominated_arrays(distinct: list[ArrayTiming]) -> tuple[ArrayTiming, ...] | None:
    """``undominated``'s pairwise test, every pair at once: the same comparisons, of the same
    values (None where one is an integer a float cannot hold: compared in Python)."""
    import numpy as np  # the CLI's start-up does not import numpy for a config's check

    rows = [(t.compute_cycles, -t.folds, t.a_reads, t.b_reads, t.weight_write_bytes) for t in distinct]
    values = np.array(rows, dtype=np.float64)  # each to be no larger in a timing at least as good
    if values.tolist() != [list(row) for row in rows]:
        return None
    worse = (values[None, :, :] <= values[:, None, :]).all(axis=-1)  # [x, y]: y at least as good as x
    order = np.arange(len(distinct))
    beaten = worse & ((order[None, :] < order[:, None]) | ~worse.T)
    np.fill_diagonal(beaten, False)
    return tuple(x for x, gone in zip(distinct, beaten.any(axis=1).tolist()) if not gone)


_KINDS: dict[str, Callable[[object], MatrixUnitModel]] = {}


def register_matrix_unit(kind: str):
    """Class decorator: the model for configs whose ``mxu.kind`` is ``kind``."""

    def decorate(cls):
        _KINDS[kind] = cls
        return cls

    return decorate


def _load_kind(kind: str) -> None:
    """The bundled models are in their own modules, which register on import: each is loaded
    when a config of its kind is first built (a systolic chip's run does not load the CIM model)."""
    if kind == "systolic":
        from archsim.hw.matrix import systolic  # noqa: F401
    elif kind == "cim":
        from archsim.hw.matrix import cim  # noqa: F401


def build_matrix_unit(config) -> MatrixUnitModel:
    """The model of ``config``'s kind. Models are shared by content, with their timings:
    design points whose matrix units are alike (a sweep over memories) reuse every timing."""
    if config.kind not in _KINDS:
        _load_kind(config.kind)
    try:
        factory = _KINDS[config.kind]
    except KeyError:
        raise ValueError(f"no matrix-unit model registered for kind {config.kind!r}") from None
    key = section_text(config)  # repr(config.model_dump()), made once per config object
    return _BUILT.get(key) or _BUILT.put(key, _Memoised(factory(config)))


class _Memoised:
    """A model whose timings are kept: each is a pure function of (shape, output type)."""

    def __init__(self, model: MatrixUnitModel):
        self.model = model
        self._timings: BoundedMemo[tuple[ArrayTiming, ...]] = BoundedMemo(size=4096)

    def supports(self, dtype: DType) -> bool:
        return self.model.supports(dtype)

    def __getattr__(self, name: str):  # the model's own attributes (config, ...)
        if name == "model":  # not yet set (unpickling)
            raise AttributeError(name)
        return getattr(self.model, name)

    def mappings(self, shape: MatmulShape, out_dtype: DType) -> tuple[ArrayTiming, ...]:
        key = (shape, out_dtype)
        return self._timings.get(key) or self._timings.put(key, self.model.mappings(shape, out_dtype))

    def timing(self, shape: MatmulShape, out_dtype: DType) -> ArrayTiming:
        """The mapping with the fewest cycles (ties: the first offered): what the arrays alone
        would pick, without the memory system."""
        return min(self.mappings(shape, out_dtype), key=lambda t: t.compute_cycles)


_BUILT: BoundedMemo[_Memoised] = BoundedMemo(size=256)


def clear_matrix_units() -> None:
    _BUILT.clear()
