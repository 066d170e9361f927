"""Which steps a feature-caching schedule runs in full on the diffusers families
(``kind: diffusion_transformer``), as the authors' code for that model decides them
(docs/sources/schedules.md, "On the diffusers family").

The schedules are ``kind: dit``'s (``archsim.workloads.schedules``). Where a method publishes
code for a family, its rule and default settings are that code's; elsewhere the method's DiT
rule applies, on the family's cacheable units (``archsim.workloads.dit_blocks.UNITS``):

- ``reuse`` (FORA): its model-agnostic rule everywhere;
- ``taylorseer``: TaylorSeer-FLUX's (three warm-up steps, differences from the third, interval 6
  and order 1 unless set) on FLUX; the DiT rule elsewhere;
- ``teacache``: the FLUX rule everywhere (TeaCache4Wan2.1 decides each pass with the same rule);
- ``magcache``: MagCache4FLUX's rule on FLUX, SD3 and PixArt; MagCache4Wan2.1's on Wan 2.1
  (retention over the passes, a strict comparison, no forced step; its published 1.3B ratios
  and settings unless set);
- ``icc``: the DiT rule everywhere;
- ``speca``: SpeCa-FLUX's settings (order 2, at most 8 forecasts in a row, unless set) on FLUX,
  its check on the last single block's fused output; the DiT rule elsewhere, the check on the last
  block's units;
- ``l2c``, ``harmonica``: their DiT rule (a mask or router table over the model's blocks, FLUX's
  double-stream blocks first, then its single-stream ones);
- ``toca``, ``duca``: ToCa's FLUX and PixArt-alpha code, DuCa's PixArt-alpha rule
  (``archsim.workloads.dit_family_toca``); no code for SD3 and Wan 2.1: ToCa-FLUX's double-stream
  rule and settings on SD3's joint blocks, ToCa's PixArt-alpha rule and settings on Wan 2.1.

A schedule not lowered for a family is an error naming both.
"""

from __future__ import annotations

from archsim.errors import ConfigError
from archsim.workloads.schedules import Schedule, StepPlan
from archsim.workloads.dit_family_toca import FAMILIES as TOKEN_FAMILIES
from archsim.workloads.dit_family_toca import token_plans
from archsim.workloads.schedules_adaptive import data_path, nearest_interp, read_curve, read_decisions

FAMILIES = ("flux", "sd3", "pixart_alpha", "wan2.1")
# (schedule, family) pairs lowered: every family runs these
SUPPORTED = {family: ("none", "reuse", "taylorseer", "teacache", "magcache", "icc", "speca", "l2c", "harmonica", "toca",
                      "duca") for family in FAMILIES}
assert set(TOKEN_FAMILIES) == set(FAMILIES)

# Shenyi-Z/TaylorSeer TaylorSeer-FLUX/src/flux/modules/cache_functions/cache_init.py, mode 'Taylor':
# fresh_threshold 6 (the interval), max_order 1, first_enhance 3; taylor_utils/__init__.py,
# derivative_approximation: differences only when step > first_enhance - 2.
TAYLORSEER_FLUX = {"interval": 6, "order": 1}
TAYLORSEER_FLUX_FIRST_ENHANCE = 3

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


def check_supported(schedule: Schedule, family: str, cls: str, source: str) -> None:
    if schedule.NAME not in SUPPORTED[family]:
        raise ConfigError(f"{schedule.NAME!r} is not lowered for the {family} family ({cls}) of kind: "
                          f"diffusion_transformer; schedules there: {', '.join(SUPPORTED[family])} (every schedule "
                          "runs on kind: dit)", file=source, key="schedule")


def family_plans(schedule: Schedule, family: str, steps: int, depth: int, model=None, tokens: int = 0,
                 text: int = 0) -> list[StepPlan]:
    """One plan per network evaluation of the pipeline's loop (both passes of sequential
    guidance take the step's plan); ToCa and DuCa need the model and its tokens (image, text)."""
    if schedule.NAME in ("toca", "duca"):
        return token_plans(schedule, model, steps, tokens, text)
    if schedule.NAME == "taylorseer" and family == "flux":
        return taylorseer_flux(schedule, steps)
    if schedule.NAME == "magcache" and family == "wan2.1":
        return magcache_wan(schedule, steps)
    if schedule.NAME == "speca" and family == "flux":  # cal_type.py: SpeCa's DiT rule, FLUX's settings
        unset = {k: v for k, v in SPECA_FLUX.items() if k not in schedule.model_fields_set}
        return schedule.model_copy(update=unset).plans(steps)
    return schedule.plans(steps, depth=depth)


def _setting(schedule: Schedule, name: str, defaults: dict):
    """The schedule's value when the user set it, else the family code's default."""
    return getattr(schedule, name) if name in schedule.model_fields_set else defaults[name]


def taylorseer_flux(schedule, steps: int) -> list[StepPlan]:
    # TaylorSeer-FLUX cal_type.py: the step counts up; full while step < first_enhance or when
    # cache_counter == fresh_interval - 1 (cal_threshold = round(fresh_threshold / 1): force_scheduler's
    # step weight is 0); derivative_approximation from step first_enhance - 1 on.
    return schedule.plans_with(steps, _setting(schedule, "interval", TAYLORSEER_FLUX),
                               _setting(schedule, "order", TAYLORSEER_FLUX),
                               first_enhance=TAYLORSEER_FLUX_FIRST_ENHANCE,
                               derivative_from=TAYLORSEER_FLUX_FIRST_ENHANCE - 1)


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
    if family == "flux":
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
    if model.family == "flux":
        return "single_transformer_blocks" if model.num_single_layers else "transformer_blocks"
    if model.family == "sd3":  # _sd3's runs of blocks alike: the last block is a run of its own
        kinds = [(i in model.dual_attention_layers, i == model.num_layers - 1) for i in range(model.num_layers)]
        runs = 1 + sum(kinds[i] != kinds[i - 1] for i in range(1, len(kinds)))
        return "transformer_blocks" if runs == 1 else f"transformer_blocks_{runs - 1}"
    return "transformer_blocks" if model.family == "pixart_alpha" else "blocks"


def decisions_agree(schedule, steps: int) -> bool:
    """Whether MagCache4Wan2.1's two passes decide alike (what archsim's one decision a step assumes)."""
    return wan_decisions(schedule, steps, 0) == wan_decisions(schedule, steps, 1)

