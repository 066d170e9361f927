"""Hugging Face configs as published (issue 20): archsim's counts against transformers' own
model code. tests/data/hf_counts.json holds the reference counts, made by
tests/reference/make_hf_counts.py with torch and transformers (not needed here): matrix
parameters, and prefill and decode MACs from torch's FlopCounterMode, for a small config of
every family with its features on (experts, shared experts, dense layers among sparse ones,
sliding windows shorter than the prompt, parallel blocks, tied heads); parameters of the
published full-size configs in workloads/models."""

from __future__ import annotations

import json
import warnings

import pytest
from conftest import ROOT

from archsim.errors import ArchsimWarning, ConfigError
from archsim.ir.transformer import MoeShape, Precision, Tokens
from archsim.workloads.hf import translate
from archsim.workloads.lm import LanguageModel, lm_forward

REFERENCE = json.loads((ROOT / "tests" / "data" / "hf_counts.json").read_text())
MODELS = ROOT / "workloads" / "models"


def macs(model: LanguageModel, q_len: int, kv_len: int) -> int:
    graph = lm_forward(model, Precision(), Tokens(1, q_len, kv_len, kv_cache=True, causal=True), 1, "s")
    return sum(op.macs * op.copies for op in graph.ops())


@pytest.mark.parametrize("name", sorted(REFERENCE["small"]))
def test_counts_equal_transformers_model_code(name):
    ref = REFERENCE["small"][name]
    fields, unread = translate(dict(ref["config"]))
    # transformers expands DeepSeek's latent (MLA's naive form); archsim's default absorbs, as
    # DeepSeek's own inference code does (pinned by hand below)
    model = LanguageModel(**fields, **({"mla_mode": "naive"} if "kv_lora_rank" in fields else {}))
    assert unread == []
    assert model.params == ref["matrix_params"]
    assert macs(model, ref["prompt"], ref["prompt"]) == ref["prefill_macs"]
    assert macs(model, 1, ref["prompt"] + 1) == ref["decode_macs"]


@pytest.mark.parametrize("file", sorted(REFERENCE["published"]))
def test_published_configs_have_transformers_parameter_counts(file):
    from archsim.workloads.lm import resolve_model

    class Paths:  # a workload's path resolver, for a model file named directly
        def __call__(self, key, value):
            return MODELS / value

        def source(self, key):
            return "test"

    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        model = resolve_model(file, Paths())
    assert model.params == REFERENCE["published"][file]["matrix_params"]


def test_mixtral_by_hand():
    # Mixtral-8x7B: 32 layers of attention (4096 x 128 x (2 x 32 + 2 x 8) = 41.9M) and 8 experts
    # of 3 x 4096 x 14336 (176.2M each) plus the router (4096 x 8); embedding and head 2 x 32000 x 4096
    fields, _ = translate(json.loads((MODELS / "mixtral_8x7b.json").read_text()))
    model = LanguageModel(**fields)
    layer = 4096 * 128 * (2 * 32 + 2 * 8) + 8 * 3 * 4096 * 14336 + 4096 * 8
    assert model.params == 32 * layer + 2 * 32000 * 4096 == 46_702_526_464
    # a decode step of one token: 2 of 8 experts, so 2 x 3 x 4096 x 14336 MACs a layer in experts
    step = macs(model, 1, 101)
    attention = 32 * (4096 * 128 * (2 * 32 + 2 * 8) + 2 * 32 * 128 * 101)
    assert step == attention + 32 * (4096 * 8 + 2 * 3 * 4096 * 14336) + 4096 * 32000


def test_expected_active_experts():
    moe = MoeShape(experts=8, top_k=2, ffn=1)
    # E (1 - (1 - k/E)^T): 1 token 2; 2 tokens 8 x (1 - 0.5625) = 3.5 -> 4 (round half to even); 8 tokens 7.2 -> 7
    assert [moe.active(t) for t in (1, 2, 3, 8, 64)] == [2, 4, 5, 7, 8]
    assert MoeShape(60, 4, 1).active(1) == 4 and MoeShape(60, 4, 1).active(1000) == 60


def test_a_decode_step_reads_only_the_active_experts():
    # batch 1: 2 of Mixtral's 8 experts read a layer, though all 8 are stored
    fields, _ = translate(json.loads((MODELS / "mixtral_8x7b.json").read_text()))
    model = LanguageModel(**fields)
    graph = lm_forward(model, Precision(), Tokens(1, 1, 101, kv_cache=True, causal=True), 1, "d")
    experts = [op for op in graph.ops() if op.kind == "gemm" and "experts" in op.name]
    assert {op.batch for op in experts} == {2} and {op.experts for op in experts} == {8}
    assert sum(op.b.bytes for op in {op.b.name: op for op in experts}.values()) == 3 * 8 * 4096 * 14336 * 2


def test_sliding_window_caps_the_cache_and_the_keys():
    # Mistral-7B at 8192 tokens of context: every layer keeps and reads 4096 keys, not 8192
    fields, _ = translate(json.loads((MODELS / "mistral_7b_v0.1.json").read_text()))
    model = LanguageModel(**fields)
    graph = lm_forward(model, Precision(), Tokens(1, 1, 8192, kv_cache=True, causal=True), 1, "d")
    score = next(op for op in graph.ops() if op.kind == "attn_score")
    cache = next(t for op in graph.ops() for t in op.tensors if t.name.endswith("k_cache"))
    assert score.n == 4096 and cache.shape == (1, 8, 4096, 128)


def test_unknown_keys_warn_and_unmodelled_features_are_errors(tmp_path):
    data = json.loads((MODELS / "mixtral_8x7b.json").read_text())
    _, unread = translate({**data, "moe_capacity": 1.25})
    assert unread == ["moe_capacity"]
    with pytest.raises(ValueError, match="cross-attention to image tokens"):
        translate({"model_type": "mllama", "vocab_size": 1})
    with pytest.raises(ValueError, match="differs from hidden_size"):
        translate({**json.loads((MODELS / "opt_1.3b.json").read_text()), "word_embed_proj_dim": 512})


def test_the_cli_warns_once_per_unread_key_and_refuses_unknown_families(tmp_path):
    from conftest import run_cli

    data = json.loads((MODELS / "mixtral_8x7b.json").read_text())
    (tmp_path / "m.json").write_text(json.dumps({**data, "moe_capacity": 1.25, "num_hidden_layers": 2}))
    (tmp_path / "w.yaml").write_text("kind: llm\nname: m\nmodel: m.json\nbatch: 1\nprompt_len: 16\noutput_len: 2\n")
    r = run_cli("run", str(ROOT / "hw_configs" / "systems" / "a100_80gb_x8.yaml"), str(tmp_path / "w.yaml"))
    assert r.returncode == 0, r.stderr
    assert r.stderr.count("warning: ") == 1 and "'moe_capacity' is not read by archsim's mixtral model" in r.stderr
    (tmp_path / "b.json").write_text(json.dumps({"model_type": "bloom", "n_embed": 64, "vocab_size": 8}))
    (tmp_path / "w.yaml").write_text("kind: llm\nname: m\nmodel: b.json\nbatch: 1\nprompt_len: 16\noutput_len: 2\n")
    r = run_cli("run", str(ROOT / "hw_configs" / "tpuv4i.yaml"), str(tmp_path / "w.yaml"))
    assert r.returncode == 2 and "model_type archsim does not read ('bloom')" in r.stderr and "Traceback" not in r.stderr


def test_a_published_file_with_an_unmodelled_feature_names_it(tmp_path):
    data = json.loads((MODELS / "opt_1.3b.json").read_text())
    (tmp_path / "m.json").write_text(json.dumps({**data, "word_embed_proj_dim": 512}))
    (tmp_path / "w.yaml").write_text("kind: llm\nname: m\nmodel: m.json\nbatch: 1\nprompt_len: 16\noutput_len: 2\n")
    from archsim.api import load_workload

    with pytest.raises(ConfigError, match="word_embed_proj_dim"):
        load_workload(tmp_path / "w.yaml")
    assert ArchsimWarning  # the warning class the CLI prints as one line


def test_latent_attention_absorbed_by_hand():
    # DeepSeek's absorb form (deepseek-ai/DeepSeek-V3 inference/model.py, MLA): one layer of the
    # small V3 config (hidden 64, 4 heads, q_lora 48, kv_lora 32, nope 16, rope 8, v 16), a decode
    # step at 25 keys: q_a 64x48, q_b 48 x 4 x 24, kv_a 64 x (32 + 8), W_UK 4 x 16 x 32, scores 4 x
    # 25 x (32 + 8), context 4 x 25 x 32, W_UV 4 x 32 x 16, o 64 x 64
    fields, _ = translate(dict(REFERENCE["small"]["deepseek_v3"]["config"]))
    model = LanguageModel(**fields)
    graph = lm_forward(model, Precision(), Tokens(1, 1, 25, kv_cache=True, causal=True), 1, "d")
    attn = sum(op.macs for op in graph.ops() if ".attn." in op.name and op.name.startswith("layers."))
    assert attn == 64 * 48 + 48 * 4 * 24 + 64 * 40 + 4 * 16 * 32 + 4 * 25 * 40 + 4 * 25 * 32 + 4 * 32 * 16 + 64 * 64
    # the cache: 32 + 8 values a token, not 4 heads x (24 + 16)
    caches = {t.name: t for op in graph.ops() for t in op.tensors if t.role.persistent and "cache" in t.name}
    assert sum(t.elements * t.copies for t in caches.values()) == 3 * 25 * (32 + 8)  # 3 layers
    # the same weights either way
    assert model.params == LanguageModel(**fields, mla_mode="naive").params


def test_the_docs_table_shows_the_reference_counts():
    # docs/model_counts.md reports every reference row with archsim's error (0)
    text = (ROOT / "docs" / "model_counts.md").read_text()
    for name, ref in REFERENCE["small"].items():
        row = next(line for line in text.splitlines() if line.startswith(f"| {name} |"))
        assert f"{ref['matrix_params']:,}" in row and f"{ref['prefill_macs']:,}" in row
        assert f"{ref['decode_macs']:,}" in row and row.count("+0.000%") == 3
    for file, ref in REFERENCE["published"].items():
        assert f"| `{file}` | {ref['matrix_params']:,} | {ref['matrix_params']:,} | +0.000% |" in text


def test_several_queries_after_the_prompt_read_the_union_of_their_windows():
    # Mistral's window 4096 at 8192 keys of context: 32 new queries (a speculative or chunked
    # step) see keys from 8192 - 32 - 4096 + 1 on: 4096 + 31 keys
    fields, _ = translate(json.loads((MODELS / "mistral_7b_v0.1.json").read_text()))
    graph = lm_forward(LanguageModel(**fields), Precision(), Tokens(1, 32, 8192, kv_cache=True, causal=True), 1, "d")
    score = next(op for op in graph.ops() if op.kind == "attn_score")
    assert score.n == 4096 + 31


def test_a_prompt_longer_than_the_window_is_scored_whole_and_keeps_a_window():
    # Mistral's 8192-token prompt: scores over all 8192 keys (the masked dense kernel), cache of 4096
    fields, _ = translate(json.loads((MODELS / "mistral_7b_v0.1.json").read_text()))
    graph = lm_forward(LanguageModel(**fields), Precision(), Tokens(1, 8192, 8192, kv_cache=True, causal=True), 1, "p")
    score = next(op for op in graph.ops() if op.kind == "attn_score")
    cache = next(t for op in graph.ops() for t in op.tensors if t.name.endswith("k_cache"))
    assert score.n == 8192 and cache.shape == (1, 8, 4096, 128)
