"""``kind: diffusion_transformer`` (issue 20, DiT family): archsim's counts against diffusers' own
transformer classes. tests/data/diffusers_counts.json holds the reference counts, made by
tests/reference/make_diffusers_counts.py with torch and diffusers (not needed here): matrix
parameters and the MACs of one forward (FlopCounterMode) for a small config of every family
(FLUX.1-dev and -schnell, SD3 and SD3.5, PixArt-alpha, Wan 2.1, HunyuanVideo) at batch 2 and a non-square
latent; parameters of the published full-size configs in workloads/models and the MACs of one
forward at their bundled workloads' sizes (on the meta device). Then one hand
calculation per family at its bundled workload's size, the denoising loop's guidance modes,
tensor parallelism, and the errors a bad file gets; HunyuanVideo's schedules, each by its rule
for the family, with a step's MACs by hand."""

from __future__ import annotations

import json
import warnings

import pytest
from conftest import ROOT, run_cli

from archsim.api import load_hardware, load_workload
from archsim.errors import ArchsimWarning, ConfigError
from archsim.workloads.dit_family import Geometry, forward_counts
from archsim.workloads.dit_models import model_from_dict, resolve_dit_model

REFERENCE = json.loads((ROOT / "tests" / "data" / "diffusers_counts.json").read_text())
WORKLOADS = ROOT / "workloads"
MODELS = WORKLOADS / "models"


class Paths:  # a workload's path resolver, for a model file named directly
    def __call__(self, key, value):
        return MODELS / value

    def source(self, key):
        return "test"


@pytest.mark.parametrize("name", sorted(REFERENCE["small"]))
def test_counts_equal_diffusers_model_code(name):
    ref = REFERENCE["small"][name]
    geo = ref["geometry"]
    model = model_from_dict(ref["config"])
    params, macs = forward_counts(model, Geometry(geo["batch"], tuple(geo["grid"]), geo["text"]))
    assert (params, macs) == (ref["matrix_params"], ref["macs"])


@pytest.mark.parametrize("file", sorted(REFERENCE["published"]))
def test_published_configs_have_diffusers_counts_at_full_size(file):
    # the full-size model on the meta device, one forward at its bundled workload's size
    ref = REFERENCE["published"][file]
    geo = ref["geometry"]
    counts = forward_counts(resolve_dit_model(file, Paths()), Geometry(geo["batch"], tuple(geo["grid"]), geo["text"]))
    assert counts == (ref["matrix_params"], ref["macs"])


@pytest.mark.parametrize("workload, file", [
    ("flux_dev_1024.yaml", "flux1_dev_transformer.json"), ("sd3_medium_1024.yaml", "sd3_medium_transformer.json"),
    ("pixart_alpha_1024.yaml", "pixart_alpha_xl_2_1024_ms_transformer.json"),
    ("wan21_1.3b_480p.yaml", "wan2.1_t2v_1.3b_transformer.json"),
    ("hunyuanvideo_720p.yaml", "hunyuanvideo_transformer.json")])
def test_bundled_workloads_step_is_the_reference_forward(workload, file):
    # a step's matrix work: the forward diffusers counts, twice for Wan's sequential guidance
    (phase,) = load_workload(WORKLOADS / workload).phases
    passes = 2 if workload.startswith("wan") else 1
    assert phase.graph.macs == passes * REFERENCE["published"][file]["macs"]


def test_every_bundled_diffusers_config_has_a_reference_count():
    configs = {p.name for p in MODELS.glob("*.json") if "_class_name" in json.loads(p.read_text())}
    assert configs == set(REFERENCE["published"]) and len(configs) == 5


# -- by hand, at the bundled workloads' sizes --------------------------------------------------

def graph(name: str, *overrides: str, hw=None):
    (phase,) = load_workload(WORKLOADS / name, overrides, hw=hw).phases
    return phase


def stack_macs(phase, prefix: str) -> int:
    """MACs of one block of the stack ``prefix`` (ops stand for all its blocks: copies)."""
    return sum(op.macs for op in phase.graph.ops() if op.name.startswith(prefix + "."))


def test_flux_dev_by_hand():
    # 1024 x 1024: the 128 x 128 latent packed 2 x 2 is S = 4096 tokens, T = 512 T5 tokens,
    # N = 4608 in the joint attention; width d = 3072 (24 heads of 128); batch 1, no guidance pass
    phase = graph("flux_dev_1024.yaml")
    d, s, t = 3072, 4096, 512
    n = s + t
    # double-stream: norm1 and norm1_context (d -> 6d each), q k v out for each stream, the joint
    # attention (QK^T and PV over N x N, d per score), the two GELU MLPs (d -> 4d -> d)
    double = 2 * 6 * d * d + 4 * n * d * d + 2 * n * n * d + 2 * 4 * n * d * d
    # single-stream: norm (d -> 3d), q k v, proj_mlp (d -> 4d), proj_out (5d -> d), attention
    single = 3 * d * d + 3 * n * d * d + 4 * n * d * d + 5 * n * d * d + 2 * n * n * d
    assert stack_macs(phase, "transformer_blocks") == double == 12 * d * d + 12 * n * d * d + 2 * n * n * d
    assert stack_macs(phase, "single_transformer_blocks") == single
    # x_embedder (64 -> d), timestep and guidance embedders (256 -> d -> d), pooled CLIP text
    # (768 -> d -> d), context_embedder (4096 -> d), norm_out (d -> 2d), proj_out (d -> 64)
    top = s * 64 * d + 2 * (256 * d + d * d) + 768 * d + d * d + t * 4096 * d + 2 * d * d + s * d * 64
    assert phase.graph.macs == 19 * double + 38 * single + top
    assert phase.repeat == 28 and 37.1e12 < phase.graph.macs < 37.3e12


def test_sd3_medium_block_by_hand():
    # 1024 x 1024: S = 4096 patches, T = 77 + 256 text tokens; guidance doubles the batch (B = 2)
    phase = graph("sd3_medium_1024.yaml")
    b, d, s, t = 2, 1536, 4096, 333
    n = s + t
    block = b * (2 * 6 * d * d + 4 * n * d * d + 2 * n * n * d + 2 * 4 * n * d * d)
    assert stack_macs(phase, "transformer_blocks") == block
    # the last block (context_pre_only): the text gets a shift and scale (d -> 2d) and its
    # queries, keys and values, but no to_add_out and no MLP
    last = b * (6 * d * d + 2 * d * d + 4 * s * d * d + 3 * t * d * d + 2 * n * n * d + 2 * 4 * s * d * d)
    assert stack_macs(phase, "transformer_blocks_1") == last
    copies = {op.copies for op in phase.graph.ops() if op.name.startswith("transformer_blocks.")}
    assert copies == {23}


def test_pixart_alpha_block_by_hand():
    # 1024 x 1024: S = 4096 patches, T = 120 T5 tokens, B = 2 (guidance); the six modulation
    # vectors come from the shared adaln_single, so a block's own matrix work is attention and MLP
    phase = graph("pixart_alpha_1024.yaml")
    b, d, s, t = 2, 1152, 4096, 120
    self_attn = 4 * s * d * d + 2 * s * s * d
    cross = s * d * d + 2 * t * d * d + 2 * s * t * d + s * d * d  # q from the image, k v from the text, out
    assert stack_macs(phase, "transformer_blocks") == b * (self_attn + cross + 2 * 4 * s * d * d)


def test_wan21_block_by_hand():
    # 480 x 832, 81 frames: (81 - 1) / 4 + 1 = 21 latent frames of 60 x 104, patches 1 x 2 x 2:
    # S = 21 x 30 x 52 = 32760 tokens in one 3-D attention; T = 512; d = 1536, ffn 8960.
    # Guidance is a second forward of batch 1: the same MACs as the first
    phase = graph("wan21_1.3b_480p.yaml")
    d, s, t, ffn = 1536, 21 * 30 * 52, 512, 8960
    block = 4 * s * d * d + 2 * s * s * d + (2 * s * d * d + 2 * t * d * d + 2 * s * t * d) + 2 * s * d * ffn
    assert stack_macs(phase, "cond/blocks") == stack_macs(phase, "uncond/blocks") == block
    assert phase.repeat == 50


# -- the denoising loop ---------------------------------------------------------------------------

def test_guidance_modes_and_steps():
    def macs(*overrides):
        w = load_workload(WORKLOADS / "sd3_medium_1024.yaml", overrides)
        return w.macs, w.phases[0].repeat

    none, steps = macs("cfg=none")
    assert steps == 28
    # a doubled batch and a second forward do the same matrix work: twice one pass's
    assert macs("cfg=batched")[0] == macs("cfg=sequential")[0] == 2 * none
    assert macs("cfg=none", "steps=10")[0] * 28 == none * 10
    # Heun: two evaluations a step but the last
    assert macs("cfg=none", "steps=10", "sampler=flow_match_heun") == (none // 28 * 19, 19)
    # FLUX.1-dev by default: one pass a step (guidance-distilled)
    w = load_workload(WORKLOADS / "flux_dev_1024.yaml", ["cfg=null"])
    assert not any(op.name == "cfg_combine" for op in w.phases[0].graph.ops())


def test_sequential_guidance_shares_weights_and_reads_them_twice():
    phase = graph("wan21_1.3b_480p.yaml")
    q = [op for op in phase.graph.ops() if op.name.endswith("blocks.attn1.to_q")]
    assert [op.name for op in q] == ["cond/blocks.attn1.to_q", "uncond/blocks.attn1.to_q"]
    assert q[0].b is q[1].b or q[0].b == q[1].b
    assert q[0].a != q[1].a  # each pass its own activations


def test_tensor_parallel_splits_every_block_four_ways():
    full = graph("flux_dev_1024.yaml")
    split = graph("flux_dev_1024.yaml", hw=load_hardware(ROOT / "hw_configs" / "systems" / "a100_80gb_x4.yaml"))
    for stack in ("transformer_blocks", "single_transformer_blocks"):
        assert stack_macs(split, stack) * 4 == stack_macs(full, stack)
    reduces = {op.name.rsplit(".", 1)[0]: op.copies for op in split.graph.ops() if op.kind == "all_reduce"}
    # row-split layers: both streams' out projections and MLP outputs; the single block's proj_out
    assert reduces == {"transformer_blocks.attn.to_out": 19, "transformer_blocks.attn.to_add_out": 19,
                       "transformer_blocks.ff.net.2": 19, "transformer_blocks.ff_context.net.2": 19,
                       "single_transformer_blocks.proj_out": 38}


def test_video_geometry_and_parameters_do_not_depend_on_it():
    a = load_workload(WORKLOADS / "wan21_1.3b_480p.yaml", ["frames=17", "height=240", "width=416"])
    score = next(op for op in a.phases[0].graph.ops() if op.name == "cond/blocks.attn1.score")
    assert score.m == score.n == 5 * 15 * 26  # (17 - 1) / 4 + 1 latent frames of 30 x 52 / 2
    from archsim.ir.summary import summarize

    assert summarize(a).params == summarize(load_workload(WORKLOADS / "wan21_1.3b_480p.yaml")).params


# -- errors: the file, the key and what is expected ------------------------------------------------

def write(tmp_path, text: str):
    path = tmp_path / "w.yaml"
    fields = {"kind": "diffusion_transformer", "name": "t", "model": f"{MODELS}/sd3_medium_transformer.json",
              "height": "1024", "width": "1024"}
    fields.update(line.split(": ", 1) for line in text.splitlines())
    path.write_text("".join(f"{k}: {v}\n" for k, v in fields.items()))
    return path


@pytest.mark.parametrize("extra, key, words", [
    ("height: 1000\n", "height", "not a multiple of 16"),
    ("family: flux\n", "family", "SD3Transformer2DModel"),
    ("frames: 9\n", "frames", "video models only"),
    ("height: 8192\n", "height", "pos_embed_max_size = 192"),
    ("cfg: twice\n", "cfg", "batched"),
])
def test_bad_workload_values_name_file_and_key(tmp_path, extra, key, words):
    path = write(tmp_path, extra)
    with pytest.raises(ConfigError) as err:
        load_workload(path)
    assert f"{path}: {key}: " in str(err.value) and words in str(err.value)


WAN_WORKLOAD = "kind: diffusion_transformer\nname: t\nmodel: {}\nheight: 480\nwidth: 832\n"


def test_bad_model_configs_name_file_and_key(tmp_path):
    wan = json.loads((MODELS / "wan2.1_t2v_1.3b_transformer.json").read_text())
    cases = [({**wan, "image_dim": 1280}, "image_dim"), ({**wan, "_class_name": "UNet2DConditionModel"}, "_class_name"),
             ({**wan, "num_layers": 0}, "num_layers"), ({**wan, "qk_norm": "l2"}, "qk_norm")]
    for data, key in cases:
        (tmp_path / "m.json").write_text(json.dumps(data))
        (tmp_path / "w.yaml").write_text(WAN_WORKLOAD.format("m.json"))
        with pytest.raises(ConfigError) as err:
            load_workload(tmp_path / "w.yaml")
        assert f"{tmp_path / 'm.json'}: {key}: " in str(err.value), str(err.value)
    (tmp_path / "w.yaml").write_text(WAN_WORKLOAD.format("none.json"))
    with pytest.raises(ConfigError, match="w.yaml: model: model config .*none.json not found"):
        load_workload(tmp_path / "w.yaml")
    # an override of a published file's key, inline: named by its place in the workload
    path = write(tmp_path, "")
    with pytest.raises(ConfigError, match="model.num_layers"):
        load_workload(path, [f"model={{from: {MODELS}/sd3_medium_transformer.json, num_layers: -1}}"])


def test_unread_keys_warn_and_the_cli_shows_no_traceback(tmp_path):
    flux = json.loads((MODELS / "flux1_dev_transformer.json").read_text())
    (tmp_path / "m.json").write_text(json.dumps({**flux, "num_layers": 1, "num_single_layers": 1, "lora_rank": 4}))
    (tmp_path / "w.yaml").write_text("kind: diffusion_transformer\nname: t\nmodel: m.json\nheight: 256\nwidth: 256\n")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        load_workload(tmp_path / "w.yaml")
    assert [str(w.message) for w in caught if w.category is ArchsimWarning] == [
        f"{tmp_path / 'm.json'}: key 'lora_rank' is not read by archsim's flux model; if it changes the compute, "
        "the counts miss it"]
    (tmp_path / "w.yaml").write_text("kind: diffusion_transformer\nname: t\nmodel: m.json\nheight: 250\nwidth: 256\n")
    r = run_cli("workload", str(tmp_path / "w.yaml"))
    assert r.returncode == 2 and "height: 250 is not a multiple of 16" in r.stderr and "Traceback" not in r.stderr


# -- HunyuanVideo ----------------------------------------------------------------------------------

def test_hunyuanvideo_720p_by_hand():
    # 720 x 1280, 129 frames: (129 - 1) / 4 + 1 = 33 latent frames of 90 x 160, patches 1 x 2 x 2:
    # S = 33 x 45 x 80 = 118800 tokens, T = 256 Llama tokens, N = S + T in the joint attention;
    # d = 3072 (24 heads of 128), MLP 4d; batch 1, guidance embedded (one forward a step)
    phase = graph("hunyuanvideo_720p.yaml")
    d, s, t, f = 3072, 33 * 45 * 80, 256, 4 * 3072
    n = s + t
    # dual-stream: norm1 and norm1_context (d -> 6d each), q k v out per stream, the joint
    # attention (QK^T and PV over N x N), the two MLPs (d -> f -> d)
    double = 12 * d * d + 4 * n * d * d + 2 * n * n * d + 2 * n * d * f
    # single-stream: norm (d -> 3d), q k v over N, proj_mlp (d -> f), the attention, proj_out (d + f -> d)
    single = 3 * d * d + 3 * n * d * d + n * d * f + 2 * n * n * d + n * (d + f) * d
    # a refiner block over the text: q k v out, the T x T attention, norm_out (d -> 2d), MLP d -> 4d -> d
    refiner = 4 * t * d * d + 2 * t * t * d + 2 * d * d + 8 * t * d * d
    assert stack_macs(phase, "transformer_blocks") == double
    assert stack_macs(phase, "single_transformer_blocks") == single
    assert stack_macs(phase, "context_embedder.token_refiner.refiner_blocks") == refiner
    # x_embedder (64 -> d), timestep and guidance embedders (256 -> d -> d), pooled CLIP (768 -> d
    # -> d); the refiner's own timestep (256 -> d -> d) and pooled Llama (4096 -> d -> d)
    # embedders, proj_in (4096 -> d), 2 blocks; norm_out (d -> 2d), proj_out (d -> 64)
    top = s * 64 * d + 2 * (256 * d + d * d) + 768 * d + d * d + 256 * d + d * d + 4096 * d + d * d \
        + t * 4096 * d + 2 * refiner + 2 * d * d + s * d * 64
    assert phase.graph.macs == 20 * double + 40 * single + top
    assert phase.repeat == 50 and not any(op.name == "cfg_combine" for op in phase.graph.ops())


def test_hunyuanvideo_tensor_parallel_splits_the_blocks_not_the_refiner():
    full = graph("hunyuanvideo_720p.yaml", "frames=5", "height=240", "width=416")
    split = graph("hunyuanvideo_720p.yaml", "frames=5", "height=240", "width=416",
                  hw=load_hardware(ROOT / "hw_configs" / "systems" / "h100_sxm_x8.yaml"))
    for stack in ("transformer_blocks", "single_transformer_blocks"):
        assert stack_macs(split, stack) * 8 == stack_macs(full, stack)
    refiner = "context_embedder.token_refiner.refiner_blocks"  # replicated, as the embeddings
    assert stack_macs(split, refiner) == stack_macs(full, refiner)


HV_WORKLOAD = "kind: diffusion_transformer\nname: t\nmodel: {}\nheight: 544\nwidth: 960\nframes: 129\n"


@pytest.mark.parametrize("change, key", [
    ({"image_condition_type": "token_replace"}, "image_condition_type"),
    ({"rope_axes_dim": [16, 56, 48]}, "rope_axes_dim"), ({"qk_norm": "rms_norm_across_heads"}, "qk_norm"),
    ({"num_layers": 0, "num_single_layers": 0}, "num_layers"), ({"patch_size_t": 0}, "patch_size_t")])
def test_hunyuanvideo_bad_configs_name_file_and_key(tmp_path, change, key):
    hv = json.loads((MODELS / "hunyuanvideo_transformer.json").read_text())
    (tmp_path / "m.json").write_text(json.dumps({**hv, **change}))
    (tmp_path / "w.yaml").write_text(HV_WORKLOAD.format("m.json"))
    with pytest.raises(ConfigError) as err:
        load_workload(tmp_path / "w.yaml")
    assert f"{tmp_path / 'm.json'}: {key}: " in str(err.value), str(err.value)


# A small HunyuanVideo (as tests/test_dit_family_schedules.py's families): width d = 32, MLP f = 4d,
# one dual-stream and two single-stream blocks, one refiner block; 64 x 64 pixels and 5 frames:
# 2 latent frames of 4 x 4 patches, S = 32; T = 4 text tokens, N = S + T; batch 1, guidance embedded
HV = {"_class_name": "HunyuanVideoTransformer3DModel", "in_channels": 4, "out_channels": 4, "num_attention_heads": 2,
      "attention_head_dim": 16, "num_layers": 1, "num_single_layers": 2, "num_refiner_layers": 1, "mlp_ratio": 4.0,
      "patch_size": 2, "patch_size_t": 1, "qk_norm": "rms_norm", "guidance_embeds": True, "text_embed_dim": 24,
      "pooled_projection_dim": 20, "rope_axes_dim": [4, 6, 6]}
D, F, S, T = 32, 128, 32, 4
N = S + T
HV_REFINER = 4 * T * D * D + 2 * T * T * D + 2 * D * D + 2 * T * D * 4 * D
# patches (16 -> d), timestep and guidance (256 -> d -> d), pooled (20 -> d -> d); the refiner's
# embedders (256 -> d -> d, 24 -> d -> d), proj_in (24 -> d), its block; norm_out, proj_out (d -> 16)
HV_TOP = S * 16 * D + 2 * (256 * D + D * D) + 20 * D + D * D + 256 * D + D * D + 24 * D + D * D + T * 24 * D \
    + HV_REFINER + 2 * D * D + S * D * 16
HV_DOUBLE = 12 * D * D + 4 * N * D * D + 2 * N * N * D + 2 * N * D * F
HV_SINGLE = 3 * D * D + 3 * N * D * D + N * D * F + 2 * N * N * D + N * (D + F) * D
HV_CACHED = HV_TOP + 12 * D * D + 2 * 3 * D * D  # the blocks' modulation projections only


def hv(schedule=None, steps=12, **kwargs):
    from archsim.workloads.dit_family import DiffusionTransformerWorkload

    fields = {"height": 64, "width": 64, "frames": 5, "text_tokens": T, **kwargs}
    spec = DiffusionTransformerWorkload(kind="diffusion_transformer", name="t", model=HV, steps=steps,
                                        schedule=schedule, **fields)
    return spec, spec.build(Paths())


def kinds(spec) -> str:
    letter = {"full": "F", "taylor": "t", "toca": "t", "speca": "s", "skip": "-"}
    return "".join(letter[p.blocks[0][0] if p.kind in ("toca", "duca") else p.kind] for p in spec.plans())


def test_every_schedule_runs_on_hunyuanvideo(tmp_path):
    from archsim.workloads.schedules import schedule_names

    (tmp_path / "m.csv").write_text("step,block,attn,mlp\n1,0,1,1\n1,2,1,1\n")
    (tmp_path / "r.csv").write_text("router,block,attn,mlp\n" + "".join(
        f"{r},{b},{5 if b == 1 else -5},{-5 if b == 2 else 5}\n" for r in range(12) for b in range(3)))
    settings = {"l2c": f"l2c:mask={tmp_path / 'm.csv'}", "harmonica": f"harmonica:router={tmp_path / 'r.csv'}",
                "icc": "icc:rank=4"}
    none = hv()[1].macs
    assert none == 12 * (HV_TOP + HV_DOUBLE + 2 * HV_SINGLE)
    for name in set(schedule_names()) - {"none"}:
        spec, w = hv(settings.get(name, name))
        assert 0 < w.macs < none, name


def test_hunyuanvideo_schedules_follow_its_code():
    # TaylorSeer-HunyuanVideo: full at 0, then every 5th; SpeCa-HunyuanVideo: a forecast after a
    # full step, checks from the 5th (min_taylor_steps 4), 8 forecasts expected at acceptance 0.8;
    # ToCa: full at 0 and every 5th; DuCa: odd counters ToCa, even ones skip the blocks
    assert kinds(hv("taylorseer")[0]) == "FttttFttttFt"
    assert kinds(hv("speca")[0]) == "FttttssssFtt"
    assert kinds(hv("toca")[0]) == "FttttFttttFt" and kinds(hv("duca")[0]) == "Ft-t-Ft-t-Ft"
    # MagCache4HunyuanVideo at 50 steps, its ratios for the height (720; 544, the nearer one to
    # 64): int(50 x 0.2) = 10 steps retained, then skips while the accumulated error <= 0.24 and
    # at most 6 in a row: 19 of 50 compute at 720 (10-13 skip: 1.03101, x 1.00679, x 1.02556, x
    # 1.00908 accumulate 0.208; x 1.06949 at 14 makes 0.357); its README's E024K06R02 at 720p:
    # 54 min 5 s -> 19 min 33 s
    for height, expected in ((720, "CCCCCCCCCCssssCsssCssssCsssssCssssCssssssCssssCsCC"),
                             (64, "CCCCCCCCCCssssCsssCssssCsssssCssssCssssssCssssCsCs")):
        spec, w = hv("magcache", 50, height=height)
        assert "".join("C" if dict(p.extra)["compute"] else "s" for p in spec.plans()) == expected
    assert phases(w)["magcache reuse"].macs == HV_TOP  # no block runs


def phases(w) -> dict:
    return {p.name: p.graph for p in w.phases}


def test_hunyuanvideo_forecast_and_toca_steps_by_hand():
    by = phases(hv("taylorseer")[1])
    assert by["taylor m1"].macs == HV_CACHED and by["full+taylor0 cache"].macs == HV_TOP + HV_DOUBLE + 2 * HV_SINGLE
    # SpeCa's check: the last single block's fused unit in full on its own weights
    assert phases(hv("speca")[1])["speca m0 verify1"].macs == HV_CACHED + HV_SINGLE - 3 * D * D
    # ToCa (TaylorSeer-HunyuanVideo's 'ToCa' mode): ratio 0.1 x (1.5 - layer / 27) x 0.4 on the
    # dual-stream block: int(0.06 x 32) = 1 image token, int(0.06 x 4) = 0 text tokens through
    # the MLPs, the attention outputs reused; x 1.6 on the single-stream blocks: int(0.24 x 36) =
    # int(0.234 x 36) = 8 tokens each through linear1 (q, k, v and proj_mlp) and proj_out
    (toca,) = [g for name, g in phases(hv("toca")[1]).items() if name.startswith("toca")]
    fresh = 8 * (3 * D * D + D * F + (D + F) * D)
    assert toca.macs == HV_CACHED + 2 * 1 * D * F + 2 * fresh
    names = [op.name for op in toca.ops()]
    assert any(n.endswith("score.random") for n in names) and not any("attn_map" in n for n in names)
    assert not any(n.endswith("cache.proj_out_out.update") for n in names)  # update_cache commented out


def test_bundled_hunyuanvideo_runs_with_a_schedule_from_the_cli():
    r = run_cli("run", "hw_configs/h100_sxm.yaml", "workloads/hunyuanvideo_720p.yaml", "--schedule", "magcache")
    assert r.returncode == 0, r.stderr
    assert "magcache reuse" in r.stdout and "Traceback" not in r.stderr
