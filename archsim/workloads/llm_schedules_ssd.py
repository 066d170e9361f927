"""``ssd``: self-speculative decoding by skipping layers while drafting (Zhang et al., "Draft &
Verify: Lossless Large Language Model Acceleration via Self-Speculative Decoding";
dilab-zju/self-speculative-decoding, docs/sources/speculative.md#self-speculation-by-skipping-layers-ssd).

Drafts run the model itself with the attention of the layers in ``skip_attention`` and the MLP
of those in ``skip_mlp`` skipped (their residual passes the input on), one token a step, ``k``
steps a round; the verification is the full model over the last token and the k drafts.
"""

from __future__ import annotations

from pydantic import Field

from archsim.config.fields import Count, NonNegativeCount
from archsim.dtypes import DType
from archsim.errors import FieldError
from archsim.ir import ops
from archsim.ir.graph import OpGraph, Phase
from archsim.ir.transformer import Builder, Tokens, mlp, moe_mlp, self_attention
from archsim.workloads.llm_schedules import _Speculative, register
from archsim.workloads.llm_schedules_inputs import Tree

# dilab-zju/self-speculative-decoding skip_layers.json: the searched skip sets it publishes
# (layer indices from 0; "attention" and "mlp" sub-layers skipped while drafting).
SKIP_SETS: dict[str, dict[str, list[int]]] = {
    "llama-2-13b": {"attention": [3, 5, 6, 8, 10, 11, 14, 15, 18, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 33, 34, 35,
                                  36, 37],
                    "mlp": [6, 9, 10, 11, 15, 24, 25, 27, 28, 35]},
    "llama-2-13b-chat": {"attention": [7, 8, 9, 10, 11, 14, 15, 18, 22, 23, 24, 26, 27, 28, 29, 30, 31, 32, 33, 34,
                                       35, 36, 37, 38],
                         "mlp": [7, 10, 11, 14, 27, 30, 32, 33, 37, 38]},
    "codellama-13b": {"attention": [5, 6, 9, 10, 11, 14, 15, 16, 21, 23, 24, 26, 27, 28, 29, 30, 31, 32, 34, 35, 36,
                                    37],
                      "mlp": [10, 11, 12, 14, 15, 25, 26, 27, 30, 32, 33, 34]},
    "llama-2-70b": {"attention": [10, 11, 13, 14, 16, 18, 19, 20, 21, 22, 25, 27, 28, 29, 30, 31, 35, 41, 43, 45, 46,
                                  47, 48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 60, 61, 62, 63, 65, 66, 67, 68, 69,
                                  70, 74, 75, 78, 79],
                    "mlp": [2, 4, 9, 10, 13, 14, 16, 20, 21, 22, 24, 25, 26, 27, 28, 29, 31, 34, 37, 41, 47, 48, 49,
                            50, 53, 54, 55, 57, 58, 60, 62, 63, 66, 67, 68, 70, 76]},
}


@register
class Ssd(_Speculative):
    """Self-speculative decoding (Draft & Verify): the draft is the model with some attention and
    MLP sub-layers skipped. ``skip`` names a published set (SKIP_SETS) or ``skip_attention`` and
    ``skip_mlp`` list the layers; ``k`` is the code's ``max_step_draft`` (8; its adaptive stop on
    the draft's confidence is not modelled: every round drafts k)."""

    NAME = "ssd"
    skip: str | None = Field(default=None, description=f"a published skip set: {', '.join(SKIP_SETS)}")
    skip_attention: list[NonNegativeCount] = Field(default=[], description="layers whose attention the drafts skip")
    skip_mlp: list[NonNegativeCount] = Field(default=[], description="layers whose MLP the drafts skip")
    k: Count = Field(default=8, le=64, description="draft tokens per verification (max_step_draft=8)")

    def _check_inputs(self) -> None:
        if self.skip is not None and self.skip not in SKIP_SETS:
            raise FieldError("skip", f"unknown skip set {self.skip!r}; expected one of: {', '.join(SKIP_SETS)}")
        if self.skip is not None and (self.skip_attention or self.skip_mlp):
            raise FieldError("skip", "give a named skip set or the lists skip_attention and skip_mlp, not both")
        if self.skip is None and not (self.skip_attention or self.skip_mlp):
            raise FieldError("skip", "the drafts must skip something: give skip, skip_attention or skip_mlp")

    def token_tree(self) -> Tree:
        return Tree.chain(self.k)

    def skipped(self) -> tuple[set[int], set[int]]:
        if self.skip is not None:
            return set(SKIP_SETS[self.skip]["attention"]), set(SKIP_SETS[self.skip]["mlp"])
        return set(self.skip_attention), set(self.skip_mlp)


def draft_graph(model, precision, schedule: Ssd, tokens: Tokens, scope: str, tp: int = 1, ep: int = 1) -> OpGraph:
    """One draft step: embedding, the attention of the layers not in skip_attention and the MLP
    of those not in skip_mlp (each sub-layer a pre-norm and a residual add, as the code's
    LlamaDecoderLayer), final norm and LM head on the new token."""
    from archsim.workloads.llm_schedules_lower import _Stack

    layers = model.num_hidden_layers
    attention, mlps = schedule.skipped()
    past = sorted(i for i in attention | mlps if i >= layers)
    if past:
        raise ValueError(f"schedule.skip: layer {past[0]} is past the model's last ({layers - 1})")
    block = model.block()
    if len(model.layer_groups()) > 1 or block.layout != "serial" or block.post_norms or model.position_embedding == \
            "learned":
        raise ValueError("ssd is modelled for models whose layers are all alike, attention then MLP (LLaMA-style)")
    shape = model.block(*model.layer_groups()[0][:2])
    graph = OpGraph()
    top = Builder(graph, "", precision, scope=scope)
    d, rows = model.hidden_size, tokens.rows
    table = top.weight("embed.weight", model.vocab_size, d)
    y = top.act("embed.out", rows, d)
    graph.add(ops.EmbeddingLookup("embed", (table, top.act("token_ids", rows, dtype=DType.INT32)), (y,), rows))
    runs_attention, runs_mlp = layers - len(attention), layers - len(mlps)
    if runs_attention:
        b = _Stack(graph, "layers", precision, copies=runs_attention, scope=scope, tp=tp, ep=ep, depth=layers)
        out = self_attention(b.child("attn"), shape, tokens, b.norm("norm1", shape.norm, y, rows, d))
        y = b.binary("residual1", "add", (y, out), rows, d)
    if runs_mlp:
        b = _Stack(graph, "layers", precision, copies=runs_mlp, scope=scope, tp=tp, ep=ep, depth=layers)
        ffn = moe_mlp if shape.moe is not None else mlp
        out = ffn(b.child("mlp"), shape, rows, b.norm("norm2", shape.norm, y, rows, d))
        y = b.binary("residual2", "add", (y, out), rows, d)
    h = top.norm("final_norm", shape.norm, y, rows, d)
    head = table if model.tie_word_embeddings else top.weight("lm_head.weight", d, model.vocab_size)
    logits = top.act("logits", rows, model.vocab_size)
    graph.add(ops.Gemm("lm_head", (h, head), (logits,), 1, rows, d, model.vocab_size, False))
    return graph


def ssd_phases(spec, schedule: Ssd, model, precision, context: int, count: int, target, tp: int, ep: int) -> list[Phase]:
    """A context group's draft and verify phases (``target(name, segments, logits_rows)`` builds
    the full model's pass)."""
    from archsim.workloads.llm_schedules_lower import Segment, nearest

    b, k = spec.batch, schedule.k
    name = f"draft@{context}"
    draft = Tokens(b, 1, nearest(context + (k + 1) / 2), kv_cache=True, causal=True)
    verify = [Segment(Tokens(b, k + 1, context + k + 1, kv_cache=True, causal=True))]
    return [Phase(name, draft_graph(model, precision, schedule, draft, name, tp, ep), count * k),
            Phase(f"verify@{context}", target(f"verify@{context}", verify, b * (k + 1)), count)]
