"""HunyuanVideo for ``kind: diffusion_transformer``: diffusers' ``HunyuanVideoTransformer3DModel``
(``src/diffusers/models/transformers/transformer_hunyuan_video.py``, diffusers 0.42.1) lowered
layer by layer, its matrix work equal to diffusers' own (``tests/test_dit_family.py`` against
FlopCounterMode, ``tests/data/diffusers_counts.json``). ``forward`` in that file, in order:

- ``x_embedder`` (``HunyuanVideoPatchEmbed``): a ``Conv3d`` of kernel and stride (patch_size_t,
  patch_size, patch_size), a GEMM over the patches (``in_channels`` x the patch each);
- ``time_text_embed`` (``HunyuanVideoConditionEmbedding``): ``timestep_embedder`` (256 -> d ->
  d), ``guidance_embedder`` (the same, with ``guidance_embeds``: the pipeline's guidance scale x
  1000 as an input, no second pass), ``text_embedder`` (``PixArtAlphaTextProjection``, SiLU: the
  pooled CLIP text, ``pooled_projection_dim`` -> d -> d), summed;
- ``context_embedder`` (``HunyuanVideoTokenRefiner``): the Llama tokens' mean under their mask,
  its own ``time_text_embed`` (``CombinedTimestepTextProjEmbeddings``: 256 -> d -> d and
  ``text_embed_dim`` -> d -> d), ``proj_in`` (``text_embed_dim`` -> d) and ``num_refiner_layers``
  ``HunyuanVideoIndividualTokenRefinerBlock`` (``refiner_block``);
- the rotary table (``HunyuanVideoRotaryPosEmbed``: cos and sin of the image tokens' frame, row
  and column, ``rope_axes_dim`` wide; no matrix work);
- ``transformer_blocks`` (``HunyuanVideoTransformerBlock``, ``dit_blocks.mmdit_block``: per-stream
  ``AdaLayerNormZero``, the joint attention with the rotary positions on the image's queries and
  keys only, MLPs ``int(d x mlp_ratio)`` wide) and ``single_transformer_blocks``
  (``single_block``);
- ``norm_out`` (``AdaLayerNormContinuous``: d -> 2d) and ``proj_out`` (d -> the patch x
  ``out_channels``) on the image tokens.

The attention masks (the text padded to the pipeline's length) change no matrix work: SDPA
computes every product and masks the scores; building them (a few operations per token pair of
the text) is not modelled. The text encoders run once per prompt, outside the transformer.
"""

from __future__ import annotations

from archsim.ir import ops
from archsim.ir.tensor import Tensor
from archsim.ir.transformer import Builder
from archsim.workloads.dit_blocks import (Heads, UnitPolicy, _project, _rope, attend, compute_all, embed_mlp, mmdit_block,
                                          modulated_norm, modulation, self_attention)

# Timesteps(num_channels=256) of HunyuanVideoConditionEmbedding and of the refiner's
# CombinedTimestepTextProjEmbeddings (embeddings.py)
TIMESTEP_FEATURES = 256
# HunyuanVideoTokenRefiner builds its blocks with mlp_width_ratio = its mlp_ratio default, 4.0:
# the model passes neither (HunyuanVideoTransformer3DModel.__init__), whatever its own mlp_ratio
REFINER_MLP_RATIO = 4


def hunyuan_video(model, geo, top: Builder, step) -> Tensor:
    """One call of ``HunyuanVideoTransformer3DModel.forward`` under the step's plan (``step``, a
    ``dit_family_cache.StepLowering``); returns the output [batch x tokens, patch_out]."""
    b, d, s, t = geo.batch, model.hidden, geo.tokens, geo.text
    x = top.linear("x_embedder.proj", top.act("latent_patches", b * s, model.patch_in), b * s, model.patch_in, d)
    temb = embed_mlp(top, "time_text_embed.timestep_embedder", top.act("t_freq", b, TIMESTEP_FEATURES), b,
                     TIMESTEP_FEATURES, d, d, "silu")
    if model.guidance_embeds:
        guidance = embed_mlp(top, "time_text_embed.guidance_embedder", top.act("g_freq", b, TIMESTEP_FEATURES), b,
                             TIMESTEP_FEATURES, d, d, "silu")
        temb = top.binary("time_text_embed.add_guidance", "add", (temb, guidance), b, d)
    pooled = embed_mlp(top, "time_text_embed.text_embedder", top.act("pooled", b, model.pooled_projection_dim), b,
                       model.pooled_projection_dim, d, d, "silu")
    temb = top.binary("time_text_embed.add_text", "add", (temb, pooled), b, d)
    c = token_refiner(step, top, model, b, t)
    freqs = top.constant("rope.freqs", s, 2 * model.attention_head_dim)  # cos and sin
    a = Heads(d, model.num_attention_heads, model.attention_head_dim, model.qk_norm)

    def blocks(x: Tensor) -> Tensor:
        text = c
        if model.num_layers:
            x, text = step.run("transformer_blocks", model.num_layers, 0, lambda g, units, xc: mmdit_block(
                g, a, b, s, t, xc[0], xc[1], temb, freqs, units=units, ff_inner=model.mlp, image_rope=True),
                (x, text))
        if model.num_single_layers:  # a group of blocks after the first reads the joint stream whole
            joint = step.run("single_transformer_blocks", model.num_single_layers, model.num_layers,
                             lambda g, units, j: single_block(g, a, b, s, t, x, text, temb, freqs, model.mlp,
                                                              units=units, joint=j), None)
            x = top.binary("image_tokens", "copy", (joint,), b * s, d)  # hidden_states[:, :-text_seq_length]
        return x

    x = step.blocks(x, temb, blocks)
    mod = modulation(top, "norm_out", temb, b, d, 2)
    return top.linear("proj_out", modulated_norm(top, "norm_out", x, b * s, d, mod), b * s, d, model.patch_out)


def token_refiner(step, top: Builder, model, batch: int, text_len: int) -> Tensor:
    """``HunyuanVideoTokenRefiner.forward``: ``pooled_projections = (hidden_states x mask).sum(1)
    / mask.sum(1)`` (a multiply and an add per element of the text), ``time_text_embed``, ``proj_in``,
    the refiner blocks (one stack, run in every step: a cache schedule decides the blocks after
    it). Returns the text stream [batch x text, d]."""
    d, e, rows = model.hidden, model.text_embed_dim, batch * text_len
    name = "context_embedder"
    text = top.act("text", rows, e)
    masked = top.binary(f"{name}.pool_mask", "mul", (text, top.act("text_mask", rows, 1)), rows, e)
    pooled = top.act(f"{name}.pooled", batch, e)
    top.add(ops.Elementwise, f"{name}.pool_sum", (masked,), (pooled,), rows, e, "add")
    temb = embed_mlp(top, f"{name}.time_text_embed.timestep_embedder", top.act(f"{name}.t_freq", batch,
                     TIMESTEP_FEATURES), batch, TIMESTEP_FEATURES, d, d, "silu")
    temb = top.binary(f"{name}.time_text_embed.add", "add", (temb, embed_mlp(
        top, f"{name}.time_text_embed.text_embedder", pooled, batch, e, d, d, "silu")), batch, d)
    x = top.linear(f"{name}.proj_in", text, rows, e, d)
    if not model.num_refiner_layers:
        return x
    g = step.builder(f"{name}.token_refiner.refiner_blocks", model.num_refiner_layers)
    return refiner_block(g, Heads(d, model.num_attention_heads, model.attention_head_dim), batch, text_len, x, temb)


def refiner_block(b: Builder, a: Heads, batch: int, text_len: int, x: Tensor, temb: Tensor) -> Tensor:
    """``HunyuanVideoIndividualTokenRefinerBlock``: ``norm1`` (LayerNorm with its affine),
    self-attention over the text tokens (``Attention``: ``to_q``, ``to_k``, ``to_v``, ``to_out``
    with biases, no query/key norm; the padding masked), ``norm_out`` (``HunyuanVideoAdaNorm``: SiLU,
    d -> 2d, the two gates), the gated residual, ``norm2``, ``FeedForward`` with ``linear-silu``
    (``net.0.proj`` d -> 4d, SiLU, ``net.2``), the gated residual. Replicated on every
    tensor-parallel rank, as the embeddings."""
    d, rows = a.hidden, batch * text_len
    attn = self_attention(b.child("attn"), a, b.norm("norm1", "layernorm", x, rows, d), batch, text_len)
    gates = modulation(b, "norm_out", temb, batch, d, 2)
    x = b.binary("attn.gate", "gated_add", (x, attn, gates), rows, d)
    ff, inner = b.child("ff"), REFINER_MLP_RATIO * d
    h = ff.pointwise("net.0.act", "silu", ff.linear("net.0.proj", b.norm("norm2", "layernorm", x, rows, d), rows, d,
                                                    inner), rows, inner)
    return b.binary("ff.gate", "gated_add", (x, ff.linear("net.2", h, rows, inner, d), gates), rows, d)


def single_block(b: Builder, a: Heads, batch: int, tokens: int, text_len: int, x: Tensor, c: Tensor, temb: Tensor,
                 freqs: Tensor, mlp: int, *, units: UnitPolicy = compute_all, joint: Tensor | None = None) -> Tensor:
    """``HunyuanVideoSingleTransformerBlock``: the image and text streams concatenated (each
    block's ``torch.cat``; given ``joint``, the previous block's joint stream, copied whole),
    ``norm`` (``AdaLayerNormZeroSingle``: shift, scale, gate), ``proj_mlp`` + GELU-tanh beside the
    attention (``pre_only``: ``to_q``, ``to_k``, ``to_v`` over the joint tokens re-concatenated
    by the processor, per-head query/key norms, rotary positions on the image rows, no out
    projection), its output re-concatenated, both concatenated into ``proj_out`` ((d + mlp) -> d,
    split by rows under tensor parallelism), a gated residual. Returns the joint stream.

    Given ToCa's ``pick`` (Shenyi-Z/TaylorSeer TaylorSeer-HunyuanVideo, ``MMSingleStreamBlock``'s
    'ToCa' branch): the chosen tokens' norm and modulate, ``linear1`` on them (q, k, v and the MLP
    input: diffusers' ``to_q``, ``to_k``, ``to_v``, ``proj_mlp``; only the MLP part is used), their
    cached attention context gathered, ``proj_out``."""
    d, n = a.hidden, batch * (tokens + text_len)
    joint = b.binary("cat", "copy", (x, c) if joint is None else (joint,), n, d)
    mod = modulation(b, "norm", temb, batch, d, 3)

    def fused(bb: Builder, pick=None) -> tuple[Tensor, ...]:
        h, local_f, attn = bb.shard(a.heads, "attention heads"), bb.shard(mlp, "proj_mlp width"), bb.child("attn")
        width = h * a.dh
        if pick is not None:
            xs, fresh = pick.take(bb, joint, batch, tokens + text_len)
            r = batch * fresh
            nx = modulated_norm(bb, "norm", xs, r, d, mod)
            for proj in ("to_q", "to_k", "to_v"):  # linear1's attention columns, computed and not read
                attn.linear(proj, nx, r, d, a.inner, split="column")
            hidden = bb.pointwise("act_mlp", "gelu", bb.linear("proj_mlp", nx, r, d, mlp, split="column"), r, local_f)
            both = bb.binary("cat_mlp", "copy", (pick.context(bb, r, width), hidden), r, width + local_f)
            return (bb.linear("proj_out", both, r, a.inner + mlp, d, split="row"),)
        nx = modulated_norm(bb, "norm", joint, n, d, mod)
        hidden = bb.pointwise("act_mlp", "gelu", bb.linear("proj_mlp", nx, n, d, mlp, split="column"), n, local_f)
        q, k, v = _project(attn, ("to_q", "to_k", "to_v"), attn.binary("cat", "copy", (nx,), n, d), n, d, a, h,
                           ("norm_q", "norm_k"))
        rows = batch * tokens  # apply_rotary_emb on query[:, :-T], then torch.cat with the text's
        q, k = (attn.binary(f"cat_{p}", "copy", (_rope(attn, f"rope_{p}", t, rows, width, freqs), t), n, width)
                for p, t in (("q", q), ("k", k)))
        context = attn.binary("cat_out", "copy", (attend(attn, q, k, v, batch, h, tokens + text_len,
                                                         tokens + text_len, a.dh),), n, width)
        both = bb.binary("cat_mlp", "copy", (context, hidden), n, width + local_f)
        return (bb.linear("proj_out", both, n, a.inner + mlp, d, split="row"),)

    (out,) = units(b, ("proj_out",), (n,), fused)
    return b.binary("gate", "gated_add", (joint, out, mod), n, d)
