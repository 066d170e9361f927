"""Lowering of a transformer block (attention + MLP) to operators, for every extractor to reuse.

Supports pre-norm blocks with LayerNorm or RMSNorm, multi-head or grouped-query attention
(optionally over a sliding window of keys), an optional K/V cache (decode), a plain or gated
(SwiGLU-style) MLP or a mixture of experts, and attention and MLP in series or in parallel. The pieces
(``linear``, ``attention``, ``mlp``, ...) are public so extractors can compose other block
shapes (DiT's adaLN, for instance) from the same parts.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from archsim.dtypes import DType
from archsim.ir import ops
from archsim.ir.graph import OpGraph
from archsim.ir.tensor import Role, Tensor

if TYPE_CHECKING:  # multi-head latent attention (DeepSeek) is imported by the models that have it
    from archsim.ir.mla import MlaShape


@dataclass(frozen=True)
class MoeShape:
    """A mixture-of-experts MLP: a router picks ``top_k`` of ``experts`` gated or plain MLPs of
    width ``ffn`` per token; ``shared_ffn`` > 0 adds an MLP every token runs (with a sigmoid gate
    of its own when ``shared_gate``)."""

    experts: int
    top_k: int
    ffn: int
    shared_ffn: int = 0
    shared_gate: bool = False

    def __post_init__(self) -> None:
        if not 1 <= self.top_k <= min(self.experts, ops.MAX_TOP_K):
            raise ValueError(f"top_k ({self.top_k}) must be between 1 and the experts ({self.experts}), at most "
                             f"{ops.MAX_TOP_K}")

    def active(self, tokens: int, ranks: int = 1) -> int:
        """Expected distinct experts that ``tokens`` tokens route to, each picking ``top_k`` of
        ``experts`` uniformly (the balance the router's auxiliary loss trains for): E (1 - (1 -
        k/E)^T), rounded, at least k and at most the routed rows. Over ``ranks`` expert-parallel
        chips, of one chip's E / ranks experts, for the group's ``tokens`` x ranks tokens."""
        e, k = self.experts, self.top_k
        local = e // ranks
        expected = local * (1 - (1 - k / e) ** (tokens * ranks))
        return max(k if ranks == 1 else 1, min(local, tokens * k, round(expected)))


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
    window: int | None = None  # sliding-window attention: each query sees its last ``window`` keys
    moe: MoeShape | None = None  # a mixture of experts instead of the MLP
    # "parallel": attention and MLP both read one norm of the block's input, their outputs added
    # to it together (GPT-J, Falcon-7B); "parallel_norms": each reads its own norm (GPT-NeoX,
    # Falcon-40B)
    layout: Literal["serial", "parallel", "parallel_norms"] = "serial"
    post_norms: bool = False  # a norm of the attention's and the MLP's outputs too (Gemma 2, 3)
    mla: MlaShape | None = None  # multi-head latent attention (DeepSeek) instead of heads' own K/V

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
        """Matrix parameters of the block (biases and norm gains excluded): every expert's."""
        attn = self.hidden * self.dh * (2 * self.heads + 2 * self.kv_heads) if self.mla is None \
            else self.mla.weight_params(self.hidden, self.heads)
        per = 3 if self.gated else 2
        if self.moe is None:
            return attn + self.hidden * self.ffn * per
        moe = self.moe
        return (attn + self.hidden * moe.experts  # the router
                + moe.experts * self.hidden * moe.ffn * per + self.hidden * moe.shared_ffn * per
                + (self.hidden if moe.shared_gate else 0))


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
                 tp: int = 1, ep: int = 1):
        self.graph = graph
        self.prefix = prefix
        self.precision = precision
        self.copies = copies
        self.scope = scope
        self.tp = tp  # tensor-parallel ranks: split layers hold 1/tp of their weights
        self.ep = ep  # expert-parallel ranks: each holds 1/ep of a mixture of experts' experts

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
    # Keys attended: all of them, or with a sliding window the union of the queries' windows (a
    # decode step's query sees its last ``window`` keys; q queries after the prompt, window + q -
    # 1); a prompt longer than the window is scored whole under a mask, as the eager and SDPA
    # kernels compute it. The cache of a windowed layer is a rolling buffer of what the next
    # step reads (Mistral's reference code, transformers' sliding-window caches).
    keys = kept = tokens.kv_len
    if shape.window is not None:
        if tokens.q_len < tokens.kv_len:
            keys = kept = min(tokens.kv_len, shape.window + tokens.q_len - 1)
        else:
            kept = min(tokens.kv_len, shape.window)
    if tokens.kv_cache:
        k_all = b.cache("k_cache", tokens.batch, kvh, kept, dh)
        v_all = b.cache("v_cache", tokens.batch, kvh, kept, dh)
        b.add(ops.CacheWrite, "k_append", (k_new,), (k_all,))
        b.add(ops.CacheWrite, "v_append", (v_new,), (v_all,))
        if kept < keys:  # a prompt longer than the window: scored against its own fresh keys
            k_all, v_all = k_new, v_new
    else:
        k_all, v_all = k_new, v_new
    # Query heads that share a KV head are folded into m, so each K/V matrix is read once.
    batch, m = tokens.batch * kvh, group * tokens.q_len
    scores = b.act("scores", batch, m, keys)
    b.add(ops.AttentionScore, "score", (q, k_all), (scores,), batch, m, dh, keys, True,
          tokens.q_len if tokens.causal else 0)
    probs = b.act("probs", batch, m, keys)
    b.add(ops.Softmax, "softmax", (scores,), (probs,), batch * m, keys)
    context = b.act("context", rows, h * dh)
    b.add(ops.AttentionContext, "context_mm", (probs, v_all), (context,), batch, m, keys, dh, True)
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


def moe_mlp(b: Builder, shape: BlockShape, rows: int, x: Tensor) -> Tensor:
    """A mixture of experts (Mixtral, Qwen-MoE): a router GEMM and softmax over the experts;
    each token's ``top_k`` rows gathered to their experts; the active experts' MLPs, each on its
    share of the routed rows, reading only their own weights; the outputs scaled by the router's
    weights and summed back per token; plus the shared experts' MLP every token runs.

    The routed rows (rows x k) spread evenly over the expected number of distinct experts
    (``MoeShape.active``): two groups of expert GEMMs, of q + 1 and q rows, so the MACs are exact.
    Under tensor parallelism each expert's MLP is split like a dense one."""
    moe, d = shape.moe, shape.hidden
    logits = b.linear("router", x, rows, d, moe.experts)
    probs = b.act("router.probs", rows, moe.experts)
    b.add(ops.Softmax, "router.softmax", (logits,), (probs,), rows, moe.experts)
    routed = rows * moe.top_k
    if moe.experts % b.ep:
        raise ValueError(f"{moe.experts} experts cannot be divided among {b.ep} expert-parallel ranks")
    held = moe.experts // b.ep
    # Under expert parallelism a chip runs its own experts on the rows every chip of the group
    # routes to them: as many as its own tokens route, by the balance the router trains for.
    active = moe.active(rows, b.ep)
    per, extra = divmod(routed, active)
    parts = [(n, m) for n, m in ((extra, per + 1), (active - extra, per)) if n]
    f = b.shard(moe.ffn, "expert ffn width")
    stored: dict[str, Tensor] = {}

    def experts(local: str, inputs: list[Tensor], d_in: int, d_out: int) -> list[Tensor]:
        w = stored.setdefault(local, b.weight(f"{local}.weight", held, d_in, d_out))
        outs = []
        for i, ((n, m), a) in enumerate(zip(parts, inputs)):
            out = b.act(f"{local}.{i}.out", n * m, d_out)
            b.add(ops.ExpertGemm, f"{local}.{i}", (a, w), (out,), n, m, d_in, d_out, True, held)
            outs.append(out)
        return outs

    source = x
    if b.ep > 1:  # the routed rows packed by destination, sent to their experts' chips
        packed = b.act("dispatch.pack.out", routed, d)
        b.add(ops.Elementwise, "dispatch.pack", (x,), (packed,), routed, d, "copy")
        source = b.act("dispatch.all_to_all.out", routed, d)
        b.add(ops.AllToAll, "dispatch.all_to_all", (packed,), (source,), b.ep)
    dispatched = []  # the gather of each token's routed rows, expert by expert
    for i, (n, m) in enumerate(parts):
        rows_in = b.act(f"dispatch.{i}.out", n * m, d)
        b.add(ops.Elementwise, f"dispatch.{i}", (source,), (rows_in,), n * m, d, "copy")
        dispatched.append(rows_in)
    if shape.gated:
        gates, ups = experts("experts.gate", dispatched, d, f), experts("experts.up", dispatched, d, f)
        hidden = [b.binary(f"experts.gated.{i}", "mul", (b.pointwise(f"experts.act.{i}", shape.activation, g, n * m, f), u),
                           n * m, f) for i, ((n, m), g, u) in enumerate(zip(parts, gates, ups))]
        downs = experts("experts.down", hidden, f, d)
    else:
        fc1 = experts("experts.fc1", dispatched, d, f)
        hidden = [b.pointwise(f"experts.act.{i}", shape.activation, h, n * m, f) for i, ((n, m), h) in enumerate(zip(parts, fc1))]
        downs = experts("experts.fc2", hidden, f, d)
    if b.ep > 1:  # the expert outputs back to their tokens' chips
        packed = b.act("combine.pack.out", routed, d)
        b.add(ops.Elementwise, "combine.pack", tuple(downs), (packed,), routed, d, "copy")
        back = b.act("combine.all_to_all.out", routed, d)
        b.add(ops.AllToAll, "combine.all_to_all", (packed,), (back,), b.ep)
        downs = [back]
    out = b.act("combine.out", rows, d)  # each routed row times its router weight, summed per token
    b.add(ops.Elementwise, "combine", (*downs, probs), (out,), rows, d, f"combine{moe.top_k}")
    if b.tp > 1:
        reduced = b.act("experts.all_reduce.out", rows, d)
        b.add(ops.AllReduce, "experts.all_reduce", (out,), (reduced,), b.tp)
        out = reduced
    if moe.shared_ffn:
        dense = BlockShape(d, shape.heads, shape.kv_heads, moe.shared_ffn, shape.head_dim, shape.activation,
                           shape.gated, shape.norm)
        shared = mlp(b.child("shared"), dense, rows, x)
        if moe.shared_gate:
            gate = b.pointwise("shared_gate.sigmoid", "sigmoid", b.linear("shared_gate", x, rows, d, 1), rows, 1)
            shared = b.binary("shared_gate.mul", "mul", (gate, shared), rows, d)
        out = b.binary("shared.add", "add", (out, shared), rows, d)
    return out


def self_attention(b: Builder, shape: BlockShape, tokens: Tokens, x: Tensor) -> Tensor:
    """The block's attention: heads with their own (or grouped) keys and values, or MLA."""
    if shape.mla is not None:
        from archsim.ir.mla import mla_attention

        return mla_attention(b, shape.hidden, shape.heads, shape.norm, shape.mla, tokens, x)
    return attention(b, shape, tokens, x)


def transformer_block(b: Builder, shape: BlockShape, tokens: Tokens, x: Tensor | None = None) -> Tensor:
    """Add a pre-norm block under ``b``; returns its output tensor [rows, hidden]."""
    rows, d = tokens.rows, shape.hidden
    x = x if x is not None else b.act("in", rows, d)
    ffn = (lambda child, y: moe_mlp(child, shape, rows, y)) if shape.moe is not None else \
        (lambda child, y: mlp(child, shape, rows, y))
    if shape.layout == "serial":
        attn_out = self_attention(b.child("attn"), shape, tokens, b.norm("norm1", shape.norm, x, rows, d))
        if shape.post_norms:
            attn_out = b.norm("post_norm1", shape.norm, attn_out, rows, d)
        h = b.binary("residual1", "add", (x, attn_out), rows, d)
        mlp_out = ffn(b.child("mlp"), b.norm("norm2", shape.norm, h, rows, d))
        if shape.post_norms:
            mlp_out = b.norm("post_norm2", shape.norm, mlp_out, rows, d)
        return b.binary("residual2", "add", (h, mlp_out), rows, d)
    normed = b.norm("norm1", shape.norm, x, rows, d)
    attn_out = self_attention(b.child("attn"), shape, tokens, normed)
    mlp_in = normed if shape.layout == "parallel" else b.norm("norm2", shape.norm, x, rows, d)
    mlp_out = ffn(b.child("mlp"), mlp_in)
    return b.binary("residual", "add", (x, attn_out, mlp_out), rows, d)
