"""HarmoniCa: a learned router per step decides, per block, whether attention and MLP run or
reuse the outputs kept from the last step that ran them, as its DiT-XL/2 inference code does
(ModelTC/HarmoniCa, models/dynamic_models.py; docs/sources/schedules.md).

The routers are data: a CSV of their learned logits (``Router.prob``, 2 x depth a step: block
i's attention at 2i, its MLP at 2i + 1), one router per sampling step, indexed as the code does
through ``timestep_map`` (router i at the step whose countdown index is i: the first step uses
router n-1). Before sampling, ``load_ranking`` keeps the layers whose sigmoid(logit) exceeds
``thres``; the first step runs every layer (nothing is kept yet), and a later step reuses the
others. A layer that runs replaces its kept output.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from archsim.config.fields import Fraction
from archsim.dtypes import DType
from archsim.errors import ConfigError
from archsim.ir import ops
from archsim.ir.tensor import Role, Tensor
from archsim.ir.transformer import Tokens, attention, mlp
from archsim.workloads.schedules import STEP_KINDS, Schedule, StepPlan, SubsetBuilder, _ranges, register_schedule
from archsim.workloads.schedules_adaptive import AdaptiveWork, data_path, decimal_cell, read_table, unique, whole_cell

ROUTER_COLUMNS = ("router", "block", "attn", "mlp")


def read_routers(path, depth: int | None) -> np.ndarray:
    """The logits as an array [router, block, part]; every router 0 .. R-1 has a row for every
    block 0 .. B-1 (the code loads the routers' state strictly); B must be the model's depth."""
    def cell(text: str, col: str, where: str):
        return whole_cell(text, col, where) if col in ("router", "block") else decimal_cell(text, col, where)

    rows = unique(path, read_table(path, "a HarmoniCa router CSV", ROUTER_COLUMNS, cell), ("router", "block"))
    if not rows:
        raise ConfigError("the router table has no rows; expected one per router and block", file=str(path))
    routers = 1 + max(r for r, _ in rows)
    blocks = 1 + max(b for _, b in rows)
    if depth is not None and blocks != depth:
        raise ConfigError(f"the routers cover blocks 0 to {blocks - 1}; the model has {depth} blocks, 0 to "
                          f"{depth - 1} (a router has 2 x depth logits)", file=str(path), key="block")
    table = np.zeros((routers, blocks, 2), dtype=np.float32)
    for r in range(routers):
        for blk in range(blocks):
            row = rows.get((r, blk))
            if row is None:
                raise ConfigError(f"no row for router {r}, block {blk}; expected one row for every router 0 to "
                                  f"{routers - 1} and block 0 to {blocks - 1}", file=str(path), key="router")
            table[r, blk] = (row["attn"], row["mlp"])
    return table


@register_schedule
class HarmoniCa(Schedule):
    """HarmoniCa (Huang et al., ICML 2025), as its DiT-XL/2 inference runs (sample.py
    --accelerate-method dynamiclayer). Default ``thres`` 0.1, the README's inference command;
    the bundled router table is illustrative (workloads/schedules/README.md)."""

    NAME = "harmonica"
    router: str = Field(default="schedules/harmonica_dit_xl_2_example.csv",
                        description="CSV router,block,attn,mlp of learned logits (path as given or under workloads/)")
    thres: Fraction = Field(default=0.1, description="--thres: a layer runs when sigmoid(logit) > thres")

    def plans(self, steps: int, depth: int | None = None, tokens: int | None = None) -> list[StepPlan]:
        # ModelTC/HarmoniCa models/dynamic_models.py: load_ranking: rank[idx] =
        # STE.apply(router(), thres).nonzero(), i.e. sigmoid(prob) > thres; forward: router_idx =
        # timestep_map[t]; block i reuses its attention if reuse_feature[i] is not None and 2i not
        # in rank[router_idx], its MLP likewise with 2i + 1; computed ones replace reuse_feature.
        table = read_routers(data_path(self.router), depth)
        logits = table.reshape(len(table), -1)
        runs = 1 / (1 + np.exp(-logits)) > np.float32(self.thres)  # float32, as torch compares
        blocks = table.shape[1]
        routers = len(table)
        cached: list[tuple[set[int], set[int]]] = []
        for k in range(steps):
            countdown = steps - 1 - k
            # one router per step; a table for another step count is read at the nearest router
            # (MagCache's nearest_interp), where the code would refuse to load it
            if routers == steps:
                index = countdown
            elif steps == 1:
                index = routers - 1
            else:
                index = int(np.round(countdown * (routers - 1) / (steps - 1)))
            ran = runs[index]
            if k == 0:  # reuse_feature is None in the first step: every layer runs
                cached.append((set(), set()))
            else:
                cached.append(tuple({blk for blk in range(blocks) if not ran[2 * blk + part]} for part in (0, 1)))
        # a layer that runs keeps its output when a later step reuses it before it runs again
        keep = [(set(), set()) for _ in range(steps)]
        read_next = [[False] * blocks, [False] * blocks]
        for k in range(steps - 1, -1, -1):
            for part in (0, 1):
                for blk in range(blocks):
                    if blk in cached[k][part]:
                        read_next[part][blk] = True
                    else:
                        if read_next[part][blk]:
                            keep[k][part].add(blk)
                        read_next[part][blk] = False
        # the kept outputs: one per block whose attention (MLP) some step reuses
        held = tuple(len(set().union(*(c[part] for c in cached))) for part in (0, 1))
        return [StepPlan(self.NAME, skip=tuple(tuple(sorted(s)) for s in cached[k]),
                         extra=(("keep", tuple(tuple(sorted(s)) for s in keep[k])),
                                ("rank", (routers, 2 * blocks) if k == 0 else None), ("held", held)))
                for k in range(steps)]


class HarmoniCaKind:
    """Labels and lowers a HarmoniCa step: blocks grouped by what each part does (reused, run,
    run and kept), each group on the stack's own weights, in series."""

    def label(self, plan: StepPlan) -> str:
        keep, rank = (dict(plan.extra)[k] for k in ("keep", "rank"))
        parts = [f"{p} {_ranges(s)}" for p, s in zip(("attn", "mlp"), plan.skip) if s]
        kept = [f"{p} {_ranges(s)}" for p, s in zip(("attn", "mlp"), keep) if s]
        return ("harmonica " + ("cached " + " ".join(parts) if parts else "full") + (" +router" if rank else "")
                + (f" +cache {' '.join(kept)}" if kept else ""))

    def lower(self, plan: StepPlan, graph, precision, depth: int, scope: str, shape, b: int, t: int, x: Tensor,
              c: Tensor, tp: int) -> Tensor:
        keep, rank, held = (dict(plan.extra)[k] for k in ("keep", "rank", "held"))
        d, rows = shape.hidden, b * t
        if rank is not None:  # load_ranking, once before the first step: sigmoid, threshold, nonzero
            routers, width = rank
            table = Tensor("harmonica.routers", (routers, width), DType.FP32, Role.WEIGHT)
            ranked = Tensor(f"{scope}/harmonica.rank" if scope else "harmonica.rank", (routers, width), DType.INT32)
            graph.add(AdaptiveWork("harmonica.load_ranking", (table,), (ranked,), routers, width, "router_rank"))

        def mode(block: int, part: int) -> str:
            return "cached" if block in plan.skip[part] else "kept" if block in keep[part] else "run"

        groups: dict[tuple[str, str], int] = {}
        for block in range(depth):
            key = (mode(block, 0), mode(block, 1))
            groups[key] = groups.get(key, 0) + 1
        out = x
        for (attn_mode, mlp_mode), count in sorted(groups.items()):
            g = SubsetBuilder(graph, f"harmonica_{attn_mode}_{mlp_mode}", precision, copies=count, scope=scope, tp=tp,
                              depth=depth)
            ada = g.linear("adaLN", g.pointwise("adaLN.act", "silu", c, b, d), b, d, 6 * d, split="gathered")

            def part(name: str, how: str, inp: Tensor, norm: str, modulate: str) -> Tensor:
                kept = Tensor(f"harmonica.cache.{name}_out", (rows, d), precision.kv, Role.FEATURE_CACHE,
                              copies=max(1, held[name == "mlp"]))
                if how == "cached":
                    return kept
                h = g.binary(modulate, "modulate", (g.norm(norm, "layernorm", inp, rows, d), ada), rows, d)
                y = attention(g.child("attn"), shape, Tokens(b, t, t), h) if name == "attn" else \
                    mlp(g.child("mlp"), shape, rows, h)
                if how == "kept":
                    g.add(ops.CacheWrite, f"cache.{name}_out.write", (y,), (kept,))
                return y

            x1 = g.binary("residual1", "gated_add", (out, part("attn", attn_mode, out, "norm1", "modulate1"), ada),
                          rows, d)
            out = g.binary("residual2", "gated_add", (x1, part("mlp", mlp_mode, x1, "norm2", "modulate2"), ada),
                           rows, d)
        return out


STEP_KINDS["harmonica"] = HarmoniCaKind()
