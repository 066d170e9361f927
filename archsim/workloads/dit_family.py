"""``kind: diffusion_transformer``: text-to-image and text-to-video diffusion transformers as
diffusers runs them: PixArt-alpha, Stable Diffusion 3, FLUX.1, Wan 2.1 and HunyuanVideo.

The model is its published diffusers ``transformer/config.json`` (``model:``; read by
``archsim.workloads.dit_models``), whose ``_class_name`` decides the family; ``family:``, when
given, must agree. One network evaluation is the transformer's ``forward`` lowered layer by
layer (the blocks in ``archsim.workloads.dit_blocks``; HunyuanVideo in ``dit_hunyuan``), its
matrix work equal to diffusers' own (``tests/test_dit_family.py`` against FlopCounterMode, ``tests/data/diffusers_counts.json``).

A generation is ``steps`` sampler steps of the pipeline's denoising loop, one phase repeated
once per network evaluation: the forward (or two), classifier-free guidance's combine and the
sampler's update of the latent. Guidance runs as the pipeline runs it: ``batched`` doubles the
batch of one forward (SD3 and PixArt-alpha: ``torch.cat([latents] * 2)``), ``sequential`` runs
a conditional and an unconditional forward one after the other (Wan 2.1; FLUX with
``true_cfg_scale`` > 1), ``none`` one forward (FLUX.1-dev and HunyuanVideo are guidance-distilled: the guidance
scale enters as an embedding). Left out, and said where: the text encoders (CLIP, T5, UMT5, Llama) run
once per prompt, not per step, and the VAE decoder once at the end; the sampler's update is one
multiply-add over the latent whatever its order.

``schedule:`` (``kind: dit``'s feature-caching schedules, ``NAME[:key=value,...]``) decides per
step what runs, by the rule of the method's code for the family where it publishes one
(``archsim.workloads.dit_family_rules``), lowered on the blocks' cacheable units
(``archsim.workloads.dit_family_cache``); steps with the same plan are one phase (an uncached
step: ``full``), as for ``kind: dit``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field, PrivateAttr, model_validator

from archsim.config.fields import Count
from archsim.errors import ConfigError
from archsim.ir.graph import OpGraph, Phase, Workload
from archsim.ir.tensor import Role, Tensor
from archsim.ir.transformer import Builder, Precision
from archsim.workloads import dit
from archsim.workloads.base import PrecisionSpec, WorkloadSpec, register_workload
from archsim.workloads.dit_blocks import (Heads, embed_mlp, flux_single_block, mmdit_block, modulated_norm, modulation,
                                          pixart_block, wan_block)
from archsim.workloads.dit_family_cache import StepLowering
from archsim.workloads.dit_family_rules import check_supported, family_plans
from archsim.workloads.dit_family_spec import PIPELINES, Pipeline
from archsim.workloads.dit_hunyuan import hunyuan_video
from archsim.workloads.dit_models import FAMILIES, DiTModel, FluxConfig, PixArtConfig, SD3Config, resolve_dit_model
from archsim.workloads.schedules import FULL, StepPlan, check_schedule, parse_schedule, phase_names

TIMESTEP_FEATURES = 256  # Timesteps(num_channels=256) of every family's time embedding (Wan: freq_dim)
# Network evaluations per sampler step, by diffusers scheduler: one for the multistep solvers
# and Euler, Heun's two (none after the last step), as kind: dit counts them.
SAMPLERS = {"flow_match_euler": dit.SAMPLERS["ddim"], "dpm_solver_multistep": dit.SAMPLERS["dpm_solver"],
            "unipc_multistep": dit.SAMPLERS["ddim"], "flow_match_heun": dit.SAMPLERS["heun"]}
MAX_FORWARDS = dit.MAX_FORWARDS  # a documented limit: network evaluations of one generation


@dataclass(frozen=True)
class Geometry:
    """One forward's shapes: ``batch`` sequences of ``grid`` (frames, height, width) image
    tokens and ``text`` text tokens."""

    batch: int
    grid: tuple[int, int, int]
    text: int

    @property
    def tokens(self) -> int:
        return math.prod(self.grid)


@register_workload
class DiffusionTransformerWorkload(WorkloadSpec):
    KIND = "diffusion_transformer"
    kind: Literal["diffusion_transformer"] = Field(description="a text-to-image or text-to-video diffusion "
                                                   "transformer as diffusers runs it")
    model: str | dict[str, Any] = Field(description="a diffusers transformer config.json (path), or a mapping")
    family: Literal[tuple(FAMILIES)] | None = Field(  # type: ignore[valid-type]
        default=None, description="the model's family, as a check: it must match that of the config's "
        "_class_name, which decides it")
    height: Count = Field(description="image (frame) height in pixels")
    width: Count = Field(description="image (frame) width in pixels")
    frames: Count | None = Field(default=None, description="video frames (video families; default the pipeline's)")
    batch: Count = Field(default=1, description="prompts generated together")
    steps: Count | None = Field(default=None, description="sampler steps (default the pipeline's)")
    sampler: Literal[tuple(SAMPLERS)] | None = Field(  # type: ignore[valid-type]
        default=None, description="the diffusers scheduler (default the pipeline's): one network evaluation a "
        "step, flow_match_heun two (none after the last step)")
    cfg: Literal["none", "batched", "sequential"] | None = Field(
        default=None, description="classifier-free guidance (default the pipeline's): batched doubles one forward's "
        "batch, sequential runs a conditional and an unconditional forward, none runs one forward")
    text_tokens: Count | None = Field(default=None, description="text tokens the transformer reads")
    vae_scale_factor: Count = Field(default=8, description="pixels per latent pixel (every family's VAE: 8)")
    precision: PrecisionSpec = Field(default=PrecisionSpec(), description="number formats of the weights, "
                                     "activations and feature caches")
    schedule: str | dict[str, Any] | None = Field(default=None, description="a feature-caching schedule, "
                                                  "NAME[:key=value,...] or a mapping (kind: dit's)")
    # what the last build planned, shared with the copies lower() builds (model_copy keeps the dict)
    _built: dict = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _schedule(self) -> "DiffusionTransformerWorkload":
        check_schedule(self.schedule)
        return self

    def resolve(self, paths) -> tuple[DiTModel, Pipeline]:
        model = resolve_dit_model(self.model, paths)
        if self.family is not None and self.family != model.family:
            raise ConfigError(f"{self.family!r}, but the model config is a {model.CLASS}: family "
                              f"{model.family!r}", file=paths.source("family"), key="family")
        pipe = PIPELINES[model.family]
        if self.frames is not None and pipe.frames is None:
            raise ConfigError(f"{model.family} generates images: frames applies to video models only",
                              file=paths.source("frames"), key="frames")
        return model, pipe

    def geometry(self, model: DiTModel, pipe: Pipeline, paths) -> Geometry:
        """The token grid of the pipeline's latent, with one error per key that does not divide."""
        factor = self.vae_scale_factor
        pt, ph, pw = model.patch
        grid = []
        for key, pixels, p in (("height", self.height, ph), ("width", self.width, pw)):
            step = factor * p * pipe.pack
            if pixels % step:
                raise ConfigError(f"{pixels} is not a multiple of {step}: the VAE's factor {factor} x the patch {p}"
                                  + (f" x the pipeline's packing {pipe.pack}" if pipe.pack > 1 else ""),
                                  file=paths.source(key), key=key)
            grid.append(pixels // step)
        frames = 1
        if pipe.temporal is not None:
            frames = self.frames or pipe.frames or 1
            latent = (frames - 1) // pipe.temporal + 1
            if (frames - 1) % pipe.temporal or latent % pt:
                raise ConfigError(f"{frames} frames: expected 1 + a multiple of {pipe.temporal} (the VAE keeps the "
                                  f"first frame, then one latent frame per {pipe.temporal}), in latent frames a "
                                  f"multiple of the patch {pt}", file=paths.source("frames"), key="frames")
            frames = latent // pt
        geo = Geometry(self.batch, (frames, grid[0], grid[1]), self.text_tokens or pipe.text_tokens)
        self._check_positions(model, geo, paths)
        return geo

    @staticmethod
    def _check_positions(model: DiTModel, geo: Geometry, paths) -> None:
        if isinstance(model, SD3Config) and max(geo.grid[1:]) > model.pos_embed_max_size:
            raise ConfigError(f"{geo.grid[1]} x {geo.grid[2]} patches: SD3's position table covers at most "
                              f"pos_embed_max_size = {model.pos_embed_max_size} a side (PatchEmbed.cropped_pos_embed)",
                              file=paths.source("height"), key="height")
        limit = getattr(model, "rope_max_seq_len", None)
        if limit is not None and max(geo.grid) > limit:
            raise ConfigError(f"{max(geo.grid)} positions along an axis: Wan's rotary table has rope_max_seq_len = "
                              f"{limit}", file=paths.source("height"), key="height")

    def build(self, paths, tp: int = 1) -> Workload:
        model, pipe = self.resolve(paths)
        geo = self.geometry(model, pipe, paths)
        steps = self.steps or pipe.steps
        forwards = SAMPLERS[self.sampler or pipe.sampler](steps)
        if forwards > MAX_FORWARDS:
            raise ConfigError(f"{steps} steps need {forwards} network evaluations; archsim's limit is {MAX_FORWARDS}",
                              file=paths.source("steps"), key="steps")
        schedule = parse_schedule(self.schedule)
        check_supported(schedule, model.family, model.CLASS, paths.source("schedule"))
        depth = sum(getattr(model, key, 0) for key in ("num_layers", "num_single_layers"))
        plans = self._built["plans"] = family_plans(schedule, model.family, forwards, depth, model=model,
                                                    tokens=geo.tokens, text=geo.text, height=self.height)
        counts: dict[StepPlan, int] = {}
        for plan in plans:  # first-seen order
            counts[plan] = counts.get(plan, 0) + 1
        names = phase_names(plans)  # as kind: dit's: an uncached step is "full"
        cfg, precision = self.cfg or pipe.cfg, self.precision.precision()
        return Workload(self.name, tuple(Phase(names[plan], denoise_step(model, geo, cfg, precision, names[plan], tp,
                                                                         plan), n) for plan, n in counts.items()))

    def plans(self) -> list[StepPlan]:
        """The plan of each network evaluation, by the schedule's rule for the family, as the
        last build lowered them (the model config is read then)."""
        if "plans" not in self._built:
            raise ConfigError("a diffusion_transformer workload's step plans are known once it is built (they "
                              "depend on its model config)")
        return self._built["plans"]


def denoise_step(model: DiTModel, geo: Geometry, cfg: str, precision: Precision, scope: str, tp: int = 1,
                 plan: StepPlan = FULL) -> OpGraph:
    """One sampler step: the forward(s) guidance needs, the guidance combine, the update."""
    graph = OpGraph()
    if cfg == "sequential":
        outs = [forward(graph, model, geo, precision, f"{scope}/{tag}", tp, tag, plan) for tag in ("cond", "uncond")]
    else:
        doubled = Geometry(geo.batch * (2 if cfg == "batched" else 1), geo.grid, geo.text)
        outs = [forward(graph, model, doubled, precision, scope, tp, plan=plan)]
    top = Builder(graph, "", precision, scope=scope)
    rows = geo.batch * geo.tokens
    out = outs[0]
    if cfg != "none":  # uncond + scale x (cond - uncond), on the whole prediction
        out = top.binary("cfg_combine", "axpby", tuple(outs), rows, model.patch_out)
    # the scheduler's step on the latent (PixArt's learnt variance is dropped first)
    top.binary("sampler_update", "axpby", (out, top.act("latent", rows, model.patch_in)), rows, model.patch_in)
    return graph


def forward(graph: OpGraph, model: DiTModel, geo: Geometry, precision: Precision, scope: str, tp: int = 1,
            tag: str = "", plan: StepPlan = FULL) -> Tensor:
    """One call of the transformer's ``forward`` into ``graph`` under a step plan; returns its
    output [batch x tokens, patch_out]."""
    step = StepLowering(graph, model, plan, precision, scope, tp, tag)
    step.geo, step.batch = geo, geo.batch
    lower = {"flux": _flux, "sd3": _sd3, "pixart_alpha": _pixart, "wan2.1": _wan, "hunyuan_video": hunyuan_video}[
        model.family]
    return lower(model, geo, step.builder(""), step)


def _heads(model: DiTModel, qk_norm: str | None = None) -> Heads:
    return Heads(model.hidden, model.num_attention_heads, model.attention_head_dim, qk_norm)


def _final(top: Builder, model: DiTModel, geo: Geometry, x: Tensor, mod: Tensor) -> Tensor:
    rows, d = geo.batch * geo.tokens, model.hidden
    return top.linear("proj_out", modulated_norm(top, "norm_out", x, rows, d, mod), rows, d, model.patch_out)


def _patches(top: Builder, model: DiTModel, geo: Geometry, name: str) -> Tensor:
    """The patch embedding: a stride-p convolution (``nn.Conv2d``/``Conv3d``) is a GEMM over
    the patches, p x p (x pt) x channels each."""
    rows = geo.batch * geo.tokens
    patches = top.act("latent_patches", rows, model.patch_in)
    return top.linear(name, patches, rows, model.patch_in, model.hidden)


def _flux(model: FluxConfig, geo: Geometry, top: Builder, step: StepLowering) -> Tensor:
    """FluxTransformer2DModel.forward: ``x_embedder`` over the packed latent; the time (and
    guidance) embedding plus the pooled CLIP text (``CombinedTimestep[Guidance]TextProjEmbeddings``);
    ``context_embedder`` over the T5 tokens; the rotary table of text + image positions
    (FluxPosEmbed, no matrix work); the double-stream blocks, the single-stream blocks, the
    image tokens sliced off, ``norm_out`` and ``proj_out``."""
    b, d, s, t = geo.batch, model.hidden, geo.tokens, geo.text
    x = top.linear("x_embedder", top.act("hidden_states", b * s, model.in_channels), b * s, model.in_channels, d)
    temb = embed_mlp(top, "time_text_embed.timestep_embedder", top.act("t_freq", b, TIMESTEP_FEATURES), b,
                     TIMESTEP_FEATURES, d, d, "silu")
    if model.guidance_embeds:
        guidance = embed_mlp(top, "time_text_embed.guidance_embedder", top.act("g_freq", b, TIMESTEP_FEATURES), b,
                             TIMESTEP_FEATURES, d, d, "silu")
        temb = top.binary("time_text_embed.add_guidance", "add", (temb, guidance), b, d)
    pooled = embed_mlp(top, "time_text_embed.text_embedder", top.act("pooled", b, model.pooled_projection_dim), b,
                       model.pooled_projection_dim, d, d, "silu")
    temb = top.binary("time_text_embed.add_text", "add", (temb, pooled), b, d)
    c = top.linear("context_embedder", top.act("text", b * t, model.joint_attention_dim), b * t,
                   model.joint_attention_dim, d)
    freqs = top.constant("pos_embed.freqs", s + t, 2 * model.attention_head_dim)  # cos and sin
    a = _heads(model, "rms_norm")

    def blocks(x: Tensor) -> Tensor:
        text = c
        if model.num_layers:
            x, text = step.run("transformer_blocks", model.num_layers, 0, lambda g, units, xc: mmdit_block(
                g, a, b, s, t, xc[0], xc[1], temb, freqs, units=units), (x, text))
        if model.num_single_layers:  # a group of blocks after the first reads the joint stream whole
            joint = step.run("single_transformer_blocks", model.num_single_layers, model.num_layers,
                             lambda g, units, j: flux_single_block(g, a, b, s, t, text, x, temb, freqs, units=units,
                                                                   joint=j), None)
            x = top.binary("image_tokens", "copy", (joint,), b * s, d)  # hidden_states[:, text_len:]
        return x

    x = step.blocks(x, temb, blocks)
    return _final(top, model, geo, x, modulation(top, "norm_out", temb, b, d, 2))


def _sd3(model: SD3Config, geo: Geometry, top: Builder, step: StepLowering) -> Tensor:
    """SD3Transformer2DModel.forward: ``pos_embed`` (patch convolution plus the cropped fixed
    sin-cos table), ``time_text_embed`` (timestep + pooled CLIP text), ``context_embedder``, the
    joint blocks (the last ``context_pre_only``; SD3.5's ``dual_attention_layers`` with a
    second attention), ``norm_out``, ``proj_out``."""
    b, d, s, t = geo.batch, model.hidden, geo.tokens, geo.text
    x = _patches(top, model, geo, "pos_embed.proj")
    x = top.binary("pos_embed.add", "add", (x, top.constant("pos_embed.pos_embed", s, d)), b * s, d)
    temb = embed_mlp(top, "time_text_embed.timestep_embedder", top.act("t_freq", b, TIMESTEP_FEATURES), b,
                     TIMESTEP_FEATURES, d, d, "silu")
    pooled = embed_mlp(top, "time_text_embed.text_embedder", top.act("pooled", b, model.pooled_projection_dim), b,
                       model.pooled_projection_dim, d, d, "silu")
    temb = top.binary("time_text_embed.add", "add", (temb, pooled), b, d)
    c = top.linear("context_embedder", top.act("text", b * t, model.joint_attention_dim), b * t,
                   model.joint_attention_dim, model.caption_projection_dim)
    a = _heads(model, model.qk_norm)
    kinds = [(i in model.dual_attention_layers, i == model.num_layers - 1) for i in range(model.num_layers)]
    runs: list[list[Any]] = []  # consecutive blocks alike: one stack each, in order
    for kind in kinds:
        if runs and runs[-1][0] == kind:
            runs[-1][1] += 1
        else:
            runs.append([kind, 1])

    def blocks(x: Tensor) -> Tensor:
        text, first = c, 0
        for i, ((dual, last), n) in enumerate(runs):
            name = "transformer_blocks" if i == 0 else f"transformer_blocks_{i}"
            x, text = step.run(name, n, first, lambda g, units, xc, dual=dual, last=last: mmdit_block(
                g, a, b, s, t, xc[0], xc[1], temb, context_pre_only=last, dual=dual, units=units), (x, text))
            first += n
        return x

    x = step.blocks(x, temb, blocks)
    return _final(top, model, geo, x, modulation(top, "norm_out", temb, b, d, 2))


def _pixart(model: PixArtConfig, geo: Geometry, top: Builder, step: StepLowering) -> Tensor:
    """PixArtTransformer2DModel.forward: ``pos_embed`` (patch convolution plus the sin-cos
    table); ``adaln_single``: the timestep embedding (plus, with additional conditions, the
    resolution's two values and the aspect ratio, each through its own TimestepEmbedding of
    d / 3, concatenated) and SiLU + ``linear`` d -> 6d shared by every block;
    ``caption_projection`` (GELU-tanh MLP) of the T5 tokens; the blocks; the final
    ``scale_shift_table`` plus the embedded timestep, ``norm_out``, modulate, ``proj_out``."""
    b, d, s, t = geo.batch, model.hidden, geo.tokens, geo.text
    x = _patches(top, model, geo, "pos_embed.proj")
    x = top.binary("pos_embed.add", "add", (x, top.constant("pos_embed.pos_embed", s, d)), b * s, d)
    emb = embed_mlp(top, "adaln_single.emb.timestep_embedder", top.act("t_freq", b, TIMESTEP_FEATURES), b,
                    TIMESTEP_FEATURES, d, d, "silu")
    if model.additional_conditions:
        third = d // 3
        size = embed_mlp(top, "adaln_single.emb.resolution_embedder",  # height and width: two rows a sample
                         top.act("resolution_freq", 2 * b, TIMESTEP_FEATURES), 2 * b, TIMESTEP_FEATURES, third, third,
                         "silu")
        ratio = embed_mlp(top, "adaln_single.emb.aspect_ratio_embedder", top.act("aspect_freq", b, TIMESTEP_FEATURES),
                          b, TIMESTEP_FEATURES, third, third, "silu")
        emb = top.binary("adaln_single.emb.add", "add", (emb, top.binary("adaln_single.emb.cat", "copy", (size, ratio),
                                                                          b, d)), b, d)
    t6 = modulation(top, "adaln_single", emb, b, d, 6)
    text = top.act("text", b * t, model.caption_channels or model.text_width)
    if model.caption_channels is not None:
        text = embed_mlp(top, "caption_projection", text, b * t, model.caption_channels, d, d, "gelu")
    x = step.blocks(x, t6, lambda x: step.run("transformer_blocks", model.num_layers, 0, lambda g, units, x: pixart_block(
        g, _heads(model), b, s, t, model.text_width, x, text, t6, units=units), x))
    mod = top.binary("scale_shift", "add", (top.weight("scale_shift_table", 2, d), emb), b, 2 * d)
    return _final(top, model, geo, x, mod)


def _wan(model, geo: Geometry, top: Builder, step: StepLowering) -> Tensor:
    """WanTransformer3DModel.forward: ``patch_embedding`` (a Conv3d over patches of frames x
    height x width); ``condition_embedder``: ``time_embedder`` (freq_dim -> d -> d), SiLU +
    ``time_proj`` d -> 6d shared by every block, ``text_embedder`` (GELU-tanh MLP) of the UMT5
    tokens; the rotary table (WanRotaryPosEmbed, no matrix work); the blocks; the final
    ``scale_shift_table`` plus the time embedding, ``norm_out``, modulate, ``proj_out``."""
    b, d, s, t = geo.batch, model.hidden, geo.tokens, geo.text
    x = _patches(top, model, geo, "patch_embedding")
    temb = embed_mlp(top, "condition_embedder.time_embedder", top.act("t_freq", b, model.freq_dim), b, model.freq_dim,
                     d, d, "silu")
    silu = top.pointwise("condition_embedder.act_fn", "silu", temb, b, d)
    t6 = top.linear("condition_embedder.time_proj", silu, b, d, 6 * d)
    text = embed_mlp(top, "condition_embedder.text_embedder", top.act("text", b * t, model.text_dim), b * t,
                     model.text_dim, d, d, "gelu")
    freqs = top.constant("rope.freqs", s, 2 * model.attention_head_dim)
    x = step.blocks(x, temb, lambda x: step.run("blocks", model.num_layers, 0, lambda g, units, x: wan_block(
        g, _heads(model, model.qk_norm), b, s, t, model.ffn_dim, x, text, t6, freqs, model.cross_attn_norm,
        units=units), x))
    mod = top.binary("scale_shift", "add", (top.weight("scale_shift_table", 2, d), temb), b, 2 * d)
    return _final(top, model, geo, x, mod)


def forward_counts(model: DiTModel, geo: Geometry) -> tuple[int, int]:
    """Matrix parameters and MACs of one forward at ``geo`` (the reference counts' terms)."""
    graph = OpGraph()
    forward(graph, model, geo, Precision(), "f")
    params = sum(t.elements * t.copies for t in graph.tensors.values() if t.role is Role.WEIGHT)
    return params, graph.macs
