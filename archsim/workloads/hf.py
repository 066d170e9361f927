"""Hugging Face ``config.json`` files as published, read the way each architecture reads them.

``model_type`` decides the family. Each family reader takes the keys its transformers model
class really uses, with that config class's defaults for the keys a file leaves out, and
returns archsim's own model fields (``archsim.workloads.lm.LanguageModel``). Where a rule is
not obvious, the comment names the file of huggingface/transformers (v5.25) it follows, under
``src/transformers/models/<family>/``. Keys that never change the operator graph (token ids,
dropout, rope parameters, initialisation...) are listed in ``INERT``; any other key no reader
takes is reported as a warning (it may change the compute); a key that changes the compute in
a way archsim does not model yet is an error naming it.
"""

from __future__ import annotations

import math
from typing import Any, Callable

from archsim.errors import FieldError

# Keys that do not change the operator graph of one forward pass.
INERT = frozenset({
    "_name_or_path", "architectures", "auto_map", "bos_token_id", "eos_token_id", "pad_token_id", "sep_token_id",
    "decoder_start_token_id", "torch_dtype", "dtype", "transformers_version", "use_cache", "initializer_range",
    "init_std", "initializer_factor", "rope_theta", "rope_scaling", "rope_parameters", "partial_rotary_factor",
    "rotary_pct", "rotary_emb_base", "original_max_position_embeddings", "attention_dropout", "hidden_dropout",
    "dropout", "attn_pdrop", "resid_pdrop", "embd_pdrop", "activation_dropout", "classifier_dropout", "layerdrop",
    "rms_norm_eps", "layer_norm_eps", "layer_norm_epsilon", "output_attentions", "output_hidden_states",
    "return_dict", "id2label", "label2id", "problem_type", "is_encoder_decoder", "is_decoder", "chunk_size_feed_forward",
    "tokenizer_class", "prefix", "task_specific_params", "output_router_logits", "router_aux_loss_coef",
    "router_jitter_noise", "norm_topk_prob", "attention_bias", "mlp_bias", "qkv_bias", "bias", "enable_bias",
    "pretraining_tp", "attn_logit_softcapping", "final_logit_softcapping", "query_pre_attn_scalar",
    "use_bidirectional_attention", "layer_norm_elementwise_affine", "_remove_final_layer_norm",
    "scale_attn_weights", "scale_attn_by_inverse_layer_idx", "reorder_and_upcast_attn", "summary_type",
    "summary_use_proj", "summary_activation", "summary_proj_to_labels", "summary_first_dropout", "n_ctx",
    "use_return_dict", "max_window_layers", "use_sliding_window",
    "model_type", "do_layer_norm_before", "num_ln_in_parallel_attn", "rope_type", "sliding_window_pattern",
    "_sliding_window_pattern", "cache_implementation", "use_qk_norm", "tie_encoder_decoder", "torchscript",
    "gradient_checkpointing", "use_flash_attention", "_attn_implementation",
    "apply_residual_connection_post_layernorm", "sliding_window_size",
})

# Architectures whose compute archsim does not model yet, and why.
UNSUPPORTED = {
    "gemma3": "a multimodal config: give its text model (the text_config mapping, model_type gemma3_text)",
    "mllama": "a multimodal config: cross-attention to image tokens is not modelled yet",
}


def _get(data: dict, key: str, default: Any) -> Any:
    value = data.get(key, default)
    return default if value is None and default is not None else value


def _layers_of(data: dict, n: int, rule: Callable[[int], bool]) -> list[str] | None:
    """The per-layer attention kinds: the file's own ``layer_types``, else the family's rule."""
    if data.get("layer_types") is not None:
        return list(data["layer_types"])
    kinds = ["sliding_attention" if rule(i) else "full_attention" for i in range(n)]
    return kinds if "sliding_attention" in kinds else None


def _llama_like(data: dict, *, act_key: str = "hidden_act", act: str = "silu", tie: bool = False) -> dict:
    """LLaMA's layout (llama/configuration_llama.py): pre-norm RMSNorm, rotary positions, a gated
    MLP (gate, up, down), GQA with num_key_value_heads (default: every head its own)."""
    heads = data["num_attention_heads"]
    return {
        "hidden_size": data["hidden_size"], "intermediate_size": data["intermediate_size"],
        "num_hidden_layers": data["num_hidden_layers"], "num_attention_heads": heads,
        "num_key_value_heads": _get(data, "num_key_value_heads", heads), "vocab_size": data["vocab_size"],
        "hidden_act": _get(data, act_key, act), "head_dim": data.get("head_dim"),
        "tie_word_embeddings": _get(data, "tie_word_embeddings", tie), "norm": "rmsnorm", "mlp_gated": True,
        "max_position_embeddings": data.get("max_position_embeddings"),
    }


def _sliding_all(data: dict, default_window: int | None) -> dict:
    """Mistral, Mixtral, Phi-3: every layer attends over ``sliding_window`` keys when it is set
    (mistral/modeling_mistral.py: create_sliding_window_causal_mask unless it is None)."""
    window = data.get("sliding_window", default_window)
    n = data["num_hidden_layers"]
    return {"sliding_window": window, "layer_types": ["sliding_attention"] * n} if window else {}


def llama(data: dict) -> dict:
    return _llama_like(data)


def mistral(data: dict) -> dict:
    return {**_llama_like(data), **_sliding_all(data, 4096)}  # MistralConfig: sliding_window 4096


def phi3(data: dict) -> dict:
    # phi3/modeling_phi3.py: fused qkv_proj and gate_up_proj, the same matrices as LLaMA's
    return {**_llama_like(data), **_sliding_all(data, None)}


def mixtral(data: dict) -> dict:
    # mixtral/modeling_mixtral.py: every layer's MLP is a sparse MoE block of num_local_experts
    # gated experts of intermediate_size, top num_experts_per_tok per token
    return {**_llama_like(data), **_sliding_all(data, None), "num_experts": _get(data, "num_local_experts", 8),
            "experts_per_token": _get(data, "num_experts_per_tok", 2),
            "expert_intermediate_size": data["intermediate_size"]}


def _qwen_window(data: dict, moe: bool) -> dict:
    """Qwen2 and Qwen3 slide only with use_sliding_window: layers from max_window_layers on
    (qwen2/configuration_qwen2.py); Qwen2-MoE the odd-numbered ones below it
    (qwen2_moe/configuration_qwen2_moe.py)."""
    n = data["num_hidden_layers"]
    window = data.get("sliding_window", 4096) if data.get("use_sliding_window", False) else None
    if window is None and data.get("layer_types") is None:
        return {}
    low = data.get("max_window_layers", 28)
    rule = (lambda i: bool((i + 1) % 2) and i < low) if moe else (lambda i: i >= low)
    kinds = _layers_of(data, n, rule)
    return {"sliding_window": window, "layer_types": kinds} if window and kinds else {}


def _qwen_moe(data: dict, shared: bool) -> dict:
    """Qwen-MoE: a layer is sparse unless listed in mlp_only_layers or off decoder_sparse_step
    (qwen2_moe/modeling_qwen2_moe.py, Qwen2MoeDecoderLayer); Qwen2-MoE adds a shared expert of
    shared_expert_intermediate_size with a sigmoid gate (Qwen2MoeSparseMoeBlock)."""
    n = data["num_hidden_layers"]
    experts = data.get("num_experts", data.get("num_local_experts"))
    step = _get(data, "decoder_sparse_step", 1)
    only = set(data.get("mlp_only_layers") or ())
    dense = [i for i in range(n) if i in only or (i + 1) % step]
    out = {"num_experts": experts, "experts_per_token": data["num_experts_per_tok"],
           "expert_intermediate_size": data["moe_intermediate_size"], "dense_layers": dense}
    if shared and data.get("shared_expert_intermediate_size"):
        out.update(shared_expert_intermediate_size=data["shared_expert_intermediate_size"], shared_expert_gate=True)
    return out


def qwen2(data: dict) -> dict:
    return {**_llama_like(data), **_qwen_window(data, moe=False)}


def qwen3(data: dict) -> dict:
    # qwen3/modeling_qwen3.py: LLaMA's layout with an RMSNorm of each query and key head (vector
    # work on the heads, no matrices) and head_dim given
    return {**_llama_like(data), **_qwen_window(data, moe=False)}


def qwen2_moe(data: dict) -> dict:
    return {**_llama_like(data), **_qwen_window(data, moe=True), **_qwen_moe(data, shared=True)}


def qwen3_moe(data: dict) -> dict:
    return {**_llama_like(data), **_qwen_window(data, moe=False), **_qwen_moe(data, shared=False)}


def _gemma(data: dict, every: int) -> dict:
    """Gemma 2 and 3 (gemma2/modeling_gemma2.py): a gated MLP with tanh-GELU (hidden_activation),
    head_dim given, the head tied to the embedding (tie_word_embeddings default true), four
    norms per layer (before and after attention and MLP) and sliding-window layers: every
    other one (Gemma 2), five of every six (Gemma 3, sliding_window_pattern)."""
    n = data["num_hidden_layers"]
    out = _llama_like(data, act_key="hidden_activation", act="gelu_pytorch_tanh", tie=True)
    out["block_norms"] = 4
    window = _get(data, "sliding_window", 4096)
    pattern = data.get("sliding_window_pattern", data.get("_sliding_window_pattern", every))
    kinds = _layers_of(data, n, lambda i: bool((i + 1) % pattern))
    if window and kinds:
        out.update(sliding_window=window, layer_types=kinds)
    return out


def gemma2(data: dict) -> dict:
    return _gemma(data, 2)


def gemma3_text(data: dict) -> dict:
    return _gemma(data, 6)


def opt(data: dict) -> dict:
    """OPT (opt/modeling_opt.py): LayerNorm, learned positions (a table of max_position_embeddings
    + 2 rows: the model offsets positions by 2), fc1 and fc2 of ffn_dim with ReLU, the head tied
    to the embedding."""
    d = data["hidden_size"]
    if data.get("word_embed_proj_dim", d) != d:
        raise FieldError("word_embed_proj_dim", f"{data['word_embed_proj_dim']} differs from hidden_size ({d}): the "
                         "projections in and out of the embedding width are not modelled yet")
    heads = data["num_attention_heads"]
    return {"hidden_size": d, "intermediate_size": data["ffn_dim"], "num_hidden_layers": data["num_hidden_layers"],
            "num_attention_heads": heads, "num_key_value_heads": heads, "vocab_size": data["vocab_size"],
            "hidden_act": _get(data, "activation_function", "relu"), "mlp_gated": False, "norm": "layernorm",
            "tie_word_embeddings": _get(data, "tie_word_embeddings", True), "position_embedding": "learned",
            "max_position_embeddings": _get(data, "max_position_embeddings", 2048) + 2}


def gpt2(data: dict) -> dict:
    """GPT-2 (gpt2/modeling_gpt2.py): n_embd, n_layer, n_head; an MLP of n_inner (default 4 x
    n_embd) with gelu_new; learned positions (n_positions); LayerNorm; the head tied."""
    if data.get("add_cross_attention"):
        raise FieldError("add_cross_attention", "cross-attention to an encoder is not modelled yet")
    d, heads = data["n_embd"], data["n_head"]
    return {"hidden_size": d, "intermediate_size": _get(data, "n_inner", 4 * d), "num_hidden_layers": data["n_layer"],
            "num_attention_heads": heads, "num_key_value_heads": heads, "vocab_size": data["vocab_size"],
            "hidden_act": _get(data, "activation_function", "gelu_new"), "mlp_gated": False, "norm": "layernorm",
            "tie_word_embeddings": _get(data, "tie_word_embeddings", True), "position_embedding": "learned",
            "max_position_embeddings": _get(data, "n_positions", 1024)}


def falcon(data: dict) -> dict:
    """Falcon (falcon/modeling_falcon.py): one query-key-value projection with num_kv_heads (new
    decoder architecture), one (multi_query) or every head's own KV; attention and MLP in
    parallel on one norm (parallel_attn), or on two (the new architecture's ln_attn and
    ln_mlp); an MLP of ffn_hidden_size (default 4 x hidden) with GELU; rotary positions unless
    alibi; the head tied."""
    d, heads = data["hidden_size"], data["num_attention_heads"]
    if data.get("new_decoder_architecture"):
        kv = _get(data, "num_kv_heads", heads)
    else:
        kv = 1 if _get(data, "multi_query", True) else heads
    new = bool(data.get("new_decoder_architecture"))
    two = new and _get(data, "num_ln_in_parallel_attn", 2) == 2
    layout = "parallel_norms" if two else "parallel" if (new or _get(data, "parallel_attn", True)) else "serial"
    return {"hidden_size": d, "intermediate_size": _get(data, "ffn_hidden_size", 4 * d),
            "num_hidden_layers": data["num_hidden_layers"], "num_attention_heads": heads, "num_key_value_heads": kv,
            "vocab_size": data["vocab_size"], "hidden_act": _get(data, "activation", "gelu"), "mlp_gated": False,
            "norm": "layernorm", "tie_word_embeddings": _get(data, "tie_word_embeddings", True),
            "position_embedding": "none" if data.get("alibi") else "rotary", "block_layout": layout}


def gpt_neox(data: dict) -> dict:
    """GPT-NeoX and Pythia (gpt_neox/modeling_gpt_neox.py): attention and MLP in parallel, each
    on its own LayerNorm (use_parallel_residual), a plain GELU MLP, rotary positions on part
    of each head, the head untied (embed_out)."""
    heads = data["num_attention_heads"]
    return {"hidden_size": data["hidden_size"], "intermediate_size": data["intermediate_size"],
            "num_hidden_layers": data["num_hidden_layers"], "num_attention_heads": heads,
            "num_key_value_heads": heads, "vocab_size": data["vocab_size"], "hidden_act": _get(data, "hidden_act", "gelu"),
            "mlp_gated": False, "norm": "layernorm", "tie_word_embeddings": _get(data, "tie_word_embeddings", False),
            "block_layout": "parallel_norms" if _get(data, "use_parallel_residual", True) else "serial"}


def deepseek(data: dict) -> dict:
    """DeepSeek-V2 and V3 (deepseek_v3/modeling_deepseek_v3.py): multi-head latent attention
    (q_lora_rank, kv_lora_rank, qk_nope_head_dim, qk_rope_head_dim, v_head_dim; archsim.ir.mla);
    the first first_k_dense_replace layers dense (intermediate_size), the others a mixture of
    n_routed_experts of moe_intermediate_size, num_experts_per_tok per token, plus
    n_shared_experts as one MLP every token runs, with no gate of its own (DeepseekV3MoE)."""
    out = _llama_like(data)
    n = data["num_hidden_layers"]
    shared = _get(data, "n_shared_experts", 0) or 0
    out.update(
        kv_lora_rank=data["kv_lora_rank"], q_lora_rank=data.get("q_lora_rank"),
        qk_nope_head_dim=data["qk_nope_head_dim"], qk_rope_head_dim=data["qk_rope_head_dim"],
        v_head_dim=data["v_head_dim"], head_dim=None, num_key_value_heads=data["num_attention_heads"],
        num_experts=data["n_routed_experts"], experts_per_token=data["num_experts_per_tok"],
        expert_intermediate_size=data["moe_intermediate_size"],
        shared_expert_intermediate_size=shared * data["moe_intermediate_size"],
        dense_layers=list(range(min(n, _get(data, "first_k_dense_replace", 0)))))
    return out


deepseek_v2 = deepseek_v3 = deepseek


# model_type -> (reader, the keys it reads)
FAMILIES: dict[str, tuple[Callable[[dict], dict], frozenset[str]]] = {}
_LLAMA_KEYS = {"hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
               "vocab_size", "hidden_act", "head_dim", "tie_word_embeddings", "max_position_embeddings"}
for _reader, _extra in (
    (llama, set()), (mistral, {"sliding_window"}), (phi3, {"sliding_window"}),
    (mixtral, {"sliding_window", "num_local_experts", "num_experts_per_tok"}),
    (qwen2, {"sliding_window", "layer_types"}), (qwen3, {"sliding_window", "layer_types"}),
    (qwen2_moe, {"sliding_window", "layer_types", "num_experts", "num_experts_per_tok", "moe_intermediate_size",
                 "shared_expert_intermediate_size", "decoder_sparse_step", "mlp_only_layers"}),
    (qwen3_moe, {"sliding_window", "layer_types", "num_experts", "num_local_experts", "num_experts_per_tok",
                 "moe_intermediate_size", "decoder_sparse_step", "mlp_only_layers"}),
    (gemma2, {"hidden_activation", "sliding_window", "layer_types"}),
    (gemma3_text, {"hidden_activation", "sliding_window", "layer_types"}),
):
    FAMILIES[_reader.__name__] = (_reader, frozenset(_LLAMA_KEYS | _extra))
_DEEPSEEK_KEYS = frozenset(_LLAMA_KEYS | {
    "kv_lora_rank", "q_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim", "n_routed_experts",
    "n_shared_experts", "num_experts_per_tok", "moe_intermediate_size", "first_k_dense_replace", "qk_head_dim",
    # routing among expert groups (n_group, topk_group), the scoring function and the scaling of the
    # routed sum change the router's few vector ops, not the experts' work
    "n_group", "topk_group", "topk_method", "scoring_func", "routed_scaling_factor", "rope_interleave",
    "aux_loss_alpha", "seq_aux", "moe_layer_freq", "ep_size",
    # the multi-token-prediction module is not part of transformers' model (it serves speculation)
    "num_nextn_predict_layers"})
FAMILIES["deepseek_v2"] = (deepseek, _DEEPSEEK_KEYS)
FAMILIES["deepseek_v3"] = (deepseek, _DEEPSEEK_KEYS)
FAMILIES["opt"] = (opt, frozenset({"hidden_size", "ffn_dim", "num_hidden_layers", "num_attention_heads", "vocab_size",
                                   "activation_function", "tie_word_embeddings", "max_position_embeddings",
                                   "word_embed_proj_dim"}))
FAMILIES["gpt2"] = (gpt2, frozenset({"n_embd", "n_inner", "n_layer", "n_head", "vocab_size", "activation_function",
                                     "tie_word_embeddings", "n_positions", "add_cross_attention"}))
FAMILIES["falcon"] = (falcon, frozenset({"hidden_size", "num_attention_heads", "num_kv_heads", "num_key_value_heads",
                                         "multi_query", "new_decoder_architecture", "parallel_attn", "ffn_hidden_size",
                                         "num_hidden_layers", "vocab_size", "activation", "tie_word_embeddings",
                                         "alibi", "max_position_embeddings"}))
FAMILIES["gpt_neox"] = (gpt_neox, frozenset({"hidden_size", "intermediate_size", "num_hidden_layers",
                                             "num_attention_heads", "vocab_size", "hidden_act", "tie_word_embeddings",
                                             "use_parallel_residual", "max_position_embeddings"}))


def is_published(data: dict) -> bool:
    """Whether ``data`` is a Hugging Face config of a family (by model_type) rather than a
    mapping in archsim's own field names."""
    return data.get("model_type") in FAMILIES or data.get("model_type") in UNSUPPORTED


def translate(data: dict) -> tuple[dict, list[str]]:
    """archsim's model fields for a published config, and the keys no reader takes (each may
    change the compute: the caller warns). Raises FieldError for what is not modelled."""
    family = data["model_type"]
    if family in UNSUPPORTED:
        raise FieldError("model_type", f"{family}: {UNSUPPORTED[family]}")
    reader, keys = FAMILIES[family]
    for key, value in data.items():  # JSON's NaN and Infinity are no model's values, read or not
        if isinstance(value, float) and not math.isfinite(value):
            raise FieldError(key, "Input should be a finite number")
    if "vocab_size" not in data:
        raise FieldError("vocab_size", "required key is missing")
    try:
        fields = reader(data)
    except KeyError as exc:
        raise FieldError(str(exc.args[0]), "required key is missing") from None
    unread = sorted(k for k in data if k not in keys and k not in INERT)
    return {**fields, "model_type": family}, unread
