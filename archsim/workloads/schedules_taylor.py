"""TaylorSeer and SpeCa: cached steps forecast each block's attention and MLP outputs with a
Taylor series whose terms full steps keep by finite differences (docs/sources/schedules.md).

Both count the sampler's steps down, i = n-1 ... 0 (archsim's step k is i = n-1-k). A full step
stores its output as term 0 and, from the second full step on, refreshes the higher terms from
the previous full step's: the f-th full step keeps min(f - 1, order) + 1 terms, so forecasts
start at a low order and reach ``order`` after order + 1 full steps. A forecast evaluates every
term it has (order 0: the stored output itself, a reuse).
"""

from __future__ import annotations

import math
from typing import Annotated

from pydantic import Field

from archsim.config.fields import Count, NonNegativeCount
from archsim.workloads.schedules import Schedule, StepPlan, register_schedule

# TaylorSeer-DiT/cache_functions/cache_init.py: cache_dic['first_enhance'] = 2
TAYLORSEER_FIRST_ENHANCE = 2
# Cache4Diffusion dit/speca-dit/cache_functions/cache_init.py: cache_dic['first_enhance'] = 3
SPECA_FIRST_ENHANCE = 3


def taylor_plans(kinds: list[str | None], order: int, derivative_from: int = 1) -> list[StepPlan]:
    """Plans from per-step kinds (None: full; "taylor", "speca": a forecast). The f-th full step
    computes min(f - 1, order) differences (taylor_utils.derivative_approximation: none at the
    first step) and writes them while a forecast is still to come; a forecast reads the terms
    the last full step kept (taylor_formula sums all of them). A full step before step
    ``derivative_from`` keeps its output only (the DiT code: step 0; TaylorSeer-FLUX: steps 0, 1)."""
    later = [False] * (len(kinds) + 1)  # a forecast at or after each step
    for i in range(len(kinds) - 1, -1, -1):
        later[i] = later[i + 1] or kinds[i] is not None
    plans, fulls = [], 0
    for i, kind in enumerate(kinds):
        if kind is None:
            fulls = 1 if i < derivative_from else fulls + 1
            m = min(fulls - 1, order)
            plans.append(StepPlan("full", (f"taylor{m}",) if later[i + 1] else ()))
        else:
            m = min(fulls - 1, order)
            plans.append(StepPlan(kind, order=m, verify_blocks=1 if kind == "speca" else 0))
    return plans


@register_schedule
class TaylorSeer(Schedule):
    """TaylorSeer (Liu et al., ICCV 2025), as its DiT code chooses steps: the first two steps in
    full, then a full step every ``interval`` steps (a counter of forecasts since the last full
    step; full when it reaches interval - 1); the others forecast. Defaults are the README's
    recommended ``--interval 4 --max-order 4``."""

    NAME = "taylorseer"
    order: Count = Field(default=4, le=8, description="--max-order: the highest Taylor term kept")
    interval: Count = 4

    def plans(self, steps: int, depth: int | None = None, tokens: int | None = None) -> list[StepPlan]:
        return self.plans_with(steps, self.interval, self.order)

    def plans_with(self, steps: int, interval: int, order: int, first_enhance: int = TAYLORSEER_FIRST_ENHANCE,
                   derivative_from: int = 1) -> list[StepPlan]:
        """The rule with the settings another model's TaylorSeer code uses (a hook for
        kind: diffusion_transformer: TaylorSeer-FLUX warms up 3 steps, differences from step 2)."""
        # Shenyi-Z/TaylorSeer TaylorSeer-DiT/cache_functions/cal_type.py, cal_type:
        # full if step > num_steps - first_enhance - 1 or cache_counter == interval - 1.
        kinds: list[str | None] = []
        counter = 0
        for k in range(steps):
            countdown = steps - 1 - k
            if countdown > steps - first_enhance - 1 or counter == interval - 1:
                kinds.append(None)
                counter = 0
            else:
                kinds.append("taylor")
                counter += 1
        return taylor_plans(kinds, order, derivative_from)


@register_schedule
class SpeCa(Schedule):
    """SpeCa (Liu et al., ACM MM 2025), forecast then verify, as its DiT code chooses steps. A
    full step is always followed by a forecast; the first three steps are otherwise full (so the
    run starts full, forecast, full). After a full step the first ``min_taylor_steps``
    forecasts are taken unchecked; each later forecast also runs the last block in full on its
    input and measures the relative L1 error of the forecast; an error over the threshold makes
    the next step full, and ``max_taylor_steps`` forecasts in a row always do.

    Whether a forecast passes depends on the sample (an error threshold that decays over the
    steps), so archsim takes a pass rate, ``acceptance``, per check, and runs every chain at its
    expected length rounded: a deterministic schedule. Defaults are the code's
    (``--max-order 4 --min-taylor-steps 2 --max-taylor-steps 5``)."""

    NAME = "speca"
    order: Count = Field(default=4, le=8, description="--max-order: the highest Taylor term kept")
    min_taylor_steps: NonNegativeCount = Field(default=2, description="forecasts after a full step taken unchecked")
    max_taylor_steps: Count = Field(default=5, description="forecasts in a row at most")
    acceptance: Annotated[float, Field(ge=0, le=1)] = 0.8  # ASSUMPTION: sample-dependent in SpeCa

    def chain(self) -> int:
        """Forecasts between two full steps: checks start at forecast c = max(2, min + 1); a
        failed check at forecast j < max ends the chain at j, so its expected length is
        c + sum of acceptance^j for j = 1 .. max - c, rounded half up."""
        cap = self.max_taylor_steps
        first_check = max(2, self.min_taylor_steps + 1)
        if first_check >= cap:
            return cap
        expected = first_check + sum(self.acceptance**j for j in range(1, cap - first_check + 1))
        return min(cap, math.floor(expected + 0.5))

    def plans(self, steps: int, depth: int | None = None, tokens: int | None = None) -> list[StepPlan]:
        # Shenyi-Z/Cache4Diffusion dit/speca-dit/cache_functions/cal_type.py, cal_type: after a
        # full step, 'Taylor' with taylor_step_counter = 1 and check = False; otherwise check =
        # counter >= min_taylor_steps, and full if step > num_steps - first_enhance - 1, if
        # counter >= max_taylor_steps, or if the last check's error exceeded the threshold.
        # models.py, DiTBlock.forward: the check runs block 27 (the last) in full.
        chain = self.chain()
        kinds: list[str | None] = []
        counter = 0
        for k in range(steps):
            countdown = steps - 1 - k
            if kinds and kinds[-1] is None:
                kind, counter = "taylor", 1
            elif countdown > steps - SPECA_FIRST_ENHANCE - 1 or counter >= chain:
                kind, counter = None, 0
            else:
                kind = "speca" if counter >= self.min_taylor_steps else "taylor"  # checked
                counter += 1
            kinds.append(kind)
        return taylor_plans(kinds, self.order)
