"""Language models from Hugging Face style configs, and the lowering of one forward pass.

A model is given as a path to a ``config.json`` (or YAML) or inline. A file whose
``model_type`` is a family archsim reads (``archsim.workloads.hf``: llama, mistral, mixtral,
qwen2, qwen2_moe, qwen3, qwen3_moe, gemma2, gemma3_text, phi3, opt, gpt2, falcon, gpt_neox) is
read as that architecture reads it, published as it is; any other mapping is in archsim's own
field names: ``hidden_size``, ``intermediate_size``, ``num_hidden_layers``,
``num_attention_heads``, ``num_key_value_heads``, ``vocab_size``, ``hidden_act``, ``head_dim``,
``tie_word_embeddings``, ``rms_norm_eps``, ``model_type``, ``max_position_embeddings``, and
for what a plain config cannot say (``mlp_gated``, ``norm``, ``position_embedding``, the
mixture of experts ``num_experts``, ``experts_per_token``, ``expert_intermediate_size``,
``shared_expert_intermediate_size``, ``shared_expert_gate``, ``dense_layers``; attention over
a ``sliding_window`` on the layers ``layer_types`` names; ``block_layout``; ``post_norms``),
defaulting from it:

- the MLP is gated (SwiGLU/GeGLU) when ``hidden_act`` is ``silu`` or ``swiglu`` (LLaMA,
  Mistral, Qwen and LLaDA use gated SiLU MLPs; GPT-style models use plain GELU);
- the norm is RMSNorm when ``rms_norm_eps`` is present, else LayerNorm;
- positions are rotary (no parameters) unless ``position_embedding: learned``.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import ConfigDict, model_validator

from archsim.config.fields import Count, NonNegativeCount, Strict
from archsim.config.loader import Layered, validate_layered
from archsim.config.yamlio import MAX_YAML_BYTES, read_yaml_mapping
from archsim.dtypes import DType
from archsim.errors import ArchsimWarning, ConfigError, FieldError
from archsim.ir import ops
from archsim.ir.graph import OpGraph
from archsim.ir.transformer import BlockShape, Builder, MoeShape, Precision, Tokens, transformer_block
from archsim.workloads.hf import FAMILIES, is_published, translate
from archsim.workloads.inputs import read_json_object

if TYPE_CHECKING:  # multi-head latent attention (DeepSeek): imported by the models that have it
    from archsim.ir.mla import MlaShape

_ACTIVATIONS = {"silu": "silu", "swiglu": "silu", "swish": "silu", "gelu": "gelu", "gelu_new": "gelu",
                "gelu_pytorch_tanh": "gelu", "gelu_fast": "gelu", "relu": "relu"}


class LanguageModel(Strict):
    # a published file's keys are read by its family (archsim.workloads.hf) before this model
    # sees them; JSON's NaN and Infinity are no model's values
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    hidden_size: Count
    intermediate_size: Count
    num_hidden_layers: Count
    num_attention_heads: Count
    num_key_value_heads: Count | None = None
    vocab_size: Count
    hidden_act: Literal[tuple(_ACTIVATIONS)] = "silu"  # type: ignore[valid-type]
    head_dim: Count | None = None
    tie_word_embeddings: bool = False
    rms_norm_eps: float | None = None
    model_type: str = ""
    max_position_embeddings: Count | None = None
    # archsim's own keys
    mlp_gated: bool | None = None
    norm: Literal["layernorm", "rmsnorm"] | None = None
    position_embedding: Literal["rotary", "learned", "none"] = "rotary"
    # a mixture of experts: every layer's MLP but ``dense_layers``' (indices from 0)
    num_experts: Count | None = None
    experts_per_token: Count | None = None
    expert_intermediate_size: Count | None = None
    shared_expert_intermediate_size: NonNegativeCount = 0
    shared_expert_gate: bool = False
    dense_layers: list[NonNegativeCount] = []
    # sliding-window attention on the layers ``layer_types`` marks (every layer when not given)
    sliding_window: Count | None = None
    layer_types: list[Literal["full_attention", "sliding_attention"]] | None = None
    block_layout: Literal["serial", "parallel", "parallel_norms"] = "serial"
    post_norms: bool = False  # a norm after attention and after the MLP too (Gemma 2 and 3)
    block_norms: Literal[2, 4] = 2  # a published Gemma's name for post_norms (4 norms a layer)
    # multi-head latent attention (DeepSeek-V2, V3): keys and values from one cached latent
    kv_lora_rank: Count | None = None
    q_lora_rank: Count | None = None
    qk_nope_head_dim: Count | None = None
    qk_rope_head_dim: Count | None = None
    v_head_dim: Count | None = None
    mla_mode: Literal["absorb", "naive"] = "absorb"

    @model_validator(mode="after")
    def _experts(self) -> "LanguageModel":
        moe = (self.num_experts, self.experts_per_token, self.expert_intermediate_size)
        if any(v is not None for v in moe) and not all(v is not None for v in moe):
            raise FieldError("num_experts", "a mixture of experts needs num_experts, experts_per_token and "
                             "expert_intermediate_size together")
        if self.num_experts is not None and self.experts_per_token > self.num_experts:
            raise FieldError("experts_per_token", f"{self.experts_per_token} exceeds num_experts ({self.num_experts})")
        bad = [i for i in self.dense_layers if i >= self.num_hidden_layers]
        if bad:
            raise FieldError("dense_layers", f"layer {bad[0]} is past the last ({self.num_hidden_layers - 1})")
        mla = (self.kv_lora_rank, self.qk_nope_head_dim, self.qk_rope_head_dim, self.v_head_dim)
        if any(v is not None for v in mla) and not all(v is not None for v in mla):
            raise FieldError("kv_lora_rank", "latent attention needs kv_lora_rank, qk_nope_head_dim, qk_rope_head_dim "
                             "and v_head_dim together")
        if self.layer_types is not None and len(self.layer_types) != self.num_hidden_layers:
            raise FieldError("layer_types", f"{len(self.layer_types)} entries for {self.num_hidden_layers} layers")
        return self

    @model_validator(mode="after")
    def _heads(self) -> "LanguageModel":
        # Checked here, in the config's own field names, rather than left to BlockShape,
        # whose message names its own fields and cannot say which of these to blame.
        heads, kv_heads = self.num_attention_heads, self.num_key_value_heads
        if kv_heads is not None and heads % kv_heads:
            raise FieldError("num_key_value_heads", f"num_attention_heads ({heads}) must be a multiple of "
                             f"num_key_value_heads ({kv_heads}): query heads share key/value heads in groups")
        if self.head_dim is None and self.hidden_size % heads:
            raise FieldError("num_attention_heads", f"hidden_size ({self.hidden_size}) is not divisible by "
                             f"num_attention_heads ({heads}); set head_dim for heads that do not split hidden_size")
        self.block()
        return self

    def block(self, sparse: bool = False, sliding: bool = False) -> BlockShape:
        """One layer's shape: with the mixture of experts (``sparse``) or the dense MLP, with
        the sliding window or full attention."""
        act = _ACTIVATIONS[self.hidden_act]
        gated = self.mlp_gated if self.mlp_gated is not None else self.hidden_act in ("silu", "swiglu", "swish")
        norm = self.norm or ("rmsnorm" if self.rms_norm_eps is not None else "layernorm")
        moe = None
        if sparse and self.num_experts is not None:
            moe = MoeShape(self.num_experts, self.experts_per_token, self.expert_intermediate_size,
                           self.shared_expert_intermediate_size, self.shared_expert_gate)
        return BlockShape(
            hidden=self.hidden_size, heads=self.num_attention_heads,
            kv_heads=self.num_key_value_heads or self.num_attention_heads, ffn=self.intermediate_size,
            head_dim=self.head_dim, activation=act, gated=gated, norm=norm,
            window=self.sliding_window if sliding else None, moe=moe, layout=self.block_layout,
            post_norms=self.post_norms or self.block_norms == 4, mla=self._mla(),
        )

    def _mla(self) -> MlaShape | None:
        if self.kv_lora_rank is None:
            return None
        from archsim.ir.mla import MlaShape

        return MlaShape(self.kv_lora_rank, self.qk_nope_head_dim, self.qk_rope_head_dim, self.v_head_dim,
                        self.q_lora_rank, self.mla_mode)

    def layer_groups(self) -> list[tuple[bool, bool, int]]:
        """The layers by kind, in order of first appearance: (sparse, sliding, how many)."""
        counts: dict[tuple[bool, bool], int] = {}
        dense = set(self.dense_layers)
        for i in range(self.num_hidden_layers):
            sparse = self.num_experts is not None and i not in dense
            sliding = self.sliding_window is not None and (
                self.layer_types is None or self.layer_types[i] == "sliding_attention")
            counts[sparse, sliding] = counts.get((sparse, sliding), 0) + 1
        return [(sparse, sliding, n) for (sparse, sliding), n in counts.items()]

    @property
    def params(self) -> int:
        """Matrix and embedding parameters (biases and norm gains, under 0.1%, excluded); a
        mixture of experts counts every expert."""
        d, v = self.hidden_size, self.vocab_size
        embeddings = v * d * (1 if self.tie_word_embeddings else 2)
        if self.position_embedding == "learned":
            embeddings += (self.max_position_embeddings or 0) * d
        return sum(n * self.block(sparse, sliding).weight_params for sparse, sliding, n in self.layer_groups()) \
            + embeddings


MAX_MODEL_BYTES = MAX_YAML_BYTES  # a documented limit: model configs of at most 1 MiB, as YAML files


def resolve_model(value: str | dict, paths) -> LanguageModel:
    """``model:`` is a path to a config.json or YAML (relative to the file that names it), an
    inline mapping of the fields, or a mapping with ``from: PATH`` plus fields that override
    the file's (``{from: models/llama3_8b.json, num_key_value_heads: 32}``)."""
    layered = Layered()
    if isinstance(value, str):
        path = _merge_file(layered, paths("model", value), paths.source("model"), "model")
        return _validate(layered, path, paths.source("model"), "model", ())
    inline = dict(value)
    source = inline.pop("from", None)
    unknown = sorted(str(k) for k in inline if k not in LanguageModel.model_fields)
    if unknown:  # a user's own keys are checked, unlike a foreign file's
        raise ConfigError(f"unknown key; expected one of: {', '.join(sorted(LanguageModel.model_fields))}",
                          file=paths.source("model"), key=f"model.{unknown[0]}")
    if source is not None and not isinstance(source, str):
        raise ConfigError("expected the path of a config.json or YAML file", file=paths.source("model.from"), key="model.from")
    path = None
    if source is not None:
        path = _merge_file(layered, paths("model.from", source), paths.source("model.from"), "model.from")
    layered.merge(inline, paths.source("model"))
    if path is None:
        return validate_layered(LanguageModel, layered, paths.source("model"), key_prefix=("model",))
    return _validate(layered, path, paths.source("model.from"), "model.from", ("model",))


def _validate(layered: Layered, path: Path, named_in: str, key: str, key_prefix: tuple[str, ...]) -> LanguageModel:
    """Validate a model read from ``path``: a problem with what the file says, or does not say
    (a missing key), is reported against that file, naming the workload that points to it."""
    try:
        return validate_layered(LanguageModel, layered, str(path), key_prefix=key_prefix)
    except ConfigError as exc:
        referrer = f" (the model config named by {named_in}, key {key})"
        ours, prefix = f"{path}: ", "".join(f"{part}." for part in key_prefix)
        lines = []
        for line in str(exc).splitlines():
            if line.startswith(ours):  # the file's own key, without the workload's prefix
                line = ours + line[len(ours):].removeprefix(prefix) + referrer
            lines.append(line)
        raise ConfigError("\n".join(lines)) from None


def _merge_file(layered: Layered, path: Path, named_in: str, key: str) -> Path:
    if not path.exists():  # exists, not is_file: a FIFO or directory gets its own error below
        raise ConfigError(f"model config {path} not found", file=named_in, key=key)
    try:
        data = (read_json_object(path, "a JSON object of model fields", "model configs", MAX_MODEL_BYTES, "1 MiB")
                if path.suffix == ".json" else read_yaml_mapping(path))
    except ConfigError as exc:
        raise ConfigError(f"{exc} (the model config named by {named_in}, key {key})") from None
    if is_published(data):  # a Hugging Face config as published: its family reads it
        try:
            data, unread = translate(data)
        except FieldError as exc:
            raise ConfigError(f"{exc} (the model config named by {named_in}, key {key})", file=str(path),
                              key=exc.key) from None
        for name in unread:
            warnings.warn(f"{path}: key {name!r} is not read by archsim's {data['model_type']} model; if it changes "
                          "the compute, the counts miss it", ArchsimWarning, stacklevel=2)
    elif data.get("model_type") and any(k not in LanguageModel.model_fields for k in data):
        odd = next(k for k in data if k not in LanguageModel.model_fields)
        raise ConfigError(f"unknown key of a model_type archsim does not read ({data['model_type']!r}); the families it "
                          f"reads as published: {', '.join(sorted(FAMILIES))}; else give the model in archsim's field "
                          "names (archsim/workloads/lm.py)", file=str(path), key=str(odd))
    layered.merge(data, str(path))
    return path


def lm_forward(
    model: LanguageModel,
    precision: Precision,
    tokens: Tokens,
    logits_rows: int,
    scope: str,
    tp: int = 1,
    ep: int = 1,
) -> OpGraph:
    """One forward pass: embedding, the layer stack, final norm and the LM head.

    The layers are one set of ops with ``copies = num_hidden_layers`` (their own weights and
    K/V caches). ``logits_rows`` is how many positions the LM head computes: the last token of
    each sequence in autoregressive prefill and decode, every query token in a diffusion LLM.
    """
    if ep > 1 and model.num_experts is None:
        raise ValueError(f"system.parallelism.expert is {ep}, but the model has no mixture of experts to divide")
    graph = OpGraph()
    top = Builder(graph, "", precision, scope=scope)
    d, rows = model.hidden_size, tokens.rows
    table = top.weight("embed.weight", model.vocab_size, d)
    ids = top.act("token_ids", rows, dtype=DType.INT32)
    x = top.act("embed.out", rows, d)
    graph.add(ops.EmbeddingLookup("embed", (table, ids), (x,), rows))
    if model.position_embedding == "learned":
        positions = top.weight("pos_embed.weight", model.max_position_embeddings or tokens.kv_len, d)
        pos = top.act("pos_embed.rows", rows, d)
        graph.add(ops.EmbeddingLookup("pos_embed", (positions, ids), (pos,), rows))
        x = top.binary("pos_add", "add", (x, pos), rows, d)
    y = x
    for i, (sparse, sliding, count) in enumerate(model.layer_groups()):
        # one stack of ops per kind of layer (dense or sparse MLP, full or sliding attention),
        # each standing for its layers; the first keeps the name "layers"
        stack = Builder(graph, "layers" if i == 0 else f"layers_{i}", precision, copies=count, scope=scope, tp=tp,
                        ep=ep)
        y = transformer_block(stack, model.block(sparse, sliding), tokens, x=y)
    shape = model.block()
    if logits_rows:
        h = top.norm("final_norm", shape.norm, y, logits_rows, d)
        head = table if model.tie_word_embeddings else top.weight("lm_head.weight", d, model.vocab_size)
        logits = top.act("logits", logits_rows, model.vocab_size)
        graph.add(ops.Gemm("lm_head", (h, head), (logits,), 1, logits_rows, d, model.vocab_size, False))
    return graph
