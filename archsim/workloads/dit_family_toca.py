"""ToCa and DuCa on the diffusers families (``kind: diffusion_transformer``), as the authors' code
for FLUX, PixArt-alpha and HunyuanVideo runs them (docs/sources/schedules.md, "On the diffusers
family").

Rules (which steps run in full, how many tokens each unit recomputes):

- FLUX, ToCa: Shenyi-Z/ToCa flux-ToCa (cal_type.py: the first 3 steps full, then full when
  cache_counter reaches fresh_threshold - 1, force_scheduler's step weight 0; cache_init.py:
  fresh_threshold 4, fresh_ratio 0.1, soft_fresh_weight 0.25; fresh_ratio_scheduler.py 'ToCa':
  ratio x (1.5 - layer / 27) x (0.4 double-stream, 1.6 single-stream), layer counted per stream);
- PixArt-alpha, ToCa: Shenyi-Z/ToCa PixArt-alpha-ToCa (global_force_fresh.py: full at step 0 and
  when step % cal_threshold == 0; force_scheduler.py: cal_threshold = round(N / (0.8 + 0.4 step /
  n)); scripts/inference.py: N 3, ratio 0.3; fresh_ratio_scheduler.py 'ToCa': ratio x (1.6 - 1.2
  layer / 27) x (1.9 - 1.8 step / n) x (0.6 cross-attention, 1.6 MLP));
- DuCa (Shenyi-Z/DuCa DuCa-PixArt-alpha cal_type.py): full at step % N == 0, odd remainders ToCa,
  even remainders skip every block; force_scheduler's step weight 0. DuCa publishes no FLUX code:
  on FLUX its PixArt rule with ToCa-FLUX's ratios;
- HunyuanVideo: the 'ToCa' and 'DuCa' modes of Shenyi-Z/TaylorSeer TaylorSeer-HunyuanVideo
  (hyvideo/modules/cache_functions: cache_init.py fresh_threshold 5, fresh_ratio 0.1, first_enhance
  1, cache_type 'random'; cal_type.py: full at step 0 and every 5th, DuCa's odd counters ToCa and
  even ones skip every block; fresh_ratio_scheduler.py 'ToCa' as FLUX's; score_evaluate.py:
  torch.rand scores, no frequency score; models.py: the double blocks' attention outputs reused,
  each stream's MLP on its top tokens; the single block's linear1 and linear2 on its top tokens
  beside the cached attention context, their result not scattered (update_cache commented out):
  the block reads its cached output whole);
- SD3 / SD3.5 and Wan 2.1: no authors' code; the closest published rule (``RULE``): SD3's joint
  blocks take ToCa-FLUX's double-stream rule and settings (every block a double-stream one, layer
  counted from 0; the last, context_pre_only, block its image MLP only; SD3.5's attn2 as the
  joint attention, its context kept and re-projected), Wan 2.1's blocks ToCa's PixArt-alpha rule
  and settings (attn1 reused, attn2 and the FFN on the chosen tokens, scored on each pass's own
  cross-attention map: no guidance halves to average).

Lowering (the blocks' units policy, ``TokenUnits``): a full step runs every unit and, before a
ToCa step, keeps the attention outputs (FLUX: the attention context before its out projections,
which ToCa steps recompute; PixArt: attn1's output), the MLP outputs and the attention map the
tokens are scored on (FLUX: the joint map averaged over heads and queries; PixArt: the
cross-attention map averaged over heads). A ToCa step scores each token-wise unit's tokens, and
runs the unit on the top ones (FLUX: each stream's MLP, the single blocks' proj_mlp and proj_out
beside the cached attention context gathered; PixArt: cross-attention and MLP), scattered into
the unit's cache, which the block then reads whole. SD3 as FLUX's double-stream blocks, Wan 2.1
as PixArt.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from archsim.dtypes import DType
from archsim.ir import ops
from archsim.ir.ops import Pass
from archsim.ir.tensor import Tensor
from archsim.workloads.schedules import StepPlan
from archsim.workloads.schedules_ops import ScheduleWork, sort_function

FAMILIES = ("flux", "sd3", "pixart_alpha", "wan2.1", "hunyuan_video")
# The code whose rule each family takes: its own (FLUX, PixArt-alpha), else the closest published
# one (no authors' code exists): SD3's joint blocks ToCa-FLUX's double-stream rule, Wan 2.1's
# blocks (self-attention, cross-attention, FFN) ToCa's PixArt-alpha rule
RULE = {"flux": "flux", "sd3": "flux", "pixart_alpha": "pixart_alpha", "wan2.1": "pixart_alpha",
        "hunyuan_video": "hunyuan_video"}
# (fresh_threshold, fresh_ratio) of the authors' code per rule, when the user sets neither
DEFAULTS = {("toca", "flux"): (4, 0.1), ("duca", "flux"): (4, 0.1), ("toca", "pixart_alpha"): (3, 0.3),
            ("duca", "pixart_alpha"): (3, 0.3), ("toca", "hunyuan_video"): (5, 0.1),
            ("duca", "hunyuan_video"): (5, 0.1)}


class TokenWork(ScheduleWork):
    """ScheduleWork with the diffusers-family scoring: ``toca_s3`` FLUX's adjustment without the
    spatial bonus (index to float, / threshold, x weight, add: 4 a token); ``cfg_entropy``
    PixArt's attn_score on the cross map: the conditional and unconditional halves averaged (2),
    then -sum p log(p + 1e-7) (add, log, multiply, add: 4): 6 an element; ``entropy`` the same on
    one pass's map (Wan 2.1's sequential guidance: each pass scores its own): 4 an element;
    ``uniform_random`` TaylorSeer-HunyuanVideo's torch.rand scores: ASSUMPTION: curand's
    Philox4_32_10 (Salmon et al., SC 2011), 10 rounds of two 32-bit multiplies (high and low
    halves, 4) and 4 xors, 9 key bumps of 2 adds, for 4 numbers (24.5 each), then the convert and
    scale to [0, 1) (2): 27 an element."""

    PASSES: ClassVar = {**ScheduleWork.PASSES, "toca_s3": (Pass(4),), "cfg_entropy": (Pass(6),),
                        "entropy": (Pass(4),), "uniform_random": (Pass(27),)}


def _settings(schedule, family: str) -> tuple[int, float]:
    n, r = DEFAULTS[(schedule.NAME, RULE[family])]
    return (schedule.fresh_threshold if "fresh_threshold" in schedule.model_fields_set else n,
            schedule.fresh_ratio if "fresh_ratio" in schedule.model_fields_set else r)


def step_kinds(schedule, family: str, steps: int) -> list[str]:
    """Per step: full, toca or skip (every block alike: the code decides per step)."""
    n, ratio = _settings(schedule, family)
    out, counter, threshold = [], 0, None
    for step in range(steps):
        if schedule.NAME == "duca":  # DuCa cal_type.py; force_scheduler: round(N / 1)
            interval = n
            kind = "full" if step == 0 or step % interval == 0 else "toca" if (step % interval) % 2 == 1 else "skip"
        elif RULE[family] == "hunyuan_video":  # TaylorSeer-HunyuanVideo cal_type.py, first_enhance 1
            kind = "full" if step % n == 0 else "toca"
        elif RULE[family] == "flux":  # flux-ToCa cal_type.py
            first = step <= 2 if ratio != 0 else step == 0
            interval = n if first else threshold
            if first or counter == interval - 1:
                kind, counter, threshold = "full", 0, n  # force_scheduler: step weight 0
            else:
                kind, counter = "toca", counter + 1
        else:  # PixArt-alpha-ToCa global_force_fresh.py; force_init.py calls force_scheduler
            interval = n if step == 0 else threshold
            kind = "full" if step == 0 or step % interval == 0 else "toca"
            if kind == "full":
                w = 0.0 if ratio == 0 else 0.2
                threshold = int(np.round(np.float32(n) / np.float32(1 - w + 2 * w * step / steps)))
        out.append(kind)
    return out


def fresh_share(schedule, family: str, step: int, steps: int, layer: int, module: str) -> np.float32:
    """fresh_ratio_scheduler.py 'ToCa' of the family's code, clamped to [0, 1] in float32."""
    _, ratio = _settings(schedule, family)
    if schedule.ratio_schedule == "constant":
        share = ratio
    elif RULE[family] in ("flux", "hunyuan_video"):
        share = ratio * (1 + 0.5 - 2 * 0.5 * layer / 27) * (0.4 if module == "double" else 1.6)
    else:
        step_factor = 1 + 0.9 - 2 * 0.9 * step / steps
        share = ratio * (1 + 0.6 - 2 * 0.6 * layer / 27) * step_factor * (0.6 if module == "cross-attn" else 1.6)
    return np.clip(np.float32(share), np.float32(0), np.float32(1))


def _count(share: np.float32, tokens: int) -> int:
    return int(share * np.float32(tokens))  # cache_cutfresh.py: int(fresh_ratio * score.shape[1])


def token_plans(schedule, model, steps: int, tokens: int, text: int) -> list[StepPlan]:
    """One plan a step; ``blocks``: (kind, the image stream's fresh tokens, writes) per block,
    ``extra['fresh']``: per block, the fresh tokens of each token-wise unit in call order."""
    family = model.family
    kinds = step_kinds(schedule, family, steps)
    if family in ("flux", "hunyuan_video"):
        layers = [("double", i) for i in range(model.num_layers)] + \
                 [("single", i) for i in range(model.num_single_layers)]
    elif family == "sd3":  # the last block (context_pre_only) has no text MLP
        layers = [("double" if i < model.num_layers - 1 else "last", i) for i in range(model.num_layers)]
    else:
        layers = [("pixart", i) for i in range(model.num_layers)]
    plans = []
    for k, kind in enumerate(kinds):
        after = next((x for x in kinds[k + 1:] if x != "skip"), None)
        write = kind == "full" and after == "toca"
        blocks, fresh = [], []
        for stream, layer in layers:
            if kind != "toca":
                counts: tuple[int, ...] = ()
            elif stream == "double":
                share = fresh_share(schedule, family, k, steps, layer, "double")
                counts = (_count(share, tokens), _count(share, text))
            elif stream == "last":
                counts = (_count(fresh_share(schedule, family, k, steps, layer, "double"), tokens),)
            elif stream == "single":
                counts = (_count(fresh_share(schedule, family, k, steps, layer, "single"), tokens + text),)
            else:
                counts = tuple(_count(fresh_share(schedule, family, k, steps, layer, m), tokens)
                               for m in ("cross-attn", "mlp"))
            blocks.append((kind, counts[0] if counts else 0, write))
            fresh.append(counts)
        out = k + 1 < steps and kind != "skip" and kinds[k + 1] == "skip"
        plans.append(StepPlan(schedule.NAME, ("blocks_out",) if out else (), blocks=tuple(blocks),
                              extra=(("fresh", tuple(fresh)),)))
    return plans


class Picker:
    """The tokens a ToCa unit recomputes: scored on the block's cached map, the top ``fresh``
    per sequence gathered (the blocks call ``take``; FLUX's single block also ``context``)."""

    def __init__(self, units: "TokenUnits", name: str, fresh: int):
        self.units, self.name, self.fresh = units, name, fresh

    def take(self, bb, x: Tensor, batch: int, tokens: int) -> tuple[Tensor, int]:
        self.score(bb, batch, tokens)
        picked = bb.act(f"{self.name}.gather", batch * self.fresh, x.shape[1])
        bb.add(ops.Elementwise, f"{self.name}.gather", (x, self.order), (picked,), batch * self.fresh, x.shape[1],
               "copy")
        return picked, self.fresh

    def score(self, bb, batch: int, tokens: int) -> None:
        """score_evaluate, argsort and the cache_index update (cache_cutfresh.py)."""
        u, n = self.units, self.name
        if RULE[u.family] == "hunyuan_video":  # score_evaluate.py, 'random': torch.rand(B, N), argsort
            score = bb.act(f"{n}.score.random", batch, tokens)
            bb.add(TokenWork, f"{n}.score.random", (bb.constant("rng_state", 1, 2),), (score,), batch, tokens,
                   "uniform_random")
            self.order = bb.act(f"{n}.score.argsort", batch, tokens, dtype=DType.INT32)
            bb.add(ScheduleWork, f"{n}.score.argsort", (score,), (self.order,), batch, tokens, sort_function(tokens))
            return
        if RULE[u.family] == "flux":  # scores.py attn_score: F.normalize of the map's slice for the stream
            source = bb.feature_cache("cache.attn_map", batch, u.tokens + u.text)
            normal = bb.act(f"{n}.score.normalize", batch, tokens)
            bb.add(ScheduleWork, f"{n}.score.normalize", (source,), (normal,), batch, tokens, "l2_normalize")
            adjust = "toca_s3"
        else:  # PixArt scores.py attn_score: entropy of the cfg-averaged cross map, normalised
            source = bb.feature_cache("cache.cross_attn_map", batch * tokens, u.text)
            entropy = bb.act(f"{n}.score.entropy", batch, tokens)
            bb.add(TokenWork, f"{n}.score.entropy", (source,), (entropy,), batch * tokens, u.text,
                   "cfg_entropy" if u.family == "pixart_alpha" else "entropy")
            normal = bb.act(f"{n}.score.normalize", batch, tokens)
            bb.add(ScheduleWork, f"{n}.score.normalize", (entropy,), (normal,), batch, tokens, "l2_normalize")
            adjust = "toca_score"  # s3 and local_selection_with_bonus
        index = bb.feature_cache(f"cache.{n}_index", batch, tokens)
        score = bb.act(f"{n}.score.adjusted", batch, tokens)
        bb.add(TokenWork, f"{n}.score.adjusted", (normal, index), (score,), batch, tokens, adjust)
        order = bb.act(f"{n}.score.argsort", batch, tokens, dtype=DType.INT32)
        bb.add(ScheduleWork, f"{n}.score.argsort", (score,), (order,), batch, tokens, sort_function(tokens))
        counters = [index] + ([bb.feature_cache(f"cache.{n}_layer_index", batch, tokens)]
                              if RULE[u.family] == "pixart_alpha" else [])
        for i, counter in enumerate(counters):  # cache_index += 1, the fresh ones' 0
            stepped = bb.act(f"{n}.index{i}.step", batch, tokens, dtype=DType.INT32)
            bb.add(ops.Elementwise, f"{n}.index{i}.step", (counter, order), (stepped,), batch, tokens, "add")
            bb.add(ops.CacheWrite, f"{n}.index{i}.write", (stepped,), (counter,))
        self.order = order

    def context(self, bb, rows: int, width: int) -> Tensor:
        """FLUX single block: the cached attention context of the fresh tokens (torch.gather)."""
        cache = bb.feature_cache("cache.attn_context", self.units.batch * (self.units.tokens + self.units.text),
                                 width)
        fresh = bb.act(f"{self.name}.context_gather", rows, width)
        bb.add(ops.Elementwise, f"{self.name}.context_gather", (cache, self.order), (fresh,), rows, width, "copy")
        return fresh


class TokenUnits:
    """The units policy of a ToCa / DuCa block (``dit_blocks.UnitPolicy``); ``fresh`` the
    token-wise units' counts in call order."""

    def __init__(self, family: str, kind: str, write: bool, fresh: tuple[int, ...], batch: int, tokens: int,
                 text: int, hidden: int, heads: int):
        self.family, self.kind, self.write, self.fresh = family, kind, write, list(fresh)
        self.batch, self.tokens, self.text, self.hidden, self.heads = batch, tokens, text, hidden, heads

    def __call__(self, b, names, rows, compute):
        d, batch, rule = self.hidden, self.batch, RULE[self.family]
        token_wise = names[0] in ("ff", "ff_context", "ffn", "proj_out") or (rule == "pixart_alpha"
                                                                              and names[0] == "attn2")
        if self.kind == "full":
            outs = compute(b)
            if self.write:
                self._keep(b, names, rows, outs)
            return outs
        if not token_wise:  # the attention reused: PixArt's and Wan's attn1 output; FLUX's and SD3's
            if rule != "flux":  # context, re-projected (SD3.5's attn2 alike)
                return tuple(b.feature_cache(f"cache.{n}_out", r, d) for n, r in zip(names, rows))
            attn = b.child(names[0])
            outs = []
            for n, r, proj in zip(names, rows, ("to_out", "to_add_out")):
                context = b.feature_cache(f"cache.{n}_context", r, d)
                outs.append(attn.linear(proj, context, r, d, d, split="row"))
            return tuple(outs)
        (name,), (r,) = names, rows
        pick = Picker(self, name, self.fresh.pop(0))
        cache = b.feature_cache(f"cache.{name}_out", r, d)
        if not pick.fresh:  # no token this step: the scoring runs, the unit on none
            pick.score(b, batch, r // batch)
            return (cache,)
        (out,) = compute(b, pick)
        if rule != "hunyuan_video" or name != "proj_out":  # TaylorSeer-HunyuanVideo: not scattered
            b.add(ops.CacheWrite, f"cache.{name}_out.update", (out,), (cache,))  # update_cache.py: scattered
        if rule == "pixart_alpha" and name == "attn2" and pick.fresh:  # the fresh rows of the map
            self._cross_map(b, pick.fresh, write=True)
        return (cache,)

    def _keep(self, b, names, rows, outs) -> None:
        """A full block before a ToCa step keeps what the ToCa step reads."""
        d, batch, rule = self.hidden, self.batch, RULE[self.family]
        for n, r, out in zip(names, rows, outs):
            if rule == "flux" and n in ("attn", "attn_context", "attn2"):
                part = "context" if n == "attn2" else "context.image" if n == "attn" else "context.text"
                out = b.child("attn2" if n == "attn2" else "attn").act(part, r, d // b.tp)
                b.add(ops.CacheWrite, f"cache.{n}_context.write", (out,), (b.feature_cache(f"cache.{n}_context", r, d),))
                continue
            b.add(ops.CacheWrite, f"cache.{n}_out.write", (out,), (b.feature_cache(f"cache.{n}_out", r, d),))
            if n == "proj_out":  # the single block's attention context too (FLUX, HunyuanVideo)
                n_all = batch * (self.tokens + self.text)
                context = b.child("attn").act("context", n_all, d // b.tp)
                b.add(ops.CacheWrite, "cache.attn_context.write", (context,),
                      (b.feature_cache("cache.attn_context", n_all, d),))
        if rule == "flux" and names[0] in ("attn", "proj_out"):  # math.py: mean over heads, queries
            n_all, h = self.tokens + self.text, self.heads // b.tp
            probs = b.child("attn").act("probs", batch * h, n_all, n_all)
            amap = b.act("attn_map", batch, n_all)
            b.add(ScheduleWork, "attn_map", (probs,), (amap,), batch, h * n_all * n_all, "sum")
            b.add(ops.CacheWrite, "cache.attn_map.write", (amap,), (b.feature_cache("cache.attn_map", batch, n_all),))
        if rule == "pixart_alpha" and names[0] == "attn2":
            self._cross_map(b, self.tokens, write=True)

    def _cross_map(self, b, tokens: int, write: bool) -> None:
        """cached_attention_forward: the cross-attention map's mean over heads, kept (whole at a
        full step, the fresh rows scattered at a ToCa step)."""
        batch, h, t = self.batch, self.heads // b.tp, self.text
        probs = b.child("attn2").act("probs", batch * h, tokens, t)
        cmap = b.act("cross_attn_map", batch * tokens, t)
        b.add(ScheduleWork, "cross_attn_map", (probs,), (cmap,), batch * tokens, h * t, "sum")
        if write:
            b.add(ops.CacheWrite, "cache.cross_attn_map.write", (cmap,),
                  (b.feature_cache("cache.cross_attn_map", batch * self.tokens, t),))


def token_run(step, name: str, blocks: int, first: int, call, state):
    """A stack's blocks under a ToCa / DuCa plan: blocks alike (kind, writes, fresh counts) one
    group on the stack's weights, in order; skipped blocks pass the state on."""
    from archsim.workloads.dit_family_cache import GroupBuilder

    plan, model, geo = step.plan, step.model, step.geo
    if step.tp > 1:
        raise ValueError(f"{plan.kind}'s token-selective units are not lowered for tensor parallelism; use "
                         f"pipeline or data parallelism with schedule {plan.kind}")
    fresh = dict(plan.extra)["fresh"]
    groups: dict[tuple, int] = {}
    for block in range(first, first + blocks):
        kind, _, write = plan.blocks[block]
        key = (kind, write, fresh[block])
        groups[key] = groups.get(key, 0) + 1
    batch = step.batch
    for i, ((kind, write, counts), count) in enumerate(groups.items()):
        if kind == "skip":
            continue
        g = step.builder(f"{name}.{plan.kind}{i}", count, step.tp, GroupBuilder)
        g.stack, g.group, g.depth = name, g.prefix, blocks
        units = TokenUnits(model.family, kind, write, counts, batch, geo.tokens, geo.text, model.hidden,
                           model.num_attention_heads)
        state = call(g, units, state)
    return state


def token_blocks(step, x: Tensor, run) -> Tensor:
    """The block stacks of a ToCa / DuCa step; a step that skips every block (DuCa's aggressive
    step) takes the blocks' output the step before kept (models.py: cache['aggressive_output'])."""
    plan = step.plan
    rows, d = x.shape
    g = step.builder(plan.kind)
    kept = g.feature_cache("blocks_out", rows, d)
    if all(kind == "skip" for kind, _, _ in plan.blocks):
        return kept
    out = run(x)
    if "blocks_out" in plan.writes:
        g.add(ops.CacheWrite, "blocks_out.write", (out,), (kept,))
    return out
