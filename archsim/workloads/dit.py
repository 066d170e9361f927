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
from archsim.errors import ConfigError, FieldError
from archsim.ir import ops
from archsim.ir.graph import OpGraph, Phase, Workload
from archsim.ir.tensor import Role
from archsim.ir.transformer import BlockShape, Builder, Tokens, attention, mlp
from archsim.workloads.schedules import FULL, ICCBuilder, ICCWritingBuilder, StepPlan, parse_schedule
from archsim.workloads.base import PrecisionSpec, WorkloadSpec, register_workload

# DiT paper, Table 1: (depth, hidden, heads); REFERENCE.md section 4.
FAMILIES = {"S": (12, 384, 6), "B": (12, 768, 12), "L": (24, 1024, 16), "XL": (28, 1152, 16)}
# Network evaluations per sampling step; Heun's second-order step needs two (none after the last).
SAMPLERS = {"ddpm": lambda n: n, "ddim": lambda n: n, "dpm_solver": lambda n: n, "heun": lambda n: 2 * n - 1}
TIMESTEP_FEATURES = 256  # DiT's TimestepEmbedder frequency_embedding_size


@register_workload
class DiTWorkload(WorkloadSpec):
    KIND = "dit"
    kind: Literal["dit"]
    family: Literal["S", "B", "L", "XL"] = "XL"
    depth: Count | None = Field(default=None, description="default from the family")
    hidden: Count | None = None
    heads: Count | None = None
    mlp_ratio: Count = 4
    patch: Count = 2
    resolution: Count = Field(default=256, description="image side in pixels")
    vae_downsample: Count = Field(default=8, description="latent = image / this (SD VAE: 8)")
    latent_channels: Count = 4
    learn_sigma: bool = True  # the output has twice the latent channels
    num_classes: Count = 1000
    batch: Count = 1
    cfg: bool = Field(default=False, description="classifier-free guidance doubles the batch")
    steps: Count = 50
    sampler: Literal[tuple(SAMPLERS)] = "ddim"  # type: ignore[valid-type]
    precision: PrecisionSpec = PrecisionSpec()
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
        try:
            parse_schedule(self.schedule, "schedule")
        except ConfigError as exc:
            raise FieldError("schedule", exc.message) from None
        return self

    def plans(self) -> list[StepPlan]:
        return parse_schedule(self.schedule).plans(self.forwards)

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

    def build(self, paths) -> Workload:
        counts: dict[StepPlan, int] = {}
        for plan in self.plans():  # first-seen order
            counts[plan] = counts.get(plan, 0) + 1
        phases = [Phase(plan.label, denoise_step(self, plan.label, plan), n) for plan, n in counts.items()]
        return Workload(self.name, tuple(phases))


def denoise_step(spec: DiTWorkload, scope: str, plan: StepPlan = FULL) -> OpGraph:
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

    blocks = _block_builder(plan, graph, top.precision, depth, scope)
    ada = Builder.linear(blocks, "adaLN", blocks.pointwise("adaLN.act", "silu", c, b, d), b, d, 6 * d)
    if plan.kind == "reuse":  # FORA: apply the attention and MLP outputs of the last full step
        attn_out, mlp_out = (blocks.cache(f"reuse_cache.{part}", rows, d, role=Role.FEATURE_CACHE) for part in ("attn", "mlp"))
        x1 = blocks.binary("residual1", "gated_add", (x, attn_out, ada), rows, d)
        x2 = blocks.binary("residual2", "gated_add", (x1, mlp_out, ada), rows, d)
    else:
        h = blocks.binary("modulate1", "modulate", (blocks.norm("norm1", "layernorm", x, rows, d), ada), rows, d)
        attn_out = attention(blocks.child("attn"), shape, Tokens(b, t, t), h)
        x1 = blocks.binary("residual1", "gated_add", (x, attn_out, ada), rows, d)
        h = blocks.binary("modulate2", "modulate", (blocks.norm("norm2", "layernorm", x1, rows, d), ada), rows, d)
        mlp_out = mlp(blocks.child("mlp"), shape, rows, h)
        x2 = blocks.binary("residual2", "gated_add", (x1, mlp_out, ada), rows, d)
        if plan.writes == "reuse":
            for part, out in (("attn", attn_out), ("mlp", mlp_out)):
                cache = blocks.cache(f"reuse_cache.{part}", rows, d, role=Role.FEATURE_CACHE)
                blocks.add(ops.CacheWrite, f"reuse_cache.{part}.write", (out,), (cache,))

    final_ada = top.linear("final.adaLN", top.pointwise("final.act", "silu", c, b, d), b, d, 2 * d)
    h = top.binary("final.modulate", "modulate", (top.norm("final.norm", "layernorm", x2, rows, d), final_ada), rows, d)
    out = top.linear("final.linear", h, rows, d, p2c_out)
    if spec.cfg:  # eps = uncond + scale * (cond - uncond) over one half of the batch
        out = top.binary("cfg_combine", "axpby", (out,), spec.batch * t, p2c_out)
    latent_elements = spec.batch * spec.latent_channels * spec.latent_size**2
    top.binary("sampler_update", "axpby", (out, top.act("latent", latent_elements, 1)), latent_elements, 1)
    return graph


def _block_builder(plan: StepPlan, graph: OpGraph, precision, depth: int, scope: str) -> Builder:
    if plan.kind == "icc":
        return ICCBuilder(graph, "blocks", precision, copies=depth, scope=scope, ranks=dict(plan.ranks))
    if plan.writes == "icc":
        return ICCWritingBuilder(graph, "blocks", precision, copies=depth, scope=scope)
    return Builder(graph, "blocks", precision, copies=depth, scope=scope)
