"""Lowering of a transformer block (attention + MLP) to operators, for every extractor to reuse.

Supports pre-norm blocks with LayerNorm or RMSNorm, multi-head or grouped-query attention,
an optional K/V cache (decode) and a plain or gated (SwiGLU-style) MLP. The pieces
(``linear``, ``attention``, ``mlp``, ...) are public so extractors can compose other block
shapes (DiT's adaLN, for instance) from the same parts.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Literal

from archsim.dtypes import DType
from archsim.ir import ops
from archsim.ir.graph import OpGraph
from archsim.ir.tensor import Role, Tensor


@dataclass(frozen=True)
class BlockShape:
    """The model dimensions of one transformer block."""

    hidden: int
    heads: int
    kv_heads: int
    ffn: int
    head_dim: int | None = None  # default hidden // heads
    activation: Literal["gelu", "silu", "relu"] = "gelu"
    gated: bool = False  # SwiGLU-style: act(x W_gate) * (x W_up), then W_down
    norm: Literal["layernorm", "rmsnorm"] = "layernorm"

    def __post_init__(self) -> None:
        if self.heads % self.kv_heads:
            raise ValueError(f"heads ({self.heads}) must be a multiple of kv_heads ({self.kv_heads})")
        if self.head_dim is None and self.hidden % self.heads:
            raise ValueError(f"hidden ({self.hidden}) is not divisible by heads ({self.heads})")

    @property
    def dh(self) -> int:
        return self.head_dim if self.head_dim is not None else self.hidden // self.heads

    @property
    def weight_params(self) -> int:
        """Matrix parameters of the block (biases and norm gains excluded)."""
        attn = self.hidden * self.dh * (2 * self.heads + 2 * self.kv_heads)
        mlp = self.hidden * self.ffn * (3 if self.gated else 2)
        return attn + mlp


@dataclass(frozen=True)
class Precision:
    weights: DType = DType.BF16
    activations: DType = DType.BF16
    kv: DType = DType.BF16


@dataclass(frozen=True)
class Tokens:
    """How many sequences, query tokens each, and keys each query attends to."""

    batch: int
    q_len: int
    kv_len: int
    kv_cache: bool = False  # keys/values come from (and are appended to) a persistent cache
    causal: bool = False  # each query sees the keys up to its own position (a decoder LLM)

    def __post_init__(self) -> None:
        if min(self.batch, self.q_len, self.kv_len) < 1:
            raise ValueError("batch, q_len and kv_len must be at least 1")
        if not self.kv_cache and self.kv_len != self.q_len:
            raise ValueError("without a KV cache, every query attends to the block's own tokens")
        if self.kv_cache and self.kv_len < self.q_len:
            raise ValueError("kv_len counts the new tokens too, so it cannot be below q_len")

    @property
    def rows(self) -> int:
        return self.batch * self.q_len


class Builder:
    """Adds ops to a graph with names under a prefix ("layer.attn.q", ...).

    ``copies`` > 1 makes every op and tensor stand for that many layers with their own
    weights. ``scope`` prefixes activation names only: weights and caches keep their names in
    every phase (they are the same storage), activations are per phase.

    ``tp`` > 1 lowers for one rank of a tensor-parallel group (Megatron-LM): a ``column`` split
    linear layer keeps 1/tp of its outputs, a ``row`` split one 1/tp of its inputs and is
    followed by an all-reduce of its output. Layers without a split are replicated.
    """

    def __init__(self, graph: OpGraph, prefix: str, precision: Precision, copies: int = 1, scope: str = "",
                 tp: int = 1):
        self.graph = graph
        self.prefix = prefix
        self.precision = precision
        self.copies = copies
        self.scope = scope
        self.tp = tp  # tensor-parallel ranks: split layers hold 1/tp of their weights

    def child(self, local: str) -> "Builder":
        """The same builder (and kind of builder) one name level down."""
        child = copy.copy(self)
        child.prefix = self.name(local)
        return child

    def name(self, local: str) -> str:
        return f"{self.prefix}.{local}" if self.prefix else local

    def act(self, local: str, *shape: int, dtype: DType | None = None) -> Tensor:
        name = f"{self.scope}/{self.name(local)}" if self.scope else self.name(local)
        return Tensor(name, tuple(shape), dtype or self.precision.activations, copies=self.copies)

    def weight(self, local: str, *shape: int) -> Tensor:
        return Tensor(self.name(local), tuple(shape), self.precision.weights, Role.WEIGHT, copies=self.copies)

    def constant(self, local: str, *shape: int) -> Tensor:
        return Tensor(self.name(local), tuple(shape), self.precision.weights, Role.CONSTANT, copies=self.copies)

    def cache(self, local: str, *shape: int, role: Role = Role.KV_CACHE) -> Tensor:
        return Tensor(self.name(local), tuple(shape), self.precision.kv, role, copies=self.copies)

    def add(self, cls, local: str, inputs: tuple[Tensor, ...], outputs: tuple[Tensor, ...], *args) -> None:
        self.graph.add(cls(self.name(local), inputs, outputs, *args, copies=self.copies))

    def linear(self, local: str, x: Tensor, rows: int, d_in: int, d_out: int,
               split: Literal["column", "row", "gathered"] | None = None) -> Tensor:
        """x[rows, d_in] @ W[d_in, d_out] (this rank's part of it under ``split``; ``gathered``
        is a column split whose output the ranks then all-gather, for small outputs every rank
        needs whole, like adaLN's modulation)."""
        full_out = d_out
        if split in ("column", "gathered"):
            d_out = self.shard(d_out, f"{local} output width")
        elif split == "row":
            d_in = self.shard(d_in, f"{local} input width")
        out = self.matmul_layer(local, x, rows, d_in, d_out)
        if split == "gathered" and self.tp > 1:
            gathered = self.act(f"{local}.all_gather.out", rows, full_out)
            self.add(ops.AllGather, f"{local}.all_gather", (out,), (gathered,), self.tp)
            return gathered
        if split == "row" and self.tp > 1:
            reduced = self.act(f"{local}.all_reduce.out", rows, d_out)
            self.add(ops.AllReduce, f"{local}.all_reduce", (out,), (reduced,), self.tp)
            return reduced
        return out

    def shard(self, size: int, what: str) -> int:
        """This rank's share of ``size`` split ``tp`` ways."""
        if size % self.tp:
            raise ValueError(f"{self.name(what)} {size} cannot be split over {self.tp} tensor-parallel ranks")
        return size // self.tp

    def matmul_layer(self, local: str, x: Tensor, rows: int, d_in: int, d_out: int) -> Tensor:
        """The layer's GEMM on this rank's shapes; builders that change how a layer is
        computed (cache schedules) override this."""
        w = self.weight(f"{local}.weight", d_in, d_out)
        out = self.act(f"{local}.out", rows, d_out)
        self.add(ops.Gemm, local, (x, w), (out,), 1, rows, d_in, d_out, False)
        return out

    def norm(self, local: str, kind: str, x: Tensor, rows: int, width: int) -> Tensor:
        out = self.act(f"{local}.out", rows, width)
        self.add(ops.LayerNorm if kind == "layernorm" else ops.RMSNorm, local, (x,), (out,), rows, width)
        return out

    def pointwise(self, local: str, function: str, x: Tensor, rows: int, width: int) -> Tensor:
        out = self.act(f"{local}.out", rows, width)
        self.add(ops.Activation, local, (x,), (out,), rows, width, function)
        return out

    def binary(self, local: str, function: str, inputs: tuple[Tensor, ...], rows: int, width: int) -> Tensor:
        out = self.act(f"{local}.out", rows, width)
        self.add(ops.Elementwise, local, inputs, (out,), rows, width, function)
        return out


def attention(b: Builder, shape: BlockShape, tokens: Tokens, x: Tensor) -> Tensor:
    """Self-attention on normalised input x[rows, hidden]; returns the out-projection output."""
    d, dh = shape.hidden, shape.dh
    # Each tensor-parallel rank runs its share of the heads; with fewer KV heads than ranks,
    # each rank keeps (a replica of) the one KV head its query heads share.
    h = b.shard(shape.heads, "attention heads")
    if shape.kv_heads % b.tp and b.tp % shape.kv_heads:
        raise ValueError(f"{shape.kv_heads} KV heads cannot be split over {b.tp} tensor-parallel ranks")
    kvh = max(1, shape.kv_heads // b.tp)
    group = h // kvh
    rows = tokens.rows
    q = b.linear("q", x, rows, d, shape.heads * dh, split="column")
    k_new = b.linear("k", x, rows, d, kvh * dh * b.tp, split="column")
    v_new = b.linear("v", x, rows, d, kvh * dh * b.tp, split="column")
    if tokens.kv_cache:
        k_all = b.cache("k_cache", tokens.batch, kvh, tokens.kv_len, dh)
        v_all = b.cache("v_cache", tokens.batch, kvh, tokens.kv_len, dh)
        b.add(ops.CacheWrite, "k_append", (k_new,), (k_all,))
        b.add(ops.CacheWrite, "v_append", (v_new,), (v_all,))
    else:
        k_all, v_all = k_new, v_new
    # Query heads that share a KV head are folded into m, so each K/V matrix is read once.
    batch, m = tokens.batch * kvh, group * tokens.q_len
    scores = b.act("scores", batch, m, tokens.kv_len)
    b.add(ops.AttentionScore, "score", (q, k_all), (scores,), batch, m, dh, tokens.kv_len, True,
          tokens.q_len if tokens.causal else 0)
    probs = b.act("probs", batch, m, tokens.kv_len)
    b.add(ops.Softmax, "softmax", (scores,), (probs,), batch * m, tokens.kv_len)
    context = b.act("context", rows, h * dh)
    b.add(ops.AttentionContext, "context_mm", (probs, v_all), (context,), batch, m, tokens.kv_len, dh, True)
    return b.linear("o", context, rows, shape.heads * dh, d, split="row")


def mlp(b: Builder, shape: BlockShape, rows: int, x: Tensor) -> Tensor:
    d, f = shape.hidden, shape.ffn
    local_f = b.shard(f, "ffn width")
    if shape.gated:
        gate = b.linear("gate", x, rows, d, f, split="column")
        up = b.linear("up", x, rows, d, f, split="column")
        hidden = b.binary("gated", "mul", (b.pointwise("act", shape.activation, gate, rows, local_f), up), rows, local_f)
    else:
        hidden = b.pointwise("act", shape.activation, b.linear("fc1", x, rows, d, f, split="column"), rows, local_f)
    return b.linear("fc2" if not shape.gated else "down", hidden, rows, f, d, split="row")


def transformer_block(b: Builder, shape: BlockShape, tokens: Tokens, x: Tensor | None = None) -> Tensor:
    """Add a pre-norm block under ``b``; returns its output tensor [rows, hidden]."""
    rows, d = tokens.rows, shape.hidden
    x = x if x is not None else b.act("in", rows, d)
    attn_out = attention(b.child("attn"), shape, tokens, b.norm("norm1", shape.norm, x, rows, d))
    h = b.binary("residual1", "add", (x, attn_out), rows, d)
    mlp_out = mlp(b.child("mlp"), shape, rows, b.norm("norm2", shape.norm, h, rows, d))
    return b.binary("residual2", "add", (h, mlp_out), rows, d)
