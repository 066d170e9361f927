"""Typed operators. Each knows its shapes, its work (MACs or vector ops) and its operands.

Matrix ops run on the matrix units; everything else on the vector unit or as a pure data
movement. The per-element operation counts of vector ops follow from the op's definition
(written out beside each), not from any particular hardware.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
from dataclasses import dataclass, field
from enum import StrEnum
from typing import ClassVar

from archsim.ir.tensor import Tensor
from archsim.memo import cached_property


class Unit(StrEnum):
    MXU = "mxu"
    VPU = "vpu"
    DMA = "dma"  # data movement only
    ICI = "ici"  # chip-to-chip collectives


@dataclass(frozen=True)
class VectorWork:
    """Work on the vector unit: simple ALU ops and transcendental ('special') ops.
    ``functions`` splits ``special`` by function ((name, count), ...) where known: a vector
    unit may take longer for one transcendental than another."""

    alu: int
    special: int
    functions: tuple[tuple[str, int], ...] = ()

    def __add__(self, other: "VectorWork") -> "VectorWork":
        counts: dict[str, int] = dict(self.functions)
        for name, n in other.functions:
            counts[name] = counts.get(name, 0) + n
        return VectorWork(self.alu + other.alu, self.special + other.special, tuple(sorted(counts.items())))


@dataclass(frozen=True)
class Pass:
    """One kernel of a vector op's lowering, as a compiler emits it: a reduction pass reads the
    op's data input (its first) and keeps per-row results; the last pass reads every input and
    writes the outputs. Work per element (simple ops; transcendentals by function) and per row."""

    alu: int
    special: tuple[tuple[str, int], ...] = ()
    per_row: tuple[tuple[str, int], ...] = ()

    def work(self, elements: int, rows: int) -> VectorWork:
        counts: dict[str, int] = {}
        for name, n in self.special:
            counts[name] = counts.get(name, 0) + n * elements
        for name, n in self.per_row:
            counts[name] = counts.get(name, 0) + n * rows
        return VectorWork(self.alu * elements, sum(counts.values()), tuple(sorted(counts.items())))


def _signature_number(signature: tuple) -> int:
    number = _NUMBERS.get(signature)
    if number is None:
        if len(_NUMBERS) >= _NUMBERED:  # forgotten: a signature met again gets a new number
            _NUMBERS.clear()
        number = _NUMBERS.setdefault(signature, next(_NEXT_NUMBER))
    return number


_NUMBERS: dict[tuple, int] = {}  # signature -> its number
_NUMBERED = 100_000  # signatures numbered before the oldest are forgotten (a workload has hundreds)
_NEXT_NUMBER = itertools.count()


@functools.lru_cache(maxsize=256)  # one entry per op class (a few dozen)
def _cost_fields(cls: type) -> tuple[str, ...]:
    """An op class's fields that decide its cost: all but its name, tensors and copies."""
    return tuple(f.name for f in dataclasses.fields(cls) if f.name not in ("name", "inputs", "outputs", "copies"))


@dataclass(frozen=True)
class Op:
    """An operator. ``copies`` > 1 stands for that many identical ops run one after another
    on distinct copies of the tensors (the layers of a stack)."""

    name: str
    inputs: tuple[Tensor, ...]
    outputs: tuple[Tensor, ...]
    copies: int = field(default=1, kw_only=True)

    unit: ClassVar[Unit]
    kind: ClassVar[str]

    @property
    def macs(self) -> int:
        return 0

    @property
    def vector_work(self) -> VectorWork:
        return VectorWork(0, 0)

    @property
    def tensors(self) -> tuple[Tensor, ...]:
        return self.inputs + self.outputs

    @cached_property
    def tensor_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.tensors)

    @cached_property
    def signature(self) -> tuple:
        """Everything that decides the op's cost: its type, its fields but the name and copies,
        and its tensors' shapes, types and roles. Ops alike but for names (the projections of
        every decode step) have equal signatures. Cached: the fields are frozen."""
        fields_ = tuple(getattr(self, name) for name in _cost_fields(type(self)))
        return (type(self), fields_, tuple((t.shape, t.dtype, t.role) for t in self.inputs),
                tuple((t.shape, t.dtype, t.role) for t in self.outputs))

    @cached_property
    def signature_number(self) -> int:
        """A number standing for ``signature`` in this process: the shared costs' memos key by
        it (a nested signature took a microsecond to hash, at every lookup). Ops with equal
        signatures share one; a number never stands for two signatures (numbers are not reused,
        even once forgotten); it is not pickled (another process numbers its own)."""
        return _signature_number(self.signature)

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state.pop("signature_number", None)
        return state


@dataclass(frozen=True)
class MatMul(Op):
    """out[batch, m, n] = a[batch, m, k] @ b[batch, k, n].

    ``inputs`` are (a, b); ``b`` is shared across the batch when ``b_batched`` is false
    (a weight matrix), else each batch element has its own ``b`` (attention).
    """

    batch: int
    m: int
    k: int
    n: int
    b_batched: bool

    unit: ClassVar[Unit] = Unit.MXU
    kind: ClassVar[str] = "matmul"

    def __post_init__(self) -> None:
        self._check_dims()
        a, b = self.inputs
        b_elements = (self.batch if self.b_batched else 1) * self.k * self.n
        if a.elements != self.batch * self.m * self.k or b.elements != b_elements:
            raise ValueError(f"op {self.name!r}: operand sizes do not match batch/m/k/n")

    def _check_dims(self) -> None:
        for dim in ("batch", "m", "k", "n"):
            if getattr(self, dim) <= 0:
                raise ValueError(f"op {self.name!r}: {dim} must be positive")

    @property
    def a(self) -> Tensor:
        return self.inputs[0]

    @property
    def b(self) -> Tensor:
        return self.inputs[1]

    @property
    def out(self) -> Tensor:
        return self.outputs[0]

    @property
    def macs(self) -> int:
        return self.batch * self.m * self.k * self.n


@dataclass(frozen=True)
class Gemm(MatMul):
    """An activation times a weight matrix (a linear layer); tokens are folded into m."""

    kind: ClassVar[str] = "gemm"


@dataclass(frozen=True)
class ExpertGemm(Gemm):
    """The tokens routed to ``batch`` of a mixture-of-experts layer's ``experts``, ``m`` rows
    each, times those experts' own weight matrices. ``b`` holds every expert's matrix
    [experts, k, n] (what is stored); the op reads the ``batch`` it uses."""

    experts: int = 1

    def __post_init__(self) -> None:
        self._check_dims()
        if not self.b_batched or self.batch > self.experts:
            raise ValueError(f"op {self.name!r}: {self.batch} active experts of {self.experts}, each its own matrix")
        a, b = self.inputs
        if a.elements != self.batch * self.m * self.k or b.elements != self.experts * self.k * self.n:
            raise ValueError(f"op {self.name!r}: operand sizes do not match experts/batch/m/k/n")


@dataclass(frozen=True)
class AttentionScore(MatMul):
    """Q @ K^T per (sequence, KV head); query heads sharing a KV head are folded into m.
    ``causal_queries`` > 0: causal attention, the queries being the last that many of the n key
    positions (a dense score op computes every score anyway; a flash kernel skips masked blocks)."""

    causal_queries: int = 0

    kind: ClassVar[str] = "attn_score"


@dataclass(frozen=True)
class AttentionContext(MatMul):
    """P @ V per (sequence, KV head)."""

    kind: ClassVar[str] = "attn_context"


@dataclass(frozen=True)
class FlashAttention(Op):
    """Attention as one tiled kernel (FlashAttention: Dao et al., 2022; FlashAttention-2, Dao,
    2023; Dao-AILab/flash-attention): softmax(Q K^T) V over blocks of ``block`` queries and
    ``block`` keys, the softmax kept online (a running max and sum per query row, the output
    rescaled as each key block arrives), so no score matrix is ever stored. ``inputs`` are (q,
    k, v), ``outputs`` (context); per (sequence, KV head) ``batch``, ``group`` query heads share
    a KV head, each with ``q_len`` queries over ``kv_len`` keys of ``dh``. ``causal``: the
    queries are the last ``q_len`` key positions and key blocks wholly after a query block are
    skipped (the diagonal blocks are computed whole, masked inside)."""

    batch: int
    group: int
    q_len: int
    kv_len: int
    dh: int
    causal: bool
    block: int

    unit: ClassVar[Unit] = Unit.MXU
    kind: ClassVar[str] = "attention"

    def __post_init__(self) -> None:
        for dim in ("batch", "group", "q_len", "kv_len", "dh", "block"):
            if getattr(self, dim) <= 0:
                raise ValueError(f"op {self.name!r}: {dim} must be positive")
        if self.causal and self.q_len > self.kv_len:
            raise ValueError(f"op {self.name!r}: {self.q_len} causal queries over {self.kv_len} keys")

    def _query_blocks(self) -> list[tuple[int, int]]:
        """Per query block of a head: its rows and the keys it computes (every one, or with
        ``causal`` those of the key blocks up to the block's last position)."""
        first = self.kv_len - self.q_len  # the first query's position
        out = []
        for start in range(0, self.q_len, self.block):
            rows = min(self.block, self.q_len - start)
            last = first + start + rows  # keys 0 .. last - 1 are visible to some query here
            keys = min(self.kv_len, -(-last // self.block) * self.block) if self.causal else self.kv_len
            out.append((rows, keys))
        return out

    @property
    def pairs(self) -> int:
        """(query, key) scores computed per head."""
        if not self.causal:
            return self.q_len * self.kv_len
        return sum(rows * keys for rows, keys in self._query_blocks())

    @property
    def row_blocks(self) -> int:
        """(query row, key block) pairs per head: how often a row's running softmax is rescaled."""
        return sum(rows * -(-keys // self.block) for rows, keys in self._query_blocks())

    @property
    def tiles(self) -> int:
        """(query block, key block) tiles computed per head."""
        return sum(-(-keys // self.block) for _, keys in self._query_blocks())

    @property
    def macs(self) -> int:
        # Q K^T and P V: dh MACs per score, each
        return 2 * self.batch * self.group * self.pairs * self.dh

    @property
    def vector_work(self) -> VectorWork:
        """FlashAttention-2's Algorithm 1, per score: the running max, the subtraction, the
        exponential and the row sum; per row and key block: the rescale factor (an exponential),
        the rescaled sum and the output row rescaled; per row at the end: the reciprocal of the
        sum and the output row scaled by it."""
        heads = self.batch * self.group
        scores = heads * self.pairs
        rows = heads * self.q_len
        rescales = heads * self.row_blocks
        alu = 3 * scores + rescales * (2 + self.dh) + rows * self.dh
        counts = (("exp", scores + rescales), ("reciprocal", rows))
        return VectorWork(alu, sum(n for _, n in counts), counts)


@dataclass(frozen=True)
class VectorOp(Op):
    """An op on the vector unit over ``rows`` rows of ``row_length`` elements.

    ``PASSES[function]`` is its lowering: the kernels it runs, in order (``Pass``); all but the
    last are reductions over each row. Written out beside each table from the op's definition in
    the published code. ASSUMPTION (TPU compilers are not published): ops are lowered as XLA's
    generic fusion pass does (openxla/xla, xla/service/instruction_fusion.cc): a reduction is
    fused with the element-wise ops producing its input, which are duplicated (recomputed) into
    each consumer, but not with a sibling reduction nor with its own consumers. So an op makes one
    pass over its input per reduction, then one that writes its output. The TPUv3 softmax and
    layernorm timings (hw_configs/tpuv3.yaml) take about the time these passes predict.
    """

    rows: int
    row_length: int
    function: str = ""

    unit: ClassVar[Unit] = Unit.VPU
    PASSES: ClassVar[dict[str, tuple[Pass, ...]]] = {}

    def __post_init__(self) -> None:
        if (self.function or self.kind) not in self.PASSES:
            raise ValueError(f"op {self.name!r}: unknown {self.kind} function {self.function!r}")

    @property
    def elements(self) -> int:
        return self.rows * self.row_length

    @property
    def passes(self) -> tuple[Pass, ...]:
        return self.PASSES[self.function or self.kind]

    @property
    def vector_work(self) -> VectorWork:
        total = VectorWork(0, 0)
        for p in self.passes:
            total = total + p.work(self.elements, self.rows)
        return total


@dataclass(frozen=True)
class Softmax(VectorOp):
    kind: ClassVar[str] = "softmax"
    # jax.nn.softmax (jax-ml/jax, jax/_src/nn/functions.py): x_max = max(x); unnormalized =
    # exp(x - x_max); result = unnormalized / sum(unnormalized). Passes: max-reduce (1 op);
    # sum-reduce of exp(x - max) (subtract, exp, add); normalise, exp recomputed (subtract, exp,
    # multiply by the row's reciprocal of the sum, one per row).
    PASSES: ClassVar[dict[str, tuple[Pass, ...]]] = {"softmax": (
        Pass(1), Pass(2, (("exp", 1),)), Pass(2, (("exp", 1),), (("reciprocal", 1),)))}


@dataclass(frozen=True)
class LayerNorm(VectorOp):
    kind: ClassVar[str] = "layernorm"
    # flax.linen.LayerNorm / jax.nn.standardize: mean = mean(x); var = mean(x^2) - mean^2 (two
    # sibling reductions: two passes, 1 add and a square plus an add); normalise: subtract, scale
    # by rsqrt(var + eps) (one per row), gamma, beta: 4 per element.
    PASSES: ClassVar[dict[str, tuple[Pass, ...]]] = {"layernorm": (
        Pass(1), Pass(2), Pass(4, (), (("rsqrt", 1),)))}


@dataclass(frozen=True)
class RMSNorm(VectorOp):
    kind: ClassVar[str] = "rmsnorm"
    # LlamaRMSNorm (huggingface/transformers, models/llama/modeling_llama.py): variance =
    # mean(x^2) (square, add); x * rsqrt(variance + eps) (one per row) * weight: 2 per element.
    PASSES: ClassVar[dict[str, tuple[Pass, ...]]] = {"rmsnorm": (Pass(2), Pass(2, (), (("rsqrt", 1),)))}


@dataclass(frozen=True)
class Activation(VectorOp):
    """A pointwise nonlinearity: one pass."""

    function: str = "gelu"
    kind: ClassVar[str] = "activation"
    # gelu (tanh form): x^3 (2 mul), *c, +x, *sqrt(2/pi), tanh, +1, *x, *0.5: 8 ALU + 1 tanh
    # silu: x * sigmoid(x) = x / (1 + exp(-x)): negate, exp, add, reciprocal, mul: 3 ALU + 2
    # relu: max(x, 0): 1 ALU
    # sigmoid: 1 / (1 + exp(-x)): negate, add: 2 ALU + exp + reciprocal
    PASSES: ClassVar[dict[str, tuple[Pass, ...]]] = {
        "gelu": (Pass(8, (("tanh", 1),)),), "silu": (Pass(3, (("exp", 1), ("reciprocal", 1))),),
        "relu": (Pass(1),), "sigmoid": (Pass(2, (("exp", 1), ("reciprocal", 1))),)}


MAX_TOP_K = 32  # experts per token a mixture-of-experts combine is defined for


@dataclass(frozen=True)
class Elementwise(VectorOp):
    """A pointwise op over two or three operands: one pass."""

    function: str = "add"
    kind: ClassVar[str] = "elementwise"
    # add, sub, mul, copy (a gather or scatter): 1 ALU op per element.
    # modulate (adaLN): x * (1 + scale) + shift, (1 + scale) once per row: 2 per element.
    # gated_add (adaLN-Zero residual): x + gate * y: 2 per element.
    # axpby (sampler update, guidance): a * x + b * y: 3 per element.
    PASSES: ClassVar[dict[str, tuple[Pass, ...]]] = {
        "add": (Pass(1),), "sub": (Pass(1),), "mul": (Pass(1),), "modulate": (Pass(2),), "gated_add": (Pass(2),),
        "axpby": (Pass(3),), "copy": (Pass(1),),
        # Taylor forecast of order m: sum of d_k dt^k / k!, a multiply-add per term (2m), and
        # the finite-difference refresh of m derivatives (a subtract and a scale each, 2m).
        **{f"taylor{m}": (Pass(2 * m),) for m in range(1, 9)},
        **{f"diff{m}": (Pass(2 * m),) for m in range(1, 9)},
        # a mixture of experts' combine: each token's k expert outputs, each times its router
        # weight, summed: k multiply-adds per output element
        **{f"combine{k}": (Pass(2 * k),) for k in range(1, MAX_TOP_K + 1)},
    }


@dataclass(frozen=True)
class EmbeddingLookup(Op):
    """Gather ``rows`` rows of an embedding table: pure data movement."""

    rows: int

    unit: ClassVar[Unit] = Unit.DMA
    kind: ClassVar[str] = "embedding"


@dataclass(frozen=True)
class CacheWrite(Op):
    """Append new entries to a persistent cache (K/V, cached features): data movement.

    ``inputs`` are the new entries; ``outputs`` the cache tensor, of which only the new
    entries' bytes are written.
    """

    unit: ClassVar[Unit] = Unit.DMA
    kind: ClassVar[str] = "cache_write"

    @property
    def written_bytes(self) -> float:
        return sum(t.bytes for t in self.inputs)


@dataclass(frozen=True)
class Preload(Op):
    """Load persistent tensors from HBM into CMEM once, before the workload (placement's doing)."""

    unit: ClassVar[Unit] = Unit.DMA
    kind: ClassVar[str] = "preload"


@dataclass(frozen=True)
class Collective(Op):
    """A collective among the ``group`` chips of a tensor-parallel group. ``inputs`` are this
    chip's buffer, ``outputs`` the result; ``bytes`` is the size of the whole result."""

    group: int

    unit: ClassVar[Unit] = Unit.ICI

    def __post_init__(self) -> None:
        if self.group < 2:
            raise ValueError(f"op {self.name!r}: a collective needs a group of at least 2 chips")

    @property
    def bytes(self) -> float:
        return self.outputs[0].bytes


@dataclass(frozen=True)
class AllReduce(Collective):
    """Every chip ends with the element-wise sum of every chip's buffer (row-parallel GEMMs).
    The sums take one add per element received: (group - 1) / group of the elements."""

    kind: ClassVar[str] = "all_reduce"

    @property
    def vector_work(self) -> VectorWork:
        return VectorWork(self.outputs[0].elements * (self.group - 1) // self.group, 0)


@dataclass(frozen=True)
class AllToAll(Collective):
    """Every chip sends a 1/group share of its buffer to each chip of an expert-parallel group
    (a mixture of experts' dispatch of tokens to their experts, and the combine back);
    ``bytes`` is this chip's buffer."""

    kind: ClassVar[str] = "all_to_all"

    @property
    def bytes(self) -> float:
        return self.inputs[0].bytes


@dataclass(frozen=True)
class AllGather(Collective):
    """Every chip ends with the concatenation of every chip's shard."""

    kind: ClassVar[str] = "all_gather"
