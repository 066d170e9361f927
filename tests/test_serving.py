"""Serving figures of language-model runs (archsim.sim.serving): TTFT, TPOT, tokens per second
and per joule. The expected values are worked out here from the run's phases as the module
docstring defines them; the identities tie them to the run's total time."""

from __future__ import annotations

import json

import pytest

from archsim.api import load_hardware, load_workload, simulate
from archsim.dse.evaluate import evaluate_point
from archsim.dse.plan import _workload_id
from archsim.dse.spec import Point
from archsim.ir.graph import PRELOAD_PHASE
from archsim.report import run_summary
from archsim.sim.serving import serving
from tests.conftest import HW, WORKLOADS

A100 = HW / "a100_80gb.yaml"
LLAMA = WORKLOADS / "llama2_7b.yaml"  # batch 1, 1024-token prompt, 256 output tokens
REL = 1e-12


def run(hw_path, workload_path, *sets):
    hw = load_hardware(hw_path)
    return simulate(hw, load_workload(workload_path, list(sets), hw))


@pytest.fixture(scope="module")
def llama():
    return run(A100, LLAMA, "batch=2")


def test_ttft_is_the_run_up_to_the_end_of_prefill_and_tpot_the_mean_decode_step(llama):
    phases = llama.phase_times  # phase -> (executions, time of one)
    decode = [name for name in phases if name.startswith("decode@")]
    steps = sum(phases[name][0] for name in decode)
    assert steps == 255  # every output token but the first, which prefill gives
    figures = serving(llama)
    preload = phases.get(PRELOAD_PHASE, (1, 0.0))[1]
    assert figures.ttft_s == pytest.approx(preload + phases["prefill"][1], rel=REL)
    assert figures.tpot_s == pytest.approx(sum(phases[n][0] * phases[n][1] for n in decode) / 255, rel=REL)
    # the run is its first token and 255 steps
    assert figures.ttft_s + 255 * figures.tpot_s == pytest.approx(llama.latency_s, rel=1e-9)


def test_a_speculative_runs_tpot_is_its_rounds_time_over_the_tokens_they_give():
    # Medusa rounds give several tokens each: TPOT is every phase after prefill (verify rounds,
    # the KV compaction) over the 255 tokens after the first, not over the rounds
    result = run(A100, WORKLOADS / "llama2_7b_spec_medusa.yaml")
    phases = result.phase_times
    after = [name for name in phases if name not in ("prefill", PRELOAD_PHASE)]
    rounds = sum(phases[n][0] for n in after if n.startswith("verify"))
    assert rounds < 255 and "kv compact" in after
    figures = serving(result)
    assert figures.tpot_s == pytest.approx(sum(phases[n][0] * phases[n][1] for n in after) / 255, rel=REL)
    assert figures.ttft_s + 255 * figures.tpot_s == pytest.approx(result.latency_s, rel=1e-9)


def test_tokens_per_second_and_per_joule_count_every_sequence(llama):
    figures = serving(llama)
    assert figures.tokens == 2 * 256
    assert figures.tokens_per_s == pytest.approx(512 / llama.latency_s, rel=REL)
    assert figures.tokens_per_j == pytest.approx(512 / llama.energy.total, rel=REL)


def test_a_decode_only_run_has_no_first_token_and_a_prefill_only_run_no_steps():
    decode = serving(run(A100, LLAMA, "phases=[decode]", "output_len=9"))
    assert decode.ttft_s is None and decode.tokens == 8
    prefill = run(A100, LLAMA, "phases=[prefill]")
    figures = serving(prefill)
    assert figures.tpot_s is None and figures.tokens == 1
    assert figures.ttft_s == pytest.approx(prefill.latency_s, rel=REL)


def test_a_system_run_has_its_figures_from_its_phases_wall_time():
    result = run(HW / "systems" / "a100_80gb_x8.yaml", WORKLOADS / "mixtral_8x7b.yaml", "output_len=5")
    figures = serving(result)
    wall = result.latency_by("phase")
    assert figures.tokens == 8 * 5
    assert figures.ttft_s == pytest.approx(wall.get(PRELOAD_PHASE, 0.0) + wall["prefill"], rel=REL)
    assert figures.ttft_s + 4 * figures.tpot_s == pytest.approx(result.latency_s, rel=1e-9)


def test_a_diffusion_lm_has_rates_only_and_a_dit_none():
    dllm = run(A100, WORKLOADS / "llada_8b_vanilla.yaml", "gen_len=64", "block_len=32")
    figures = serving(dllm)
    assert (figures.ttft_s, figures.tpot_s, figures.tokens) == (None, None, 64)
    assert serving(run(A100, WORKLOADS / "dit_xl_2_block_512.yaml")) is None


def test_the_figures_reach_the_report_the_json_summary_and_a_sweep_row(llama, tmp_path):
    text = run_summary(llama)
    figures = serving(llama)
    assert "time to first token" in text and "time per output token" in text and "512: " in text
    summary = json.loads(json.dumps(llama.summary()))
    assert summary["serving"] == pytest.approx(figures.as_dict(), rel=REL)
    overrides = json.dumps([["batch", 2]])
    point = Point("k", str(A100), (), str(LLAMA), overrides, "point", _workload_id(str(LLAMA), overrides, ()))
    row = evaluate_point(point)
    assert row["status"] == "ok"
    assert row["ttft_s"] == pytest.approx(figures.ttft_s, rel=REL)
    assert row["tokens_per_j"] == pytest.approx(figures.tokens_per_j, rel=REL)


def test_ttft_counts_the_cmem_preload_before_prefill():
    """A small model whose weights TPUv4i promotes to CMEM: the preload comes before the first token."""
    small = (f"model={{from: {WORKLOADS / 'models' / 'llama2_7b.json'}, num_hidden_layers: 2, hidden_size: 1024, "
             "intermediate_size: 2752, num_attention_heads: 8, num_key_value_heads: 8, vocab_size: 1024}")
    result = run(HW / "tpuv4i.yaml", LLAMA, small, "output_len=64")
    wall = result.latency_by("phase")
    assert wall[PRELOAD_PHASE] > 0
    figures = serving(result)
    assert figures.ttft_s == pytest.approx(wall[PRELOAD_PHASE] + wall["prefill"], rel=REL)
    assert figures.ttft_s + 63 * figures.tpot_s == pytest.approx(result.latency_s, rel=1e-9)
