"""The speed-up of speculative decoding over vanilla decoding, simulated: below 1 at acceptance 0
(the drafting and the wider verification are pure overhead) and never falling as acceptance
grows, on a systolic TPU, a CIM design and a GPU.

The model: LLaMA-2-7B's layer shape (workloads/models/llama2_7b.json) cut to 4 layers, int8, a
128-token prompt and 64 output tokens, batch 1; the draft model one layer of half the width.
"""

from __future__ import annotations

from functools import lru_cache

import pytest
from hypothesis import given, settings, strategies as st

from archsim.api import load_hardware, simulate
from archsim.workloads.base import PathResolver
from archsim.workloads.llm import LLMWorkload

from conftest import HW, WORKLOADS

TARGET = {"from": "models/llama2_7b.json", "num_hidden_layers": 4}
DRAFT = {"from": "models/llama2_7b.json", "num_hidden_layers": 1, "hidden_size": 2048, "intermediate_size": 5504,
         "num_attention_heads": 16, "num_key_value_heads": 16}
CHIPS = ("tpuv4i", "cim_design_b", "a100_80gb")


def schedule(name: str, k: int, a: float) -> dict | None:
    return {
        "vanilla": None,
        "draft": {"name": "draft", "model": DRAFT, "k": k, "acceptance": a},
        "self_spec": {"name": "self_spec", "exit_layer": 1, "k": k, "acceptance": a},
        "medusa": {"name": "medusa", "heads": k, "tree": "chain", "acceptance": a},
        "firp": {"name": "firp", "layer": 2, "k": k, "acceptance": a},
        "ssd": {"name": "ssd", "skip_attention": [1, 2], "skip_mlp": [2], "k": k, "acceptance": a},
        "eagle": {"name": "eagle", "depth": k, "top_k": 4, "total_tokens": 4 * k + 2, "acceptance": a},
    }[name]


@lru_cache(maxsize=None)
def chip(name: str):
    return load_hardware(HW / f"{name}.yaml")


@lru_cache(maxsize=None)
def latency(chip_name: str, name: str, k: int, a: float) -> float:
    spec = LLMWorkload.model_validate({
        "kind": "llm", "name": "spec", "model": TARGET, "batch": 1, "prompt_len": 128, "output_len": 65,
        "precision": {"weights": "int8", "activations": "int8", "kv": "int8"}, "schedule": schedule(name, k, a)})
    result = simulate(chip(chip_name), spec.build(PathResolver(default=WORKLOADS)))
    assert result.feasible, result.reason
    return result.latency_s


def speedup(chip_name: str, name: str, k: int, a: float) -> float:
    return latency(chip_name, "vanilla", 1, 0.0) / latency(chip_name, name, k, a)


@pytest.mark.parametrize("chip_name", CHIPS)
@pytest.mark.parametrize("name", ["draft", "self_spec", "medusa", "firp", "ssd", "eagle"])
def test_at_acceptance_zero_speculation_is_slower(chip_name, name):
    assert speedup(chip_name, name, 4, 0.0) < 1.0


@settings(max_examples=30, deadline=None, derandomize=True)
@given(chip_name=st.sampled_from(CHIPS), name=st.sampled_from(["draft", "self_spec", "medusa", "firp", "ssd", "eagle"]),
       k=st.integers(1, 6), a=st.floats(0.0, 1.0), b=st.floats(0.0, 1.0))
def test_the_speedup_never_falls_as_acceptance_grows(chip_name, name, k, a, b):
    low, high = sorted((a, b))
    assert speedup(chip_name, name, k, low) <= speedup(chip_name, name, k, high) * (1 + 1e-12)
    assert speedup(chip_name, name, k, 0.0) < 1.0
