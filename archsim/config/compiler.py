"""What a chip's compiler and libraries do to a graph before it runs (``archsim.passes``) and how
they schedule it (``archsim.sim.schedule``): a *profile* names what real software does, and each
piece can be set on its own so a study can show its effect.

Software, not silicon: every field says what runs, not how fast. The profiles' choices and their
sources are in docs/sources/compiler.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

from pydantic import Field, model_validator

from archsim.config.fields import Count, Fraction, Strict, checked_once

FusionRule = Literal["gemm_epilogue", "gemm_activation", "cache_epilogue", "vector_chain", "norm_prologue"]
# gemm_activation is gemm_epilogue restricted to what cuBLASLt's epilogues compute (ReLU, GELU)
FUSION_RULES: tuple[str, ...] = ("gemm_epilogue", "gemm_activation", "cache_epilogue", "vector_chain", "norm_prologue")
Profile = Literal["none", "xla", "aggressive", "cuda"]


@dataclass(frozen=True)
class ProfileDefaults:
    fusion: tuple[str, ...]
    flash_attention: bool
    flash_decode: bool  # flash attention for a decode step's single query too
    attention_block: int  # queries and keys per flash-attention tile
    overlap: bool
    prefetch: float  # share of the innermost on-chip memory holding operands fetched ahead
    # ASSUMPTION (every profile): a flash kernel keeps one KV head's K and V on chip for all its
    # query blocks when they fit this share of VMEM (the rest holds Q, output and score tiles,
    # double-buffered); else it streams them once per query block
    flash_kv_share: float = 0.25


# docs/sources/compiler.md says which published code each choice follows.
PROFILES: dict[str, ProfileDefaults] = {
    # every op on its own, one after another: per-op microbenchmarks, and archsim before issue 18
    "none": ProfileDefaults((), False, False, 128, False, 0.0),
    # XLA on TPU [XLA-FUSION]: element-wise consumers fused into a dot's output (ASSUMPTION for
    # XLA:TPU, whose rules are not public; XLA:GPU and XLA:CPU do it) and into each other;
    # attention by a Pallas flash kernel with 512-blocks (MaxText's splash kernel)
    # [PALLAS-FLASH], for prompts only: MaxText decodes with XLA's dot-product attention; async
    # copies that prefetch the next ops' operands into VMEM while the current op runs [XLA-MSA].
    # The KV-cache write stays its own in-place op [XLA-DUS]. The VMEM share for prefetch is an
    # ASSUMPTION: half, the other half holding the running op's tiles.
    "xla": ProfileDefaults(("gemm_epilogue", "vector_chain"), True, False, 512, True, 0.5),
    # xla plus what a hand-written kernel could do and no public compiler does by default
    # (ASSUMPTION, docs/sources/compiler.md): the KV-cache write in the K/V GEMM's epilogue, a
    # norm's normalise step in the prologue of the GEMMs reading it
    "aggressive": ProfileDefaults(("gemm_epilogue", "cache_epilogue", "vector_chain", "norm_prologue"), True,
                                  True, 512, True, 0.5),
    # CUDA libraries as inference engines use them: cuBLASLt's ReLU and GELU epilogues
    # [CUBLASLT]; fused element-wise kernels (vLLM's silu_and_mul, fused_add_rms_norm) [VLLM]; a
    # flash-attention kernel with FlashAttention-2's 128-blocks, decode too; kernels of one
    # stream run one after another (their units overlap inside a kernel, which the op costs
    # model), and no kernel fetches the next one's operands [CUDA-STREAMS].
    "cuda": ProfileDefaults(("gemm_activation", "vector_chain"), True, True, 128, False, 0.0),
}

# the profiles a chip kind's software has (a config naming another is an error)
KIND_PROFILES: dict[str, tuple[str, ...]] = {"tpu": ("none", "xla", "aggressive"), "gpu": ("none", "cuda")}
DEFAULT_PROFILE: dict[str, str] = {"tpu": "xla", "gpu": "cuda"}


class CompilerConfig(Strict):
    """A profile and, where set, a piece that differs from it. Left out, each piece is the
    profile's; the profile left out is the chip kind's real software (``DEFAULT_PROFILE``)."""

    profile: Profile | None = Field(
        default=None, description="none (every op on its own, in order), xla or aggressive (TPU-style chips), cuda "
        "(GPUs); default: the chip kind's real software (xla, cuda)")
    fusion: tuple[FusionRule, ...] | None = Field(
        default=None, description="the fusion rules applied, by name (archsim/passes/fusion.py); [] for none; "
        "default: the profile's")
    flash_attention: bool | None = Field(
        default=None, description="run each attention as one tiled kernel with an online softmax (no score "
        "matrix in memory; causal attention skips masked blocks) instead of score, softmax and context ops; "
        "default: the profile's")
    flash_decode: bool | None = Field(
        default=None, description="with flash_attention, also a decode step's attention (one query per "
        "sequence); default: the profile's (xla: no, as MaxText decodes with XLA's dot-product attention; "
        "cuda: yes)")
    overlap: bool | None = Field(
        default=None, description="schedule the ops over the chip's units and memory channels, independent "
        "ops and prefetches running together (archsim/sim/schedule.py), instead of one after another; "
        "default: the profile's")
    prefetch: Fraction | None = Field(
        default=None, description="share of the innermost on-chip memory (VMEM) that may hold the next op's "
        "weights and caches fetched while the current op runs (with overlap); default: the profile's")
    attention_block: Count | None = Field(
        default=None, description="queries and keys per tile of the flash-attention kernel; default: the "
        "profile's (xla: 512, as MaxText's splash kernel; cuda: 128, as FlashAttention-2 on A100)")

    @model_validator(mode="after")
    @checked_once
    def _known_rules(self) -> "CompilerConfig":
        if self.fusion is not None and len(set(self.fusion)) != len(self.fusion):
            raise ValueError("fusion lists a rule twice")
        return self

    def _defaults(self) -> ProfileDefaults:
        return PROFILES[self.profile or "none"]

    @property
    def rules(self) -> tuple[str, ...]:
        """The fusion rules applied, in ``FUSION_RULES`` order."""
        chosen = self.fusion if self.fusion is not None else self._defaults().fusion
        return tuple(r for r in FUSION_RULES if r in chosen)

    @property
    def flash(self) -> bool:
        return self.flash_attention if self.flash_attention is not None else self._defaults().flash_attention

    @property
    def decodes(self) -> bool:
        """Whether flash attention also runs a decode step's attention."""
        return self.flash_decode if self.flash_decode is not None else self._defaults().flash_decode

    @property
    def overlaps(self) -> bool:
        return self.overlap if self.overlap is not None else self._defaults().overlap

    @property
    def prefetch_share(self) -> float:
        if not self.overlaps:
            return 0.0
        return self.prefetch if self.prefetch is not None else self._defaults().prefetch

    @property
    def kv_share(self) -> float:
        """Share of VMEM a flash kernel may keep one KV head's K and V in."""
        return self._defaults().flash_kv_share

    @property
    def block(self) -> int:
        """Queries and keys per flash-attention tile."""
        return self.attention_block if self.attention_block is not None else self._defaults().attention_block

    @property
    def passes_key(self) -> tuple:
        """What the graph passes read: equal keys give equal compiled graphs."""
        return (self.rules, self.flash, self.block if self.flash else 0, self.flash and self.decodes)


def with_default_profile(data: Any, kind: str) -> Any:
    """A chip config's raw ``compiler`` section with the kind's profile where none is given
    (a ``before`` validator of each chip config calls it)."""
    if not isinstance(data, dict):
        return data
    if "compiler" not in data:  # the kind's default, one object for every config of the kind: a
        return {**data, "compiler": _default_compiler(kind)}  # sweep's points share its texts (config.dumps)
    section = data["compiler"]
    if isinstance(section, dict) and section.get("profile") is None:
        data = {**data, "compiler": {**section, "profile": DEFAULT_PROFILE[kind]}}
    return data


@lru_cache(maxsize=None)
def _default_compiler(kind: str) -> "CompilerConfig":
    """``compiler: {profile: <the kind's default>}``, validated (configs are immutable)."""
    return CompilerConfig.model_validate({"profile": DEFAULT_PROFILE[kind]})


def check_profile(compiler: CompilerConfig, kind: str) -> None:
    """A profile of another kind's software is an error (a TPU has no cuBLAS)."""
    from archsim.errors import FieldError

    if compiler.profile is not None and compiler.profile not in KIND_PROFILES[kind]:
        raise FieldError("compiler.profile", f"{compiler.profile!r} is not software of a {kind} chip; expected one "
                         f"of: {', '.join(KIND_PROFILES[kind])}")
