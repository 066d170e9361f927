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
    hidden: Count = Field(description="model width: features per token")
    heads: Count = Field(description="attention (query) heads")
    kv_heads: Count | None = Field(default=None, description="default: heads (no GQA)")
    ffn: Count = Field(description="the MLP's inner width (when gated: the gate's and the up projection's, each)")
    head_dim: Count | None = Field(default=None, description="features per attention head (default: hidden / heads)")
    activation: Literal["gelu", "silu", "relu"] = Field(default="gelu", description="the MLP's activation function")
    gated: bool = Field(default=False, description="a gated MLP (SwiGLU-style): act(x W_gate) * (x W_up), then "
                        "W_down, three matrices instead of two")
    norm: Literal["layernorm", "rmsnorm"] = Field(default="layernorm", description="the normalization before "
                                                  "attention and before the MLP (pre-norm)")

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
    kind: Literal["transformer_block"] = Field(description="one hand-described transformer block")
    block: BlockSpec = Field(description="the block's shape: width, heads, MLP, activation and norm")
    batch: Count = Field(description="sequences processed together")
    q_len: Count = Field(description="query tokens per sequence")
    kv_len: Count = Field(description="keys each query attends to (new tokens included)")
    kv_cache: bool = Field(default=False, description="keys and values come from, and are appended to, a KV cache "
                           "(a decode step); without one kv_len must equal q_len")
    causal: bool = Field(default=False, description="each query sees the keys up to its own position (a "
                         "decoder LLM's layer): flash attention skips the masked blocks, and a decode step "
                         "(one query) is known as one")
    precision: PrecisionSpec = Field(default=PrecisionSpec(), description="number formats of the weights, "
                                     "activations and KV cache")
    layers: Count = Field(default=1, description="identical blocks one after another, each with its own weights "
                          "(48 for all of GPT-3-30B)")
    repeat: Count = Field(default=1, description="times the whole run (every layer) is repeated on the same "
                          "weights: its time and energy count that many times")

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
