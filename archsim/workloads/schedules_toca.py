"""ToCa and DuCa (token-wise caching) as their DiT code runs them (docs/sources/schedules.md).

Which steps, and which blocks of a step, compute what: ``cal_type`` decides per block from the
step's countdown index i (n-1 ... 0) and a threshold that ``force_scheduler`` resets whenever a
block runs in full (full when i % threshold == 0; DuCa's even remainders skip the block). A
cached ("ToCa") block reuses its attention output entirely and recomputes the MLP for a share of
the tokens that depends on the step and the block, chosen by scoring the tokens on the attention
map cached at the last full step. A full block computes that map (the heads' mean of the
softmax, so no fused attention). DuCa's skipped steps run no block: the blocks' output of the
step before is taken whole.

The lowering is per group of blocks alike (kind, fresh tokens, cache writes), each on the
stack's own weights, in order.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import numpy as np

from archsim.config.fields import Count, Fraction
from archsim.dtypes import DType
from archsim.ir import ops
from archsim.ir.graph import OpGraph
from archsim.ir.tensor import Role, Tensor
from archsim.ir.transformer import BlockShape, Tokens, attention, mlp
from archsim.workloads.schedules import Schedule, StepPlan, SubsetBuilder, register_schedule
from archsim.workloads.schedules_ops import ScheduleWork, sort_function

# fresh_ratio_scheduler.py: (step_weight, layer_weight) of the recommended schedules: ToCa's
# 'ToCa-ddim50' (DuCa's 'ToCa'), ToCa's 'ToCa-ddpm250'; 'constant' returns the ratio itself.
RATIO_SCHEDULES = {"ddim50": (2.0, -0.2), "ddpm250": (0.4, 0.8), "constant": None}
MODULE_WEIGHT, MODULE_TIME_WEIGHT = 2.5, 0.6  # the MLP's factor 1 + 0.6 x 2.5; attention's is 0


class _TokenCaching(Schedule):
    fresh_threshold: Count = 3  # N: --fresh-threshold (the READMEs' DDIM-50 runs: 3)
    fresh_ratio: Fraction = 0.07  # R: --fresh-ratio
    ratio_schedule: Literal[tuple(RATIO_SCHEDULES)] = "ddim50"  # type: ignore[valid-type]
    AGGRESSIVE: ClassVar[bool] = False  # DuCa: even remainders skip the block

    def threshold(self, countdown: int, steps: int) -> np.float32:
        """force_scheduler.py: N over a step factor (1.4 down to 0.6 over the run; 1 for a
        zero ratio, FORA), rounded half to even in float32 as torch does; 2 in the steps from
        20% to 40% of the countdown."""
        w = 0.0 if self.fresh_ratio == 0 else 0.4
        step_factor = np.float32(1 + w - 2 * w * countdown / steps)
        threshold = np.round(np.float32(self.fresh_threshold) / step_factor)
        if countdown in range(int(steps * 0.2), int(steps * 0.4)) and self.fresh_ratio != 0:
            threshold = np.float32(2)
        return threshold

    def fresh_tokens(self, countdown: int, steps: int, block: int, depth: int, tokens: int) -> int:
        """cache_cutfresh.py: topk = int(clamp(ratio, 0, 1) x tokens), the ratio in float32;
        fresh_ratio_scheduler.py's factors for the step, the block and the MLP. The code divides
        the block index by 27 (DiT-XL/2's last); here by depth - 1."""
        weights = RATIO_SCHEDULES[self.ratio_schedule]
        ratio = self.fresh_ratio
        if weights is not None:
            step_weight, layer_weight = weights
            step_factor = 1 + step_weight - 2 * step_weight * countdown / steps
            layer_factor = 1 + layer_weight - 2 * layer_weight * block / max(depth - 1, 1)
            ratio = self.fresh_ratio * layer_factor * step_factor * (1 + MODULE_TIME_WEIGHT * MODULE_WEIGHT)
        share = np.clip(np.float32(ratio), np.float32(0), np.float32(1))
        return int(share * np.float32(tokens))

    def kinds(self, steps: int, depth: int) -> list[list[str]]:
        """cal_type.py, per step and block, in the code's order: full, toca, or skip (DuCa)."""
        out, threshold = [], None
        for k in range(steps):
            countdown = steps - 1 - k
            first = countdown == steps - 1
            row = []
            for block in range(depth):
                interval = self.fresh_threshold if first else threshold
                if first or countdown % interval == 0:
                    kind = "full"
                    # force_init.py: ToCa resets the threshold at block 0's full run, DuCa at
                    # every full block's; later blocks of this step use the new threshold.
                    if self.AGGRESSIVE or block == 0:
                        threshold = self.threshold(countdown, steps)
                elif (countdown % interval) % 2 == 1 or not self.AGGRESSIVE:
                    kind = "toca"
                else:
                    kind = "skip"
                row.append(kind)
            out.append(row)
        return out

    def plans(self, steps: int, depth: int | None = None, tokens: int | None = None) -> list[StepPlan]:
        depth, tokens = depth or 28, tokens or 256  # DiT-XL/2 at 256 x 256 unless told
        kinds = self.kinds(steps, depth)
        # A full block writes its caches when its next block run that is not skipped reads
        # them (a ToCa run); the blocks' output is written for a skipped step that follows.
        writes = [[False] * depth for _ in range(steps)]
        after = [None] * depth  # each block's next kind that is not "skip"
        for k in range(steps - 1, -1, -1):
            for block in range(depth):
                kind = kinds[k][block]
                if kind == "full":
                    writes[k][block] = after[block] == "toca"
                if kind != "skip":
                    after[block] = kind
        plans = []
        for k in range(steps):
            countdown = steps - 1 - k
            blocks = tuple((kind, self.fresh_tokens(countdown, steps, i, depth, tokens) if kind == "toca" else 0,
                            writes[k][i]) for i, kind in enumerate(kinds[k]))
            out = k + 1 < steps and kinds[k][-1] != "skip" and kinds[k + 1][-1] == "skip"
            plans.append(StepPlan(self.NAME, ("blocks_out",) if out else (), blocks=blocks))
        return plans


@register_schedule
class ToCa(_TokenCaching):
    """ToCa (Zou et al., ICLR 2025), its DiT code: Shenyi-Z/ToCa DiT-ToCa/. Defaults are the
    README's DDIM-50 run (--fresh-threshold 3 --fresh-ratio 0.07 --ratio-scheduler
    ToCa-ddim50)."""

    NAME = "toca"


@register_schedule
class DuCa(_TokenCaching):
    """DuCa (Zou et al., 2024), its DiT code: Shenyi-Z/DuCa DuCa-DiT/: ToCa's rule, with the
    even remainders of a step's index skipping every block. Defaults are the README's DDIM-50
    run (--fresh-threshold 3 --fresh-ratio 0.05 --ratio-scheduler ToCa)."""

    NAME = "duca"
    fresh_ratio: Fraction = 0.05
    AGGRESSIVE: ClassVar[bool] = True


# -- lowering ---------------------------------------------------------------------------------

def token_blocks(plan: StepPlan, graph: OpGraph, precision, depth: int, scope: str, shape: BlockShape,
                 b: int, t: int, x: Tensor, c: Tensor, tp: int) -> Tensor:
    """The blocks of a ToCa / DuCa step, by groups of blocks alike; returns the blocks' output."""
    if tp > 1:
        raise ValueError(f"{plan.kind}'s token-selective MLP is not lowered for tensor parallelism; "
                         f"use pipeline or data parallelism with schedule {plan.kind}")
    groups: dict[tuple[str, int, bool], int] = {}
    for block in plan.blocks:
        groups[block] = groups.get(block, 0) + 1
    d = shape.hidden
    for i, ((kind, fresh, write), count) in enumerate(groups.items()):
        if kind == "skip":
            continue
        g = SubsetBuilder(graph, f"{plan.kind}{i}", precision, copies=count, scope=scope, tp=tp, depth=depth)
        ada = g.linear("adaLN", g.pointwise("adaLN.act", "silu", c, b, d), b, d, 6 * d)
        if kind == "full":
            x = _full_block(g, shape, b, t, x, ada, write)
        else:
            x = _toca_block(g, plan.kind, shape, b, t, fresh, x, ada)
    blocks_out = Tensor("cache.blocks_out", (b * t, d), precision.kv, Role.FEATURE_CACHE)
    if plan.blocks and plan.blocks[-1][0] == "skip":  # models.py: x = cache['noise'] at block 27
        return blocks_out
    if plan.writes:  # cache['noise'] = x, read whole by the skipped step that follows
        graph.add(ops.CacheWrite(f"{scope}/blocks_out.write" if scope else "blocks_out.write", (x,), (blocks_out,)))
    return x


def _full_block(g: SubsetBuilder, shape: BlockShape, b: int, t: int, x: Tensor, ada: Tensor, write: bool) -> Tensor:
    """A full block as cache_type 'attention' runs it (cache_functions/attention.py): explicit
    softmax, whose heads' mean is the attention map (models.py keeps it, and both outputs)."""
    d, rows, heads = shape.hidden, b * t, shape.heads
    h = g.binary("modulate1", "modulate", (g.norm("norm1", "layernorm", x, rows, d), ada), rows, d)
    attn_out = attention(g.child("attn"), shape, Tokens(b, t, t), h)
    probs = g.child("attn").act("probs", b * heads, t, t)  # the softmax attention() wrote
    attn_map = g.act("attn_map", rows, t)
    g.add(ScheduleWork, "attn_map", (probs,), (attn_map,), rows, heads * t, "sum")  # mean over heads
    x1 = g.binary("residual1", "gated_add", (x, attn_out, ada), rows, d)
    h = g.binary("modulate2", "modulate", (g.norm("norm2", "layernorm", x1, rows, d), ada), rows, d)
    mlp_out = mlp(g.child("mlp"), shape, rows, h)
    if write:
        for name, out in (("attn_out", attn_out), ("mlp_out", mlp_out), ("attn_map", attn_map)):
            g.add(ops.CacheWrite, f"cache.{name}.write", (out,), (g.stack_cache(name, *out.shape),))
    return g.binary("residual2", "gated_add", (x1, mlp_out, ada), rows, d)


def _toca_block(g: SubsetBuilder, kind: str, shape: BlockShape, b: int, t: int, fresh: int, x: Tensor,
                ada: Tensor) -> Tensor:
    """A cached block (models.py, type 'ToCa'): the cached attention output added whole; the
    tokens scored (cache_cutfresh.py: score_evaluate, local_selection_with_bonus, argsort); the
    chosen ``fresh`` tokens per image gathered, normalised, modulated and run through the MLP,
    scattered into the MLP cache (update_cache.py), which is then added whole."""
    d, rows = shape.hidden, b * t
    x1 = g.binary("residual1", "gated_add", (x, g.stack_cache("attn_out", rows, d), ada), rows, d)
    # scores.py attn_score: the cached map summed over queries per key, L2-normalised
    summed = g.act("score.map_sum", b, t)
    g.add(ScheduleWork, "score.map_sum", (g.stack_cache("attn_map", rows, t),), (summed,), b, t * t, "sum")
    normal = g.act("score.normalize", b, t)
    g.add(ScheduleWork, "score.normalize", (summed,), (normal,), b, t, "l2_normalize")
    index = g.stack_cache("cache_index", b, t, dtype=DType.INT32)  # steps since each token's refresh
    score = g.act("score.adjusted", b, t)
    g.add(ScheduleWork, "score.adjusted", (normal, index), (score,), b, t, "toca_score")
    order = g.act("score.argsort", b, t, dtype=DType.INT32)
    g.add(ScheduleWork, "score.argsort", (score,), (order,), b, t, sort_function(t))
    # cache_index += 1, the chosen tokens' set to 0 (DuCa also counts a shared layer_index)
    counters = [(index, "index")] + ([(g.stack_cache("layer_index", b, t, dtype=DType.INT32, copies=1),
                                       "layer_index")] if kind == "duca" else [])
    for counter, name in counters:
        stepped = g.act(f"{name}.step", b, t, dtype=DType.INT32)
        g.add(ops.Elementwise, f"{name}.step", (counter, order), (stepped,), b, t, "add")
        g.add(ops.CacheWrite, f"{name}.write", (stepped,), (counter,))
    mlp_cache = g.stack_cache("mlp_out", rows, d)
    if fresh:
        chosen = b * fresh
        picked = g.act("mlp.gather", chosen, d)
        g.add(ops.Elementwise, "mlp.gather", (x1, order), (picked,), chosen, d, "copy")
        h = g.binary("modulate2", "modulate", (g.norm("norm2", "layernorm", picked, chosen, d), ada), chosen, d)
        out = mlp(g.child("mlp"), shape, chosen, h)
        g.add(ops.CacheWrite, "cache.mlp_out.update", (out,), (mlp_cache,))
    return g.binary("residual2", "gated_add", (x1, mlp_cache, ada), rows, d)
