"""Multi-head latent attention (DeepSeek-V2 and V3): keys and values are stored as one compressed
latent per token (``kv_lora`` wide, plus a ``rope``-wide positional key shared by the heads),
and queries optionally go through a low-rank ``q_lora`` bottleneck.

Two ways to compute it, both in the authors' inference code (deepseek-ai/DeepSeek-V3,
``inference/model.py``, class ``MLA``, switched by ``attn_impl``):

- ``absorb`` (their default): the up-projection of the keys is folded into the queries and that
  of the values into the output, so attention runs in latent space: every head scores against
  the one cached latent (``kv_lora + rope`` wide) and sums latents (``kv_lora`` wide), the
  cache never expanded;
- ``naive``: the latents are expanded to per-head keys (``nope + rope``) and values (``v``) by
  ``kv_b``, then ordinary attention. transformers' ``DeepseekV3Attention``
  (``models/deepseek_v3/modeling_deepseek_v3.py``) does this over the whole cached latent at
  every step (it caches the latent and expands it in ``expand_kv``).

Either way the cache holds ``kv_lora + rope`` values per token.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from archsim.ir import ops
from archsim.ir.tensor import Tensor


@dataclass(frozen=True)
class MlaShape:
    kv_lora: int
    nope: int  # per-head query/key width without positions
    rope: int  # the positional part of a query/key, shared by the heads on the key side
    v: int  # per-head value width
    q_lora: int | None = None  # the queries' bottleneck, or straight from the hidden state
    mode: Literal["absorb", "naive"] = "absorb"

    @property
    def qk(self) -> int:
        return self.nope + self.rope

    def weight_params(self, hidden: int, heads: int) -> int:
        q = hidden * heads * self.qk if self.q_lora is None else hidden * self.q_lora + self.q_lora * heads * self.qk
        kv = hidden * (self.kv_lora + self.rope) + self.kv_lora * heads * (self.nope + self.v)
        return q + kv + heads * self.v * hidden


def mla_attention(b, hidden: int, heads: int, norm: str, mla: MlaShape, tokens, x: Tensor) -> Tensor:
    """MLA on normalised input x[rows, hidden]; returns the out-projection output. ``b`` is a
    ``Builder``. The queries' projection is two GEMMs (the positional part and the rest) and so
    is the latent's (the latent and the shared positional key): the same MACs and weights as
    the published single projections, split where the computation splits. Under tensor
    parallelism each rank runs its share of the heads; the latent projections, per token and
    shared by the heads, are replicated."""
    h = b.shard(heads, "attention heads")
    rows, kv_len, batch, q_len = tokens.rows, tokens.kv_len, tokens.batch, tokens.q_len
    src, width = x, hidden
    if mla.q_lora is not None:
        src, width = b.norm("q_a_norm", norm, b.linear("q_a", x, rows, hidden, mla.q_lora), rows, mla.q_lora), mla.q_lora
    q_nope = b.linear("q_nope", src, rows, width, heads * mla.nope, split="column")
    q_rope = b.linear("q_rope", src, rows, width, heads * mla.rope, split="column")
    latent = b.norm("kv_a_norm", norm, b.linear("kv_a", x, rows, hidden, mla.kv_lora), rows, mla.kv_lora)
    k_rope = b.linear("k_rope", x, rows, hidden, mla.rope)
    if tokens.kv_cache:  # the latent and the positional key, as DeepSeek's kv_cache and pe_cache
        latent_all = b.cache("latent_cache", batch, kv_len, mla.kv_lora)
        rope_all = b.cache("rope_cache", batch, kv_len, mla.rope)
        b.add(ops.CacheWrite, "latent_append", (latent,), (latent_all,))
        b.add(ops.CacheWrite, "rope_append", (k_rope,), (rope_all,))
    else:
        latent_all, rope_all = latent, k_rope
    causal = q_len if tokens.causal else 0
    if mla.mode == "absorb":
        # each head's query into latent space (q_nope W_UK), scored against the one latent and
        # the shared positional key; the context summed in latent space, then out of it (W_UV)
        w_uk = b.weight("kv_b_k.weight", h, mla.nope, mla.kv_lora)
        q_lat = b.act("q_absorb.out", rows, h * mla.kv_lora)
        b.add(ops.Gemm, "q_absorb", (q_nope, w_uk), (q_lat,), h, rows, mla.nope, mla.kv_lora, True)
        m = h * q_len  # the heads share the latent: folded into m
        parts = []
        for name, q, keys, k in (("score", q_lat, latent_all, mla.kv_lora), ("score_rope", q_rope, rope_all, mla.rope)):
            part = b.act(f"{name}.out", batch, m, kv_len)
            b.add(ops.AttentionScore, name, (q, keys), (part,), batch, m, k, kv_len, True, causal)
            parts.append(part)
        scores = b.binary("score_sum", "add", tuple(parts), batch * m, kv_len)
        probs = b.act("probs", batch, m, kv_len)
        b.add(ops.Softmax, "softmax", (scores,), (probs,), batch * m, kv_len)
        ctx_lat = b.act("context_latent", batch, m, mla.kv_lora)
        b.add(ops.AttentionContext, "context_mm", (probs, latent_all), (ctx_lat,), batch, m, kv_len, mla.kv_lora, True)
        w_uv = b.weight("kv_b_v.weight", h, mla.kv_lora, mla.v)
        context = b.act("context", rows, h * mla.v)
        b.add(ops.Gemm, "v_absorb", (ctx_lat, w_uv), (context,), h, rows, mla.kv_lora, mla.v, True)
    else:
        # the whole cached latent expanded to every head's keys and values at each call, as
        # transformers' expand_kv does, then ordinary attention per head
        expanded = b.linear("kv_b", latent_all, batch * kv_len, mla.kv_lora, heads * (mla.nope + mla.v), split="column")
        keys = b.act("keys", batch * h, kv_len, mla.qk)
        b.add(ops.Elementwise, "keys_cat", (expanded, rope_all), (keys,), batch * h * kv_len, mla.qk, "copy")
        values = b.act("values", batch * h, kv_len, mla.v)
        b.add(ops.Elementwise, "values_split", (expanded,), (values,), batch * h * kv_len, mla.v, "copy")
        q_all = b.act("q_cat.out", rows, h * mla.qk)
        b.add(ops.Elementwise, "q_cat", (q_nope, q_rope), (q_all,), rows, h * mla.qk, "copy")
        scores = b.act("scores", batch * h, q_len, kv_len)
        b.add(ops.AttentionScore, "score", (q_all, keys), (scores,), batch * h, q_len, mla.qk, kv_len, True, causal)
        probs = b.act("probs", batch * h, q_len, kv_len)
        b.add(ops.Softmax, "softmax", (scores,), (probs,), batch * h * q_len, kv_len)
        context = b.act("context", rows, h * mla.v)
        b.add(ops.AttentionContext, "context_mm", (probs, values), (context,), batch * h, q_len, kv_len, mla.v, True)
    return b.linear("o", context, rows, heads * mla.v, hidden, split="row")
