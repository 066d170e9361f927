"""The flash-attention lowering (issue 18) pinned against hand calculations: the kernel's work
(``ops.FlashAttention``: scores computed, MACs, the online softmax's vector work), the pass that
fuses each score / softmax / context triple (``archsim.passes.flash``), its cost on a TPU-style
chip (``Simulator._flash_cost``) and on a GPU (``GpuSimulator._flash_cost``), the config keys
(``compiler.flash_attention``, ``compiler.attention_block``) and what it changes end to end
(LLaMA-2-7B int8 at 4096 tokens on one TPUv4i).

Every expected number is worked out in the comment beside it from the model as its docstrings
state it, never copied from the model's output. The chips are the calibration-neutral test
chips: tests/data/tpuv4i_plain.yaml (TPUv4i: 4 MXUs of 128 x 128, ws, pipelined folds with the
weight load hidden, 1 bf16 MAC per PE per cycle at 1.05 GHz; VPU 1024 lanes x 2 ALU ops per
cycle, a transcendental 2 cycles a lane; VMEM 16 MiB at 13.5 TB/s, 5 ns; HBM 614 GB/s at
efficiency 1, 555 ns; no dispatch cost) and tests/data/gpu_plain.yaml (4 SMs at 1 GHz, 1024 bf16
tensor MACs per cycle per SM = 1.024e12 MAC/s per SM, 64 ALU ops and 16 special ops per cycle per
SM = 256e9 and 64e9 per second; L2 400 GB/s; HBM 100 GB/s, 500 ns; no dispatch cost).
"""

from __future__ import annotations

from types import MappingProxyType

import pytest

from archsim import api
from archsim.api import load_hardware
from archsim.dtypes import DType
from archsim.gpu.engine import GpuSimulator
from archsim.hw.memory import Level, Placement
from archsim.ir.graph import OpGraph, Phase, Workload
from archsim.ir.ops import (
    AttentionContext, AttentionScore, Elementwise, FlashAttention, Gemm, Softmax, VectorWork,
)
from archsim.ir.tensor import Role, Tensor
from archsim.passes import compile_for, flash_attention
from archsim.sim.engine import Simulator, clear_caches
from tests.conftest import HW, ROOT, TPUV4I, TPUV4I_PLAIN, WORKLOADS, run_cli

GPU_PLAIN = ROOT / "tests" / "data" / "gpu_plain.yaml"
A100 = HW / "a100_80gb.yaml"
BF16 = DType.BF16
REL = 1e-12
US, NS = 1e-6, 1e-9


def flash(batch=1, group=1, q_len=128, kv_len=128, dh=128, causal=False, block=128, dtype=BF16, name="attn"):
    """A FlashAttention op with its tensors as the pass gives them: q [batch, group x q_len, dh],
    K^T [batch, dh, kv_len], V [batch, kv_len, dh], the context [batch x q_len, group x dh]."""
    q = Tensor(f"{name}.q", (batch, group * q_len, dh), dtype)
    k = Tensor(f"{name}.k", (batch, dh, kv_len), dtype)
    v = Tensor(f"{name}.v", (batch, kv_len, dh), dtype)
    out = Tensor(f"{name}.context", (batch * q_len, group * dh), dtype)
    return FlashAttention(f"{name}.flash", (q, k, v), (out,), batch, group, q_len, kv_len, dh, causal, block)


# -- the kernel's work: scores computed, MACs, vector work ------------------------------------

def test_non_causal_computes_every_score():
    op = flash(batch=2, group=3, q_len=300, kv_len=1000, dh=64)
    assert op.pairs == 300 * 1000
    # ceil(1000 / 128) = 8: every row passes all 8 key blocks, in 3 query blocks of a head
    assert op.row_blocks == 300 * 8 and op.tiles == 3 * 8
    # Q K^T and P V: 64 MACs per score each, over 2 x 3 heads
    assert op.macs == 2 * (2 * 3) * 300_000 * 64


def test_causal_prefill_skips_the_key_blocks_after_each_query_block():
    # 300 queries over their own 300 keys, blocks of 128: query blocks of 128, 128 and 44 rows,
    # whose last queries see keys up to 128, 256 and 300: they compute 1, 2 and 3 key blocks
    # (128, 256 and 384 keys, the last block capped at the 300 keys there are)
    op = flash(q_len=300, kv_len=300, causal=True)
    assert op.pairs == 128 * 128 + 128 * 256 + 44 * 300 == 62_352
    assert op.macs == 2 * 62_352 * 128
    # 1 + 2 + 3 key blocks: 6 tiles; rows x their key blocks: 128 + 256 + 132 = 516 rescales
    assert op.tiles == 6 and op.row_blocks == 128 * 1 + 128 * 2 + 44 * 3
    # a whole number of blocks: the diagonal blocks computed whole, about half and the diagonal
    assert flash(q_len=256, kv_len=256, causal=True).pairs == 128 * 128 + 128 * 256
    # 2 batch x 4 query heads: the same per head
    big = flash(batch=2, group=4, q_len=300, kv_len=300, causal=True)
    assert big.pairs == 62_352 and big.macs == 2 * 8 * 62_352 * 128


def test_causal_decode_sees_every_key():
    # one query, the last of 1000 positions: all 1000 keys (8 blocks, the last capped at 1000)
    op = flash(q_len=1, kv_len=1000, causal=True)
    assert op.pairs == 1000
    assert op.row_blocks == 8 and op.tiles == 8
    assert op.macs == 2 * 1000 * 128


def test_causal_queries_after_a_longer_kv_cache():
    # 100 queries at positions 900 .. 999 over 1000 keys: one query block of 100 rows, its last
    # query sees all 1000 keys (ceil(1000 / 128) x 128 = 1024, capped at 1000)
    assert flash(q_len=100, kv_len=1000, causal=True).pairs == 100 * 1000
    # blocks of 32: query blocks of 32, 32, 32 and 4 rows whose last queries sit at positions
    # 931, 963, 995 and 999, seeing 932, 964, 996 and 1000 keys: rounded up to whole key blocks,
    # 30 x 32 = 960, 31 x 32 = 992, 32 x 32 = 1024 -> 1000, and 1000
    op = flash(q_len=100, kv_len=1000, causal=True, block=32)
    assert op.pairs == 32 * 960 + 32 * 992 + 32 * 1000 + 4 * 1000 == 98_464
    assert op.macs == 2 * 98_464 * 128


def test_causal_needs_the_queries_to_be_among_the_keys():
    with pytest.raises(ValueError, match="causal queries"):
        flash(q_len=10, kv_len=9, causal=True)
    with pytest.raises(ValueError, match="block must be positive"):
        flash(block=0)


def test_vector_work_of_a_small_case_term_by_term():
    # batch 2, 3 query heads a KV head: 6 heads, each 4 queries over 20 keys of dh 8, blocks of 8
    op = flash(batch=2, group=3, q_len=4, kv_len=20, dh=8, block=8)
    scores, rows, kv_blocks, dh = 6 * 4 * 20, 6 * 4, 3, 8  # 480 scores, 24 rows, ceil(20 / 8) blocks
    assert (op.pairs, op.row_blocks, op.tiles) == (80, 4 * kv_blocks, kv_blocks)
    # per score 3 ALU (running max, subtract, row sum): 1440; per row and key block 2 + dh
    # (rescaled sum and the output row rescaled): 24 x 3 x 10 = 720; per row at the end dh
    # (the output row scaled by 1 / sum): 24 x 8 = 192
    alu = 3 * scores + rows * kv_blocks * (2 + dh) + rows * dh
    assert alu == 1440 + 720 + 192 == 2352
    # an exp per score and one per row and key block (the rescale factor): 480 + 72; one
    # reciprocal per row: 24
    exps = scores + rows * kv_blocks
    assert op.vector_work == VectorWork(2352, 552 + 24, (("exp", 552), ("reciprocal", 24)))
    assert exps == 552


def test_causal_vector_work_counts_each_query_blocks_own_key_blocks():
    # 20 queries over their 20 keys, dh 8, blocks of 8: query blocks of 8, 8 and 4 rows compute
    # 8, 16 and 20 keys (1, 2 and 3 key blocks): 272 scores, 8 x 1 + 8 x 2 + 4 x 3 = 36 row-blocks
    op = flash(q_len=20, kv_len=20, dh=8, block=8, causal=True)
    assert op.pairs == 8 * 8 + 8 * 16 + 4 * 20 == 272
    alu = 3 * 272 + 36 * (2 + 8) + 20 * 8  # 1336
    assert op.vector_work == VectorWork(alu, 272 + 36 + 20, (("exp", 272 + 36), ("reciprocal", 20)))


# -- the pass ---------------------------------------------------------------------------------

def triple(prefix="l0.attn", batch=2, group=2, q_len=3, kv_len=5, dh=4, causal=True, x=None):
    """An attention's three ops as archsim.ir.transformer builds them, and its tensors."""
    m = group * q_len
    q = x or Tensor(f"{prefix}.q", (batch * q_len, group * dh), BF16)
    k = Tensor(f"{prefix}.k_cache", (batch, dh, kv_len), BF16, Role.KV_CACHE)
    v = Tensor(f"{prefix}.v_cache", (batch, kv_len, dh), BF16, Role.KV_CACHE)
    scores = Tensor(f"{prefix}.scores", (batch, m, kv_len), BF16)
    probs = Tensor(f"{prefix}.probs", (batch, m, kv_len), BF16)
    context = Tensor(f"{prefix}.context", (batch * q_len, group * dh), BF16)
    ops_ = [AttentionScore(f"{prefix}.score", (q, k), (scores,), batch, m, dh, kv_len, True,
                           q_len if causal else 0),
            Softmax(f"{prefix}.softmax", (scores,), (probs,), batch * m, kv_len),
            AttentionContext(f"{prefix}.context_mm", (probs, v), (context,), batch, m, kv_len, dh, True)]
    return ops_, dict(q=q, k=k, v=v, scores=scores, probs=probs, context=context)


def project(name, x, out_name):
    w = Tensor(f"{name}.weight", (x.shape[1], x.shape[1]), BF16, Role.WEIGHT)
    return Gemm(name, (x, w), (Tensor(out_name, x.shape, BF16),), 1, x.shape[0], x.shape[1], x.shape[1], False)


def test_the_pass_replaces_each_triple_by_one_kernel_in_place():
    # two layers of attention, each between projections; batch 2 x 2 query heads of 3 queries
    # over 5 keys of dh 4, causal: the kernel is (batch 2, group 2, q_len 3, kv_len 5, dh 4)
    x = Tensor("x", (6, 8), BF16)
    first = project("l0.q", x, "l0.attn.q")
    a0, t0 = triple("l0.attn", x=first.outputs[0])
    mid = project("l0.o", t0["context"], "l0.out")
    a1, t1 = triple("l1.attn", x=mid.outputs[0], causal=False)
    last = project("l1.o", t1["context"], "l1.out")
    graph = OpGraph([first, *a0, mid, *a1, last])
    work = Workload("w", (Phase("p", graph, 3),))
    lowered = flash_attention(work, 64)
    phase, = lowered.phases
    assert (phase.name, phase.repeat) == ("p", 3)
    names = [op.name for op in phase.graph.ops()]
    assert names == ["l0.q", "l0.attn.flash", "l0.o", "l1.attn.flash", "l1.o"]
    f0, f1 = (op for op in phase.graph.ops() if isinstance(op, FlashAttention))
    assert (f0.batch, f0.group, f0.q_len, f0.kv_len, f0.dh, f0.causal, f0.block) == (2, 2, 3, 5, 4, True, 64)
    assert f0.inputs == (t0["q"], t0["k"], t0["v"]) and f0.outputs == (t0["context"],)
    # not causal: the query heads of a KV head and their queries are all rows alike (m = 6)
    assert (f1.batch, f1.group, f1.q_len, f1.kv_len, f1.causal) == (2, 1, 6, 5, False)
    # the same MACs as the dense pair of matmuls when nothing is masked: 2 x 2 x 6 x 5 x 4
    assert f1.macs == a1[0].macs + a1[2].macs == 2 * 2 * 6 * 5 * 4
    # no score or probability tensor left: no footprint
    tensors = lowered.tensors()
    for t in (t0, t1):
        assert t["scores"].name not in tensors and t["probs"].name not in tensors
        assert t["context"].name in tensors and t["k"].name in tensors
    assert work.tensors()[t0["scores"].name] == t0["scores"]  # the input workload is untouched


def test_a_triple_whose_scores_or_probs_have_another_reader_is_left_alone():
    for shared in ("scores", "probs"):
        ops_, t = triple()
        # a reader of the tensor after the softmax (or the context), so that it is the second
        # reader in the graph's order
        spy = Elementwise("spy", (t[shared],), (Tensor("spy.out", t[shared].shape, BF16),),
                          t[shared].shape[0] * t[shared].shape[1], t[shared].shape[2], "copy")
        graph = OpGraph([*ops_, spy])
        lowered = flash_attention(Workload("w", (Phase("p", graph),)), 128)
        assert [op.name for op in lowered.phases[0].graph.ops()] == [op.name for op in graph.ops()], shared
        assert t["scores"].name in lowered.tensors() and t["probs"].name in lowered.tensors()
    # a softmax not followed by a context matmul: left alone
    ops_, t = triple()
    other = Elementwise("scale", (t["probs"],), (Tensor("p2", t["probs"].shape, BF16),), 2 * 6, 5, "copy")
    graph = OpGraph([*ops_[:2], other])
    assert flash_attention(Workload("w", (Phase("p", graph),)), 128).phases[0].graph is graph


def test_the_pass_on_bundled_workloads():
    # LLaMA-2-7B layer decode: 1 sequence x 32 KV heads, 1 query each over the 2048-entry cache,
    # dh 128; q_len 1 (one decode query per sequence)
    w = api.load_workload(WORKLOADS / "llama2_7b_layer_decode.yaml")
    before = [op.name for op in w.phases[0].graph.ops()]
    lowered = flash_attention(w, 128)
    after = [op.name for op in lowered.phases[0].graph.ops()]
    i = before.index("block.attn.score")
    assert before[i:i + 3] == ["block.attn.score", "block.attn.softmax", "block.attn.context_mm"]
    assert after == before[:i] + ["block.attn.flash"] + before[i + 3:]
    op = list(lowered.phases[0].graph.ops())[i]
    # a decoder layer (causal: true in the workload): its one query sees every cached key
    assert (op.batch, op.group, op.q_len, op.kv_len, op.dh, op.causal) == (32, 1, 1, 2048, 128, True)
    assert [t.name for t in op.inputs] == ["block.attn.q.out", "block.attn.k_cache", "block.attn.v_cache"]
    assert "block.attn.scores" in w.tensors() and "block.attn.scores" not in lowered.tensors()
    assert "block.attn.probs" not in lowered.tensors()
    # LLaMA-3-8B (32 heads, 8 KV heads, dh 128), a 300-token prompt: causal, 4 query heads a KV
    # head; the decode step after it attends to 301 keys with one query
    llm = api.load_workload(WORKLOADS / "llama3_8b.yaml", ["prompt_len=300", "output_len=2"])
    kernels = {p.name: [op for op in p.graph.ops() if isinstance(op, FlashAttention)]
               for p in flash_attention(llm, 128).phases}
    (pre,), (dec,) = kernels["prefill"], kernels["decode@301"]
    assert (pre.batch, pre.group, pre.q_len, pre.kv_len, pre.causal, pre.copies) == (8, 4, 300, 300, True, 32)
    assert (dec.batch, dec.group, dec.q_len, dec.kv_len, dec.causal) == (8, 4, 1, 301, True)
    assert pre.name == "layers.attn.flash"
    # a DiT-XL/2 block at 512 x 512: 8 images x 16 heads, 1024 tokens over 1024, dh 72, not causal
    dit = flash_attention(api.load_workload(WORKLOADS / "dit_xl_2_block_512.yaml"), 128)
    (kernel,) = [op for op in dit.phases[0].graph.ops() if isinstance(op, FlashAttention)]
    assert (kernel.name, kernel.batch, kernel.group, kernel.q_len, kernel.kv_len, kernel.dh, kernel.causal) == (
        "blocks.attn.flash", 128, 1, 1024, 1024, 72, False)
    assert not [t for t in dit.tensors() if t.endswith((".scores", ".probs"))]


def test_flash_attention_off_changes_nothing():
    # profile none, or none with the flag false: the workload object itself is costed, and every
    # result is the same, bit for bit (the caches cleared between, so neither run reads the
    # other's costs); on: the DiT block's attention is one kernel and the run differs. (Checked
    # once by hand against the commit before the lowering: the same numbers for these workloads.)
    for name in ("dit_xl_2_block_512.yaml", "gpt3_30b_layer_prefill.yaml"):
        w = api.load_workload(WORKLOADS / name)
        for path in (TPUV4I, A100):
            absent = load_hardware(path, ["compiler.profile=none"])
            off = load_hardware(path, ["compiler.profile=none", "compiler.flash_attention=false"])
            assert absent.compiler.flash is False and absent.compiler.block == 128
            assert compile_for(absent, w) is w and compile_for(off, w) is w
            clear_caches()
            a = api.simulate(absent, w)
            clear_caches()
            b = api.simulate(off, w)
            assert a.workload is w and b.workload is w
            assert a.latency_s == b.latency_s and a.energy.total == b.energy.total
            assert [(c.name, c.latency_s, c.energy.total) for c in a.ops] == [
                (c.name, c.latency_s, c.energy.total) for c in b.ops]
            on = api.simulate(load_hardware(path, ["compiler.profile=none", "compiler.flash_attention=true"]), w)
            assert on.latency_s != a.latency_s and [c.kind for c in on.ops].count("attention") == 1
    # the default profiles run flash attention: xla with 512-blocks, cuda with 128
    assert load_hardware(TPUV4I).compiler.flash and load_hardware(TPUV4I).compiler.block == 512
    assert load_hardware(A100).compiler.flash and load_hardware(A100).compiler.block == 128


def test_causal_mark_changes_no_dense_cost():
    # LLaMA-3-8B int8, a short prompt: the score ops carry causal_queries; stripped, the same
    # results bit for bit (the dense ops compute every score either way)
    import dataclasses
    llm = api.load_workload(WORKLOADS / "llama3_8b.yaml", ["prompt_len=64", "output_len=2", "precision.weights=int8",
                                                           "precision.activations=int8", "precision.kv=int8"])
    marked = [op for p in llm.phases for op in p.graph.ops() if isinstance(op, AttentionScore)]
    assert marked and all(op.causal_queries for op in marked)
    plain = Workload(llm.name, tuple(
        Phase(p.name, OpGraph([dataclasses.replace(op, causal_queries=0) if isinstance(op, AttentionScore) else op
                               for op in p.graph.ops()]), p.repeat) for p in llm.phases))
    for path in (TPUV4I, A100):
        hw = load_hardware(path, ["compiler.profile=none"])
        a, b = api.simulate(hw, llm), api.simulate(hw, plain)
        assert a.latency_s == b.latency_s and a.energy.total == b.energy.total


# -- cost on a TPU-style chip --------------------------------------------------------------------

def tpu_cost(op, *sets, levels=None):
    """One execution of ``op`` on the plain TPUv4i with its tensors in HBM (or ``levels``)."""
    hw = load_hardware(TPUV4I_PLAIN, list(sets))
    home = {t.name: (levels or {}).get(t.name, Level.HBM) for t in op.tensors}
    return Simulator(hw).op_cost(op, Placement(MappingProxyType(home), (), True), "p", 1)


def overlapped(t_mem, compute, steps, latency):
    return latency + max(t_mem, t_mem / steps + compute)


def test_tpu_flash_cost_non_causal():
    # 2 (sequence, KV head) pairs, 256 queries over 256 keys of dh 128, blocks of 128, bf16
    op = flash(batch=2, q_len=256, kv_len=256)
    c = tpu_cost(op)
    # Q K^T as a matmul of batch 2, m 256 (rows), k 128 (dh), n 256 (keys): ws keeps K^T's
    # 128 x 256 per batch element stationary: 1 row fold x 2 column folds x 2 = 4 folds, one on
    # each MXU; a fold loads 128 rows, streams 256, skews and drains 128 + 128 - 2:
    # 128 + 256 + 254 - 1 = 637 cycles (fewer units: 2 folds on one, more)
    # P V: m 256, k 256 (keys), n 128 (dh): 2 row folds x 1 column fold x 2 = 4 folds: 637
    array = 637 + 637
    # vector: 2 heads x 65,536 scores, 512 rows, 2 key blocks: ALU 3 x 131,072 + 512 x 2 x 130
    # + 512 x 128 = 591,872 at 2048 a cycle: 289; exp 131,072 + 1024 and 512 reciprocals at 2
    # cycles a lane: 132,608 x 2 / 1024 = 259; 548 cycles, under the arrays'
    assert op.vector_work.alu == 591_872 and op.vector_work.special == 132_608
    assert c.compute_cycles == array
    compute = array / 1.05e9
    assert c.compute_s == pytest.approx(compute, rel=REL)
    # memory: Q, K, V (131,072 B each, bf16) read once from HBM (one KV head's K + V, 128 KiB,
    # fits a quarter of VMEM), the context (131,072 B) written; each also in and out of VMEM
    q = 2 * 256 * 128 * 2
    assert c.traffic.read(Level.HBM) == 3 * q and c.traffic.write(Level.HBM) == q
    assert c.traffic.read(Level.VMEM) == 4 * q and c.traffic.write(Level.VMEM) == 4 * q
    hbm = 4 * q / 614e9  # 853.9 ns; VMEM's 8 x 131,072 B at 13.5 TB/s: 77.7 ns
    assert c.memory_s == pytest.approx(hbm, rel=REL)
    # overlapped over 2 x 2 query blocks x 2 key blocks = 8 steps, HBM's 555 ns exposed
    assert c.latency_s == pytest.approx(overlapped(hbm, compute, 8, 555 * NS), rel=REL)
    assert c.macs == op.macs == 2 * 2 * 65_536 * 128
    assert c.bottleneck == "mxu" and c.kind == "attention"


def test_tpu_flash_cost_causal_uses_the_keys_computed():
    # 300 causal queries over 300 keys, dh 128: 62,352 scores, 208 keys a row on average
    # (ceil(62,352 / 300)); Q K^T: m 300, k 128, n 208: 1 x 2 folds, on 4 MXUs each fold's stream
    # split over 2 units: 128 + ceil(300 / 2) + 254 - 1 = 531 cycles (on 2 or 3 units 128 + 300 +
    # 253 = 681); P V: m 300, k 208, n 128: 2 x 1 folds, likewise 531
    op = flash(q_len=300, kv_len=300, causal=True)
    c = tpu_cost(op)
    array = 531 + 531
    # vector: 62,352 x 3 + 300 x 2 x 130 + 300 x 128 = 303,456 ALU (148.2 cycles) and
    # 62,352 + 600 + 300 = 63,252 transcendentals (123.5 cycles): 272 cycles, under the arrays'
    assert c.compute_cycles == array
    t = 76_800  # Q, K, V and the context: 300 x 128 x 2 B each
    hbm = 4 * t / 614e9
    assert c.memory_s == pytest.approx(hbm, rel=REL)
    # 3 query blocks x 2 key blocks = 6 steps
    assert c.latency_s == pytest.approx(overlapped(hbm, array / 1.05e9, 6, 555 * NS), rel=REL)
    assert c.tiling == "flash 128x128 blocks, causal"


def test_tpu_flash_cost_vector_bound():
    # the same kernel as test_tpu_flash_cost_non_causal with 8 lanes (a tiny VPU): ALU 591,872
    # at 16 a cycle = 36,992 and 132,608 transcendentals x 2 / 8 = 33,152: 70,144 cycles, more
    # than the arrays' 1274
    op = flash(batch=2, q_len=256, kv_len=256)
    c = tpu_cost(op, "vpu.lanes=8")
    assert c.compute_cycles == 36_992 + 33_152
    assert c.bottleneck == "vpu"
    hbm = 4 * 131_072 / 614e9
    assert c.latency_s == pytest.approx(overlapped(hbm, 70_144 / 1.05e9, 8, 555 * NS), rel=REL)


def test_tpu_reads_k_and_v_once_per_query_block_when_a_head_does_not_fit_a_quarter_of_vmem():
    # batch 2, 2 query heads of 128 queries: 256 rows, 2 query blocks; one KV head's K + V is
    # 2 x 256 x 128 x 2 B = 128 KiB: read once with VMEM >= 512 KiB, twice below
    op = flash(batch=2, group=2, q_len=128, kv_len=256)
    q, kv = 2 * 256 * 128 * 2, 2 * 2 * 256 * 128 * 2  # Q 131,072 B; K + V 262,144 B
    once = tpu_cost(op, "vmem.capacity=512 KiB")
    twice = tpu_cost(op, "vmem.capacity=511 KiB")
    assert once.traffic.read(Level.HBM) == q + kv
    assert twice.traffic.read(Level.HBM) == q + 2 * kv
    assert twice.traffic.read(Level.VMEM) == q + 2 * kv + 131_072  # and the context read out
    assert twice.memory_s == pytest.approx((q + 2 * kv + 131_072) / 614e9, rel=REL)
    assert once.memory_s == pytest.approx((q + kv + 131_072) / 614e9, rel=REL)
    # the whole 16 MiB: once
    assert tpu_cost(op).traffic.read(Level.HBM) == q + kv
    # K and V at home in CMEM: their reads there, Q's from HBM
    cmem = tpu_cost(op, "vmem.capacity=511 KiB", levels={op.inputs[1].name: Level.CMEM, op.inputs[2].name: Level.CMEM})
    assert cmem.traffic.read(Level.CMEM) == 2 * kv and cmem.traffic.read(Level.HBM) == q


# -- cost on a GPU -------------------------------------------------------------------------------

def gpu_cost(op, *sets, warm=()):
    """One execution of ``op`` on the 4-SM test GPU, the inputs named in ``warm`` in L2."""
    hw = load_hardware(GPU_PLAIN, list(sets))
    home = {t.name: Level.CMEM if t.name in warm else Level.HBM for t in op.tensors}
    return GpuSimulator(hw).op_cost(op, Placement(MappingProxyType(home), (), True), "p", 1)


@pytest.mark.parametrize("batch,group", [(5, 1), (1, 5)])
def test_gpu_flash_waves_of_thread_blocks(batch, group):
    # 5 heads x 128 queries over 128 keys of dh 64, blocks of 128: 5 (KV head, query block)
    # thread blocks, either 5 KV heads of 1 query block or 1 KV head whose 5 query heads make
    # 640 rows = 5 query blocks; on 4 SMs two waves, each one block's MACs long:
    # 2 x 128 x 128 x 64 = 2,097,152 MACs a block at 1.024e12 MAC/s: 2 x 2.048 us = 4.096 us
    op = flash(batch=batch, group=group, q_len=128, kv_len=128, dh=64)
    assert op.macs == 5 * 2_097_152
    c = gpu_cost(op)
    assert c.compute_s == pytest.approx(4.096 * US, rel=REL)
    # vector: 81,920 scores, 640 rows, 1 key block: ALU 245,760 + 640 x 66 + 640 x 64 = 328,960
    # (1.285 us at 256e9/s); exp 81,920 + 640 and 640 reciprocals (1.3 us at 64e9/s)
    assert op.vector_work.alu == 328_960 and op.vector_work.special == 83_200
    # HBM: Q (81,920 B) and one K and V per KV head read, the context (81,920 B) written
    kv = batch * 128 * 64 * 2
    hbm = (81_920 + 2 * kv) / 100e9 + 81_920 / 100e9
    l2 = (81_920 + 2 * kv * (5 // batch) + 81_920) / 400e9  # K, V once per query block
    assert c.traffic.read(Level.HBM) == 81_920 + 2 * kv
    assert c.memory_s == pytest.approx(max(hbm, l2), rel=REL)
    assert c.latency_s == pytest.approx(500 * NS + 4.096 * US, rel=REL)
    assert c.tiling == "flash 128x128 blocks, 5 blocks in 2 waves"
    assert c.bottleneck == "mxu"
    # four blocks fill one wave: half the time
    assert gpu_cost(flash(batch=4, q_len=128, kv_len=128, dh=64)).compute_s == pytest.approx(2.048 * US, rel=REL)


def l2_case():
    # 1 KV head with 2 query heads of 256 queries (512 rows: 4 query blocks) over 256 keys, dh 64:
    # Q 65,536 B, K and V 32,768 B each, the context 65,536 B; 4 thread blocks, one wave:
    # 2 x 2 x 65,536 x 64 / 4 = 4,194,304 MACs a block: 4.096 us
    return flash(group=2, q_len=256, kv_len=256, dh=64)


def test_gpu_flash_reads_k_and_v_from_l2_once_per_query_block():
    op = l2_case()
    q, kv, out = 65_536, 2 * 32_768, 65_536  # Q; K + V; the context
    warm = gpu_cost(op, warm=tuple(t.name for t in op.inputs))
    # every input warm in L2: nothing read from HBM, the context written; L2 reads Q once and K
    # and V once per query block, 65,536 + 4 x 65,536, and the context
    assert warm.traffic.read(Level.HBM) == 0 and warm.traffic.write(Level.HBM) == out
    assert warm.traffic.read(Level.CMEM) == q + 4 * kv and warm.traffic.write(Level.CMEM) == out
    assert warm.traffic.read(Level.VMEM) == q + 4 * kv
    l2 = (q + 4 * kv + out) / 400e9  # 0.983 us; HBM's 65,536 B written: 0.655 us
    assert warm.memory_s == pytest.approx(l2, rel=REL)
    assert warm.compute_s == pytest.approx(4.096 * US, rel=REL)
    assert warm.latency_s == pytest.approx(500 * NS + 4.096 * US, rel=REL)
    # Q warm, K and V cold: K and V once from HBM into L2
    cold = gpu_cost(op, warm=(op.inputs[0].name,))
    assert cold.traffic.read(Level.HBM) == kv and cold.traffic.write(Level.CMEM) == kv + out
    assert cold.memory_s == pytest.approx((kv + out) / 100e9, rel=REL)
    # a slow L2 (40 GB/s): the L2 bounds the kernel
    slow = gpu_cost(op, "l2.bandwidth=40 GB/s", warm=tuple(t.name for t in op.inputs))
    assert slow.latency_s == pytest.approx(500 * NS + (q + 4 * kv + out) / 40e9, rel=REL)
    assert slow.bottleneck == "cmem"


def test_gpu_flash_softmax_on_the_special_units_and_the_alus():
    op = l2_case()
    # 2 heads x 65,536 scores, 512 rows, 2 key blocks: ALU 393,216 + 512 x 2 x 66 + 512 x 64 =
    # 493,568; transcendentals 131,072 + 1024 + 512 = 132,608
    assert op.vector_work == VectorWork(493_568, 132_608, (("exp", 132_096), ("reciprocal", 512)))
    # 1 special op a cycle a SM: 4e9/s, 33.15 us, over the tensor cores' 4.096 us
    sfu = gpu_cost(op, "sm.special_ops_per_cycle=1")
    assert sfu.compute_s == pytest.approx(132_608 / 4e9, rel=REL)
    assert sfu.latency_s == pytest.approx(500 * NS + 132_608 / 4e9, rel=REL)
    assert sfu.bottleneck == "vpu"
    # 4 ALU ops a cycle a SM: 16e9/s, 30.85 us
    alu = gpu_cost(op, "sm.alu_ops_per_cycle=4")
    assert alu.compute_s == pytest.approx(493_568 / 16e9, rel=REL)


def test_gpu_flash_runs_in_a_whole_model():
    # the LLaMA-2-7B decode layer on the A100 with flash attention: one kernel instead of three
    hw = load_hardware(A100, ["compiler.flash_attention=true"])
    r = api.simulate(hw, api.load_workload(WORKLOADS / "llama2_7b_layer_decode.yaml"))
    kinds = [c.kind for c in r.ops]
    assert kinds.count("attention") == 1 and "softmax" not in kinds and "attn_score" not in kinds


# -- end to end and config -----------------------------------------------------------------------

LLAMA_4096_INT8 = ("--wset", "prompt_len=4096", "--wset", "precision.weights=int8", "--wset",
                   "precision.activations=int8", "--wset", "precision.kv=int8")


def test_llama2_7b_int8_4096_fits_one_tpuv4i_only_with_flash_attention():
    # dense: 32 heads x 4096 x 4096 int8 scores (512 MiB) and probabilities on top of 6.3 GiB of
    # weights and a 4096-token KV cache exceed the 8 GiB of HBM; flash attention keeps no score
    # matrix in memory
    args = ("run", str(TPUV4I), str(WORKLOADS / "llama2_7b.yaml"), *LLAMA_4096_INT8)
    dense = run_cli(*args, "--set", "compiler.flash_attention=false")
    assert dense.returncode == 1 and "INFEASIBLE" in dense.stdout
    fused = run_cli(*args)  # the default (xla) runs flash attention
    assert fused.returncode == 0, fused.stderr
    assert "INFEASIBLE" not in fused.stdout and "latency" in fused.stdout


@pytest.mark.parametrize("setting,key", [("compiler.flash_attention=maybe", "compiler.flash_attention"),
                                         ("compiler.attention_block=0", "compiler.attention_block")])
def test_bad_compiler_settings_are_usage_errors(setting, key, tmp_path):
    layer = str(WORKLOADS / "llama2_7b_layer_decode.yaml")
    for chip in (TPUV4I, A100):
        r = run_cli("run", str(chip), layer, "--set", setting)
        assert r.returncode == 2 and key in r.stderr, r.stderr
    # and in a config file, of either kind
    field, value = setting.split(".", 1)[1].split("=")
    for chip in (TPUV4I, A100):
        path = tmp_path / f"{chip.stem}_bad.yaml"
        path.write_text(f"extends: {chip}\nname: bad\ncompiler: {{{field}: {value}}}\n")
        r = run_cli("run", str(path), layer)
        assert r.returncode == 2 and key in r.stderr and str(path) in r.stderr, r.stderr


def test_attention_block_setting_changes_the_causal_prefills_pairs():
    # LLaMA-3-8B, a 300-token prompt (8 KV heads x 4 query heads, dh 128, 32 layers) on the A100:
    # blocks of 64: query blocks of 64 x 4 and 44 rows computing 64, 128, 192, 256 and 300 keys,
    # 64 x 640 + 44 x 300 = 54,160 scores a head; blocks of 128: 62,352
    w = api.load_workload(WORKLOADS / "llama3_8b.yaml", ["prompt_len=300", "output_len=1"])
    expected = {64: 64 * (64 + 128 + 192 + 256) + 44 * 300, 128: 128 * 128 + 128 * 256 + 44 * 300}
    assert expected == {64: 54_160, 128: 62_352}
    for block, pairs in expected.items():
        sets = ["compiler.flash_attention=true"] + ([f"compiler.attention_block={block}"] if block != 128 else [])
        hw = load_hardware(A100, sets)
        kernel, = [op for op in compile_for(hw, w).phases[0].graph.ops() if isinstance(op, FlashAttention)]
        assert (kernel.block, kernel.pairs) == (block, pairs)
        cost, = [c for c in api.simulate(hw, w).ops if c.kind == "attention"]
        assert (cost.macs, cost.copies) == (2 * 8 * 4 * pairs * 128, 32)


def test_xla_decodes_with_the_dense_ops_and_flashes_the_prompt():
    # MaxText decodes with XLA's dot-product attention, flash (splash) for prompts only
    # [PALLAS-FLASH]: a decode step's attention (one causal query a sequence) stays three ops on
    # the xla profile; the prompt's is one kernel. cuda flashes both; flash_decode overrides.
    llm = api.load_workload(WORKLOADS / "llama3_8b.yaml", ["prompt_len=300", "output_len=2"])

    def kinds(hw):
        compiled = compile_for(hw, llm)
        return {p.name: sorted({op.kind for op in p.graph.ops()} & {"attention", "attn_score"}) for p in compiled.phases}

    prompt, step = (p.name for p in llm.phases)
    assert kinds(load_hardware(TPUV4I)) == {prompt: ["attention"], step: ["attn_score"]}
    assert kinds(load_hardware(A100)) == {prompt: ["attention"], step: ["attention"]}
    assert kinds(load_hardware(TPUV4I, ["compiler.flash_decode=true"])) == {prompt: ["attention"], step: ["attention"]}
