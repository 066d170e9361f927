"""Workload files: YAML data naming a ``kind`` and its parameters, lowered to a Workload.

Kinds are a registry; the extractors (DiT, LLM, diffusion LLM) register theirs. Workload
files share the hardware configs' loader, so ``extends:`` and ``--set``-style overrides and
the same error reporting work for them too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Sequence

from pydantic import Field, PositiveInt, model_validator

from archsim.config.fields import Strict
from archsim.config.loader import Override, load_layered, validate_layered
from archsim.dtypes import DType
from archsim.errors import ConfigError
from archsim.ir.graph import OpGraph, Phase, Workload
from archsim.ir.transformer import BlockShape, Builder, Precision, Tokens, transformer_block

_KINDS: dict[str, type["WorkloadSpec"]] = {}


def register_workload(kind: str):
    def decorate(cls):
        _KINDS[kind] = cls
        return cls

    return decorate


class WorkloadSpec(Strict):
    kind: str
    name: str

    def build(self) -> Workload:
        raise NotImplementedError  # every registered kind overrides this


class BlockSpec(Strict):
    hidden: PositiveInt
    heads: PositiveInt
    kv_heads: PositiveInt | None = Field(default=None, description="default: heads (no GQA)")
    ffn: PositiveInt
    head_dim: PositiveInt | None = None
    activation: Literal["gelu", "silu", "relu"] = "gelu"
    gated: bool = False
    norm: Literal["layernorm", "rmsnorm"] = "layernorm"

    @model_validator(mode="after")
    def _shape_is_consistent(self) -> "BlockSpec":
        self.shape()  # raises ValueError with the reason
        return self

    def shape(self) -> BlockShape:
        return BlockShape(
            hidden=self.hidden, heads=self.heads, kv_heads=self.kv_heads or self.heads, ffn=self.ffn,
            head_dim=self.head_dim, activation=self.activation, gated=self.gated, norm=self.norm,
        )


class PrecisionSpec(Strict):
    weights: DType = DType.BF16
    activations: DType = DType.BF16
    kv: DType = DType.BF16


@register_workload("transformer_block")
class TransformerBlockWorkload(WorkloadSpec):
    """One transformer block (a layer), optionally repeated (e.g. over layers)."""

    kind: Literal["transformer_block"]
    block: BlockSpec
    batch: PositiveInt
    q_len: PositiveInt = Field(description="query tokens per sequence")
    kv_len: PositiveInt = Field(description="keys each query attends to (new tokens included)")
    kv_cache: bool = False
    precision: PrecisionSpec = PrecisionSpec()
    repeat: PositiveInt = 1

    @model_validator(mode="after")
    def _tokens_are_consistent(self) -> "TransformerBlockWorkload":
        Tokens(self.batch, self.q_len, self.kv_len, self.kv_cache)
        return self

    def build(self) -> Workload:
        graph = OpGraph()
        p = self.precision
        builder = Builder(graph, "block", Precision(p.weights, p.activations, p.kv))
        transformer_block(builder, self.block.shape(), Tokens(self.batch, self.q_len, self.kv_len, self.kv_cache))
        return Workload(self.name, (Phase("block", graph, self.repeat),))


def load_workload(path: str | Path, overrides: Sequence[Override] = ()) -> Workload:
    layered = load_layered(path, overrides)
    kind = layered.data.get("kind")
    if kind not in _KINDS:
        known = ", ".join(sorted(_KINDS))
        raise ConfigError(f"unknown workload kind {kind!r}; expected one of: {known}", file=str(path), key="kind")
    spec = validate_layered(_KINDS[kind], layered, str(path))
    return spec.build()
