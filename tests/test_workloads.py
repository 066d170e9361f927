"""Workload extractors against published figures and closed-form counts."""

import json
import textwrap

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from archsim.api import load_hardware, load_workload, simulate
from archsim.ir.summary import summarize
from archsim.workloads.base import load_spec
from archsim.workloads.llm import decode_groups
from tests.conftest import TPUV4I, WORKLOADS, run_cli


def summary(path, *overrides):
    from archsim.config.loader import parse_overrides

    return summarize(load_workload(WORKLOADS / path, parse_overrides(overrides)))


def within(value, reference, tolerance):
    return abs(value / reference - 1) <= tolerance


# -- DiT ---------------------------------------------------------------------------------

@pytest.mark.parametrize("resolution, gmacs", [(256, 118.6), (512, 524.6)])
def test_dit_xl2_macs_per_forward(resolution, gmacs):
    # docs/sources/papers.md#dit-forward-cost (the DiT paper's "Gflops" are MACs): within 0.5%.
    s = summary("dit_xl_2.yaml", f"resolution={resolution}", "cfg=false", "steps=1")
    assert within(s.macs / 1e9, gmacs, 0.005), s.macs
    assert within(s.macs / 1e9, gmacs, 0.0002)  # in fact within 0.02%


def test_dit_xl2_parameters():
    # about 675 M; ours count matrices and embeddings, not biases and norm gains
    s = summary("dit_xl_2.yaml")
    assert within(s.params / 1e6, 675, 0.005)
    assert s.params == summary("dit_xl_2.yaml", "resolution=512").params  # positions are not parameters


def test_dit_cfg_doubles_and_steps_repeat():
    one = summary("dit_xl_2.yaml", "cfg=false", "steps=1").macs
    assert summary("dit_xl_2.yaml", "cfg=true", "steps=1").macs == 2 * one
    assert summary("dit_xl_2.yaml", "cfg=false", "steps=50").macs == 50 * one
    assert summary("dit_xl_2.yaml", "cfg=false", "steps=50", "sampler=heun").macs == 99 * one
    w = load_workload(WORKLOADS / "dit_xl_2_ddpm1000.yaml")
    assert len(w.phases) == 1 and w.phases[0].repeat == 1000


@pytest.mark.parametrize("family, depth, hidden", [("S", 12, 384), ("B", 12, 768), ("L", 24, 1024)])
def test_dit_families(family, depth, hidden):
    s = summary("dit_xl_2.yaml", f"family={family}", "cfg=false", "steps=1")
    tokens = 256
    per_block = 12 * hidden**2 * tokens + 2 * tokens**2 * hidden + 6 * hidden**2
    assert within(s.macs, depth * per_block, 0.01)


# -- LLMs --------------------------------------------------------------------------------

LLAMA2 = dict(d=4096, h=32, kvh=32, dh=128, f=11008, layers=32, vocab=32000)


def llm_layer_macs(m, rows):
    proj = m["d"] * m["dh"] * (2 * m["h"] + 2 * m["kvh"])
    return rows * (proj + 3 * m["d"] * m["f"])


def prefill_macs(m, b, p):
    attn = 2 * b * m["h"] * m["dh"] * p * p
    return m["layers"] * (llm_layer_macs(m, b * p) + attn) + b * m["d"] * m["vocab"]


def decode_macs(m, b, p, n):
    """Decode after prefill's first token: n - 1 steps at contexts p + 1 .. p + n - 1."""
    total = 0
    for j in range(1, n):
        context = p + j
        total += m["layers"] * (llm_layer_macs(m, b) + 2 * b * m["h"] * m["dh"] * context) + b * m["d"] * m["vocab"]
    return total


def test_llama2_7b_parameters():
    # docs/sources/papers.md#llm-model-shapes
    assert within(summary("llama2_7b.yaml").params / 1e9, 6.74, 0.001)
    assert within(summary("llama3_8b.yaml").params / 1e9, 8.03, 0.001)


@pytest.mark.parametrize("batch, prompt, output", [(1, 1, 1), (1, 128, 7), (4, 1024, 256), (8, 333, 100)])
def test_llama2_prefill_and_decode_match_closed_form(batch, prompt, output):
    w = load_workload(WORKLOADS / "llama2_7b.yaml", _o(f"batch={batch}", f"prompt_len={prompt}", f"output_len={output}"))
    prefill = next(p for p in w.phases if p.name == "prefill")
    assert prefill.macs == prefill_macs(LLAMA2, batch, prompt)
    decode = sum(p.macs for p in w.phases if p.name.startswith("decode"))
    assert decode == decode_macs(LLAMA2, batch, prompt, output)
    assert sum(p.repeat for p in w.phases if p.name.startswith("decode")) == output - 1
    kv = next(t for t in w.tensors().values() if t.name.endswith("k_cache"))
    assert kv.shape == (batch, 32, prompt + output - 1, 128)  # sized at the final context


def test_long_decode_is_a_few_graphs():
    w = load_workload(WORKLOADS / "llama2_7b_decode4096.yaml")
    assert len(w.phases) <= 1 + 10
    assert sum(p.macs for p in w.phases if p.name != "prefill") == decode_macs(LLAMA2, 1, 128, 4096)


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 10**5), st.integers(0, 5000), st.integers(1, 64))
def test_decode_groups_are_exact(first, steps, groups):
    g = decode_groups(first, steps, groups)
    assert sum(n for _, n in g) == steps
    assert sum(c * n for c, n in g) == sum(range(first, first + steps))
    assert len(g) <= min(groups, steps) + 1


def test_gqa_shrinks_kv_projections_and_cache_4x():
    gqa = load_workload(WORKLOADS / "llama3_8b.yaml")
    mha = load_workload(WORKLOADS / "llama3_8b.yaml",
                        _o(f"model={{from: {WORKLOADS}/models/llama3_8b.json, num_key_value_heads: 32}}"))
    def kv_proj_macs(w):
        return sum(op.macs * op.copies for op in w.phases[0].graph.ops() if op.name.endswith(("attn.k", "attn.v")))
    assert kv_proj_macs(mha) == 4 * kv_proj_macs(gqa)
    assert summarize(mha).cache_bytes == 4 * summarize(gqa).cache_bytes


def test_gpt3_30b_counts():
    s = summary("gpt3_30b.yaml")
    layer = 12 * 7168**2
    assert s.params == 48 * layer + 50257 * 7168 + 2048 * 7168  # tied embeddings, learned positions
    assert within(s.params / 1e9, 30, 0.01)


# -- diffusion LLMs ----------------------------------------------------------------------

def dllm(mode, *overrides):
    base = {"vanilla": "llada_8b_vanilla.yaml", "fast-dllm": "llada_8b_fast_dllm.yaml", "odb": "llada_8b_odb.yaml"}[mode]
    return load_workload(WORKLOADS / base, _o(*overrides))


def forwards(w, kind=None):
    return sum(p.repeat for p in w.phases if kind is None or p.name.startswith(kind))


def test_vanilla_is_gen_len_full_forwards():
    w = dllm("vanilla", "tokens_per_step=1")
    assert forwards(w) == forwards(w, "full") == 1024
    one = dllm("vanilla", "gen_len=1", "prompt_len=1279")  # the same 1280-token forward, once
    assert w.macs == 1024 * one.macs


@pytest.mark.parametrize("gen, block", [(1024, 32), (256, 64), (64, 64)])
def test_fast_dllm_refreshes_once_per_block(gen, block):
    w = dllm("fast-dllm", f"gen_len={gen}", f"block_len={block}", "tokens_per_step=1")
    assert forwards(w, "refresh") == gen // block
    assert forwards(w, "decode") == gen // block * (block - 1)


@settings(max_examples=60, deadline=None)
@given(st.sampled_from([64, 256, 1024]), st.sampled_from([1.0, 1.5, 2.0, 4.0]), st.integers(1, 1024),
       st.floats(0, 3), st.integers(0, 31), st.integers(1, 4))
def test_odb_never_costs_more_forwards_than_fast_dllm(gen, tps, answer, accept, share, known):
    args = (f"gen_len={gen}", f"tokens_per_step={tps}")
    odb = dllm("odb", *args, f"odb.answer_len={answer}", f"odb.jump_acceptance={accept}",
               f"odb.share_below={share}", f"odb.known_after_blocks={known}")
    assert forwards(odb) <= forwards(dllm("fast-dllm", *args))


def test_jump_forward_has_about_4x_the_intensity_of_a_decode_forward():
    fast = {p.name.split()[0]: p for p in summarize(dllm("fast-dllm")).phases}
    odb = {p.name.split()[0]: p for p in summarize(dllm("odb")).phases}
    ratio = odb["jump"].intensity / fast["decode"].intensity
    assert 3.8 <= ratio <= 4.0, ratio


def test_trace_replay(tmp_path):
    w = load_workload(WORKLOADS / "llada_8b_trace.yaml")
    assert forwards(w) == 1 + 6 + 2 + 7 + 40 + 9
    bad = tmp_path / "t.csv"
    bad.write_text("kind,q_len,kv_len\ndecode,32,16\n")
    spec = tmp_path / "w.yaml"
    spec.write_text(f"extends: {WORKLOADS / 'llada_8b_odb.yaml'}\ntrace: t.csv\n")
    proc = run_cli("workload", str(spec))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert f"{bad}:2" in proc.stderr and "kv_len 16 is below q_len 32" in proc.stderr


# -- the command line ---------------------------------------------------------------------

def test_workload_json_has_totals_and_phases():
    proc = run_cli("workload", str(WORKLOADS / "dit_xl_2.yaml"), "--set", "resolution=512", "--set", "batch=1",
                   "--set", "steps=50", "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert {"params", "macs", "flops", "phases"} <= set(data)
    assert data["macs"] == sum(p["total_macs"] for p in data["phases"])
    assert data["phases"][0]["repeat"] == 50 and data["phases"][0]["intensity_macs_per_byte"] > 0


def test_workload_table():
    proc = run_cli("workload", str(WORKLOADS / "llama2_7b.yaml"))
    assert proc.returncode == 0, proc.stderr
    assert "prefill" in proc.stdout and "decode@" in proc.stdout and "6,738,149,376" in proc.stdout


@pytest.mark.parametrize("body, expected", [
    ("kind: dit\nname: x\nresolution: 250\n", "resolution: 250 is not a multiple of vae_downsample 8"),
    ("kind: dit\nname: x\nfamiliy: XL\n", "familiy: unknown key"),
    ("kind: llm\nname: x\nmodel: nope.json\nbatch: 1\nprompt_len: 8\noutput_len: 1\n", "model: model config"),
    ("kind: llm\nname: x\nmodel: {hidden_size: 64}\nbatch: 1\nprompt_len: 8\noutput_len: 1\n", "intermediate_size: required key is missing"),
    ("kind: dllm\nname: x\nmodel: m.yaml\nprompt_len: 8\ngen_len: 100\nmode: fast-dllm\n", "gen_len 100 is not a multiple of block_len 32"),
    ("kind: diffusion\nname: x\n", "kind: unknown workload kind 'diffusion'"),
    ("kind: llm\nname: x\nbatch: -1\n", "batch: Input should be greater than 0"),
])
def test_malformed_workloads_give_one_clear_line(tmp_path, body, expected):
    path = tmp_path / "w.yaml"
    path.write_text(textwrap.dedent(body))
    proc = run_cli("workload", str(path))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert any(expected in line and str(path) in line for line in proc.stderr.splitlines()), proc.stderr


@pytest.mark.parametrize("path", ["dit_xl_2_block_512.yaml", "llama2_7b.yaml", "llada_8b_odb.yaml"])
def test_run_works_for_every_family(path):
    hw = load_hardware(TPUV4I, ["hbm.capacity=32 GiB"])  # one big chip until multi-chip lands
    r = simulate(hw, load_workload(WORKLOADS / path))
    assert r.feasible and r.latency_s > 0 and r.macs == r.workload.macs


def test_models_that_do_not_fit_one_tpuv4i_are_infeasible(tpuv4i):
    r = simulate(tpuv4i, load_workload(WORKLOADS / "llama2_7b.yaml"))
    assert not r.feasible and "missing" in r.reason


def _o(*overrides):
    from archsim.config.loader import parse_overrides

    return parse_overrides(overrides)


def test_spec_round_trip():
    spec = load_spec(WORKLOADS / "llada_8b_odb.yaml")
    assert spec.mode == "odb" and spec.odb.jump_copies == 4
