"""Feature-caching schedules on ``kind: diffusion_transformer`` (issue 20: every schedule on every
DiT model): per family, the step plans by the rule of the method's code for that model (or its DiT
rule where it publishes none) and the MACs of each step counted by hand on a small config;
schedules whose every step is full equal ``none`` bit for bit; a bundled run from the CLI; the
error for a schedule not lowered on a family (docs/sources/schedules.md, "On the diffusers
family")."""

from __future__ import annotations

import hashlib

import pytest
from conftest import ROOT, run_cli

from archsim.ir.summary import summarize
from archsim.workloads.dit_family import DiffusionTransformerWorkload
from archsim.workloads.dit_family_rules import SUPPORTED, decisions_agree, family_plans, wan_decisions
from archsim.workloads.schedules import parse_schedule, schedule_names

# Small configs of the four families (tests/data/diffusers_counts.json's, smaller): width d = 32
# everywhere; 64 x 64 pixels, an 8 x 8 latent; T = 4 text tokens; batch 1; no guidance pass but
# Wan's (sequential, as its pipeline: two forwards a step); bf16 (2 bytes an element).
FLUX = {"_class_name": "FluxTransformer2DModel", "patch_size": 1, "in_channels": 12, "num_layers": 1,
        "num_single_layers": 2, "attention_head_dim": 16, "num_attention_heads": 2, "joint_attention_dim": 24,
        "pooled_projection_dim": 20, "guidance_embeds": False, "axes_dims_rope": [4, 6, 6]}
SD3 = {"_class_name": "SD3Transformer2DModel", "sample_size": 16, "patch_size": 2, "in_channels": 4, "num_layers": 2,
       "attention_head_dim": 8, "num_attention_heads": 4, "joint_attention_dim": 24, "caption_projection_dim": 32,
       "pooled_projection_dim": 20, "out_channels": 4, "pos_embed_max_size": 16}
PIXART = {"_class_name": "PixArtTransformer2DModel", "num_attention_heads": 2, "attention_head_dim": 16,
          "in_channels": 4, "out_channels": 8, "num_layers": 2, "cross_attention_dim": 32, "sample_size": 8,
          "patch_size": 2, "use_additional_conditions": False, "caption_channels": 40}
WAN = {"_class_name": "WanTransformer3DModel", "patch_size": [1, 2, 2], "num_attention_heads": 2,
       "attention_head_dim": 16, "in_channels": 4, "out_channels": 4, "text_dim": 24, "freq_dim": 32, "ffn_dim": 48,
       "num_layers": 2, "rope_max_seq_len": 32}
MODELS = {"flux": FLUX, "sd3": SD3, "pixart_alpha": PIXART, "wan2.1": WAN}
D, T, R = 32, 4, 4  # width, text tokens, the ICC rank the tests use
S = 16  # image tokens: FLUX packs the 8 x 8 latent 2 x 2 (patch 1); SD3 and PixArt patch it 2 x 2
N = S + T  # FLUX's and SD3's joint attention
S_WAN = 2 * 16  # Wan: 5 frames -> (5 - 1) / 4 + 1 = 2 latent frames of 4 x 4 patches

# One forward's MACs by hand (as tests/test_dit_family.py counts the bundled sizes).
# FLUX: x_embedder (12 -> d), timestep MLP (256 -> d -> d), pooled text (20 -> d -> d),
# context_embedder (24 -> d), norm_out (d -> 2d), proj_out (d -> 12)
FLUX_TOP = S * 12 * D + 256 * D + D * D + 20 * D + D * D + T * 24 * D + 2 * D * D + S * D * 12
MODS = 12 * D * D  # a double-stream block's norm1 and norm1_context (d -> 6d each)
# a double-stream block: the modulations, q k v and out of each stream, the joint attention
# (QK^T and PV over N x N), the two MLPs (d -> 4d -> d)
DOUBLE = MODS + 4 * S * D * D + 4 * T * D * D + 2 * N * N * D + 8 * S * D * D + 8 * T * D * D
SINGLE_MOD = 3 * D * D  # a single-stream block's norm (d -> 3d)
SINGLE = SINGLE_MOD + 3 * N * D * D + 4 * N * D * D + 2 * N * N * D + 5 * N * D * D  # q k v, proj_mlp, attention, proj_out
FLUX_FULL = FLUX_TOP + DOUBLE + 2 * SINGLE
# SD3: the patch embedding (2 x 2 x 4 -> d), timestep and pooled text MLPs, context_embedder,
# norm_out, proj_out (d -> 16); block 0 as FLUX's double; the last block (context_pre_only): the
# text's shift and scale (d -> 2d), its q k v, no to_add_out, no text MLP
SD3_TOP = S * 16 * D + 256 * D + D * D + 20 * D + D * D + T * 24 * D + 2 * D * D + S * D * 16
LAST_MODS = 6 * D * D + 2 * D * D
LAST = LAST_MODS + 4 * S * D * D + 3 * T * D * D + 2 * N * N * D + 8 * S * D * D
SD3_FULL = SD3_TOP + DOUBLE + LAST
# PixArt: the patch embedding, the timestep MLP and adaln_single's linear (d -> 6d, shared by every
# block), caption_projection (40 -> d -> d), proj_out (d -> 2 x 2 x 8); a block has no matrix work
# of its own outside attention and MLP: self-attention, cross-attention (q from the image, k v from
# the text), the MLP
PIX_TOP = S * 16 * D + 256 * D + D * D + 6 * D * D + T * (40 * D + D * D) + S * D * 32
SELF_ATTN = 4 * S * D * D + 2 * S * S * D
CROSS = S * D * D + 2 * T * D * D + 2 * S * T * D + S * D * D
PIX_BLOCK = SELF_ATTN + CROSS + 8 * S * D * D
PIX_FULL = PIX_TOP + 2 * PIX_BLOCK
# Wan, per pass: the 3-D patch embedding, time_embedder (32 -> d -> d), time_proj (d -> 6d),
# text_embedder (24 -> d -> d), proj_out (d -> 16); a block: 3-D self-attention over S_WAN
# tokens, cross-attention, the MLP (d -> 48 -> d)
WAN_TOP = S_WAN * 16 * D + 32 * D + D * D + 6 * D * D + T * (24 * D + D * D) + S_WAN * D * 16
WAN_SELF = 4 * S_WAN * D * D + 2 * S_WAN * S_WAN * D
WAN_CROSS = 2 * S_WAN * D * D + 2 * T * D * D + 2 * S_WAN * T * D
WAN_BLOCK = WAN_SELF + WAN_CROSS + 2 * S_WAN * D * 48
WAN_FULL = 2 * (WAN_TOP + 2 * WAN_BLOCK)  # the conditional and the unconditional pass
FULL = {"flux": FLUX_FULL, "sd3": SD3_FULL, "pixart_alpha": PIX_FULL, "wan2.1": WAN_FULL}
# A step that runs no attention and no MLP: the embeddings, the blocks' modulation projections
# (FORA and TaylorSeer recompute them; PixArt's and Wan's are shared, outside the blocks), the final layer
CACHED = {"flux": FLUX_TOP + MODS + 2 * SINGLE_MOD, "sd3": SD3_TOP + MODS + LAST_MODS, "pixart_alpha": PIX_TOP,
          "wan2.1": 2 * WAN_TOP}
# A step whose block stack is skipped (TeaCache, MagCache): the embeddings and the final layer
OUTSIDE = {"flux": FLUX_TOP, "sd3": SD3_TOP, "pixart_alpha": PIX_TOP, "wan2.1": 2 * WAN_TOP}
# TeaCache's probe: block 0's modulation projection (FLUX, SD3: d -> 6d); PixArt's is the block's
# table plus the shared projection, Wan's the timestep embedding: no matrix work
PROBE = {"flux": 6 * D * D, "sd3": 6 * D * D, "pixart_alpha": 0, "wan2.1": 0}
# The cacheable units' outputs of one step (elements, every block): FLUX: the double block's four
# (attn and ff on S rows, attn_context and ff_context on T) and each single block's fused output
# on N; SD3: block 0's four, the last block's attn and ff; PixArt, Wan: attn1, attn2, ff(n) per
# block, on the image tokens (per pass for Wan)
UNITS = {"flux": 2 * N * D + 2 * N * D, "sd3": 2 * N * D + 2 * S * D, "pixart_alpha": 2 * 3 * S * D,
         "wan2.1": 2 * 2 * 3 * S_WAN * D}


class Paths:  # a workload's path resolver: the models are inline
    def __call__(self, key, value):
        raise AssertionError(key)

    def source(self, key):
        return "test"


def spec(family: str, schedule=None, steps: int = 6, **kwargs) -> DiffusionTransformerWorkload:
    extra = {"frames": 5} if family == "wan2.1" else {"cfg": "none"}
    return DiffusionTransformerWorkload(kind="diffusion_transformer", name="t", model=MODELS[family], height=64,
                                        width=64, text_tokens=T, steps=steps, schedule=schedule, **{**extra, **kwargs})


def build(family: str, schedule=None, steps: int = 6, **kwargs):
    return spec(family, schedule, steps, **kwargs).build(Paths())


def phases(workload) -> dict:
    return {p.name: p for p in summarize(workload).phases}


def labels(workload) -> list[tuple[str, int]]:
    return [(p.name, p.repeat) for p in workload.phases]


def fingerprint(workload) -> str:
    """Every phase's name, repeat, ops (in order, with their tensors) and tensors."""
    h = hashlib.sha256()
    for p in workload.phases:
        h.update(repr((p.name, p.repeat, [repr(op) for op in p.graph.ops()], sorted(p.graph.tensors.items()))).encode())
    return h.hexdigest()


def computes(family: str, schedule: str, steps: int) -> str:
    """The plan's decisions, C (the blocks run) or s (the residual added), step by step."""
    w = spec(family, schedule, steps)
    w.build(Paths())
    return "".join("C" if dict(p.extra)["compute"] else "s" for p in w.plans())


def csv_file(tmp_path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize("family", sorted(MODELS))
def test_forward_by_hand(family):
    w = build(family)
    assert labels(w) == [("full", 6)] and w.macs == 6 * FULL[family]


@pytest.mark.parametrize("family", sorted(MODELS))
@pytest.mark.parametrize("schedule", ["reuse:period=1", "icc:period=1", "taylorseer:interval=1"])
def test_every_step_full_is_none_bit_for_bit(family, schedule):
    # a full step writes only what a later cached step reads: with none to read, the plain forward
    assert fingerprint(build(family, schedule)) == fingerprint(build(family))


@pytest.mark.parametrize("family", sorted(MODELS))
def test_fora_on_every_family(family):
    # FORA's rule (src/models.py): full at the first step and where the countdown index % 3 == 0:
    # 6 steps, countdown 5 4 3 2 1 0: full, reuse, full, reuse, reuse, full. A reuse step adds each
    # unit's cached output through its gate: no attention, no MLP.
    w = build(family, "reuse:period=3")
    assert labels(w) == [("full+outputs cache", 2), ("reuse", 3), ("full", 1)]
    assert w.macs == 3 * FULL[family] + 3 * CACHED[family]
    by = phases(w)
    assert by["full+outputs cache"].cache_bytes_written == 2 * UNITS[family]
    assert by["reuse"].cache_bytes_read == 2 * UNITS[family] and by["reuse"].cache_bytes_written == 0
    assert by["full"].cache_bytes_written == 0
    assert summarize(w).cache_bytes == 2 * UNITS[family]


def test_taylorseer_on_flux_is_taylorseer_flux():
    # TaylorSeer-FLUX (cache_init.py mode 'Taylor': fresh_threshold 6, max_order 1, first_enhance
    # 3; cal_type.py): steps 0-2 full, then full when the counter reaches 5; differences from step
    # 2 (step > first_enhance - 2). 28 steps: full at 0, 1, 2, 8, 14, 20, 26.
    kinds = "".join("F" if p.kind == "full" else "t" for p in family_plans(parse_schedule("taylorseer"), "flux", 28, 3))
    assert kinds == "FFFtttttFtttttFtttttFtttttFt"
    w = build("flux", "taylorseer", 10)
    assert labels(w) == [("full+taylor0 cache", 2), ("full+taylor1 cache", 2), ("taylor m1", 6)]
    assert w.macs == 4 * FLUX_FULL + 6 * CACHED["flux"]  # a forecast is vector work
    by = phases(w)
    assert by["full+taylor1 cache"].cache_bytes_written == 2 * 2 * UNITS["flux"]  # terms 0 and 1
    assert by["taylor m1"].cache_bytes_read == 2 * 2 * UNITS["flux"]
    # order set: the third full step keeps 1 difference, the fourth 2
    w = build("flux", "taylorseer:order=2", 10)
    assert labels(w) == [("full+taylor0 cache", 2), ("full+taylor1 cache", 1), ("taylor m1", 5),
                         ("full+taylor2 cache", 1), ("taylor m2", 1)]


@pytest.mark.parametrize("family", ["sd3", "pixart_alpha", "wan2.1"])
def test_taylorseer_elsewhere_is_its_dit_rule(family):
    # TaylorSeer-DiT's cal_type: the first 2 steps full, then every 4th; differences from the
    # second full step. 10 steps, order 2: full at 0, 1, 5, 9.
    w = build(family, "taylorseer:order=2", 10)
    assert labels(w) == [("full+taylor0 cache", 1), ("full+taylor1 cache", 1), ("taylor m1", 3),
                         ("full+taylor2 cache", 1), ("taylor m2", 3), ("full", 1)]
    assert w.macs == 4 * FULL[family] + 6 * CACHED[family]


@pytest.mark.parametrize("family", sorted(MODELS))
def test_teacache_on_every_family(family, tmp_path):
    # teacache_flux.py's rule (TeaCache4Wan2.1's too, per pass): the first and last steps compute;
    # coefficients [1, 0] keep the distance; 0.2, 0.2, 0.2, 0.6 at steps 1-4 against 0.5:
    # compute, skip, skip, compute, compute, compute.
    metric = csv_file(tmp_path, "m.csv", "step,rel_l1\n0,9\n1,0.2\n2,0.2\n3,0.2\n4,0.6\n5,9\n")
    w = build(family, f"teacache:metric={metric},rel_l1_thresh=0.5,coefficients=[1,0]")
    assert labels(w) == [("teacache full (no distance) +modulated+residual cache", 1),
                         ("teacache reuse +modulated cache", 2), ("teacache full +modulated cache", 1),
                         ("teacache full", 1), ("teacache full (no distance)", 1)]
    passes = 2 if family == "wan2.1" else 1
    assert w.macs == 4 * FULL[family] + 2 * OUTSIDE[family] + 6 * passes * PROBE[family]
    by = phases(w)
    rows = S_WAN if family == "wan2.1" else S
    residual = passes * rows * D * 2  # the image stream, bytes
    # the probe kept: block 0's modulated input (image tokens x d), or Wan's timestep embedding (1 x d)
    probe = passes * (D if family == "wan2.1" else S * D) * 2
    assert by["teacache reuse +modulated cache"].cache_bytes_read == residual + probe
    assert by["teacache full (no distance) +modulated+residual cache"].cache_bytes_written == residual + probe
    assert summarize(w).cache_bytes == residual + probe


@pytest.mark.parametrize("family", ["flux", "sd3", "pixart_alpha"])
def test_magcache_flux_rule(family, tmp_path):
    # magcache_flux.py: the first int(0.25 x 8 + 0.5) = 2 steps run; then skip while the
    # accumulated |1 - product of ratios| <= 0.3 and at most 2 in a row: C C s s C s C s
    ratios = csv_file(tmp_path, "r.csv", "step,mag_ratio\n0,1\n1,1.5\n2,1.1\n3,1.0\n4,1.0\n5,1.2\n6,1.0\n7,1.0\n")
    w = build(family, f"magcache:mag_ratios={ratios},thresh=0.3,max_skips=2,retention_ratio=0.25,keep_full=[]", 8)
    assert labels(w) == [("magcache full (retained)", 1), ("magcache full (retained) +residual cache", 1),
                         ("magcache reuse", 4), ("magcache full +residual cache", 2)]
    assert w.macs == 4 * FULL[family] + 4 * OUTSIDE[family]
    assert phases(w)["magcache reuse"].cache_bytes_read == S * D * 2


def test_magcache_on_wan_is_magcache4wan(tmp_path):
    # MagCache4Wan2.1 compares strictly: an error of exactly the threshold computes. Ratios 1,
    # 1.25, 1 at steps 1-3, threshold 0.25: step 1 skips (error 0); step 2's error 0.25 skips on
    # FLUX (<=), computes on Wan (<) and resets, so Wan's step 3 skips where FLUX's computes (0.5)
    ratios = csv_file(tmp_path, "r.csv", "step,mag_ratio\n0,1\n1,1\n2,1.25\n3,1\n")
    common = f"magcache:mag_ratios={ratios},thresh=0.25,retention_ratio=0.25,keep_full=[]"
    assert (computes("flux", common, 4), computes("wan2.1", common, 4)) == ("CssC", "CsCs")
    # defaults: the published T2V-1.3B ratios with the README's K 4, retention 0.2, threshold 0.12
    # at 50 steps: 21 steps compute, the two passes alike (archsim decides once a step)
    schedule = parse_schedule("magcache")
    cond = "".join("C" if c else "s" for c in wan_decisions(schedule, 50, 0))
    assert cond == "CCCCCCCCCCssssCssssCssssCssssCssssCsssCssCssCsCsCC" and decisions_agree(schedule, 50)
    w = build("wan2.1", "magcache", 50)
    assert w.macs == 21 * WAN_FULL + 29 * OUTSIDE["wan2.1"]
    # each pass keeps its own residual
    assert summarize(w).cache_bytes == 2 * S_WAN * D * 2


# SpeCa's check: the last block's units in full on one block's weights, its modulation reused:
# FLUX's last single block's fused output (SpeCa-FLUX layers.py), the others' whole last block
CHECK = {"flux": SINGLE - SINGLE_MOD, "sd3": LAST - LAST_MODS, "pixart_alpha": PIX_BLOCK, "wan2.1": 2 * WAN_BLOCK}


@pytest.mark.parametrize("family", sorted(MODELS))
def test_speca_on_every_family(family):
    # cal_type.py (SpeCa's DiT and FLUX code alike): full, forecast, full; then chains of
    # forecasts, the first two unchecked, checks from the third; archsim's chain at acceptance
    # 0.8 is 3 + 0.8 + 0.64 (+ 0.8^3 + 0.8^4 + 0.8^5 with FLUX's cap of 8) forecasts, rounded:
    # 4 (FLUX: 6). 12 steps: full at 0, 2, 7 (FLUX: 0, 2, 9), four checked forecasts either way
    w = build(family, "speca", 12)
    if family == "flux":  # order 2 (SpeCa-FLUX's max_order), at most 8 forecasts in a row
        assert labels(w) == [("full+taylor0 cache", 1), ("taylor m0", 1), ("full+taylor1 cache", 1), ("taylor m1", 2),
                             ("speca m1 verify1", 4), ("full+taylor2 cache", 1), ("taylor m2", 2)]
    else:
        assert labels(w) == [("full+taylor0 cache", 1), ("taylor m0", 1), ("full+taylor1 cache", 1), ("taylor m1", 2),
                             ("speca m1 verify1", 2), ("full+taylor2 cache", 1), ("taylor m2", 2),
                             ("speca m2 verify1", 2)]
    assert w.macs == 3 * FULL[family] + 9 * CACHED[family] + 4 * CHECK[family]
    if family == "flux":  # the forecast's relative L1 error against the full output: 6 per element
        check = next(op for p in w.phases for op in p.graph.ops() if op.name == "speca_check.proj_out.relative_l1")
        assert check.vector_work.alu == 6 * N * D and check.copies == 1


# Per block (L2C, HarmoniCa), block 0's attention units and MLP units: FLUX's and SD3's double
# block (both streams' q k v and out, the joint attention; both MLPs), PixArt's and Wan's
# self- and cross-attention (per pass for Wan) and MLP
BLOCK0_ATTN = {"flux": 4 * N * D * D + 2 * N * N * D, "sd3": 4 * N * D * D + 2 * N * N * D,
               "pixart_alpha": SELF_ATTN + CROSS, "wan2.1": 2 * (WAN_SELF + WAN_CROSS)}
BLOCK0_MLP = {"flux": 8 * N * D * D, "sd3": 8 * N * D * D, "pixart_alpha": 8 * S * D * D,
              "wan2.1": 2 * 2 * S_WAN * D * 48}


@pytest.mark.parametrize("family", sorted(MODELS))
def test_l2c_on_every_family(family, tmp_path):
    # the mask (DiT's rule): step 1 serves block 0 whole and block 1's attention from the cache,
    # step 2 blocks 0 and 1 whole; FLUX's blocks are its double-stream block (0), then its two
    # single-stream blocks (1, 2), whose fused unit is served only when both parts are
    mask = csv_file(tmp_path, "m.csv", "step,block,attn,mlp\n1,0,1,1\n1,1,1,0\n2,0,1,1\n2,1,1,1\n")
    w = build(family, f"l2c:mask={mask}", 4)
    assert labels(w) == [("full+outputs cache", 1), ("l2c cached attn 0-1 mlp 0", 1), ("l2c cached attn 0-1 mlp 0-1", 1),
                         ("full", 1)]
    by = phases(w)
    both = {"flux": FLUX_TOP + MODS + 2 * SINGLE, "sd3": SD3_TOP + MODS + LAST_MODS + 8 * S * D * D,
            "pixart_alpha": PIX_TOP + 8 * S * D * D, "wan2.1": 2 * (WAN_TOP + 2 * S_WAN * D * 48)}
    assert by["l2c cached attn 0-1 mlp 0"].macs == both[family]
    whole = CACHED[family] + (SINGLE - SINGLE_MOD if family == "flux" else 0)  # FLUX's block 2 runs
    assert by["l2c cached attn 0-1 mlp 0-1"].macs == whole
    assert w.macs == 2 * FULL[family] + both[family] + whole


@pytest.mark.parametrize("family", sorted(MODELS))
def test_harmonica_on_every_family(family, tmp_path):
    # routers by countdown (router 2 at step 0, 1 at step 1, 0 at step 2); sigmoid(5) > 0.5 runs,
    # sigmoid(-5) reuses. Step 0 runs every layer; step 1 reuses block 0's attention, step 2 both
    # of its parts; the MLP kept at step 1 for step 2, the attention at step 0
    depth = 3 if family == "flux" else 2
    rows = [f"{r},{b},{-5 if b == 0 and r < 2 else 5},{-5 if b == 0 and r == 0 else 5}"
            for r in range(3) for b in range(depth)]
    table = csv_file(tmp_path, "r.csv", "router,block,attn,mlp\n" + "\n".join(rows) + "\n")
    w = build(family, f"harmonica:router={table},thres=0.5", 3)
    assert labels(w) == [("harmonica full +router +cache attn 0", 1), ("harmonica cached attn 0 +cache mlp 0", 1),
                         ("harmonica cached attn 0 mlp 0", 1)]
    assert w.macs == 3 * FULL[family] - 2 * BLOCK0_ATTN[family] - BLOCK0_MLP[family]
    ranking = [op for p in w.phases for op in p.graph.ops() if op.name.endswith("harmonica.load_ranking")]
    assert len(ranking) == 1 and ranking[0].vector_work.alu == 4 * 3 * 2 * depth  # once, not per pass


# ICC with rank R on a layer of d_in -> d_out over ``rows``: B (d_in -> R) and A (R -> d_out)
def low_rank(rows, d_in, d_out):
    return rows * (d_in * R + R * d_out)


ICC_STEP = {
    # FLUX: every stream's q k v and out, both MLP layers; single blocks: q k v, proj_mlp (fc1),
    # proj_out (5d -> d, fc2); attention itself and the modulations in full
    "flux": FLUX_TOP + MODS + 2 * N * N * D + 4 * (low_rank(S, D, D) + low_rank(T, D, D))
    + low_rank(S, D, 4 * D) + low_rank(S, 4 * D, D) + low_rank(T, D, 4 * D) + low_rank(T, 4 * D, D)
    + 2 * (SINGLE_MOD + 2 * N * N * D + 3 * low_rank(N, D, D) + low_rank(N, D, 4 * D) + low_rank(N, 5 * D, D)),
    "sd3": SD3_TOP + MODS + 2 * N * N * D + 4 * (low_rank(S, D, D) + low_rank(T, D, D))
    + low_rank(S, D, 4 * D) + low_rank(S, 4 * D, D) + low_rank(T, D, 4 * D) + low_rank(T, 4 * D, D)
    + LAST_MODS + 2 * N * N * D + 4 * low_rank(S, D, D) + 3 * low_rank(T, D, D) + low_rank(S, D, 4 * D)
    + low_rank(S, 4 * D, D),
    # PixArt, Wan: self-attention and MLP calibrated; cross-attention in full
    "pixart_alpha": PIX_TOP + 2 * (2 * S * S * D + 4 * low_rank(S, D, D) + CROSS + low_rank(S, D, 4 * D)
                                   + low_rank(S, 4 * D, D)),
    "wan2.1": 2 * (WAN_TOP + 2 * (2 * S_WAN * S_WAN * D + 4 * low_rank(S_WAN, D, D) + WAN_CROSS
                                  + low_rank(S_WAN, D, 48) + low_rank(S_WAN, 48, D))),
}


@pytest.mark.parametrize("family", sorted(MODELS))
def test_icc_on_every_family(family):
    # ICC's rule: full when step % 2 == 0; the others y = y_cached + A B (x - x_cached) per layer
    w = build(family, f"icc:rank={R}")
    assert labels(w) == [("full+icc cache", 3), (f"icc r{R}", 3)]
    assert phases(w)["full+icc cache"].macs == FULL[family]
    assert phases(w)[f"icc r{R}"].macs == ICC_STEP[family]
    # every calibrated layer's factors are parameters: R x (d_in + d_out) per layer and block
    assert summarize(w).params - summarize(build(family)).params == icc_params(family)


def icc_params(family):
    if family == "flux":  # one double block (8 attention layers, 4 MLP layers), two single blocks
        return R * (8 * 2 * D + 2 * 5 * D * 2) + 2 * R * (3 * 2 * D + 5 * D + 6 * D)
    if family == "sd3":  # block 0 as FLUX's; the last block: 4 image and 3 text projections, 2 MLP layers
        return R * (8 * 2 * D + 2 * 5 * D * 2) + R * (7 * 2 * D + 2 * 5 * D)
    if family == "pixart_alpha":
        return 2 * R * (4 * 2 * D + 2 * 5 * D)
    return 2 * R * (4 * 2 * D + 2 * (D + 48))



def test_sequential_guidance_keeps_a_cache_per_pass():
    w = build("wan2.1", "reuse:period=3")
    names = {t for p in w.phases for t in p.graph.tensors if ".cache." in t}
    assert names == {f"{tag}/blocks.cache.{unit}_out" for tag in ("cond", "uncond") for unit in ("attn1", "attn2", "ffn")}


def test_every_schedule_is_lowered_on_every_family():
    # no (schedule, family) pair is refused any more: check_supported passes them all
    for family in MODELS:
        assert set(SUPPORTED[family]) == set(schedule_names()), family


def test_an_unknown_schedule_names_itself_and_the_known_ones():
    with pytest.raises(ValueError) as err:
        build("sd3", "nosuch")
    message = str(err.value)
    assert "unknown schedule 'nosuch'" in message and "toca" in message and "duca" in message


def test_bundled_flux_with_teacache_from_the_cli():
    r = run_cli("run", "hw_configs/h100_sxm.yaml", "workloads/flux_dev_1024.yaml", "--schedule", "teacache")
    assert r.returncode == 0, r.stderr
    assert "teacache reuse +modulated cache" in r.stdout and "latency" in r.stdout
    toca = run_cli("run", "hw_configs/h100_sxm.yaml", "workloads/flux_dev_1024.yaml", "--schedule", "toca")
    assert toca.returncode == 0, toca.stderr
    assert "latency" in toca.stdout and "Traceback" not in toca.stderr


def test_bundled_workloads_take_every_lowered_schedule():
    # full size: FLUX.1-dev at 28 steps under TeaCache's bundled illustrative curve computes 13
    # steps (the README's 2.0x at 0.6), under MagCache's published ratios 9
    from archsim.api import load_workload

    flux = ROOT / "workloads" / "flux_dev_1024.yaml"
    full = load_workload(flux).macs
    tea = load_workload(flux, [_schedule("teacache")])
    mag = load_workload(flux, [_schedule("magcache")])
    assert round(tea.macs / full * 28) == 13 and round(mag.macs / full * 28) == 9


def _schedule(text):
    from archsim.config.loader import parse_overrides

    (override,) = parse_overrides([f"schedule={text}"])
    return override


def test_compare_schedules_on_a_family_runs_every_schedule_it_lowers(tmp_path):
    # with no --schedule, the default list is what the family's lowering runs (toca, duca included)
    from conftest import ROOT, run_cli

    r = run_cli("compare-schedules", str(ROOT / "hw_configs" / "h100_sxm.yaml"), "--workload",
                str(ROOT / "workloads" / "pixart_alpha_1024.yaml"), "--wset", "steps=4", "--out", str(tmp_path))
    assert r.returncode == 0, r.stderr
    import pandas as pd

    done = set(pd.read_csv(tmp_path / "schedules.csv").schedule)
    assert {"none", "reuse", "teacache", "magcache", "toca", "duca"} <= done


# ToCa and DuCa on the diffusers family (dit_family_toca): the authors' FLUX and PixArt-alpha code


def test_toca_on_flux_follows_flux_toca():
    # cal_type.py: steps 0-2 full, then 3 ToCa steps per full one (fresh_threshold 4); the double
    # block's share 0.1 x 1.5 x 0.4 = 0.06 of 16 image and 4 text tokens: 0 each; the single
    # blocks' 0.1 x (1.5 - l / 27) x 1.6 of 20 joint tokens: 4 and 4
    s = spec("flux", "toca")
    w = s.build(Paths())
    plans = s.plans()
    assert [p.blocks[0][0] for p in plans] == ["full"] * 3 + ["toca"] * 3
    assert [p.blocks[0][2] for p in plans] == [False, False, True, False, False, False]
    assert dict(plans[3].extra)["fresh"] == ((0, 0), (4,), (4,))
    toca = next(p for p in w.phases if p.name.startswith("toca"))
    # around the blocks, the modulations, to_out and to_add_out on the cached context, and per
    # single block proj_mlp (d -> 4d) and proj_out (5d -> d) on its 4 fresh tokens
    assert toca.graph.macs == FLUX_TOP + MODS + 2 * SINGLE_MOD + N * D * D + 2 * (4 * 4 * D * D + 4 * 5 * D * D)
    assert {p.graph.macs for p in w.phases if p.name.startswith("full")} == {FLUX_FULL}


def test_duca_on_flux_skips_the_even_remainders():
    # DuCa-PixArt-alpha cal_type.py with ToCa-FLUX's N 4: full 0 and 4, ToCa 1, 3, 5, step 2 skipped
    s = spec("flux", "duca")
    w = s.build(Paths())
    assert [p.blocks[0][0] for p in s.plans()] == ["full", "toca", "skip", "toca", "full", "toca"]
    macs = {p.name: p.graph.macs for p in w.phases}
    assert macs["duca skipped 0-2"] == FLUX_TOP
    assert s.plans()[1].writes == ("blocks_out",)


def test_toca_on_pixart_follows_pixart_toca():
    # global_force_fresh.py: full at 0 and when step % round(3 / (0.8 + 0.4 step / 6)) == 0: 0, 4;
    # step 1's shares: cross-attention 0.3 x (1.6 - 1.2 l / 27) x 1.6 x 0.6 of 16 tokens: 7 and 7,
    # the MLP's x 1.6 clamped to 1: 16
    s = spec("pixart_alpha", "toca")
    w = s.build(Paths())
    plans = s.plans()
    assert [p.blocks[0][0] for p in plans] == ["full", "toca", "toca", "toca", "full", "toca"]
    assert dict(plans[1].extra)["fresh"] == ((7, 16), (7, 16))
    step1 = next(p for p in w.phases if p.name == "toca mlp 0-1 (7 tokens)")
    cross = 7 * D * D + 2 * T * D * D + 2 * 7 * T * D + 7 * D * D
    assert step1.graph.macs == PIX_TOP + 2 * (cross + 8 * 16 * D * D)


# No authors' code for SD3 and Wan 2.1: the closest published rule (dit_family_toca.RULE)


def test_toca_on_sd3_follows_flux_toca_double_stream():
    # ToCa-FLUX's rule and settings (fresh_threshold 4, ratio 0.1): steps 0-2 full, then ToCa; the
    # double-stream share 0.1 x 1.5 x 0.4 = 0.06 of 16 image and 4 text tokens: 0 each; the last
    # block (context_pre_only) has its image MLP only
    s = spec("sd3", "toca")
    w = s.build(Paths())
    plans = s.plans()
    assert [p.blocks[0][0] for p in plans] == ["full"] * 3 + ["toca"] * 3
    assert [p.blocks[0][2] for p in plans] == [False, False, True, False, False, False]
    assert dict(plans[3].extra)["fresh"] == ((0, 0), (0,))
    assert {p.graph.macs for p in w.phases if p.name.startswith("full")} == {SD3_FULL}
    # around the blocks and the modulations; the cached joint context re-projected: block 0's
    # to_out (S rows) and to_add_out (T rows), the last block's to_out; no MLP token
    toca = next(p for p in w.phases if p.name.startswith("toca"))
    assert toca.graph.macs == SD3_TOP + MODS + LAST_MODS + 2 * S * D * D + T * D * D
    # ratio 0.5: block 0's 0.5 x 1.5 x 0.4 = 0.3 of 16 and 4: 4 and 1; the last block's
    # 0.5 x (1.5 - 1 / 27) x 0.4 of 16: 4; each MLP (d -> 4d -> d) on its tokens
    s = spec("sd3", "toca:fresh_ratio=0.5")
    w = s.build(Paths())
    assert dict(s.plans()[3].extra)["fresh"] == ((4, 1), (4,))
    toca = next(p for p in w.phases if p.name.startswith("toca"))
    assert toca.graph.macs == SD3_TOP + MODS + LAST_MODS + 2 * S * D * D + T * D * D + 8 * (4 + 1 + 4) * D * D


def test_duca_on_sd3_skips_the_even_remainders():
    s = spec("sd3", "duca")
    w = s.build(Paths())
    assert [p.blocks[0][0] for p in s.plans()] == ["full", "toca", "skip", "toca", "full", "toca"]
    assert {p.name: p.graph.macs for p in w.phases}["duca skipped 0-1"] == SD3_TOP


def test_toca_on_wan_follows_pixart_toca():
    # ToCa's PixArt-alpha rule and settings (N 3, ratio 0.3): full at 0 and 4; step 1's shares of
    # 32 tokens: cross-attention 0.3 x (1.6 - 1.2 l / 27) x 1.6 x 0.6: 14 and 14, the FFN's x 1.6
    # clamped to 1: 32; attn1 reused
    s = spec("wan2.1", "toca")
    w = s.build(Paths())
    plans = s.plans()
    assert [p.blocks[0][0] for p in plans] == ["full", "toca", "toca", "toca", "full", "toca"]
    assert dict(plans[1].extra)["fresh"] == ((14, 32), (14, 32))
    assert {p.graph.macs for p in w.phases if p.name.startswith("full")} == {WAN_FULL}
    step1 = next(p for p in w.phases if p.name == "toca mlp 0-1 (14 tokens)")
    cross = 14 * D * D + 2 * T * D * D + 2 * 14 * T * D + 14 * D * D
    assert step1.graph.macs == 2 * (WAN_TOP + 2 * (cross + 2 * S_WAN * D * 48))  # both passes
    # each pass scores its own cross-attention map: entropy, 4 an element
    entropy = [op for op in step1.graph.ops() if op.name.endswith("attn2.score.entropy")]
    assert len(entropy) == 2 and {op.vector_work.alu for op in entropy} == {4 * S_WAN * T}


def test_duca_on_wan_follows_duca_pixart():
    s = spec("wan2.1", "duca")
    s.build(Paths())
    assert [p.blocks[0][0] for p in s.plans()] == ["full", "toca", "skip", "full", "toca", "skip"]


@pytest.mark.parametrize("workload", ["flux_dev_1024", "sd3_medium_1024", "pixart_alpha_1024", "wan21_1.3b_480p"])
def test_no_schedule_adds_weights(workload):
    # a schedule's own ops on a block (TeaCache's probe, SpeCa's check) read the stack's weights:
    # the parameters are the model's whatever the schedule
    from archsim.api import load_workload
    from archsim.config.loader import parse_overrides
    from archsim.ir.summary import summarize
    from conftest import ROOT

    path = ROOT / "workloads" / f"{workload}.yaml"
    params = {s: summarize(load_workload(path, parse_overrides([f"schedule={s}", "steps=6"], "--wset"))).params
              for s in ("none", "speca", "teacache", "taylorseer")}
    assert len(set(params.values())) == 1, params


def test_speca_checks_a_last_block_with_two_attentions(tmp_path):
    # an SD3.5-style dual-attention block last: both attentions' checks share the block's norm
    from conftest import ROOT, run_cli

    (tmp_path / "w.yaml").write_text(
        "kind: diffusion_transformer\nname: sd3dual\nmodel: {from: " + str(ROOT / "workloads" / "models" /
        "sd3_medium_transformer.json") + ", num_layers: 3, dual_attention_layers: [0, 2]}\nheight: 64\nwidth: 64\n")
    r = run_cli("workload", str(tmp_path / "w.yaml"), "--set", "steps=7", "--schedule", "speca")
    assert r.returncode == 0, r.stderr
