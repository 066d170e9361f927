"""``kind: transformer_block``: one hand-described transformer block, optionally repeated."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from archsim.config.fields import Count, Strict
from archsim.errors import FieldError
from archsim.ir.graph import OpGraph, Phase, Workload
from archsim.ir.transformer import BlockShape, Builder, Tokens, transformer_block
from archsim.workloads.base import PrecisionSpec, WorkloadSpec, register_workload


class BlockSpec(Strict):
    hidden: Count
    heads: Count
    kv_heads: Count | None = Field(default=None, description="default: heads (no GQA)")
    ffn: Count
    head_dim: Count | None = None
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


@register_workload
class TransformerBlockWorkload(WorkloadSpec):
    """One transformer block (a layer); ``layers`` identical copies with their own weights,
    the whole run ``repeat`` times."""

    KIND = "transformer_block"
    kind: Literal["transformer_block"]
    block: BlockSpec
    batch: Count
    q_len: Count = Field(description="query tokens per sequence")
    kv_len: Count = Field(description="keys each query attends to (new tokens included)")
    kv_cache: bool = False
    causal: bool = Field(default=False, description="each query sees the keys up to its own position (a "
                         "decoder LLM's layer): flash attention skips the masked blocks, and a decode step "
                         "(one query) is known as one")
    precision: PrecisionSpec = PrecisionSpec()
    layers: Count = 1
    repeat: Count = 1

    @model_validator(mode="after")
    def _tokens_are_consistent(self) -> "TransformerBlockWorkload":
        try:
            Tokens(self.batch, self.q_len, self.kv_len, self.kv_cache, self.causal)
        except ValueError as exc:
            raise FieldError("kv_len", str(exc)) from None
        return self

    def build(self, paths, tp: int = 1) -> Workload:
        graph = OpGraph()
        builder = Builder(graph, "block", self.precision.precision(), copies=self.layers, tp=tp)
        transformer_block(builder, self.block.shape(),
                          Tokens(self.batch, self.q_len, self.kv_len, self.kv_cache, self.causal))
        return Workload(self.name, (Phase("block", graph, self.repeat),))
