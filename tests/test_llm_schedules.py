"""LLM decode schedules (archsim/workloads/llm_schedules*.py): each schedule's phases, MACs and
bytes against a hand count on a toy model, and the acceptance inputs.

The toy target: 2 layers, hidden d = 64, 4 heads of dh = 16 sharing 2 KV heads (GQA, group 2),
gated SiLU MLP of 128, vocab 100, RMSNorm, untied head, bf16 (2 bytes). Per layer, for
``Tokens(b, q, kv)`` (rows = b q):

- projections q, k, v, o: rows x (64*64 + 64*32 + 64*32 + 64*64) = rows x 12,288 MACs;
- attention, scores and context: 2 x b x 4 heads x q x 16 x kv = 128 b q kv MACs;
- MLP: 3 x rows x 64 x 128 = rows x 24,576 MACs;
- so 36,864 rows + 128 b q kv per layer; the LM head 64 x 100 = 6,400 MACs per logits row.

The toy draft model: 1 layer, d = 32, 2 heads of 16 (no GQA), MLP 64, vocab 100: per layer
rows x (4 x 32*32 + 3 x 32*64) = 10,240 rows + 2 x b x 2 x q x 16 x kv = 64 b q kv MACs, head
3,200 MACs per row.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from archsim.errors import ConfigError
from archsim.ir.summary import summarize
from archsim.workloads.base import PathResolver
from archsim.workloads.llm import LLMWorkload
from archsim.workloads.llm_schedules import parse_llm_schedule
from archsim.workloads.llm_schedules_inputs import Acceptance, chain_probabilities

TOY = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
       "num_key_value_heads": 2, "vocab_size": 100, "rms_norm_eps": 1e-5}
DRAFT = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
         "vocab_size": 100, "rms_norm_eps": 1e-5}


def layer(b, q, kv):
    return 36_864 * b * q + 128 * b * q * kv


def draft_layer(b, q, kv):
    return 10_240 * b * q + 64 * b * q * kv


def build(schedule, prompt=8, output=9, batch=1, groups=1, **extra):
    spec = LLMWorkload.model_validate({"kind": "llm", "name": "toy", "model": TOY, "batch": batch,
                                       "prompt_len": prompt, "output_len": output, "decode_groups": groups,
                                       "schedule": schedule, **extra})
    return spec.build(PathResolver())


def phases(workload):
    return {p.name: (p.repeat, p.graph.macs) for p in workload.phases}


# -- acceptance ---------------------------------------------------------------------------------

def test_constant_rate_gives_the_closed_form_tokens_per_round():
    # (1 - a^(k+1)) / (1 - a): a = 0.5, k = 3: (1 - 1/16) / 0.5 = 1.875
    assert Acceptance(0.5).tokens_per_round(3) == pytest.approx(1.875)
    assert Acceptance(0.0).tokens_per_round(3) == 1.0
    assert Acceptance(1.0).tokens_per_round(3) == 4.0
    # the distribution: 0.5, 0.25, 0.125, 0.125 (all three accepted: a^3)
    assert np.allclose(Acceptance(0.5).probabilities(3), [0.5, 0.25, 0.125, 0.125])


def test_a_curve_is_conditional_per_position():
    # P(>=1) = 0.9, P(>=2) = 0.9*0.5 = 0.45, P(>=3) = 0.45*0.2 = 0.09: 1 + 0.9 + 0.45 + 0.09
    assert Acceptance([0.9, 0.5, 0.2]).tokens_per_round(3) == pytest.approx(2.44)
    assert np.allclose(chain_probabilities(np.array([0.9, 0.5])), [0.1, 0.45, 0.45])
    # a rate per draft position: a curve shorter or longer than the drafts is an error
    for curve in ([0.9, 0.5], [0.9, 0.5, 0.2, 0.7]):
        with pytest.raises(ConfigError, match=f"{len(curve)} positions; the schedule drafts 3"):
            Acceptance(curve).tokens_per_round(3)


def test_a_recorded_trace(tmp_path):
    path = tmp_path / "accept.csv"
    path.write_text("accepted,count\n0,2\n3,1\n1,1\n")
    # 4 verifications: 0,0,3,1 accepted: mean 1, so 2 tokens per round
    assert Acceptance(str(path)).tokens_per_round(3) == pytest.approx(2.0)
    assert np.allclose(Acceptance(str(path)).probabilities(3), [0.5, 0.25, 0.0, 0.25])


@pytest.mark.parametrize("body, expected", [
    ("accepted\n5\n", r"accept\.csv:2: accepted: 5 drafts accepted, but the schedule drafts 3"),
    ("accepted\nx\n", r"accept\.csv:2: accepted: expected a whole number"),
    ("taken\n1\n", r"accept\.csv:1: unknown column 'taken'"),
    ("accepted,count\n1,0\n", r"accept\.csv:2: count: expected a whole number from 1"),
    ("accepted\n", r"accept\.csv: the trace has no verifications"),
    ("accepted,count\n1\n", r"accept\.csv:2: the row has 1 cells, expected 2"),
])
def test_bad_acceptance_traces_name_file_line_and_column(tmp_path, body, expected):
    path = tmp_path / "accept.csv"
    path.write_text(body)
    with pytest.raises(ConfigError, match=expected):
        Acceptance(str(path)).tokens_per_round(3)


@pytest.mark.parametrize("text, expected", [
    ("draft:model=m.json,k=0", "schedule.k: Input should be greater than 0"),
    ("draft:model=m.json,acceptance=1.5", "schedule.acceptance"),
    ("draft:model=m.json,acceptance=-0.1", "schedule.acceptance"),
    ("medusa:speed=2", "schedule.speed: unknown key"),
    ("medusa:heads=2,tree=[[0],[0,0],[0,0,0]]", "schedule.tree: the tree is 3 deep; 2 heads"),
    ("medusa:tree=[[0,1]]", r"schedule.tree: path \[0, 1\] has no parent"),
    ("beam", "unknown decode schedule 'beam'"),
    ("layer_skip", "schedule.skip_ratio: give skip_ratio or trace"),
    ("layer_skip:skip_ratio=1", "skip_ratio below 1"),
])
def test_bad_schedules_are_one_line_errors(text, expected):
    with pytest.raises(ConfigError, match=expected):
        parse_llm_schedule(text)


# -- lowering: hand counts ----------------------------------------------------------------------

def test_vanilla_is_the_plain_llm_lowering():
    plain, vanilla = build(None), build("vanilla")
    assert phases(plain) == phases(vanilla)
    # prefill: 2 layers of Tokens(1, 8, 8) + 1 logits row; decode step j attends to 8 + j keys
    assert phases(plain)["prefill"] == (1, 2 * layer(1, 8, 8) + 6_400)
    assert vanilla.macs == 2 * layer(1, 8, 8) + 6_400 + sum(2 * layer(1, 1, 8 + j) + 6_400 for j in range(1, 9))


def test_draft_and_verify_counts():
    # a = 0.5, k = 3: 1.875 tokens a round; 8 decode tokens: ceil(8 / 1.875) = 5 rounds. One
    # group of 4 rounds at round 1.5: 8 + 1.875 x 1.5 = 10.8 -> 11 keys; the last round alone at
    # 8 + 1.875 x 4 = 15.5 -> 16. Draft steps at context + (k+1)/2 = +2 keys, k = 3 per round;
    # the verify pass: 4 tokens against context + 4 keys, 4 logits rows.
    w = build({"name": "draft", "model": DRAFT, "k": 3, "acceptance": 0.5})
    got = phases(w)
    assert list(got) == ["prefill", "draft prefill", "draft@11", "verify@11", "draft@16", "verify@16"]
    assert got["draft prefill"] == (1, draft_layer(1, 8, 8) + 3_200)
    assert got["draft@11"] == (12, draft_layer(1, 1, 13) + 3_200)
    assert got["verify@11"] == (4, 2 * layer(1, 4, 15) + 4 * 6_400)
    assert got["draft@16"] == (3, draft_layer(1, 1, 18) + 3_200)
    assert got["verify@16"] == (1, 2 * layer(1, 4, 20) + 4 * 6_400)
    # the 8 decode tokens come from every phase after prefill (the draft's prompt pass too)
    assert w.generation.tokens == 9 and w.generation.step_tokens == 8
    assert w.generation.step_phases == ("draft prefill", "draft@11", "verify@11", "draft@16", "verify@16")
    verify = {p.name: p for p in summarize(w).phases}["verify@11"]
    # bytes of one verify pass (bf16): every target weight once (layers 2 x 36,864, head 6,400;
    # the embedding table read for its 4 rows of 100), K and V caches of 15 entries read and 4 written
    weights = 2 * (2 * 36_864 + 6_400 + 4 / 100 * 6_400)
    assert verify.weight_bytes_read == pytest.approx(weights)
    assert verify.cache_bytes_read == 2 * 2 * (2 * 15 * 16) * 2
    assert verify.cache_bytes_written == 2 * 2 * (2 * 4 * 16) * 2
    # the rollback is a slice (DynamicLayer.crop): no op moves a byte for it
    assert not any("crop" in op.name or "rollback" in op.name for p in w.phases for op in p.graph.ops())


def test_draft_weights_are_their_own_storage():
    w = build({"name": "draft", "model": DRAFT, "k": 3, "acceptance": 0.5})
    params = summarize(w).params
    target = 2 * 36_864 + 2 * 6_400
    draft = 4 * 32 * 32 + 3 * 32 * 64 + 2 * 3_200
    assert params == target + draft


def test_a_draft_tree_feeds_each_depth():
    # tree [[0],[1],[0,0]]: widths 1 (root), 2, 1; draft step 0 feeds the root (1 token, context
    # + 1 keys), step 1 the 2 depth-1 nodes (context + 3 keys); the verify pass 4 tokens.
    # a = 0 with depth 2: 1 token a round, 8 rounds: 7 at round 3 (8 + 3 = 11), the last at 15
    w = build({"name": "draft", "model": DRAFT, "tree": [[0], [1], [0, 0]], "acceptance": 0.0})
    got = phases(w)
    assert got["draft@11 d0"] == (7, draft_layer(1, 1, 12) + 3_200)
    assert got["draft@11 d1"] == (7, draft_layer(1, 2, 14) + 2 * 3_200)
    assert got["verify@11"] == (7, 2 * layer(1, 4, 15) + 4 * 6_400)
    assert got["verify@15"] == (1, 2 * layer(1, 4, 19) + 4 * 6_400)


def test_self_speculation_counts():
    # exit after layer 1 of 2, k = 2, a = 1: 3 tokens a round, ceil(8 / 3) = 3 rounds: 2 at
    # round 0.5 (8 + 1.5 -> 10 keys, halves up), the last at 8 + 6 = 14. Draft: layer 1 on one
    # token at context + 1.5 -> +2 (11.5 -> 12), head on 1 row, k = 2 per round. Verify: layer 1 on
    # the last draft (context + 3 keys), layer 2 on 3 tokens (context + 3 keys), head on 3 rows.
    w = build({"name": "self_spec", "exit_layer": 1, "k": 2, "acceptance": 1.0})
    got = phases(w)
    assert got["draft@10"] == (4, layer(1, 1, 12) + 6_400)
    assert got["verify@10"] == (2, layer(1, 1, 13) + layer(1, 3, 13) + 3 * 6_400)
    assert got["verify@14"] == (1, layer(1, 1, 17) + layer(1, 3, 17) + 3 * 6_400)
    assert got["prefill"] == (1, 2 * layer(1, 8, 8) + 6_400)
    assert summarize(w).params == 2 * 36_864 + 2 * 6_400  # two stacks, the model's own weights
    verify = {p.name: p for p in summarize(w).phases}["verify@10"]
    # bf16: both layers' weights and the head once, the embedding for its 1 row; K/V of both
    # layers read at 13 keys; written: 1 entry in layer 1, 3 in layer 2 (2 KV heads of 16)
    assert verify.weight_bytes_read == pytest.approx(2 * (2 * 36_864 + 6_400 + 1 / 100 * 6_400))
    assert verify.cache_bytes_read == 2 * 2 * (2 * 13 * 16) * 2
    assert verify.cache_bytes_written == (1 + 3) * 2 * (2 * 16) * 2
    draft = {p.name: p for p in summarize(w).phases}["draft@10"]
    assert draft.weight_bytes_read == pytest.approx(2 * (36_864 + 6_400 + 1 / 100 * 6_400))  # layer 1 only


def test_medusa_counts():
    # heads 2 (1 ResBlock d x d and a head d x 100 each), tree [[0],[1],[0,0]] of 4 tokens, depth
    # 2; curve [0.5, 0.4]: P(>=1) = 0.5, P(>=2) = 0.2: 1.7 tokens a round; ceil(8 / 1.7) = 5
    # rounds: 4 at 8 + 1.7 x 1.5 = 10.55 -> 11 keys, the last at 8 + 6.8 = 14.8 -> 15.
    # Heads on every one of the 4 tree rows: 2 x 4 x (64*64 + 64*100); prefill: heads and the
    # base head on all 8 prompt rows.
    w = build({"name": "medusa", "heads": 2, "tree": [[0], [1], [0, 0]], "acceptance": [0.5, 0.4]})
    got = phases(w)
    heads = 2 * (64 * 64 + 64 * 100)
    assert got["prefill"] == (1, 2 * layer(1, 8, 8) + 8 * 6_400 + 8 * heads)
    assert got["verify@11"] == (4, 2 * layer(1, 4, 15) + 4 * 6_400 + 4 * heads)
    assert got["verify@15"] == (1, 2 * layer(1, 4, 19) + 4 * 6_400 + 4 * heads)
    # the accepted path's K/V copied into place: one entry per decode token, per layer K and V
    compact = {p.name: p for p in summarize(w).phases}["kv compact"]
    assert got["kv compact"] == (8, 0)
    # per layer, K and V: one entry of 2 KV heads x 16 (bf16) gathered from the cache, written back
    assert compact.cache_bytes_read == 2 * 2 * (2 * 1 * 16) * 2
    assert compact.cache_bytes_written == 2 * 2 * (2 * 1 * 16) * 2
    # ResBlocks of a head share weights ([ResBlock] * n): 3 blocks cost 3x the MACs, not params
    deep = build({"name": "medusa", "heads": 2, "head_layers": 3, "tree": [[0], [1], [0, 0]], "acceptance": 0.5})
    assert summarize(deep).params == summarize(w).params
    assert phases(deep)["verify@11"][1] - phases(w)["verify@11"][1] == 4 * 2 * 2 * 64 * 64


def test_self_speculation_by_skipping_layers_counts():
    # Draft & Verify: drafts skip layer 1's attention and layer 0's MLP; k = 2, a = 0: 8 rounds,
    # 7 at 8 + 3 = 11 keys, the last at 15. A draft step: one attention (context + 1.5 -> 13
    # keys, 12.5 rounded up), one MLP, the head; the verify pass the full model on 3 tokens.
    w = build({"name": "ssd", "skip_attention": [1], "skip_mlp": [0], "k": 2, "acceptance": 0.0})
    got = phases(w)
    assert got["draft@11"] == (14, 12_288 + 128 * 13 + 24_576 + 6_400)
    assert got["verify@11"] == (7, 2 * layer(1, 3, 14) + 3 * 6_400)
    assert got["verify@15"] == (1, 2 * layer(1, 3, 18) + 3 * 6_400)
    draft = {p.name: p for p in summarize(w).phases}["draft@11"]
    # weights of one attention and one MLP, the head, one embedding row; one layer's K/V read
    assert draft.weight_bytes_read == pytest.approx(2 * (12_288 + 24_576 + 6_400 + 1 / 100 * 6_400))
    assert draft.cache_bytes_read == 2 * (2 * 13 * 16) * 2
    with pytest.raises(ValueError, match="layer 2 is past the model's last"):
        build({"name": "ssd", "skip_attention": [2]})
    with pytest.raises(ConfigError, match="unknown skip set"):
        parse_llm_schedule("ssd:skip=llama-9b")


def test_eagle_counts():
    # EAGLE-2 head: fc (2 x 64 -> 64), one layer of the target's shape, its own embedding, the
    # target's head. depth 1, top_k 2, a tree of 4 tokens (2 deep); a = 0: 1 token a round, 8
    # rounds, 7 at 11 keys, the last at 15. The head reads the 1 accepted token (context + 1 keys,
    # head on 1 row), then one expansion of 2 tokens at 11 + 1 + 2 = 14 keys (head on 2 rows);
    # the target verifies 4 tokens.
    w = build({"name": "eagle", "depth": 1, "top_k": 2, "total_tokens": 4, "acceptance": 0.0})
    got = phases(w)
    fc = 2 * 64 * 64
    assert got["draft@11"] == (7, fc + layer(1, 1, 12) + 6_400)
    assert got["draft expand@11"] == (7, 2 * fc + layer(1, 2, 14) + 2 * 6_400)
    assert got["verify@11"] == (7, 2 * layer(1, 4, 15) + 4 * 6_400)
    assert got["kv compact"] == (8, 0)
    compact = {p.name: p for p in summarize(w).phases}["kv compact"]
    assert compact.cache_bytes_read == compact.cache_bytes_written == 2 * 2 * (2 * 1 * 16) * 2
    # the head's first call reads the prompt (topK_generate without stable_kv): fc and its layer
    # on the 8 prompt tokens against 8 keys, the LM head on the last one; a decode-time phase
    assert list(got)[:2] == ["prefill", "eagle prefill"]
    assert got["eagle prefill"] == (1, 8 * fc + layer(1, 8, 8) + 6_400)
    assert got["eagle prefill"][1] == 8 * 8_192 + (8 * 36_864 + 128 * 64) + 6_400 == 375_040
    assert "eagle prefill" in w.generation.step_phases and w.generation.step_tokens == 8
    # the head's own embedding copy, fc and layer; the LM head is the target's
    assert summarize(w).params == (2 * 36_864 + 2 * 6_400) + (6_400 + fc + 36_864)
    expand = {p.name: p for p in summarize(w).phases}["draft expand@11"]
    assert expand.weight_bytes_read == pytest.approx(2 * (fc + 36_864 + 6_400 + 2 / 100 * 6_400))


def test_firp_counts():
    # predict at layer 1, k = 2, a = 0: 8 rounds, 7 at 8 + 3 = 11, the last at 15. Layer 1 on
    # 3 real tokens (context + 3 keys), the predictor 1 x 64 x 128, layer 2 on 5 tokens (context
    # + 5 keys), head on 5 rows.
    w = build({"name": "firp", "layer": 1, "k": 2, "acceptance": 0.0})
    got = phases(w)
    assert got["verify@11"] == (7, layer(1, 3, 14) + 64 * 128 + layer(1, 5, 16) + 5 * 6_400)
    assert got["verify@15"] == (1, layer(1, 3, 18) + 64 * 128 + layer(1, 5, 20) + 5 * 6_400)
    verify = {p.name: p for p in summarize(w).phases}["verify@11"]
    # the predictor's 64 x 128 weights beside the model's; K/V written: 3 entries in layer 1, 5 in 2
    assert verify.weight_bytes_read == pytest.approx(2 * (2 * 36_864 + 6_400 + 3 / 100 * 6_400 + 64 * 128))
    assert verify.cache_bytes_written == (3 + 5) * 2 * (2 * 16) * 2


def test_layer_skipping_counts(tmp_path):
    # skip 25% of 2 layers: 1.5 layers a token: half the steps run 1 layer, half 2. 8 decode
    # tokens: 7 at keys 9 + 3 = 12 (3 with 1 layer: round(3.5) = 4 with 2), the last at 16
    w = build({"name": "layer_skip", "skip_ratio": 0.25})
    got = phases(w)
    assert got["decode@12 1 layers"] == (3, layer(1, 1, 12) + 6_400)
    assert got["decode@12 2 layers"] == (4, 2 * layer(1, 1, 12) + 6_400)
    assert got["decode@16 2 layers"] == (1, 2 * layer(1, 1, 16) + 6_400)
    one = {p.name: p for p in summarize(w).phases}["decode@12 1 layers"]
    assert one.weight_bytes_read == pytest.approx(2 * (36_864 + 6_400 + 1 / 100 * 6_400))  # one layer's weights
    assert w.generation.step_phases == tuple(n for n in got if n != "prefill")
    # a trace: layer 0 skipped by 50% of tokens, layer 1 by 0%: the same 1.5 layers
    trace = tmp_path / "skip.csv"
    trace.write_text("layer,skip\n0,0.5\n1,0\n")
    assert phases(build({"name": "layer_skip", "trace": str(trace)})) == got
    # a policy MLP d x 8 and 8 x 2 on both layers, every step
    policy = phases(build({"name": "layer_skip", "skip_ratio": 0.25, "policy_hidden": 8}))
    assert policy["decode@12 1 layers"][1] - got["decode@12 1 layers"][1] == 2 * (64 * 8 + 8 * 2)


@pytest.mark.parametrize("body, expected", [
    ("layer,rate\n0,0.5\n", r"skip\.csv:1: unknown column 'rate'; expected the columns layer, skip"),
    ("layer,skip\n2,0.5\n", r"skip\.csv:2: layer: expected a layer from 0 to 1, got '2'"),
    ("layer,skip\n0,1\n", r"skip\.csv:2: skip: expected a skip rate in \[0, 1\), got '1'"),
    ("layer,skip\n0,x\n", r"skip\.csv:2: skip: expected a decimal number, got 'x'"),
    ("layer,skip\n0,0.1\n0,0.2\n", r"skip\.csv:3: a second row for layer 0 \(the first is at line 2\)"),
])
def test_bad_skip_traces_name_file_line_and_column(tmp_path, body, expected):
    trace = tmp_path / "skip.csv"
    trace.write_text(body)
    with pytest.raises(ConfigError, match=expected):
        build({"name": "layer_skip", "trace": str(trace)})


def test_rounds_shrink_with_acceptance():
    counts = [sum(p.repeat for p in build({"name": "draft", "model": DRAFT, "k": 3, "acceptance": a}).phases
                  if p.name.startswith("verify")) for a in (0.0, 0.5, 1.0)]
    assert counts == [8, 5, 2]  # 8 / 1, ceil(8 / 1.875), 8 / 4
    assert math.ceil(8 / 1.875) == 5


@pytest.mark.parametrize("schedule, key", [
    ({"name": "self_spec", "exit_layer": 2}, "exit_layer 2 must be below the model's 2 layers"),
    ({"name": "firp", "layer": 5}, "layer 5 must be below"),
])
def test_a_cut_past_the_model_is_an_error(schedule, key):
    with pytest.raises(ValueError, match=key):
        build(schedule)
