"""Reference counts from the real model code (not run in CI: it needs torch and transformers).

For each family archsim reads as published, a small config of that ``model_type`` (a few
layers and narrow widths, every feature the family has switched on: experts, a sliding window
shorter than the prompt, parallel blocks) is built with transformers' own model class on the
CPU and counted:
- matrix parameters: every parameter of two or more dimensions (linear and embedding weights,
  experts stored as 3-D tensors), a tied head's once;
- prefill MACs: torch's FlopCounterMode over one forward of the prompt, logits of the last
  token only (``logits_to_keep=1``), FLOPs / 2;
- decode MACs: the same over one more token with the prompt's KV cache.
The published full-size configs in workloads/models are counted for parameters on the meta
device (no weights). Written to tests/data/hf_counts.json, which tests/test_hf_models.py
compares archsim's counts with.

    python -m venv /tmp/refenv && /tmp/refenv/bin/pip install torch==2.13.0 transformers
    /tmp/refenv/bin/python tests/reference/make_hf_counts.py
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import transformers
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parents[2]
PROMPT = 24  # longer than the small configs' windows (8), so windows matter

BASE = {"hidden_size": 64, "intermediate_size": 96, "num_hidden_layers": 4, "num_attention_heads": 4,
        "num_key_value_heads": 2, "vocab_size": 256, "max_position_embeddings": 128}
SMALL = {
    "llama": dict(BASE),
    "mistral": {**BASE, "sliding_window": 8},
    "phi3": {**BASE, "sliding_window": 8, "num_key_value_heads": 4},
    "mixtral": {**BASE, "num_local_experts": 4, "num_experts_per_tok": 2, "sliding_window": None},
    "qwen2": {**BASE, "use_sliding_window": True, "sliding_window": 8, "max_window_layers": 2},
    "qwen3": {**BASE, "head_dim": 32},
    "qwen2_moe": {**BASE, "num_experts": 4, "num_experts_per_tok": 2, "moe_intermediate_size": 48,
                  "shared_expert_intermediate_size": 80, "decoder_sparse_step": 1, "mlp_only_layers": [3]},
    "qwen2_moe_step": {**BASE, "num_experts": 4, "num_experts_per_tok": 2, "moe_intermediate_size": 48,
                       "shared_expert_intermediate_size": 80, "decoder_sparse_step": 2, "mlp_only_layers": [3]},
    "qwen3_moe": {**BASE, "num_experts": 4, "num_experts_per_tok": 2, "moe_intermediate_size": 48, "head_dim": 16},
    "gemma2": {**BASE, "head_dim": 32, "sliding_window": 8},
    "gemma3_text": {**BASE, "head_dim": 32, "sliding_window": 8, "num_hidden_layers": 6},
    "deepseek_v3": {**BASE, "num_hidden_layers": 3, "num_key_value_heads": 4, "kv_lora_rank": 32, "q_lora_rank": 48,
                    "qk_nope_head_dim": 16, "qk_rope_head_dim": 8, "v_head_dim": 16, "n_routed_experts": 8,
                    "num_experts_per_tok": 2, "n_shared_experts": 1, "moe_intermediate_size": 48,
                    "first_k_dense_replace": 1, "n_group": 2, "topk_group": 1, "head_dim": 8},
    "deepseek_v2": {**BASE, "num_hidden_layers": 3, "num_key_value_heads": 4, "kv_lora_rank": 32, "q_lora_rank": None,
                    "qk_nope_head_dim": 16, "qk_rope_head_dim": 8, "v_head_dim": 16, "n_routed_experts": 8,
                    "num_experts_per_tok": 2, "n_shared_experts": 2, "moe_intermediate_size": 48,
                    "first_k_dense_replace": 1, "head_dim": 8},
    "opt": {"hidden_size": 64, "ffn_dim": 96, "num_hidden_layers": 3, "num_attention_heads": 4, "vocab_size": 256,
            "max_position_embeddings": 128, "word_embed_proj_dim": 64},
    "gpt2": {"n_embd": 64, "n_layer": 3, "n_head": 4, "vocab_size": 256, "n_positions": 128},
    "falcon": {"hidden_size": 64, "num_hidden_layers": 3, "num_attention_heads": 4, "vocab_size": 256,
               "multi_query": True, "parallel_attn": True, "new_decoder_architecture": False},
    "falcon_new": {"hidden_size": 64, "num_hidden_layers": 3, "num_attention_heads": 4, "vocab_size": 256,
                   "new_decoder_architecture": True, "num_kv_heads": 2},
    "gpt_neox": {"hidden_size": 64, "intermediate_size": 96, "num_hidden_layers": 3, "num_attention_heads": 4,
                 "vocab_size": 256, "max_position_embeddings": 128},
}


def counts(model_type: str, fields: dict) -> dict:
    family = {"falcon_new": "falcon", "qwen2_moe_step": "qwen2_moe"}.get(model_type, model_type)
    config = transformers.AutoConfig.for_model(family, pad_token_id=0, bos_token_id=0, eos_token_id=0, **fields)
    torch.manual_seed(0)
    # the experts as the eager loop of F.linear calls (what FlopCounterMode sees; grouped_mm it does not)
    # and attention as eager matmuls (CPU SDPA kernels are not in FlopCounterMode's table)
    extra = {"experts_implementation": "eager"} if "expert" in json.dumps(fields) else {}
    extra["attn_implementation"] = "eager"
    model = transformers.AutoModelForCausalLM.from_config(config, **extra).eval()
    unique = {id(p): p for p in model.parameters()}
    params = sum(p.numel() for p in unique.values() if p.dim() >= 2)
    ids = torch.randint(0, config.vocab_size, (1, PROMPT))
    with torch.no_grad():
        with FlopCounterMode(display=False) as prefill:
            out = model(ids, use_cache=True, logits_to_keep=1)
        with FlopCounterMode(display=False) as decode:
            model(ids[:, :1], past_key_values=out.past_key_values, use_cache=True, logits_to_keep=1)
    return {"model_type": family, "config": {"model_type": family, **fields}, "prompt": PROMPT,
            "matrix_params": params, "prefill_macs": prefill.get_total_flops() // 2,
            "decode_macs": decode.get_total_flops() // 2}


def main() -> None:
    out = {"transformers": transformers.__version__, "torch": torch.__version__, "small": {}, "published": {}}
    for name, fields in SMALL.items():
        out["small"][name] = counts(name, fields)
        print(name, out["small"][name]["matrix_params"], out["small"][name]["prefill_macs"], out["small"][name]["decode_macs"])
    for path in sorted((ROOT / "workloads" / "models").glob("*.json")):
        data = json.loads(path.read_text())
        if "model_type" not in data:  # a diffusers model's config, not a language model's
            continue
        config = transformers.AutoConfig.for_model(**data)
        with torch.device("meta"):
            model = transformers.AutoModelForCausalLM.from_config(config)
        unique = {id(p): p for p in model.parameters()}
        out["published"][path.name] = {"matrix_params": sum(p.numel() for p in unique.values() if p.dim() >= 2)}
        print(path.name, out["published"][path.name])
    (ROOT / "tests" / "data" / "hf_counts.json").write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
