"""``eagle``: EAGLE-2's feature-level draft head and dynamic draft tree (Li et al.; SafeAILab/EAGLE,
docs/sources/speculative.md#eagle-draft-head-and-dynamic-tree-eagle).

The draft head is one decoder layer fed ``fc([token embedding, target hidden state])`` (a
``2d x d`` linear), with its own copy of the embedding table and the target's LM head. A round:
the head reads the newly accepted tokens (about ``tau`` of them: the target's hidden states are
new for those), then ``depth`` expansion steps of ``top_k`` tokens each (the best ``top_k`` of
``top_k^2`` continuations), each against its growing cache; then the target verifies the best
``total_tokens - 1`` drafts and the root, a tree of ``total_tokens``, in one pass. Before the
first round the head reads the whole prompt once (``eagle prefill``).
"""

from __future__ import annotations

from pydantic import Field

from archsim.config.fields import Count
from archsim.dtypes import DType
from archsim.errors import FieldError
from archsim.ir import ops
from archsim.ir.graph import OpGraph, Phase
from archsim.ir.transformer import Builder, Tokens, transformer_block
from archsim.workloads.llm_schedules import _Speculative, register
from archsim.workloads.llm_schedules_inputs import Tree


@register
class Eagle(_Speculative):
    """EAGLE-2: defaults of cnets1.py's ``Model`` (``total_tokens=63, depth=5, top_k=8``). The
    verified tree is ``depth + 1`` deep (the first ``top_k`` come from the head's first step)."""

    NAME = "eagle"
    depth: Count = Field(default=5, le=32, description="expansion steps after the first (Model depth=5)")
    top_k: Count = Field(default=8, le=64, description="tokens each expansion step runs (Model top_k=8)")
    total_tokens: Count = Field(default=63, ge=2, le=1024, description="tokens verified a round, the root included "
                                "(Model total_tokens=63)")

    def _check_inputs(self) -> None:
        # topK_generate keeps the best total_tokens - 1 of the candidates it scored: top_k after
        # the first step, top_k^2 after each of the depth others (torch.topk fails asking for more)
        candidates = self.top_k + self.depth * self.top_k ** 2
        if self.total_tokens - 1 > candidates:
            raise FieldError("total_tokens", f"{self.total_tokens} tokens is the root and {self.total_tokens - 1} "
                             f"drafts, but top_k {self.top_k} and depth {self.depth} score {candidates} candidates "
                             "(top_k + depth x top_k^2)")

    def token_tree(self) -> Tree:
        """A stand-in of the right size and depth: the dynamic tree's shape changes every round,
        the cost depends on its size, the acceptance on its depth."""
        chain = [[0] * d for d in range(1, self.depth + 2)]
        extra = [[i] for i in range(1, self.total_tokens - len(chain))]
        return Tree(chain + extra) if len(chain) < self.total_tokens else Tree.chain(self.total_tokens - 1)


def _head(graph, model, precision, tokens: Tokens, logits_rows: int, scope: str, tp, ep, stack_class) -> OpGraph:
    """One pass of the draft head over ``tokens``: its embedding lookup, fc, one decoder layer
    (its own K/V cache), and the target's LM head on ``logits_rows`` rows."""
    d, rows = model.hidden_size, tokens.rows
    top = Builder(graph, "eagle", precision, scope=scope)
    table = top.weight("embed.weight", model.vocab_size, d)  # the head's own copy (Model.embed_tokens)
    emb = top.act("embed.out", rows, d)
    graph.add(ops.EmbeddingLookup(top.name("embed"), (table, top.act("token_ids", rows, dtype=DType.INT32)), (emb,),
                                  rows))
    # fc reads [embedding, the target's hidden state] (torch.cat: the copy is not modelled)
    x = top.linear("fc", top.act("features", rows, 2 * d), rows, 2 * d, d)
    layer = stack_class(graph, "eagle.layers", precision, copies=1, scope=scope, tp=tp, ep=ep, depth=1)
    y = transformer_block(layer, model.block(), tokens, x=x)
    if logits_rows:
        shared = Builder(graph, "", precision, scope=scope)  # the target's LM head
        head = shared.weight("embed.weight" if model.tie_word_embeddings else "lm_head.weight",
                             *((model.vocab_size, d) if model.tie_word_embeddings else (d, model.vocab_size)))
        # the head reads the last hidden state of each sequence (topK_generate's out_hidden[:, -1])
        # or every expansion token's: no final norm in the draft head (cnets1.py Model.forward)
        last = y if logits_rows == rows else top.act("last_hidden", logits_rows, d)
        logits = top.act("logits", logits_rows, model.vocab_size)
        graph.add(ops.Gemm(top.name("lm_head"), (last, head), (logits,), 1, logits_rows, d, model.vocab_size, False))
    return graph


def eagle_prefill(spec, model, precision, tp: int, ep: int) -> Phase:
    """The head's first call (``initialize_tree`` -> ``topK_generate`` with no ``stable_kv``):
    fc and its layer over every prompt token, fed the target's prefill hidden states, against
    its own empty cache; the LM head on each sequence's last hidden state."""
    from archsim.workloads.llm_schedules_lower import _Stack

    b, prompt = spec.batch, spec.prompt_len
    name = "eagle prefill"
    graph = _head(OpGraph(), model, precision, Tokens(b, prompt, prompt, kv_cache=True, causal=True), b, name, tp, ep,
                  _Stack)
    return Phase(name, graph)


def eagle_phases(spec, schedule: Eagle, model, precision, context: int, count: int, tau: float, target, tp: int,
                 ep: int) -> list[Phase]:
    """A context group's phases: the head over the accepted tokens, ``depth`` expansion steps
    of ``top_k`` tokens (one phase, at their mean keys), the target's tree pass."""
    from archsim.workloads.llm_schedules_lower import Segment, _Stack, nearest

    b, k, depth, q = spec.batch, schedule.top_k, schedule.depth, schedule.total_tokens
    new = max(1, nearest(tau))
    name = f"draft@{context}"
    tokens = Tokens(b, new, context + new, kv_cache=True, causal=True)
    first = _head(OpGraph(), model, precision, tokens, b, name, tp, ep, _Stack)
    expand_name = f"draft expand@{context}"
    # step i (1..depth) runs top_k tokens against context + new + i * top_k keys
    keys = nearest(context + new + k * (depth + 1) / 2)
    expand = _head(OpGraph(), model, precision, Tokens(b, k, keys, kv_cache=True, causal=True), b * k, expand_name,
                   tp, ep, _Stack)
    verify = target(f"verify@{context}", [Segment(Tokens(b, q, context + q, kv_cache=True, causal=True))], b * q)
    return [Phase(name, first, count), Phase(expand_name, expand, count * depth), Phase(f"verify@{context}", verify, count)]
