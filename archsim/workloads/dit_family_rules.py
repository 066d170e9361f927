"""Which steps a feature-caching schedule runs in full on the diffusers families
(``kind: diffusion_transformer``), as the authors' code for that model decides them
(docs/sources/schedules.md, "On the diffusers family").

The schedules are ``kind: dit``'s (``archsim.workloads.schedules``). Where a method publishes
code for a family, its rule and default settings are that code's; elsewhere the method's DiT
rule applies, on the family's cacheable units (``archsim.workloads.dit_blocks.UNITS``):

- ``reuse`` (FORA): its model-agnostic rule everywhere;
- ``taylorseer``: TaylorSeer-FLUX's (three warm-up steps, differences from the third, interval 6
  and order 1 unless set) on FLUX, TaylorSeer-HunyuanVideo's (one warm-up step, interval 5, order
  1) on HunyuanVideo; the DiT rule elsewhere;
- ``teacache``: the FLUX rule everywhere (TeaCache4Wan2.1 decides each pass with the same rule,
  TeaCache4HunyuanVideo is that rule and probe);
- ``magcache``: MagCache4FLUX's rule on FLUX, SD3 and PixArt; MagCache4Wan2.1's on Wan 2.1
  (retention over the passes, a strict comparison, no forced step; its published 1.3B ratios
  and settings unless set); MagCache4HunyuanVideo's on HunyuanVideo (retention int(r x n), no
  forced step, its 720p or 544p ratios and settings unless set);
- ``icc``: the DiT rule everywhere;
- ``speca``: SpeCa-FLUX's settings (order 2, at most 8 forecasts in a row, unless set) on FLUX,
  SpeCa-HunyuanVideo's (one warm-up step, order 1, checks from the 4th forecast, at most 12) on
  HunyuanVideo, the check on the last single block's fused output; the DiT rule elsewhere, the
  check on the last block's units;
- ``l2c``, ``harmonica``: their DiT rule (a mask or router table over the model's blocks, FLUX's
  double-stream blocks first, then its single-stream ones);
- ``toca``, ``duca``: ToCa's FLUX and PixArt-alpha code, DuCa's PixArt-alpha rule, the 'ToCa' and
  'DuCa' modes of TaylorSeer-HunyuanVideo (``archsim.workloads.dit_family_toca``); no code for SD3
  and Wan 2.1: ToCa-FLUX's double-stream rule and settings on SD3's joint blocks, ToCa's
  PixArt-alpha rule and settings on Wan 2.1.

A schedule not lowered for a family is an error naming both.
"""

from __future__ import annotations

from archsim.errors import ConfigError
from archsim.workloads.schedules import Schedule, StepPlan
from archsim.workloads.schedules_taylor import taylor_plans
from archsim.workloads.dit_family_toca import FAMILIES as TOKEN_FAMILIES
from archsim.workloads.dit_family_toca import token_plans
from archsim.workloads.schedules_adaptive import data_path, nearest_interp, read_curve, read_decisions

FAMILIES = ("flux", "sd3", "pixart_alpha", "wan2.1", "hunyuan_video")
STREAMS = ("flux", "hunyuan_video")  # double-stream blocks, then single-stream blocks
# (schedule, family) pairs lowered: every family runs these
SUPPORTED = {family: ("none", "reuse", "taylorseer", "teacache", "magcache", "icc", "speca", "l2c", "harmonica", "toca",
                      "duca") for family in FAMILIES}
assert set(TOKEN_FAMILIES) == set(FAMILIES)

# Shenyi-Z/TaylorSeer TaylorSeer-FLUX/src/flux/modules/cache_functions/cache_init.py, mode 'Taylor':
# fresh_threshold 6 (the interval), max_order 1, first_enhance 3; taylor_utils/__init__.py,
# derivative_approximation: differences only when step > first_enhance - 2.
TAYLORSEER_FLUX = {"interval": 6, "order": 1}
TAYLORSEER_FLUX_FIRST_ENHANCE = 3
# Shenyi-Z/TaylorSeer TaylorSeer-HunyuanVideo/hyvideo/modules/cache_functions/cache_init.py, mode
# 'Taylor': fresh_threshold 5, max_order 1, first_enhance 1 (cal_type.py and taylor_utils as FLUX's:
# full at step 0, then every 5th; differences from step first_enhance - 1 = 0)
TAYLORSEER_HUNYUAN = {"interval": 5, "order": 1}
TAYLORSEER_HUNYUAN_FIRST_ENHANCE = 1

# Zehong-Ma/MagCache MagCache4Wan2.1/magcache_generate.py: the T2V-1.3B magnitude ratios (line
# 912, after the two 1.0 paddings), the conditional and unconditional passes interleaved, 50
# steps; the README's T2V-1.3B command: --magcache_K 4 --retention_ratio 0.2 --magcache_thresh 0.12.
WAN_1_3B_MAG_RATIOS = (
    1.0, 1.0,
    1.0124, 1.02213, 1.00166, 1.0041, 0.99791, 1.00061, 0.99682, 0.99762, 0.99634, 0.99685, 0.99567, 0.99586,
    0.99416, 0.99422, 0.99578, 0.99575, 0.9957, 0.99563, 0.99511, 0.99506, 0.99535, 0.99531, 0.99552, 0.99549,
    0.99541, 0.99539, 0.9954, 0.99536, 0.99489, 0.99485, 0.99518, 0.99514, 0.99484, 0.99478, 0.99481, 0.99479,
    0.99415, 0.99413, 0.99419, 0.99416, 0.99396, 0.99393, 0.99388, 0.99386, 0.99349, 0.99349, 0.99309, 0.99304,
    0.9927, 0.9927, 0.99228, 0.99226, 0.99171, 0.9917, 0.99137, 0.99135, 0.99068, 0.99063, 0.99005, 0.99003,
    0.98944, 0.98942, 0.98849, 0.98849, 0.98758, 0.98757, 0.98644, 0.98643, 0.98504, 0.98503, 0.9836, 0.98359,
    0.98202, 0.98201, 0.97977, 0.97978, 0.97717, 0.97718, 0.9741, 0.97411, 0.97003, 0.97002, 0.96538, 0.96541,
    0.9593, 0.95933, 0.95086, 0.95089, 0.94013, 0.94019, 0.92402, 0.92414, 0.90241, 0.9026, 0.86821, 0.86868,
    0.81838, 0.81939,
)
MAGCACHE_WAN = {"thresh": 0.12, "max_skips": 4, "retention_ratio": 0.2}
# Shenyi-Z/Cache4Diffusion flux/speca-flux/src/flux/modules/cache_functions/cache_init.py, mode
# 'Taylor': max_order 2, first_enhance 3 (as SpeCa's DiT); flux/cli.py: --max-taylor-steps 8,
# --min-taylor-steps 2 (base_threshold 7.0, decay_rate 0.3: the pass rate stays archsim's acceptance)
SPECA_FLUX = {"order": 2, "max_taylor_steps": 8}
# Shenyi-Z/Cache4Diffusion hunyuan_video/speca-hunyuan_video/hyvideo/modules/cache_functions/
# cache_init.py, mode 'Taylor': max_order 1, first_enhance 1, min_taylor_steps 4, max_taylor_steps 12
# (base_threshold 1, decay_rate 0.1: the pass rate stays archsim's acceptance); cal_type.py as FLUX's
SPECA_HUNYUAN = {"order": 1, "min_taylor_steps": 4, "max_taylor_steps": 12}
SPECA_HUNYUAN_FIRST_ENHANCE = 1
# Zehong-Ma/MagCache MagCache4HunyuanVideo/magcache_sample_video.py, main: magcache_thresh 0.24,
# magcache_K 6, retention_ratio 0.2; mag_ratios for --video-size 720 1280 and 544 960 (50 steps)
MAGCACHE_HUNYUAN = {"thresh": 0.24, "max_skips": 6, "retention_ratio": 0.2}
HUNYUAN_MAG_RATIOS = {
    720: (1.0, 1.0754, 1.27807, 1.11596, 1.09504, 1.05188, 1.00844, 1.05779, 1.00657, 1.04142, 1.03101, 1.00679,
          1.02556, 1.00908, 1.06949, 1.05438, 1.02214, 1.02321, 1.03019, 1.00779, 1.03381, 1.01886, 1.01161, 1.02968,
          1.00544, 1.02822, 1.00689, 1.02119, 1.0105, 1.01044, 1.01572, 1.02972, 1.0094, 1.02368, 1.0226, 0.98965,
          1.01588, 1.02146, 1.0018, 1.01687, 0.99436, 1.00283, 1.01139, 0.97122, 0.98251, 0.94513, 0.97656, 0.90943,
          0.85703, 0.75456),
    544: (1.0, 1.06971, 1.29073, 1.11245, 1.09596, 1.05233, 1.01415, 1.05672, 1.00848, 1.03632, 1.02974, 1.00984,
          1.03028, 1.00681, 1.06614, 1.05022, 1.02592, 1.01776, 1.02985, 1.00726, 1.03727, 1.01502, 1.00992, 1.03371,
          0.9976, 1.02742, 1.0093, 1.01869, 1.00815, 1.01461, 1.01152, 1.03082, 1.0061, 1.02162, 1.01999, 0.99063,
          1.01186, 1.0217, 0.99947, 1.01711, 0.9904, 1.00258, 1.00878, 0.97039, 0.97686, 0.94315, 0.97728, 0.91154,
          0.86139, 0.76592),
}


def check_supported(schedule: Schedule, family: str, cls: str, source: str) -> None:
    if schedule.NAME not in SUPPORTED[family]:
        raise ConfigError(f"{schedule.NAME!r} is not lowered for the {family} family ({cls}) of kind: "
                          f"diffusion_transformer; schedules there: {', '.join(SUPPORTED[family])} (every schedule "
                          "runs on kind: dit)", file=source, key="schedule")


def family_plans(schedule: Schedule, family: str, steps: int, depth: int, model=None, tokens: int = 0,
                 text: int = 0, height: int = 0) -> list[StepPlan]:
    """One plan per network evaluation of the pipeline's loop (both passes of sequential
    guidance take the step's plan); ToCa and DuCa need the model and its tokens (image, text),
    MagCache on HunyuanVideo the frame height (its ratios are per resolution)."""
    if schedule.NAME in ("toca", "duca"):
        return token_plans(schedule, model, steps, tokens, text)
    if schedule.NAME == "taylorseer" and family in STREAMS:
        return taylorseer_family(schedule, steps, family)
    if schedule.NAME == "magcache" and family == "wan2.1":
        return magcache_wan(schedule, steps)
    if schedule.NAME == "magcache" and family == "hunyuan_video":
        return magcache_hunyuan(schedule, steps, height)
    if schedule.NAME == "speca" and family == "hunyuan_video":
        return speca_hunyuan(schedule, steps)
    if schedule.NAME == "speca" and family == "flux":  # cal_type.py: SpeCa's DiT rule, FLUX's settings
        unset = {k: v for k, v in SPECA_FLUX.items() if k not in schedule.model_fields_set}
        return schedule.model_copy(update=unset).plans(steps)
    return schedule.plans(steps, depth=depth)


def _setting(schedule: Schedule, name: str, defaults: dict):
    """The schedule's value when the user set it, else the family code's default."""
    return getattr(schedule, name) if name in schedule.model_fields_set else defaults[name]


def taylorseer_family(schedule, steps: int, family: str) -> list[StepPlan]:
    # TaylorSeer-FLUX's and TaylorSeer-HunyuanVideo's cal_type.py: the step counts up; full while
    # step < first_enhance or when cache_counter == fresh_interval - 1 (cal_threshold =
    # round(fresh_threshold / 1): force_scheduler's step weight is 0); derivative_approximation
    # from step first_enhance - 1 on.
    settings, first = (TAYLORSEER_FLUX, TAYLORSEER_FLUX_FIRST_ENHANCE) if family == "flux" else \
        (TAYLORSEER_HUNYUAN, TAYLORSEER_HUNYUAN_FIRST_ENHANCE)
    return schedule.plans_with(steps, _setting(schedule, "interval", settings), _setting(schedule, "order", settings),
                               first_enhance=first, derivative_from=first - 1)


def speca_hunyuan(schedule, steps: int) -> list[StepPlan]:
    """SpeCa-HunyuanVideo's cal_type (the step counting up): SpeCa's rule (``SpeCa.plans``) with
    one warm-up step and that code's settings unless set."""
    unset = {k: v for k, v in SPECA_HUNYUAN.items() if k not in schedule.model_fields_set}
    s = schedule.model_copy(update=unset)
    chain, kinds, counter = s.chain(), [], 0
    for k in range(steps):
        if kinds and kinds[-1] is None:  # a full step: the next forecasts, unchecked
            kind, counter = "taylor", 1
        elif k < SPECA_HUNYUAN_FIRST_ENHANCE or counter >= chain:
            kind, counter = None, 0
        else:
            kind, counter = "speca" if counter >= s.min_taylor_steps else "taylor", counter + 1
        kinds.append(kind)
    return taylor_plans(kinds, s.order)


def magcache_hunyuan(schedule, steps: int, height: int) -> list[StepPlan]:
    """MagCache4HunyuanVideo's magcache_forward: from cnt >= int(retention_ratio x n) (no + 0.5)
    accumulated_ratio *= mag_ratios[cnt], steps + 1, err += |1 - ratio|; skip while err <= thresh
    and steps <= K, else reset; nothing forced. The ratios its main picks by height (720 or 544;
    another height takes the nearer one's), nearest_interp to n steps; or the schedule's curve."""
    start = int(steps * _setting(schedule, "retention_ratio", MAGCACHE_HUNYUAN))
    decide = [k >= start for k in range(steps)]
    if schedule.decisions is not None:
        return schedule.plans_from(read_decisions(data_path(schedule.decisions), steps), decide)
    curve = read_curve(data_path(schedule.mag_ratios), "a MagCache ratio CSV", "mag_ratio", positive=True) \
        if "mag_ratios" in schedule.model_fields_set else \
        list(HUNYUAN_MAG_RATIOS[min(HUNYUAN_MAG_RATIOS, key=lambda h: abs(h - height))])
    ratios, keep = nearest_interp(curve, steps), schedule.keep_full if "keep_full" in schedule.model_fields_set else []
    thresh, skips = _setting(schedule, "thresh", MAGCACHE_HUNYUAN), _setting(schedule, "max_skips", MAGCACHE_HUNYUAN)
    ratio, skipped, error, out = 1.0, 0, 0.0, []
    for k in range(steps):
        skip = False
        if k >= start and k > 0:  # step 0: no residual yet
            ratio *= ratios[k]
            skipped += 1
            error += abs(1 - ratio)
            point = round(k * ((len(curve) - 1) / (steps - 1)))  # nearest_interp's index (k > 0: n > 1)
            skip = error <= thresh and skipped <= skips and point not in keep
            if not skip:
                ratio, skipped, error = 1.0, 0, 0.0
        out.append(not skip)
    return schedule.plans_from(out, decide)


def magcache_wan(schedule, steps: int) -> list[StepPlan]:
    """MagCache4Wan2.1's magcache_forward: cnt counts the passes (conditional even, unconditional
    odd) over 2n; a pass decides once cnt >= int(2n x retention_ratio); its own accumulated
    ratio, steps and error; skip while error < thresh (strict) and steps <= K; nothing forced.
    archsim decides on the conditional pass's counter and ratios, for both passes (with the
    published ratios the two passes decide alike: tests/test_dit_family_schedules.py)."""
    passes = 2 * steps
    retention = _setting(schedule, "retention_ratio", MAGCACHE_WAN)
    decide = [2 * k >= int(passes * retention) for k in range(steps)]
    if schedule.decisions is not None:
        return schedule.plans_from(read_decisions(data_path(schedule.decisions), steps), decide)
    return schedule.plans_from(wan_decisions(schedule, steps, 0), decide)


def wan_ratios(schedule, steps: int, parity: int) -> list[float]:
    """One pass's ratio per step: the published interleaved list (its half, nearest-interpolated
    to n steps as the code does when 2n differs), or the schedule's curve (one per step)."""
    if "mag_ratios" in schedule.model_fields_set:
        return nearest_interp(read_curve(data_path(schedule.mag_ratios), "a MagCache ratio CSV", "mag_ratio",
                                         positive=True), steps)
    return nearest_interp(list(WAN_1_3B_MAG_RATIOS[parity::2]), steps)


def wan_decisions(schedule, steps: int, parity: int) -> list[bool]:
    """Per step, whether the pass of ``parity`` (0: conditional, 1: unconditional) computes."""
    ratios = wan_ratios(schedule, steps, parity)
    thresh = _setting(schedule, "thresh", MAGCACHE_WAN)
    skips = _setting(schedule, "max_skips", MAGCACHE_WAN)
    start = int(2 * steps * _setting(schedule, "retention_ratio", MAGCACHE_WAN))
    keep = schedule.keep_full if "keep_full" in schedule.model_fields_set else []
    ratio, skipped, error, out = 1.0, 0, 0.0, []
    for k in range(steps):
        skip = False
        if 2 * k + parity >= start and k > 0:  # step 0: no residual yet
            ratio *= ratios[k]
            skipped += 1
            error += abs(1 - ratio)
            skip = error < thresh and skipped <= skips and k not in keep
            if not skip:
                ratio, skipped, error = 1.0, 0, 0.0
        out.append(not skip)
    return out


def first_block(model) -> tuple[str, int, int | None]:
    """The stack holding block 0 (TeaCache probes its modulation): its name, its blocks and its
    modulation's chunks (None: PixArt's table, no projection of its own)."""
    family = model.family
    if family in STREAMS:
        return ("transformer_blocks", model.num_layers, 6) if model.num_layers else \
            ("single_transformer_blocks", model.num_single_layers, 3)
    if family == "sd3":
        kinds = [(i in model.dual_attention_layers, i == model.num_layers - 1) for i in range(model.num_layers)]
        run = next((i for i, kind in enumerate(kinds) if kind != kinds[0]), len(kinds))
        return "transformer_blocks", run, 9 if kinds[0][0] else 6
    if family == "pixart_alpha":
        return "transformer_blocks", model.num_layers, None
    return "blocks", model.num_layers, None


def last_stack(model) -> str:
    """The stack holding the model's last block (SpeCa checks it)."""
    if model.family in STREAMS:
        return "single_transformer_blocks" if model.num_single_layers else "transformer_blocks"
    if model.family == "sd3":  # _sd3's runs of blocks alike: the last block is a run of its own
        kinds = [(i in model.dual_attention_layers, i == model.num_layers - 1) for i in range(model.num_layers)]
        runs = 1 + sum(kinds[i] != kinds[i - 1] for i in range(1, len(kinds)))
        return "transformer_blocks" if runs == 1 else f"transformer_blocks_{runs - 1}"
    return "transformer_blocks" if model.family == "pixart_alpha" else "blocks"


def decisions_agree(schedule, steps: int) -> bool:
    """Whether MagCache4Wan2.1's two passes decide alike (what archsim's one decision a step assumes)."""
    return wan_decisions(schedule, steps, 0) == wan_decisions(schedule, steps, 1)

