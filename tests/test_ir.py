"""The operator graph and the transformer-block lowering, against closed-form counts."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from archsim.dtypes import DType
from archsim.ir import ops
from archsim.ir.graph import OpGraph, Phase, Workload
from archsim.ir.tensor import Role, Tensor
from archsim.ir.transformer import BlockShape, Builder, Precision, Tokens, transformer_block
from archsim.workloads import load_workload
from tests.conftest import WORKLOADS


def block(shape, tokens, precision=Precision()):
    g = OpGraph()
    transformer_block(Builder(g, "l", precision), shape, tokens)
    return g


def closed_form_macs(d, h, kvh, dh, f, gated, b, s, t):
    proj = b * s * d * dh * (2 * h + 2 * kvh)  # q, o: h*dh each; k, v: kvh*dh each
    attn = 2 * b * h * s * t * dh  # scores and context
    mlp = b * s * d * f * (3 if gated else 2)
    return proj + attn + mlp


def test_gpt3_30b_layer_prefill():
    # GPT-3-30B: d=7168, 56 heads, FFN 4d (docs/sources/papers.md#llm-model-shapes); batch 8,
    # 1024 tokens.
    g = block(BlockShape(7168, 56, 56, 28672), Tokens(8, 1024, 1024))
    assert g.macs == 12 * 7168**2 * 8 * 1024 + 2 * 8 * 56 * 1024 * 1024 * 128
    assert g.macs == 5_171_140_624_384


@settings(max_examples=60, deadline=None)
@given(
    st.integers(1, 8).map(lambda x: 64 * x),  # hidden
    st.sampled_from([(4, 4), (8, 2), (8, 8), (16, 4)]),
    st.integers(1, 4),  # ffn multiple
    st.booleans(),
    st.integers(1, 4), st.integers(1, 64), st.integers(0, 64), st.booleans(),
)
def test_block_macs_match_closed_form(d, heads, fm, gated, b, s, extra, cache):
    h, kvh = heads
    dh = d // h
    t = s + extra if cache else s
    shape = BlockShape(d, h, kvh, fm * d, gated=gated, activation="silu" if gated else "gelu")
    g = block(shape, Tokens(b, s, t, cache))
    assert g.macs == closed_form_macs(d, h, kvh, dh, fm * d, gated, b, s, t)
    weights = {t.name: t for op in g.ops() for t in op.inputs if t.role is Role.WEIGHT}
    assert sum(w.elements for w in weights.values()) == shape.weight_params


def test_gqa_reads_each_kv_head_once():
    # LLaMA-3-8B: 32 query heads share 8 KV heads.
    g = block(BlockShape(4096, 32, 8, 14336, gated=True, norm="rmsnorm"), Tokens(1, 1, 2048, True),
              Precision(DType.BF16, DType.BF16, DType.BF16))
    score = next(op for op in g.ops() if isinstance(op, ops.AttentionScore))
    assert (score.batch, score.m, score.k, score.n) == (8, 4, 128, 2048)
    cache = score.b
    assert cache.role is Role.KV_CACHE and cache.bytes == 8 * 2048 * 128 * 2


def test_graph_edges_follow_tensors():
    g = block(BlockShape(256, 4, 4, 1024), Tokens(2, 16, 16))
    nx = g.nx
    assert nx.has_edge("l.norm1", "l.attn.q")
    assert nx.has_edge("l.attn.softmax", "l.attn.context_mm")
    assert nx.has_edge("l.residual1", "l.residual2")
    assert list(g.ops())[0].name == "l.norm1" and list(g.ops())[-1].name == "l.residual2"


def test_vector_work_counts():
    x = Tensor("x", (4, 10), DType.BF16)
    y = Tensor("y", (4, 10), DType.BF16)
    # softmax: max (1 op), sum of exp (2 ops, 1 exp), normalise (2 ops, 1 exp, 1 reciprocal a row)
    assert ops.Softmax("s", (x,), (y,), 4, 10).vector_work == ops.VectorWork(
        200, 84, (("exp", 80), ("reciprocal", 4)))
    assert ops.Activation("a", (x,), (y,), 4, 10, "silu").vector_work == ops.VectorWork(
        120, 80, (("exp", 40), ("reciprocal", 40)))
    # layernorm: mean (1), mean of squares (2), normalise (4, 1 rsqrt a row)
    assert ops.LayerNorm("n", (x,), (y,), 4, 10).vector_work == ops.VectorWork(280, 4, (("rsqrt", 4),))
    assert [len(o.passes) for o in (ops.Softmax("s", (x,), (y,), 4, 10), ops.LayerNorm("n", (x,), (y,), 4, 10),
                                    ops.RMSNorm("r", (x,), (y,), 4, 10))] == [3, 3, 2]


def test_phase_repeat_is_not_copies():
    g = block(BlockShape(256, 4, 4, 1024), Tokens(2, 16, 16))
    w = Workload("w", (Phase("step", g, repeat=1000),))
    assert w.macs == 1000 * g.macs and len(g) == 14


def test_invalid_graphs_are_rejected():
    x = Tensor("x", (4, 4), DType.INT8)
    with pytest.raises(ValueError, match="operand sizes"):
        ops.Gemm("g", (x, Tensor("w", (5, 4), DType.INT8, Role.WEIGHT)), (x,), 1, 4, 4, 4, False)
    with pytest.raises(ValueError, match="multiple of kv_heads"):
        BlockShape(256, 6, 4, 1024)
    with pytest.raises(ValueError, match="duplicate op"):
        OpGraph([ops.Elementwise("e", (x, x), (Tensor("y", (4, 4), DType.INT8),), 4, 4),
                 ops.Elementwise("e", (x, x), (Tensor("z", (4, 4), DType.INT8),), 4, 4)])


@pytest.mark.parametrize("path", sorted(WORKLOADS.glob("*.yaml")), ids=lambda p: p.stem)
def test_bundled_workloads_load(path):
    workload = load_workload(path)
    assert workload.macs > 0


def test_signature_numbers_stand_for_one_signature_each(monkeypatch):
    # the shared costs' memos key ops by a number for their signature (ops.Op.signature_number):
    # equal signatures share one, no number ever stands for two signatures (not even once the
    # numbering is forgotten), and a pickled op carries none (another process numbers its own)
    import pickle

    def gemm(name, n):
        x, w, y = Tensor(f"{name}.x", (8, 64), DType.BF16), Tensor(f"{name}.w", (64, n), DType.BF16, Role.WEIGHT), \
            Tensor(f"{name}.y", (8, n), DType.BF16)
        return ops.Gemm(name, (x, w), (y,), 1, 8, 64, n, False)

    a, b, c = gemm("a", 128), gemm("b", 128), gemm("c", 256)
    assert a.signature == b.signature != c.signature
    assert a.signature_number == b.signature_number != c.signature_number
    again = pickle.loads(pickle.dumps(a))
    assert "signature_number" not in again.__dict__ and again.signature_number == a.signature_number
    monkeypatch.setattr(ops, "_NUMBERED", 1)  # every new signature forgets the others
    numbers = [gemm(f"g{n}", n).signature_number for n in (32, 48, 32, 48)]
    assert len(set(numbers)) == 4 and not set(numbers) & {a.signature_number, c.signature_number}
