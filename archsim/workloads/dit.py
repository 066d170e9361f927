"""``kind: dit``: class-conditional diffusion transformers (Peebles & Xie 2023).

One denoising forward is lowered as in the reference implementation (facebookresearch/DiT,
models.py): patch embedding (a p x p stride-p convolution, i.e. a GEMM over patches) plus the
fixed sin-cos position embedding; the timestep embedder (256 sinusoid features, computed on
the host, -> Linear -> SiLU -> Linear); the class embedding lookup (num_classes + 1 rows, the
extra one for classifier-free guidance); ``depth`` adaLN-Zero blocks, each with SiLU + a
Linear d -> 6d on the conditioning vector, LayerNorm + modulate, attention, a gated residual,
LayerNorm + modulate, a GELU MLP (no gate) and a gated residual; and the final layer
(SiLU + Linear d -> 2d, LayerNorm, modulate, Linear d -> p^2 x out channels).
Classifier-free guidance runs the conditional and unconditional halves as one doubled batch,
then combines them; the sampler updates the latent each step.

A generation is one network evaluation per sampler step, lowered under a feature-caching
``schedule`` (``archsim.workloads.schedules``): steps with the same plan are one phase with a
repeat count (``none``: a single ``full`` phase).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from archsim.config.fields import Count
from archsim.dtypes import DType
from archsim.errors import FieldError
from archsim.ir import ops
from archsim.ir.graph import OpGraph, Phase, Workload
from archsim.ir.tensor import Role, Tensor
from archsim.ir.transformer import BlockShape, Builder, Tokens, attention, mlp
from archsim.workloads.schedules import (FULL, STEP_KINDS, ICCBuilder, ICCWritingBuilder, StepPlan, SubsetBuilder,
                                         check_schedule, parse_schedule, phase_names)
from archsim.workloads.base import PrecisionSpec, WorkloadSpec, register_workload

# DiT paper, Table 1: (depth, hidden, heads); docs/sources/papers.md#dit-model-sizes.
FAMILIES = {"S": (12, 384, 6), "B": (12, 768, 12), "L": (24, 1024, 16), "XL": (28, 1152, 16)}
# Network evaluations per sampling step; Heun's second-order step needs two (none after the last).
SAMPLERS = {"ddpm": lambda n: n, "ddim": lambda n: n, "dpm_solver": lambda n: n, "heun": lambda n: 2 * n - 1}
TIMESTEP_FEATURES = 256  # DiT's TimestepEmbedder frequency_embedding_size
MAX_FORWARDS = 5000  # a documented limit: network evaluations of one generation (DDPM: 1000)


@register_workload
class DiTWorkload(WorkloadSpec):
    KIND = "dit"
    kind: Literal["dit"] = Field(description="a class-conditional diffusion transformer (DiT, Peebles & Xie 2023)")
    family: Literal["S", "B", "L", "XL"] = Field(default="XL", description="DiT model size (DiT paper, Table 1), "
                                                 "which gives the default depth, hidden and heads")
    depth: Count | None = Field(default=None, description="default from the family")
    hidden: Count | None = Field(default=None, description="model width: features per token (default from the family)")
    heads: Count | None = Field(default=None, description="attention heads (default from the family)")
    mlp_ratio: Count = Field(default=4, description="the MLP's inner width as a multiple of hidden")
    patch: Count = Field(default=2, description="patch side in latent pixels: each token is a patch x patch square "
                         "of the latent")
    resolution: Count = Field(default=256, description="image side in pixels")
    vae_downsample: Count = Field(default=8, description="latent = image / this (SD VAE: 8)")
    latent_channels: Count = Field(default=4, description="channels of the VAE's latent (SD VAE: 4)")
    learn_sigma: bool = Field(default=True, description="the network predicts the noise's variance too: the final "
                              "layer outputs twice the latent channels")
    num_classes: Count = Field(default=1000, description="class labels; the class embedding has one more row, the "
                               "null class of classifier-free guidance")
    batch: Count = Field(default=1, description="images generated together")
    cfg: bool = Field(default=False, description="classifier-free guidance doubles the batch")
    steps: Count = Field(default=50, description="sampler (denoising) steps of one generation")
    sampler: Literal[tuple(SAMPLERS)] = Field(  # type: ignore[valid-type]
        default="ddim", description="sampler: ddpm, ddim and dpm_solver run one network evaluation a step, heun two "
        "(none after the last step)")
    precision: PrecisionSpec = Field(default=PrecisionSpec(), description="number formats of the weights, "
                                     "activations and feature caches")
    schedule: str | dict[str, Any] | None = Field(default=None, description="NAME[:key=value,...] or a mapping")

    @model_validator(mode="after")
    def _geometry(self) -> "DiTWorkload":
        if self.resolution % self.vae_downsample:
            raise FieldError("resolution", f"{self.resolution} is not a multiple of vae_downsample {self.vae_downsample}")
        if self.latent_size % self.patch:
            raise FieldError("patch", f"the latent size {self.latent_size} is not a multiple of patch {self.patch}")
        try:
            self.shape()
        except ValueError as exc:
            raise FieldError("heads", str(exc)) from None
        if self.forwards > MAX_FORWARDS:
            raise FieldError("steps", f"{self.steps} {self.sampler} steps need {self.forwards} network evaluations; "
                             f"archsim's limit is {MAX_FORWARDS}")
        check_schedule(self.schedule)
        return self

    def plans(self) -> list[StepPlan]:
        return parse_schedule(self.schedule).plans(self.forwards, depth=self.dims[0], tokens=self.tokens)

    @property
    def latent_size(self) -> int:
        return self.resolution // self.vae_downsample

    @property
    def tokens(self) -> int:
        return (self.latent_size // self.patch) ** 2

    @property
    def dims(self) -> tuple[int, int, int]:
        depth, hidden, heads = FAMILIES[self.family]
        return self.depth or depth, self.hidden or hidden, self.heads or heads

    def shape(self) -> BlockShape:
        _, d, h = self.dims
        return BlockShape(d, h, h, self.mlp_ratio * d, activation="gelu", gated=False, norm="layernorm")

    @property
    def forwards(self) -> int:
        return SAMPLERS[self.sampler](self.steps)

    def build(self, paths, tp: int = 1) -> Workload:
        plans = self.plans()
        counts: dict[StepPlan, int] = {}
        for plan in plans:  # first-seen order
            counts[plan] = counts.get(plan, 0) + 1
        names = phase_names(plans)
        phases = [Phase(names[plan], denoise_step(self, names[plan], plan, tp), n) for plan, n in counts.items()]
        return Workload(self.name, tuple(phases))


def denoise_step(spec: DiTWorkload, scope: str, plan: StepPlan = FULL, tp: int = 1) -> OpGraph:
    """One network evaluation (both CFG halves) under a step plan, plus the sampler's update."""
    depth, d, _ = spec.dims
    shape = spec.shape()
    b = spec.batch * (2 if spec.cfg else 1)
    t = spec.tokens
    rows = b * t
    p2c_in = spec.patch**2 * spec.latent_channels
    p2c_out = p2c_in * (2 if spec.learn_sigma else 1)
    graph = OpGraph()
    top = Builder(graph, "", spec.precision.precision(), scope=scope)

    # patch embedding and the fixed sin-cos position embedding
    patches = top.act("latent_patches", rows, p2c_in)
    x = top.linear("patch_embed", patches, rows, p2c_in, d)
    x = top.binary("pos_embed", "add", (x, top.constant("pos_embed.table", t, d)), rows, d)
    # conditioning: timestep MLP and class embedding
    t_freq = top.act("t_freq", b, TIMESTEP_FEATURES)
    t_emb = top.linear("t_embed.fc2", top.pointwise("t_embed.act", "silu", top.linear("t_embed.fc1", t_freq, b, TIMESTEP_FEATURES, d), b, d), b, d, d)
    labels = top.act("labels", b, dtype=DType.INT32)
    y_emb = top.act("y_embed.out", b, d)
    graph.add(ops.EmbeddingLookup("y_embed", (top.weight("y_embed.table", spec.num_classes + 1, d), labels), (y_emb,), b))
    c = top.binary("cond", "add", (t_emb, y_emb), b, d)

    x2 = _blocks(plan, graph, top.precision, depth, scope, shape, b, t, x, c, tp)
    final_ada = top.linear("final.adaLN", top.pointwise("final.act", "silu", c, b, d), b, d, 2 * d)
    h = top.binary("final.modulate", "modulate", (top.norm("final.norm", "layernorm", x2, rows, d), final_ada), rows, d)
    out = top.linear("final.linear", h, rows, d, p2c_out)
    if spec.cfg:  # eps = uncond + scale * (cond - uncond) over one half of the batch
        out = top.binary("cfg_combine", "axpby", (out,), spec.batch * t, p2c_out)
    # the latent [batch, channels, size, size], rows along its last axis (as laid out in memory)
    latent_rows = spec.batch * spec.latent_channels * spec.latent_size
    top.binary("sampler_update", "axpby", (out, top.act("latent", latent_rows, spec.latent_size)), latent_rows,
               spec.latent_size)
    return graph


def _block_builder(plan: StepPlan, graph: OpGraph, precision, depth: int, scope: str, tp: int) -> Builder:
    if plan.kind == "icc":
        return ICCBuilder(graph, "blocks", precision, copies=depth, scope=scope, tp=tp, ranks=dict(plan.ranks))
    if "icc" in plan.writes:
        return ICCWritingBuilder(graph, "blocks", precision, copies=depth, scope=scope, tp=tp)
    return Builder(graph, "blocks", precision, copies=depth, scope=scope, tp=tp)


def _blocks(plan: StepPlan, graph: OpGraph, precision, depth: int, scope: str, shape: BlockShape,
            b: int, t: int, x: Tensor, c: Tensor, tp: int) -> Tensor:
    """The DiT blocks of one step under its plan; returns the last block's output."""
    if plan.kind in STEP_KINDS:  # kinds lowered in their own modules (TeaCache, MagCache, HarmoniCa)
        return STEP_KINDS[plan.kind].lower(plan, graph, precision, depth, scope, shape, b, t, x, c, tp)
    if plan.kind == "l2c":
        return _l2c_blocks(plan, graph, precision, depth, scope, shape, b, t, x, c, tp)
    if plan.kind in ("toca", "duca"):
        from archsim.workloads.schedules_toca import token_blocks

        return token_blocks(plan, graph, precision, depth, scope, shape, b, t, x, c, tp)
    blocks = _block_builder(plan, graph, precision, depth, scope, tp)
    ada = _adaln(blocks, c, b, shape.hidden)
    out = _block(blocks, plan, shape, b, t, x, ada)
    if plan.kind == "speca" and plan.verify_blocks:
        verify = SubsetBuilder(graph, "verify", precision, copies=1, scope=scope, tp=tp, depth=depth)
        _verify(verify, shape, b, t, x, ada, out)
    return out


def _adaln(blocks: Builder, c: Tensor, b: int, d: int) -> Tensor:
    """A block's adaLN modulation (shift, scale, gate for attention and MLP): every step runs it."""
    return blocks.linear("adaLN", blocks.pointwise("adaLN.act", "silu", c, b, d), b, d, 6 * d, split="gathered")


def _verify(v: Builder, shape: BlockShape, b: int, t: int, x: Tensor, ada: Tensor, forecast: Tensor) -> None:
    """SpeCa's check (Cache4Diffusion dit/speca-dit/models.py, DiTBlock.forward): the last block
    keeps a copy of its input (full_x = x.clone()), runs attention and MLP on it in full with the
    modulation it already computed, and takes the relative L1 error of the forecast output
    against that: a scalar the host reads."""
    from archsim.workloads.schedules_ops import ScheduleWork

    d, rows = shape.hidden, b * t
    snapshot = v.binary("input_clone", "copy", (x,), rows, d)
    h = v.binary("modulate1", "modulate", (v.norm("norm1", "layernorm", snapshot, rows, d), ada), rows, d)
    x1 = v.binary("residual1", "gated_add", (snapshot, attention(v.child("attn"), shape, Tokens(b, t, t), h), ada), rows, d)
    h = v.binary("modulate2", "modulate", (v.norm("norm2", "layernorm", x1, rows, d), ada), rows, d)
    full = v.binary("residual2", "gated_add", (x1, mlp(v.child("mlp"), shape, rows, h), ada), rows, d)
    v.add(ScheduleWork, "relative_l1", (forecast, full), (v.act("error", 1, dtype=DType.FP32),), rows, d, "relative_l1")


def _block(blocks: Builder, plan: StepPlan, shape: BlockShape, b: int, t: int, x: Tensor, ada: Tensor) -> Tensor:
    d, rows = shape.hidden, b * t
    def cache(name: str, n: int = rows) -> Tensor:
        return blocks.cache(f"cache.{name}", n, d, role=Role.FEATURE_CACHE)

    if plan.kind in ("reuse", "taylor", "speca"):
        outs = []
        for part in ("attn", "mlp"):
            m = plan.order
            if plan.kind == "reuse" or m == 0:  # a Taylor series of order 0 is the stored output
                outs.append(cache(f"{part}_out" if plan.kind == "reuse" else f"{part}_d0"))
            else:  # a Taylor forecast from the m + 1 stored terms
                outs.append(blocks.binary(f"{part}.forecast", f"taylor{m}", tuple(cache(f"{part}_d{k}") for k in range(m + 1)), rows, d))
        x1 = blocks.binary("residual1", "gated_add", (x, outs[0], ada), rows, d)
        return blocks.binary("residual2", "gated_add", (x1, outs[1], ada), rows, d)

    h = blocks.binary("modulate1", "modulate", (blocks.norm("norm1", "layernorm", x, rows, d), ada), rows, d)
    attn_out = attention(blocks.child("attn"), shape, Tokens(b, t, t), h)
    x1 = blocks.binary("residual1", "gated_add", (x, attn_out, ada), rows, d)
    h = blocks.binary("modulate2", "modulate", (blocks.norm("norm2", "layernorm", x1, rows, d), ada), rows, d)
    mlp_out = mlp(blocks.child("mlp"), shape, rows, h)
    x2 = blocks.binary("residual2", "gated_add", (x1, mlp_out, ada), rows, d)
    _write_caches(blocks, plan.writes, {"attn": attn_out, "mlp": mlp_out}, rows, d, cache)
    return x2


def _write_caches(blocks: Builder, writes, outputs: dict, rows: int, d: int, cache) -> None:
    for kind in writes:
        if kind == "outputs":
            for part, out in outputs.items():
                blocks.add(ops.CacheWrite, f"cache.{part}_out.write", (out,), (cache(f"{part}_out"),))
        elif kind.startswith("taylor"):
            m = int(kind[len("taylor"):])
            for part, out in outputs.items():
                if m == 0:  # the first full step keeps its output only
                    blocks.add(ops.CacheWrite, f"cache.{part}_d0.write", (out,), (cache(f"{part}_d0"),))
                    continue
                old = tuple(cache(f"{part}_d{k}") for k in range(m))
                fresh = blocks.binary(f"{part}.taylor_refresh", f"diff{m}", (out, *old), rows, d)
                for k in range(m + 1):
                    blocks.add(ops.CacheWrite, f"cache.{part}_d{k}.write", (fresh,), (cache(f"{part}_d{k}"),))


def _l2c_blocks(plan: StepPlan, graph: OpGraph, precision, depth: int, scope: str, shape: BlockShape,
                b: int, t: int, x: Tensor, c: Tensor, tp: int) -> Tensor:
    """Blocks grouped by what the mask serves from cache; each group runs on its own blocks'
    weights. Computed sub-layers refresh their cache entry for later steps."""
    attn_skip, mlp_skip = (set(s) for s in plan.skip)
    groups: dict[tuple[bool, bool], int] = {}
    for block in range(depth):
        mode = (block in attn_skip, block in mlp_skip)
        groups[mode] = groups.get(mode, 0) + 1
    d, rows = shape.hidden, b * t
    out = x
    for (skip_attn, skip_mlp), count in sorted(groups.items()):
        g = SubsetBuilder(graph, f"l2c{int(skip_attn)}{int(skip_mlp)}", precision, copies=count, scope=scope, tp=tp, depth=depth)
        def cache(name: str, n: int = rows, g=g) -> Tensor:
            return Tensor(f"blocks.cache.{name}", (n, d), precision.kv, Role.FEATURE_CACHE, copies=depth)
        ada = g.linear("adaLN", g.pointwise("adaLN.act", "silu", c, b, d), b, d, 6 * d, split="gathered")
        if skip_attn:
            attn_out = cache("attn_out")
        else:
            h = g.binary("modulate1", "modulate", (g.norm("norm1", "layernorm", x, rows, d), ada), rows, d)
            attn_out = attention(g.child("attn"), shape, Tokens(b, t, t), h)
            g.add(ops.CacheWrite, "cache.attn_out.update", (attn_out,), (cache("attn_out"),))
        x1 = g.binary("residual1", "gated_add", (x, attn_out, ada), rows, d)
        if skip_mlp:
            mlp_out = cache("mlp_out")
        else:
            h = g.binary("modulate2", "modulate", (g.norm("norm2", "layernorm", x1, rows, d), ada), rows, d)
            mlp_out = mlp(g.child("mlp"), shape, rows, h)
            g.add(ops.CacheWrite, "cache.mlp_out.update", (mlp_out,), (cache("mlp_out"),))
        out = g.binary("residual2", "gated_add", (x1, mlp_out, ada), rows, d)
    return out
