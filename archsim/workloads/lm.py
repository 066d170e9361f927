"""Language models from Hugging Face style configs, and the lowering of one forward pass.

A model is given as a path to a ``config.json`` (or YAML) or inline with the same field
names: ``hidden_size``, ``intermediate_size``, ``num_hidden_layers``, ``num_attention_heads``,
``num_key_value_heads``, ``vocab_size``, ``hidden_act``, ``head_dim``, ``tie_word_embeddings``,
``rms_norm_eps``, ``model_type``, ``max_position_embeddings``. Other keys of a Hugging Face
file (``architectures``, ``rope_theta``, token ids...) do not change the operator graph and
are ignored; archsim's own optional keys (``mlp_gated``, ``norm``, ``position_embedding``)
say what a config cannot, and default from it:

- the MLP is gated (SwiGLU/GeGLU) when ``hidden_act`` is ``silu`` or ``swiglu`` (LLaMA,
  Mistral, Qwen and LLaDA use gated SiLU MLPs; GPT-style models use plain GELU);
- the norm is RMSNorm when ``rms_norm_eps`` is present, else LayerNorm;
- positions are rotary (no parameters) unless ``position_embedding: learned``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import ConfigDict, model_validator

from archsim.config.fields import Count, Strict
from archsim.config.loader import Layered, validate_layered
from archsim.config.yamlio import MAX_YAML_BYTES, read_yaml_mapping
from archsim.dtypes import DType
from archsim.errors import ConfigError, FieldError
from archsim.ir import ops
from archsim.ir.graph import OpGraph
from archsim.ir.transformer import BlockShape, Builder, Precision, Tokens, transformer_block
from archsim.workloads.inputs import read_json_object

_ACTIVATIONS = {"silu": "silu", "swiglu": "silu", "swish": "silu", "gelu": "gelu", "gelu_new": "gelu",
                "gelu_pytorch_tanh": "gelu", "gelu_fast": "gelu", "relu": "relu"}


class LanguageModel(Strict):
    # foreign files carry extra keys; JSON's NaN and Infinity are no model's values
    model_config = ConfigDict(extra="ignore", frozen=True, allow_inf_nan=False)

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

    def block(self) -> BlockShape:
        act = _ACTIVATIONS[self.hidden_act]
        gated = self.mlp_gated if self.mlp_gated is not None else self.hidden_act in ("silu", "swiglu", "swish")
        norm = self.norm or ("rmsnorm" if self.rms_norm_eps is not None else "layernorm")
        return BlockShape(
            hidden=self.hidden_size, heads=self.num_attention_heads,
            kv_heads=self.num_key_value_heads or self.num_attention_heads, ffn=self.intermediate_size,
            head_dim=self.head_dim, activation=act, gated=gated, norm=norm,
        )

    @property
    def params(self) -> int:
        """Matrix and embedding parameters (biases and norm gains, under 0.1%, excluded)."""
        d, v = self.hidden_size, self.vocab_size
        embeddings = v * d * (1 if self.tie_word_embeddings else 2)
        if self.position_embedding == "learned":
            embeddings += (self.max_position_embeddings or 0) * d
        return self.num_hidden_layers * self.block().weight_params + embeddings


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
    layered.merge(data, str(path))
    return path


def lm_forward(
    model: LanguageModel,
    precision: Precision,
    tokens: Tokens,
    logits_rows: int,
    scope: str,
    tp: int = 1,
) -> OpGraph:
    """One forward pass: embedding, the layer stack, final norm and the LM head.

    The layers are one set of ops with ``copies = num_hidden_layers`` (their own weights and
    K/V caches). ``logits_rows`` is how many positions the LM head computes: the last token of
    each sequence in autoregressive prefill and decode, every query token in a diffusion LLM.
    """
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
    shape = model.block()
    stack = Builder(graph, "layers", precision, copies=model.num_hidden_layers, scope=scope, tp=tp)
    y = transformer_block(stack, shape, tokens, x=x)
    if logits_rows:
        h = top.norm("final_norm", shape.norm, y, logits_rows, d)
        head = table if model.tie_word_embeddings else top.weight("lm_head.weight", d, model.vocab_size)
        logits = top.act("logits", logits_rows, model.vocab_size)
        graph.add(ops.Gemm("lm_head", (h, head), (logits,), 1, logits_rows, d, model.vocab_size, False))
    return graph
