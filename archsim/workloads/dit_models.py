"""Diffusers transformer configs as published (``transformer/config.json``), read per model class.

``_class_name`` decides the family. Each class has its own config model below, with the keys its
diffusers ``__init__`` takes and that ``__init__``'s defaults (diffusers 0.42.1, files under
``src/diffusers/models/transformers/``):

- ``FluxTransformer2DModel`` (transformer_flux.py): FLUX.1, double-stream MMDiT blocks then
  single-stream blocks;
- ``SD3Transformer2DModel`` (transformer_sd3.py): Stable Diffusion 3 / 3.5, MMDiT blocks;
- ``PixArtTransformer2DModel`` (pixart_transformer_2d.py): PixArt-alpha, adaLN-single blocks
  with cross-attention to the text; also the ``Transformer2DModel`` name its published configs
  carry, which diffusers remaps to this class when ``norm_type`` is ``ada_norm_single``;
- ``WanTransformer3DModel`` (transformer_wan.py): Wan 2.1 text-to-video;
- ``HunyuanVideoTransformer3DModel`` (transformer_hunyuan_video.py): HunyuanVideo text-to-video,
  a token refiner over the text, dual-stream then single-stream blocks.

Keys that do not change the operator graph (versions, dropout, epsilons) are in ``INERT``; any
other key the class does not take is a warning (the counts may miss what it does); a value that
changes the compute in a way archsim does not model (Wan's and HunyuanVideo's image conditioning,
a GEGLU MLP) is an error naming the key.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import ConfigDict, model_validator

from archsim.config.fields import Count, NonNegativeCount, PositiveFactor, Strict
from archsim.config.loader import Layered, validate_layered
from archsim.config.yamlio import MAX_YAML_BYTES, read_yaml_mapping
from archsim.errors import ArchsimWarning, ConfigError, FieldError
from archsim.workloads.inputs import read_json_object

INERT = frozenset({
    "_class_name", "_diffusers_version", "_name_or_path", "dropout", "eps", "norm_eps", "upcast_attention",
    "norm_num_groups", "interpolation_scale", "num_embeds_ada_norm", "norm_elementwise_affine",
    "use_linear_projection", "attention_bias", "num_vector_embeds",
})


class _Published(Strict):
    # JSON's NaN and Infinity are no model's values; the keys are diffusers' own
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False, protected_namespaces=())
    FAMILY: ClassVar[str]
    CLASS: ClassVar[str]  # the diffusers class

    num_attention_heads: Count
    attention_head_dim: Count
    in_channels: Count

    @property
    def family(self) -> str:
        return self.FAMILY

    @property
    def hidden(self) -> int:
        """The transformer's width: heads x head size (every class's ``inner_dim``)."""
        return self.num_attention_heads * self.attention_head_dim

    @property
    def patch(self) -> tuple[int, int, int]:
        """The patch (frames, height, width) one token covers of the transformer's input."""
        return (1, self.patch_size, self.patch_size)  # type: ignore[attr-defined]

    @property
    def patch_in(self) -> int:
        """Input features per token: a patch of the latent (the patch embedding's input)."""
        return self.in_channels * math.prod(self.patch)

    @property
    def patch_out(self) -> int:
        """Output features per token (``proj_out``'s width)."""
        return self.out * math.prod(self.patch)

    @property
    def out(self) -> int:
        return self.out_channels or self.in_channels  # type: ignore[attr-defined]


class FluxConfig(_Published):
    """FluxTransformer2DModel: the pipeline packs 2 x 2 latent pixels into a token
    (pipeline_flux.py, _pack_latents), so ``in_channels`` (64) is 4 latent channels' worth."""

    FAMILY: ClassVar[str] = "flux"
    CLASS: ClassVar[str] = "FluxTransformer2DModel"
    patch_size: Count = 1
    in_channels: Count = 64
    out_channels: Count | None = None
    num_layers: NonNegativeCount = 19
    num_single_layers: NonNegativeCount = 38
    attention_head_dim: Count = 128
    num_attention_heads: Count = 24
    joint_attention_dim: Count = 4096
    pooled_projection_dim: Count = 768
    guidance_embeds: bool = False
    axes_dims_rope: tuple[Count, ...] = (16, 56, 56)

    @property
    def patch_in(self) -> int:  # x_embedder is a Linear over the packed latent
        return self.in_channels

    @model_validator(mode="after")
    def _rope(self) -> "FluxConfig":
        if sum(self.axes_dims_rope) != self.attention_head_dim:
            raise FieldError("axes_dims_rope", f"the rotary axes ({sum(self.axes_dims_rope)} in all) must add up to "
                             f"attention_head_dim ({self.attention_head_dim})")
        if self.num_layers + self.num_single_layers == 0:
            raise FieldError("num_layers", "a FLUX transformer needs at least one block (num_layers or num_single_layers)")
        return self


class SD3Config(_Published):
    """SD3Transformer2DModel; ``dual_attention_layers`` (SD3.5) adds a second image-only
    attention to those blocks, ``qk_norm`` normalises queries and keys per head."""

    FAMILY: ClassVar[str] = "sd3"
    CLASS: ClassVar[str] = "SD3Transformer2DModel"
    sample_size: Count = 128
    patch_size: Count = 2
    in_channels: Count = 16
    num_layers: Count = 18
    attention_head_dim: Count = 64
    num_attention_heads: Count = 18
    joint_attention_dim: Count = 4096
    caption_projection_dim: Count = 1152
    pooled_projection_dim: Count = 2048
    out_channels: Count = 16
    pos_embed_max_size: Count = 96
    dual_attention_layers: tuple[NonNegativeCount, ...] = ()
    qk_norm: Literal["rms_norm", "layer_norm"] | None = None

    @model_validator(mode="after")
    def _widths(self) -> "SD3Config":
        if self.caption_projection_dim != self.hidden:  # the text stream enters the blocks at this width
            raise FieldError("caption_projection_dim", f"{self.caption_projection_dim} must equal the blocks' width, "
                             f"num_attention_heads x attention_head_dim = {self.hidden}")
        bad = [i for i in self.dual_attention_layers if i >= self.num_layers]
        if bad:
            raise FieldError("dual_attention_layers", f"layer {bad[0]} is past the last ({self.num_layers - 1})")
        return self


class PixArtConfig(_Published):
    """PixArtTransformer2DModel (adaLN-single): ``use_additional_conditions`` defaults to true at
    ``sample_size`` 128 (the 1024-pixel models), adding resolution and aspect-ratio embedders."""

    FAMILY: ClassVar[str] = "pixart_alpha"
    CLASS: ClassVar[str] = "PixArtTransformer2DModel"
    num_attention_heads: Count = 16
    attention_head_dim: Count = 72
    in_channels: Count = 4
    out_channels: Count | None = 8
    num_layers: Count = 28
    cross_attention_dim: Count | None = 1152
    sample_size: Count = 128
    patch_size: Count = 2
    activation_fn: Literal["gelu", "gelu-approximate"] = "gelu-approximate"
    norm_type: Literal["ada_norm_single"] = "ada_norm_single"
    use_additional_conditions: bool | None = None
    caption_channels: Count | None = None
    attention_type: Literal["default"] = "default"
    # keys of the published Transformer2DModel configs, at the only values PixArt runs with
    only_cross_attention: Literal[False] = False
    double_self_attention: Literal[False] = False

    @property
    def additional_conditions(self) -> bool:
        if self.use_additional_conditions is None:
            return self.sample_size == 128
        return self.use_additional_conditions

    @property
    def text_width(self) -> int:
        """The width of the text the cross-attention reads (after ``caption_projection``)."""
        return self.hidden if self.caption_channels is not None else self.cross_attention_dim or self.hidden

    @model_validator(mode="after")
    def _widths(self) -> "PixArtConfig":
        if self.cross_attention_dim is None:
            raise FieldError("cross_attention_dim", "PixArt's blocks cross-attend to the text: expected a width")
        if self.caption_channels is not None and self.cross_attention_dim != self.hidden:
            raise FieldError("cross_attention_dim", f"{self.cross_attention_dim} must equal num_attention_heads x "
                             f"attention_head_dim ({self.hidden}): caption_projection maps the text to that width")
        if self.additional_conditions and self.hidden % 3:
            raise FieldError("attention_head_dim", f"the width {self.hidden} must be a multiple of 3: the resolution "
                             "and aspect-ratio embeddings fill 2/3 and 1/3 of it")
        return self


class WanConfig(_Published):
    """WanTransformer3DModel, text-to-video (Wan 2.1 T2V)."""

    FAMILY: ClassVar[str] = "wan2.1"
    CLASS: ClassVar[str] = "WanTransformer3DModel"
    patch_size: tuple[Count, Count, Count] = (1, 2, 2)
    num_attention_heads: Count = 40
    attention_head_dim: Count = 128
    in_channels: Count = 16
    out_channels: Count = 16
    text_dim: Count = 4096
    freq_dim: Count = 256
    ffn_dim: Count = 13824
    num_layers: Count = 40
    cross_attn_norm: bool = True
    qk_norm: Literal["rms_norm_across_heads"] | None = "rms_norm_across_heads"
    image_dim: None = None  # image-to-video conditioning is not modelled
    added_kv_proj_dim: None = None
    rope_max_seq_len: Count = 1024
    pos_embed_seq_len: None = None

    @property
    def patch(self) -> tuple[int, int, int]:
        return tuple(self.patch_size)  # type: ignore[return-value]


class HunyuanVideoConfig(_Published):
    """HunyuanVideoTransformer3DModel, text-to-video: its ``__init__``'s keys and defaults.
    ``image_condition_type`` (HunyuanVideo-I2V: ``latent_concat``, ``token_replace``) is not
    modelled; the query/key norms are per head (the attention processor unflattens the heads first)."""

    FAMILY: ClassVar[str] = "hunyuan_video"
    CLASS: ClassVar[str] = "HunyuanVideoTransformer3DModel"
    in_channels: Count = 16
    out_channels: Count | None = 16
    num_attention_heads: Count = 24
    attention_head_dim: Count = 128
    num_layers: NonNegativeCount = 20
    num_single_layers: NonNegativeCount = 40
    num_refiner_layers: NonNegativeCount = 2
    mlp_ratio: PositiveFactor = 4.0
    patch_size: Count = 2
    patch_size_t: Count = 1
    qk_norm: Literal["rms_norm", "layer_norm"] | None = "rms_norm"
    guidance_embeds: bool = True
    text_embed_dim: Count = 4096
    pooled_projection_dim: Count = 768
    rope_theta: PositiveFactor = 256.0
    rope_axes_dim: tuple[Count, Count, Count] = (16, 56, 56)
    image_condition_type: Literal["latent_concat", "token_replace"] | None = None

    @property
    def patch(self) -> tuple[int, int, int]:
        return (self.patch_size_t, self.patch_size, self.patch_size)

    @property
    def mlp(self) -> int:
        """The blocks' MLP width: ``int(hidden_size * mlp_ratio)`` (FeedForward's inner_dim, the
        single block's mlp_dim); the token refiner's is 4 x the width whatever this is."""
        return int(self.hidden * self.mlp_ratio)

    @model_validator(mode="after")
    def _checks(self) -> "HunyuanVideoConfig":
        if self.image_condition_type is not None:
            raise FieldError("image_condition_type", f"{self.image_condition_type!r}: HunyuanVideo-I2V's image "
                             "conditioning is not modelled; text-to-video only (null)")
        if sum(self.rope_axes_dim) != self.attention_head_dim or any(a % 2 for a in self.rope_axes_dim):
            raise FieldError("rope_axes_dim", f"{list(self.rope_axes_dim)}: expected even sizes adding up to "
                             f"attention_head_dim ({self.attention_head_dim}), the rotary table's width")
        if self.num_layers + self.num_single_layers == 0:
            raise FieldError("num_layers", "a HunyuanVideo transformer needs at least one block (num_layers or "
                             "num_single_layers)")
        if self.mlp == 0:
            raise FieldError("mlp_ratio", f"{self.mlp_ratio} x {self.hidden} is an MLP of no width")
        return self


CLASSES: dict[str, type[_Published]] = {
    "FluxTransformer2DModel": FluxConfig, "SD3Transformer2DModel": SD3Config,
    "PixArtTransformer2DModel": PixArtConfig, "Transformer2DModel": PixArtConfig,
    "WanTransformer3DModel": WanConfig, "HunyuanVideoTransformer3DModel": HunyuanVideoConfig,
}
FAMILIES = {cls.FAMILY: cls for cls in CLASSES.values()}
DiTModel = FluxConfig | SD3Config | PixArtConfig | WanConfig | HunyuanVideoConfig
MAX_MODEL_BYTES = MAX_YAML_BYTES  # a documented limit: model configs of at most 1 MiB


def translate(data: dict) -> tuple[type[_Published], dict, list[str]]:
    """The class a config names, its keys that class takes, and the keys it does not read.
    Raises FieldError (naming the key) for a class archsim does not read."""
    name = data.get("_class_name")
    if not isinstance(name, str) or name not in CLASSES:
        shown = f"{name!r}" if isinstance(name, str) else "missing"
        raise FieldError("_class_name", f"{shown}; the diffusers transformer classes archsim reads: "
                         f"{', '.join(sorted(CLASSES))}")
    cls = CLASSES[name]
    if name == "Transformer2DModel" and data.get("norm_type") != "ada_norm_single":
        raise FieldError("norm_type", "a Transformer2DModel is read as PixArt-alpha's, which has norm_type "
                         "ada_norm_single; other Transformer2DModel layouts are not modelled")
    taken = {k: v for k, v in data.items() if k in cls.model_fields}
    unread = [k for k in data if k not in cls.model_fields and k not in INERT]
    return cls, taken, unread


def resolve_dit_model(value: str | dict, paths) -> DiTModel:
    """``model:`` is the path of a diffusers ``config.json`` (relative to the file naming it),
    a mapping with ``from: PATH`` plus keys that override the file's
    (``{from: models/flux1_dev_transformer.json, num_layers: 2}``), or an inline mapping with
    its ``_class_name``. Errors name the file (or workload key) that wrote the bad value."""
    named_in = paths.source("model")
    file_data: dict = {}
    inline: dict = {}
    path = None
    if isinstance(value, str):
        path = paths("model", value)
        file_data = _read(path, named_in, "model")
    else:
        inline = dict(value)
        origin = inline.pop("from", None)
        if origin is not None:
            named_in = paths.source("model.from")
            if not isinstance(origin, str):
                raise ConfigError("expected the path of a diffusers config.json", file=named_in, key="model.from")
            path = paths("model.from", origin)
            file_data = _read(path, named_in, "model.from")
    key = "model" if isinstance(value, str) else "model.from"
    referrer = f" (the model config named by {named_in}, key {key})"
    try:
        cls, taken, unread = translate({**file_data, **inline})
    except FieldError as exc:  # blame whichever wrote the key
        if exc.key in inline or path is None:
            raise ConfigError(str(exc), file=paths.source("model"), key=f"model.{exc.key}") from None
        raise ConfigError(f"{exc}{referrer}", file=str(path), key=exc.key) from None
    for name in unread:
        if name in inline:  # a user's own keys are checked, unlike a published file's
            raise ConfigError(f"not a key of {cls.CLASS}; expected one of: {', '.join(sorted(cls.model_fields))}",
                              file=paths.source("model"), key=f"model.{name}")
        warnings.warn(f"{path}: key {name!r} is not read by archsim's {cls.FAMILY} model; if it changes the compute, "
                      "the counts miss it", ArchsimWarning, stacklevel=2)
    layered = Layered()
    layered.merge({k: v for k, v in file_data.items() if k in taken}, str(path))
    layered.merge({k: v for k, v in inline.items() if k in taken}, paths.source("model"))
    prefix = ("model",) if inline or path is None else ()
    try:
        model = validate_layered(cls, layered, str(path or paths.source("model")), key_prefix=prefix)
        return model  # type: ignore[return-value]
    except ConfigError as exc:
        lines = []
        ours = f"{path}: "
        for line in str(exc).splitlines():
            if path is not None and line.startswith(ours):  # the file's own key, without the workload's prefix
                line = ours + line[len(ours):].removeprefix("model.") + referrer
            lines.append(line)
        raise ConfigError("\n".join(lines)) from None


def _read(path: Path, named_in: str, key: str) -> dict:
    if not path.exists():  # exists, not is_file: a FIFO or a directory gets its own error below
        raise ConfigError(f"model config {path} not found", file=named_in, key=key)
    try:
        return dict(read_json_object(path, "a diffusers transformer config (a JSON object)", "model configs",
                                     MAX_MODEL_BYTES, "1 MiB") if path.suffix == ".json" else read_yaml_mapping(path))
    except ConfigError as exc:
        raise ConfigError(f"{exc} (the model config named by {named_in}, key {key})") from None


def model_from_dict(data: dict[str, Any]) -> DiTModel:
    """A config given as a mapping (tests, scripts): validated as its class, unread keys ignored."""
    cls, taken, _ = translate(data)
    return cls(**taken)  # type: ignore[return-value]
