"""Blocks of the diffusion-transformer families (``kind: diffusion_transformer``), lowered as
diffusers runs them (0.42.1; files under ``src/diffusers/models/``). Every layer that does
matrix work is here with diffusers' own shapes: the adaLN / modulation projections, the
queries, keys and values of each stream, the attention's two batched matmuls, the out
projections and the MLPs. Biases, norms, gates and the rotary embedding are vector ops.

- ``mmdit_block``: SD3's ``JointTransformerBlock`` (attention.py), FLUX's
  ``FluxTransformerBlock`` (transformers/transformer_flux.py) and HunyuanVideo's
  ``HunyuanVideoTransformerBlock`` (transformers/transformer_hunyuan_video.py): image and text
  tokens keep their own weights (``to_q``... for the image, ``add_q_proj``... for the text) and
  attend jointly over both, through one attention over the concatenated tokens;
- ``flux_single_block``: ``FluxSingleTransformerBlock``: one stream over text + image tokens,
  the attention and a GELU MLP side by side, their outputs concatenated into ``proj_out``;
- ``pixart_block``: ``BasicTransformerBlock`` with ``norm_type="ada_norm_single"``
  (attention.py): self-attention, cross-attention to the text, MLP, modulated by a learnt
  ``scale_shift_table`` plus the shared timestep projection;
- ``wan_block``: ``WanTransformerBlock`` (transformers/transformer_wan.py): full 3-D
  self-attention over every frame's tokens with rotary positions, cross-attention to the text,
  RMS-normalised queries and keys across heads.

Each takes a ``Builder`` whose ``copies`` stand for the stack's blocks and whose ``tp`` splits
heads and MLP columns (Megatron-style), as ``archsim.ir.transformer`` does.

Each also names its cacheable units, the sub-layers whose outputs a feature-caching schedule can
keep, reuse or forecast (``archsim.workloads.dit_family_cache``): a unit is its norm, modulate
and sub-layer up to the output the block gates into its stream (``UNITS``). The block asks its
``units`` policy for each one, with a function that computes it on a given builder (the stack's,
or one block's for a check such as SpeCa's); the default computes it on the stack, so a block
without a schedule is the forward as diffusers runs it. The modulation projections, gates and
residual adds run every time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from archsim.ir import ops
from archsim.ir.tensor import Tensor
from archsim.ir.transformer import Builder


@dataclass(frozen=True)
class Heads:
    """The attention of a block: ``heads`` of ``dh``, over a width of ``hidden``."""

    hidden: int
    heads: int
    dh: int
    qk_norm: str | None = None  # "rms_norm", "layer_norm" (per head) or "rms_norm_across_heads"

    @property
    def inner(self) -> int:
        return self.heads * self.dh


# The cacheable units of each block, named after the diffusers module whose output they are:
# FLUX's and SD3's double-stream blocks per stream (image: attn, ff; text: attn_context,
# ff_context; SD3.5's dual blocks also attn2), FLUX's single-stream block its fused attention and
# MLP (proj_out), PixArt's and Wan's blocks their self-attention, cross-attention and MLP.
UNITS = {"mmdit": ("attn", "attn_context", "attn2", "ff", "ff_context"), "flux_single": ("proj_out",),
         "pixart": ("attn1", "attn2", "ff"), "wan": ("attn1", "attn2", "ffn")}

# A block's question to its caching policy: (block builder, the unit's outputs by name, each
# output's rows, how to compute them on a builder) -> the outputs (each [rows, hidden]).
Compute = Callable[[Builder], tuple[Tensor, ...]]
UnitPolicy = Callable[[Builder, tuple[str, ...], tuple[int, ...], Compute], tuple[Tensor, ...]]


def compute_all(b: Builder, names: tuple[str, ...], rows: tuple[int, ...], compute: Compute) -> tuple[Tensor, ...]:
    """The policy of a step without a schedule: every unit computed on the stack."""
    return compute(b)


def once(make: Callable[..., Tensor]) -> Callable[..., Tensor]:
    """A tensor made on first use only, per builder given (a norm or modulation two units share,
    or a cached step needs without the unit that made it first)."""
    made: dict[tuple[int, ...], Tensor] = {}

    def get(*builders: Builder) -> Tensor:
        key = tuple(id(b) for b in builders)
        if key not in made:
            made[key] = make(*builders)
        return made[key]
    return get


def embed_mlp(b: Builder, name: str, x: Tensor, rows: int, d_in: int, d_hidden: int, d_out: int, act: str) -> Tensor:
    """``linear_1``, an activation, ``linear_2``: diffusers' ``TimestepEmbedding`` (SiLU) and
    ``PixArtAlphaTextProjection`` (GELU-tanh or SiLU), embeddings.py."""
    h = b.pointwise(f"{name}.act", act, b.linear(f"{name}.linear_1", x, rows, d_in, d_hidden), rows, d_hidden)
    return b.linear(f"{name}.linear_2", h, rows, d_hidden, d_out)


def modulation(b: Builder, name: str, cond: Tensor, batch: int, d: int, chunks: int) -> Tensor:
    """SiLU then ``linear`` d -> chunks x d on the conditioning vector (``AdaLayerNormZero`` 6,
    ``AdaLayerNormZeroSingle`` 3, ``AdaLayerNormContinuous`` 2, ``SD35AdaLayerNormZeroX`` 9;
    normalization.py). Each rank computes its columns; all need every shift and scale."""
    silu = b.pointwise(f"{name}.silu", "silu", cond, batch, d)
    return b.linear(f"{name}.linear", silu, batch, d, chunks * d, split="gathered")


def modulated_norm(b: Builder, name: str, x: Tensor, rows: int, d: int, mod: Tensor) -> Tensor:
    """LayerNorm without affine, then x * (1 + scale) + shift."""
    return b.binary(f"{name}.modulate", "modulate", (b.norm(f"{name}.norm", "layernorm", x, rows, d), mod), rows, d)


def feed_forward(b: Builder, x: Tensor, rows: int, d: int, inner: int) -> Tensor:
    """diffusers' ``FeedForward`` with a GELU (attention.py): ``net.0.proj`` d -> inner, GELU,
    ``net.2`` inner -> d; split by columns then rows under tensor parallelism."""
    h = b.linear("net.0.proj", x, rows, d, inner, split="column")
    h = b.pointwise("net.0.act", "gelu", h, rows, b.shard(inner, "feed-forward width"))
    return b.linear("net.2", h, rows, inner, d, split="row")


def attend(b: Builder, q: Tensor, k: Tensor, v: Tensor, batch: int, heads: int, q_len: int, kv_len: int,
           dh: int) -> Tensor:
    """softmax(q k^T) v per sequence and head (``F.scaled_dot_product_attention``, no mask):
    the context [batch x q_len, heads x dh]."""
    n = batch * heads
    scores = b.act("scores", n, q_len, kv_len)
    b.add(ops.AttentionScore, "score", (q, k), (scores,), n, q_len, dh, kv_len, True)
    probs = b.act("probs", n, q_len, kv_len)
    b.add(ops.Softmax, "softmax", (scores,), (probs,), n * q_len, kv_len)
    context = b.act("context", batch * q_len, heads * dh)
    b.add(ops.AttentionContext, "context_mm", (probs, v), (context,), n, q_len, kv_len, dh, True)
    return context


def _qk_norm(b: Builder, name: str, x: Tensor, rows: int, heads: int, dh: int, kind: str | None) -> Tensor:
    """A query or key norm: over each head's dh (``RMSNorm(dim_head)``, SD3.5 and FLUX) or
    across this rank's heads (Wan's ``rms_norm_across_heads``; under tensor parallelism the
    ranks' sums of squares would be all-reduced too, a few bytes a token, not modelled)."""
    if kind is None:
        return x
    norm = "layernorm" if kind == "layer_norm" else "rmsnorm"
    if kind == "rms_norm_across_heads":
        return b.norm(name, norm, x, rows, heads * dh)
    return b.norm(name, norm, x, rows * heads, dh)


def _rope(b: Builder, name: str, x: Tensor, rows: int, width: int, freqs: Tensor | None) -> Tensor:
    """Rotary positions: x cos + rotate(x) sin, 3 operations an element (``apply_rotary_emb``)."""
    return x if freqs is None else b.binary(name, "axpby", (x, freqs), rows, width)


def _project(b: Builder, names: tuple[str, str, str], x: Tensor, rows: int, d_in: int, a: Heads, h: int,
             norms: tuple[str, str]) -> tuple[Tensor, Tensor, Tensor]:
    q, k, v = (b.linear(n, x, rows, d_in, a.inner, split="column") for n in names)
    return _qk_norm(b, norms[0], q, rows, h, a.dh, a.qk_norm), _qk_norm(b, norms[1], k, rows, h, a.dh, a.qk_norm), v


def self_attention(b: Builder, a: Heads, x: Tensor, batch: int, tokens: int, freqs: Tensor | None = None) -> Tensor:
    """``to_q``, ``to_k``, ``to_v`` on the (normalised) tokens, attention over them, ``to_out``."""
    h, rows = b.shard(a.heads, "attention heads"), batch * tokens
    q, k, v = _project(b, ("to_q", "to_k", "to_v"), x, rows, a.hidden, a, h, ("norm_q", "norm_k"))
    q, k = _rope(b, "rope_q", q, rows, h * a.dh, freqs), _rope(b, "rope_k", k, rows, h * a.dh, freqs)
    context = attend(b, q, k, v, batch, h, tokens, tokens, a.dh)
    return b.linear("to_out", context, rows, a.inner, a.hidden, split="row")


def cross_attention(b: Builder, a: Heads, x: Tensor, text: Tensor, batch: int, tokens: int, text_len: int,
                    text_width: int) -> Tensor:
    """Queries from the image (``to_q``), keys and values from the text (``to_k``, ``to_v`` of
    ``cross_attention_dim``), attention over the text tokens, ``to_out``."""
    h, rows, text_rows = b.shard(a.heads, "attention heads"), batch * tokens, batch * text_len
    q = _qk_norm(b, "norm_q", b.linear("to_q", x, rows, a.hidden, a.inner, split="column"), rows, h, a.dh, a.qk_norm)
    k = _qk_norm(b, "norm_k", b.linear("to_k", text, text_rows, text_width, a.inner, split="column"), text_rows, h,
                 a.dh, a.qk_norm)
    v = b.linear("to_v", text, text_rows, text_width, a.inner, split="column")
    context = attend(b, q, k, v, batch, h, tokens, text_len, a.dh)
    return b.linear("to_out", context, rows, a.inner, a.hidden, split="row")


def joint_attention(b: Builder, a: Heads, x: Tensor, c: Tensor, batch: int, tokens: int, text_len: int,
                    freqs: Tensor | None, text_out: bool, image_rope: bool = False) -> tuple[Tensor, Tensor | None]:
    """MMDiT attention (``JointAttnProcessor2_0``, ``FluxAttnProcessor``,
    ``HunyuanVideoAttnProcessor2_0``): the image's queries, keys and values and the text's
    (``add_*_proj``), each normalised per head where the model says, concatenated (``torch.cat``)
    into one sequence of text + image tokens, rotary positions on the joint queries and keys
    (FLUX; HunyuanVideo, ``image_rope``: on the image's alone, before the cat), one attention, the
    context split back and projected by ``to_out`` (image) and ``to_add_out`` (text; none in SD3's
    last block, whose text output is dropped)."""
    h, rows, text_rows = b.shard(a.heads, "attention heads"), batch * tokens, batch * text_len
    n, width = batch * (tokens + text_len), h * a.dh
    img = _project(b, ("to_q", "to_k", "to_v"), x, rows, a.hidden, a, h, ("norm_q", "norm_k"))
    txt = _project(b, ("add_q_proj", "add_k_proj", "add_v_proj"), c, text_rows, a.hidden, a, h,
                   ("norm_added_q", "norm_added_k"))
    if image_rope:
        img = (_rope(b, "rope_q", img[0], rows, width, freqs), _rope(b, "rope_k", img[1], rows, width, freqs), img[2])
    q, k, v = (b.binary(f"cat_{p}", "copy", (t, i), n, width) for p, t, i in zip("qkv", txt, img))
    if not image_rope:
        q, k = _rope(b, "rope_q", q, n, width, freqs), _rope(b, "rope_k", k, n, width, freqs)
    context = attend(b, q, k, v, batch, h, tokens + text_len, tokens + text_len, a.dh)
    parts = (b.act("context.image", rows, width),) + ((b.act("context.text", text_rows, width),) if text_out else ())
    b.add(ops.Elementwise, "split", (context,), parts, sum(t.shape[0] for t in parts), width, "copy")
    x_out = b.linear("to_out", parts[0], rows, a.inner, a.hidden, split="row")
    c_out = b.linear("to_add_out", parts[1], text_rows, a.inner, a.hidden, split="row") if text_out else None
    return x_out, c_out


def mmdit_block(b: Builder, a: Heads, batch: int, tokens: int, text_len: int, x: Tensor, c: Tensor, temb: Tensor,
                freqs: Tensor | None = None, *, context_pre_only: bool = False, dual: bool = False,
                units: UnitPolicy = compute_all, ff_inner: int = 0,
                image_rope: bool = False) -> tuple[Tensor, Tensor | None]:
    """One MMDiT block; returns the image and text streams (no text after a ``context_pre_only``
    block). ``norm1`` modulates the image (``AdaLayerNormZero``, or ``SD35AdaLayerNormZeroX``
    with a second self-attention ``attn2`` on the image alone when ``dual``), ``norm1_context``
    the text (``AdaLayerNormContinuous``, a shift and scale only, in a pre-only block). The MLPs
    are ``ff_inner`` wide (HunyuanVideo's ``mlp_ratio``), 4d unless given."""
    d, rows, text_rows = a.hidden, batch * tokens, batch * text_len
    inner = ff_inner or 4 * d
    mod = modulation(b, "norm1", temb, batch, d, 9 if dual else 6)
    normed = once(lambda bb: bb.norm("norm1.norm", "layernorm", x, rows, d))
    cmod = once(lambda: modulation(b, "norm1_context", temb, batch, d, 2 if context_pre_only else 6))

    def joint(bb: Builder) -> tuple[Tensor, ...]:
        nx = bb.binary("norm1.modulate", "modulate", (normed(bb), mod), rows, d)
        nc = modulated_norm(bb, "norm1_context", c, text_rows, d, cmod())
        x_attn, c_attn = joint_attention(bb.child("attn"), a, nx, nc, batch, tokens, text_len, freqs,
                                         not context_pre_only, image_rope)
        return (x_attn,) if context_pre_only else (x_attn, c_attn)  # type: ignore[return-value]

    attn = units(b, ("attn",) if context_pre_only else ("attn", "attn_context"), (rows, text_rows), joint)
    x = b.binary("attn.gate", "gated_add", (x, attn[0], mod), rows, d)
    if dual:  # norm_hidden_states2: the same norm, its own shift and scale
        (attn2,) = units(b, ("attn2",), (rows,), lambda bb: (self_attention(
            bb.child("attn2"), a, bb.binary("norm1.modulate2", "modulate", (normed(bb), mod), rows, d), batch,
            tokens),))
        x = b.binary("attn2.gate", "gated_add", (x, attn2, mod), rows, d)
    (ff,) = units(b, ("ff",), (rows,), lambda bb, pick=None: _ff(bb, "ff", "norm2", x, batch, tokens, d, inner, mod,
                                                                  pick))
    x = b.binary("ff.gate", "gated_add", (x, ff, mod), rows, d)
    if context_pre_only:
        cmod()  # the text's modulation runs in every step, as the block's own
        return x, None
    c = b.binary("attn.gate_context", "gated_add", (c, attn[1], cmod()), text_rows, d)
    (ff_c,) = units(b, ("ff_context",), (text_rows,), lambda bb, pick=None: _ff(
        bb, "ff_context", "norm2_context", c, batch, text_len, d, inner, cmod(), pick))
    return x, b.binary("ff_context.gate", "gated_add", (c, ff_c, cmod()), text_rows, d)


def flux_single_block(b: Builder, a: Heads, batch: int, tokens: int, text_len: int, c: Tensor, x: Tensor,
                      temb: Tensor, freqs: Tensor | None, mlp_ratio: int = 4, *, units: UnitPolicy = compute_all,
                      joint: Tensor | None = None) -> Tensor:
    """``FluxSingleTransformerBlock``: the text and image streams concatenated (each block's
    ``torch.cat``; given ``joint``, the previous block's joint stream, copied whole), ``norm`` (3
    chunks: shift, scale, gate), ``proj_mlp`` + GELU beside the attention (no out projection of its
    own), both concatenated into ``proj_out`` (d + 4d -> d, split by rows under tensor
    parallelism), a gated residual. Returns the joint stream."""
    d, n = a.hidden, batch * (tokens + text_len)
    f = mlp_ratio * d
    joint = b.binary("cat", "copy", (c, x) if joint is None else (joint,), n, d)
    mod = modulation(b, "norm", temb, batch, d, 3)

    def fused(bb: Builder, pick=None) -> tuple[Tensor, ...]:
        h = bb.shard(a.heads, "attention heads")
        if pick is not None:  # ToCa: proj_mlp and proj_out on the fresh tokens beside their cached context
            xs, fresh = pick.take(bb, joint, batch, tokens + text_len)
            r, local_f = batch * fresh, bb.shard(f, "proj_mlp width")
            hidden = bb.pointwise("act_mlp", "gelu", bb.linear("proj_mlp", modulated_norm(bb, "norm", xs, r, d, mod),
                                                                r, d, f, split="column"), r, local_f)
            both = bb.binary("cat_mlp", "copy", (pick.context(bb, r, h * a.dh), hidden), r, h * a.dh + local_f)
            return (bb.linear("proj_out", both, r, a.inner + f, d, split="row"),)
        nx = modulated_norm(bb, "norm", joint, n, d, mod)
        local_f = bb.shard(f, "proj_mlp width")
        hidden = bb.pointwise("act_mlp", "gelu", bb.linear("proj_mlp", nx, n, d, f, split="column"), n, local_f)
        attn = bb.child("attn")
        q, k, v = _project(attn, ("to_q", "to_k", "to_v"), nx, n, d, a, h, ("norm_q", "norm_k"))
        q, k = _rope(attn, "rope_q", q, n, h * a.dh, freqs), _rope(attn, "rope_k", k, n, h * a.dh, freqs)
        context = attend(attn, q, k, v, batch, h, tokens + text_len, tokens + text_len, a.dh)
        both = bb.binary("cat_mlp", "copy", (context, hidden), n, h * a.dh + local_f)
        return (bb.linear("proj_out", both, n, a.inner + f, d, split="row"),)

    (out,) = units(b, ("proj_out",), (n,), fused)
    return b.binary("gate", "gated_add", (joint, out, mod), n, d)


def pixart_block(b: Builder, a: Heads, batch: int, tokens: int, text_len: int, text_width: int, x: Tensor,
                 text: Tensor, t6: Tensor, *, units: UnitPolicy = compute_all) -> Tensor:
    """PixArt-alpha's block: the six shifts, scales and gates are the block's
    ``scale_shift_table`` (6 x d, a parameter) plus the timestep projection every block shares;
    ``norm1`` + modulate, self-attention ``attn1``, gate; cross-attention ``attn2`` on the
    unnormalised stream (``norm_hidden_states = hidden_states``), plain residual; ``norm2`` +
    modulate, the MLP, gate."""
    d, rows = a.hidden, batch * tokens
    mod = b.binary("scale_shift", "add", (b.weight("scale_shift_table", 6, d), t6), batch, 6 * d)
    (attn,) = units(b, ("attn1",), (rows,), lambda bb: (self_attention(
        bb.child("attn1"), a, modulated_norm(bb, "norm1", x, rows, d, mod), batch, tokens),))
    x = b.binary("attn1.gate", "gated_add", (x, attn, mod), rows, d)
    def cross(bb: Builder, pick=None) -> tuple[Tensor, ...]:
        xs, q = pick.take(bb, x, batch, tokens) if pick is not None else (x, tokens)
        return (cross_attention(bb.child("attn2"), a, xs, text, batch, q, text_len, text_width),)

    (crossed,) = units(b, ("attn2",), (rows,), cross)
    x = b.binary("attn2.residual", "add", (x, crossed), rows, d)
    (ff,) = units(b, ("ff",), (rows,), lambda bb, pick=None: _ff(bb, "ff", "norm2", x, batch, tokens, d, 4 * d, mod,
                                                                  pick))
    return b.binary("ff.gate", "gated_add", (x, ff, mod), rows, d)


def _ff(bb: Builder, name: str, norm: str, x: Tensor, batch: int, tokens: int, d: int, inner: int, mod: Tensor,
        pick=None) -> tuple[Tensor]:
    """A block's MLP unit: its norm, modulate and ``FeedForward``; given ``pick`` (ToCa's token
    selection, ``dit_family_toca.Picker``), on the tokens it takes only."""
    if pick is not None:
        x, tokens = pick.take(bb, x, batch, tokens)
    rows = batch * tokens
    return (feed_forward(bb.child(name), modulated_norm(bb, norm, x, rows, d, mod), rows, d, inner),)


def wan_block(b: Builder, a: Heads, batch: int, tokens: int, text_len: int, ffn: int, x: Tensor, text: Tensor,
              t6: Tensor, freqs: Tensor | None, cross_norm: bool, *, units: UnitPolicy = compute_all) -> Tensor:
    """Wan 2.1's block: ``scale_shift_table`` (1 x 6 x d) plus the timestep projection;
    ``norm1`` + modulate, self-attention over all the video's tokens (rotary positions over
    frames, height and width), gate; ``norm2`` (with ``cross_attn_norm``), cross-attention to
    the text, plain residual; ``norm3`` + modulate, the MLP (``ffn_dim``), gate. Given ToCa's
    ``pick``, cross-attention and the MLP run on the tokens it takes (as PixArt's block)."""
    d, rows = a.hidden, batch * tokens
    mod = b.binary("scale_shift", "add", (b.weight("scale_shift_table", 6, d), t6), batch, 6 * d)
    (attn,) = units(b, ("attn1",), (rows,), lambda bb: (self_attention(
        bb.child("attn1"), a, modulated_norm(bb, "norm1", x, rows, d, mod), batch, tokens, freqs),))
    x = b.binary("attn1.gate", "gated_add", (x, attn, mod), rows, d)

    def cross(bb: Builder, pick=None) -> tuple[Tensor, ...]:
        xs, q = pick.take(bb, x, batch, tokens) if pick is not None else (x, tokens)
        nx = bb.norm("norm2", "layernorm", xs, batch * q, d) if cross_norm else xs
        return (cross_attention(bb.child("attn2"), a, nx, text, batch, q, text_len, d),)

    (crossed,) = units(b, ("attn2",), (rows,), cross)
    x = b.binary("attn2.residual", "add", (x, crossed), rows, d)
    (ff,) = units(b, ("ffn",), (rows,), lambda bb, pick=None: _ff(bb, "ffn", "norm3", x, batch, tokens, d, ffn, mod,
                                                                   pick))
    return b.binary("ffn.gate", "gated_add", (x, ff, mod), rows, d)
