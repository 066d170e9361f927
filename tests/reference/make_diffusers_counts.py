"""Reference counts from diffusers' own transformer classes (not run in CI: it needs torch and
diffusers).

For each family ``kind: diffusion_transformer`` reads (FLUX.1, SD3 / SD3.5, PixArt-alpha, Wan 2.1,
HunyuanVideo), a small config of that very class (a few blocks, narrow widths, every feature the
family has switched on: FLUX's guidance embedding and its absence, SD3.5's per-head query/key norms
and dual-attention blocks, PixArt's resolution and aspect-ratio conditions, HunyuanVideo's token
refiner, guidance embedding, an MLP ratio other than the refiner's fixed 4 and a temporal patch) is
built on the CPU with random weights and counted:
- matrix parameters: every parameter of two or more dimensions (linear and convolution
  weights, PixArt's and Wan's ``scale_shift_table``s);
- MACs of one forward of the transformer, at a non-square latent and batch 2, by torch's
  FlopCounterMode (FLOPs / 2). Attention runs under ``sdpa_kernel(SDPBackend.MATH)``: the math
  kernel's two batched matmuls are what FlopCounterMode counts (the CPU's fused SDPA kernel it
  does not count at all), with the same products as the fused kernels.
The published full-size configs in workloads/models (the diffusers ones) are built on the meta
device (no weights) and counted for parameters and for the MACs of one forward at their bundled
workload's size (FlopCounterMode needs only the shapes). Written to tests/data/diffusers_counts.json, which
tests/test_dit_family.py compares archsim's counts with.

    /tmp/refenv/bin/pip install torch==2.13.0 diffusers==0.42.1 transformers
    cd /tmp/refwork && /tmp/refenv/bin/python /work/main/tests/reference/make_diffusers_counts.py
"""

from __future__ import annotations

import json
from pathlib import Path

import diffusers
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parents[2]
BATCH = 2
GRID = (3, 4, 6)  # latent tokens along frames (video only), height and width: not square
TEXT = 7

CLASSES = {
    "FluxTransformer2DModel": diffusers.FluxTransformer2DModel,
    "SD3Transformer2DModel": diffusers.SD3Transformer2DModel,
    "PixArtTransformer2DModel": diffusers.PixArtTransformer2DModel,
    # diffusers remaps a Transformer2DModel config with norm_type ada_norm_single to PixArt's class
    "Transformer2DModel": diffusers.PixArtTransformer2DModel,
    "WanTransformer3DModel": diffusers.WanTransformer3DModel,
    "HunyuanVideoTransformer3DModel": diffusers.HunyuanVideoTransformer3DModel,
}
# One forward of each bundled workload (workloads/*.yaml): its batch as the transformer sees it
# (doubled by guidance where the pipeline batches it), latent tokens and text tokens
BUNDLED = {
    "flux1_dev_transformer.json": {"batch": 1, "grid": [1, 64, 64], "text": 512},  # flux_dev_1024.yaml
    "sd3_medium_transformer.json": {"batch": 2, "grid": [1, 64, 64], "text": 333},  # sd3_medium_1024.yaml
    "pixart_alpha_xl_2_1024_ms_transformer.json": {"batch": 2, "grid": [1, 64, 64], "text": 120},
    "wan2.1_t2v_1.3b_transformer.json": {"batch": 1, "grid": [21, 30, 52], "text": 512},  # wan21_1.3b_480p.yaml
    # hunyuanvideo_720p.yaml: 720 x 1280, 129 frames -> 33 latent frames of 90 x 160, patches 1 x 2 x 2
    "hunyuanvideo_transformer.json": {"batch": 1, "grid": [33, 45, 80], "text": 256},
}
SMALL = {
    "flux_dev": {"_class_name": "FluxTransformer2DModel", "patch_size": 1, "in_channels": 12, "num_layers": 2,
                 "num_single_layers": 3, "attention_head_dim": 16, "num_attention_heads": 2, "joint_attention_dim": 24,
                 "pooled_projection_dim": 20, "guidance_embeds": True, "axes_dims_rope": [4, 6, 6]},
    "flux_schnell": {"_class_name": "FluxTransformer2DModel", "patch_size": 1, "in_channels": 12, "num_layers": 1,
                     "num_single_layers": 2, "attention_head_dim": 16, "num_attention_heads": 2,
                     "joint_attention_dim": 24, "pooled_projection_dim": 20, "guidance_embeds": False,
                     "axes_dims_rope": [4, 6, 6]},
    "sd3": {"_class_name": "SD3Transformer2DModel", "sample_size": 16, "patch_size": 2, "in_channels": 4,
            "num_layers": 3, "attention_head_dim": 8, "num_attention_heads": 4, "joint_attention_dim": 24,
            "caption_projection_dim": 32, "pooled_projection_dim": 20, "out_channels": 4, "pos_embed_max_size": 16},
    "sd3.5": {"_class_name": "SD3Transformer2DModel", "sample_size": 16, "patch_size": 2, "in_channels": 4,
              "num_layers": 4, "attention_head_dim": 8, "num_attention_heads": 4, "joint_attention_dim": 24,
              "caption_projection_dim": 32, "pooled_projection_dim": 20, "out_channels": 4, "pos_embed_max_size": 16,
              "dual_attention_layers": [0, 1], "qk_norm": "rms_norm"},
    "pixart_alpha": {"_class_name": "PixArtTransformer2DModel", "num_attention_heads": 2, "attention_head_dim": 24,
                     "in_channels": 4, "out_channels": 8, "num_layers": 2, "cross_attention_dim": 48, "sample_size": 8,
                     "patch_size": 2, "use_additional_conditions": True, "caption_channels": 40},
    "wan2.1": {"_class_name": "WanTransformer3DModel", "patch_size": [1, 2, 2], "num_attention_heads": 2,
               "attention_head_dim": 16, "in_channels": 4, "out_channels": 4, "text_dim": 24, "freq_dim": 32,
               "ffn_dim": 48, "num_layers": 2, "rope_max_seq_len": 32},
    "hunyuan_video": {"_class_name": "HunyuanVideoTransformer3DModel", "in_channels": 4, "out_channels": 4,
                      "num_attention_heads": 2, "attention_head_dim": 16, "num_layers": 2, "num_single_layers": 2,
                      "num_refiner_layers": 2, "mlp_ratio": 3.0, "patch_size": 2, "patch_size_t": 1,
                      "qk_norm": "rms_norm", "guidance_embeds": True, "text_embed_dim": 24,
                      "pooled_projection_dim": 20, "rope_axes_dim": [4, 6, 6]},
    "hunyuan_video_pt2": {"_class_name": "HunyuanVideoTransformer3DModel", "in_channels": 4, "out_channels": 8,
                          "num_attention_heads": 2, "attention_head_dim": 8, "num_layers": 1, "num_single_layers": 1,
                          "num_refiner_layers": 1, "mlp_ratio": 4.0, "patch_size": 1, "patch_size_t": 2,
                          "qk_norm": "layer_norm", "guidance_embeds": False, "text_embed_dim": 12,
                          "pooled_projection_dim": 10, "rope_axes_dim": [2, 2, 4]},
}


def build(config: dict):
    cls = CLASSES[config["_class_name"]]
    return cls.from_config({k: v for k, v in config.items() if not k.startswith("_")})


def inputs(config: dict, batch: int, grid: tuple[int, int, int], text: int) -> dict:
    """The forward's arguments: ``batch`` latents of ``grid`` (frames, height, width) tokens
    and ``text`` text tokens, on the current default device."""
    name, b, (f, h, w) = config["_class_name"], batch, grid
    t = torch.rand(b) * 1000
    if name == "FluxTransformer2DModel":  # the pipeline's packed latent: a token per 2 x 2 latent pixels
        s = h * w
        args = {"hidden_states": torch.randn(b, s, config.get("in_channels", 64)), "timestep": t / 1000,
                "encoder_hidden_states": torch.randn(b, text, config.get("joint_attention_dim", 4096)),
                "pooled_projections": torch.randn(b, config.get("pooled_projection_dim", 768)),
                "img_ids": torch.zeros(s, 3), "txt_ids": torch.zeros(text, 3)}
        if config.get("guidance_embeds"):
            args["guidance"] = torch.full((b,), 3.5)
        return args
    if name == "SD3Transformer2DModel":
        p = config["patch_size"]
        return {"hidden_states": torch.randn(b, config["in_channels"], h * p, w * p), "timestep": t,
                "encoder_hidden_states": torch.randn(b, text, config["joint_attention_dim"]),
                "pooled_projections": torch.randn(b, config["pooled_projection_dim"])}
    if name in ("PixArtTransformer2DModel", "Transformer2DModel"):
        p = config["patch_size"]
        return {"hidden_states": torch.randn(b, config["in_channels"], h * p, w * p), "timestep": t,
                "encoder_hidden_states": torch.randn(b, text, config["caption_channels"]),
                "added_cond_kwargs": {"resolution": torch.tensor([[64.0 * h, 64.0 * w]] * b),
                                      "aspect_ratio": torch.tensor([[h / w]] * b)}}
    if name == "HunyuanVideoTransformer3DModel":  # the Llama tokens padded to the length, their mask
        pt, p = config.get("patch_size_t", 1), config.get("patch_size", 2)
        mask = torch.ones(b, text)
        mask[0, text // 2:] = 0  # the first prompt shorter: the refiner's and the blocks' masks differ by sample
        args = {"hidden_states": torch.randn(b, config["in_channels"], f * pt, h * p, w * p), "timestep": t,
                "encoder_hidden_states": torch.randn(b, text, config["text_embed_dim"]),
                "encoder_attention_mask": mask, "pooled_projections": torch.randn(b, config["pooled_projection_dim"])}
        if config.get("guidance_embeds", True):  # pipeline_hunyuan_video.py: guidance_scale x 1000
            args["guidance"] = torch.full((b,), 6000.0)
        return args
    pt, ph, pw = config["patch_size"]
    return {"hidden_states": torch.randn(b, config["in_channels"], f * pt, h * ph, w * pw), "timestep": t,
            "encoder_hidden_states": torch.randn(b, text, config["text_dim"])}


def matrix_params(model) -> int:
    unique = {id(p): p for p in model.parameters()}
    return sum(p.numel() for p in unique.values() if p.dim() >= 2)


def forward_macs(model, config: dict, batch: int, grid, text: int) -> tuple[int, dict]:
    """MACs of one forward (FLOPs / 2), in all and by aten op, on the model's device."""
    args = inputs(config, batch, tuple(grid), text)
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        model(**args, return_dict=False)
    by_op = {str(op): n // 2 for op, n in counter.get_flop_counts()["Global"].items()}
    return counter.get_total_flops() // 2, by_op


def counts(name: str, config: dict) -> dict:
    torch.manual_seed(0)
    model = build(config).eval()
    grid = list(GRID) if name.startswith(("wan", "hunyuan")) else [1, *GRID[1:]]
    macs, by_op = forward_macs(model, config, BATCH, grid, TEXT)
    return {"config": config, "geometry": {"batch": BATCH, "grid": grid, "text": TEXT},
            "matrix_params": matrix_params(model), "macs": macs, "macs_by_op": by_op}


def main() -> None:
    out = {"diffusers": diffusers.__version__, "torch": torch.__version__, "small": {}, "published": {}}
    for name, config in SMALL.items():
        out["small"][name] = counts(name, config)
        print(name, out["small"][name]["matrix_params"], out["small"][name]["macs"], out["small"][name]["macs_by_op"])
    for path in sorted((ROOT / "workloads" / "models").glob("*.json")):
        config = json.loads(path.read_text())
        if config.get("_class_name") not in CLASSES:
            continue  # a language model's config (tests/reference/make_hf_counts.py)
        with torch.device("meta"):  # no weights, no arithmetic: FlopCounterMode reads the shapes
            model = build(config)
            geometry = BUNDLED[path.name]
            macs, _ = forward_macs(model, config, geometry["batch"], geometry["grid"], geometry["text"])
        out["published"][path.name] = {"matrix_params": matrix_params(model), "geometry": geometry, "macs": macs}
        print(path.name, out["published"][path.name])
    (ROOT / "tests" / "data" / "diffusers_counts.json").write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
