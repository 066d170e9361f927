"""What each ``kind: diffusion_transformer`` family's diffusers pipeline does by default: the
values a workload file's left-out ``steps``, ``cfg``, ``text_tokens``, ``sampler`` and ``frames``
take (``archsim.workloads.dit_family``)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Pipeline:
    """What a family's diffusers pipeline does by default (its ``__call__``'s arguments)."""

    steps: int
    cfg: str
    text_tokens: int
    sampler: str
    frames: int | None = None
    temporal: int | None = None  # the VAE's frames per latent frame (video)
    pack: int = 1  # latent pixels per token side packed by the pipeline, not the model


PIPELINES = {
    # pipeline_flux.py: 28 steps, T5 max_sequence_length 512, true_cfg_scale 1 (one pass; the
    # distilled guidance scale is an input), latents packed 2 x 2 (_pack_latents)
    "flux": Pipeline(28, "none", 512, "flow_match_euler", pack=2),
    # pipeline_stable_diffusion_3.py: 28 steps, guidance 7 as a doubled batch; CLIP's 77 tokens
    # and T5's 256 (max_sequence_length) concatenated
    "sd3": Pipeline(28, "batched", 77 + 256, "flow_match_euler"),
    # pipeline_pixart_alpha.py: 20 steps, guidance 4.5 as a doubled batch, 120 T5 tokens, DPM-Solver++
    "pixart_alpha": Pipeline(20, "batched", 120, "dpm_solver_multistep"),
    # pipeline_wan.py: 50 steps, guidance 5 as a second forward, 512 UMT5 tokens, 81 frames,
    # UniPC; the VAE keeps the first frame and then one latent frame per 4
    "wan2.1": Pipeline(50, "sequential", 512, "unipc_multistep", frames=81, temporal=4),
    # pipeline_hunyuan_video.py: 50 flow-match Euler steps, guidance_scale 6 as an embedding and
    # true_cfg_scale 1 (one pass), Llama max_sequence_length 256 (after the template's crop), 129
    # frames, the VAE's temporal factor 4 (first frame kept)
    "hunyuan_video": Pipeline(50, "none", 256, "flow_match_euler", frames=129, temporal=4),
}
