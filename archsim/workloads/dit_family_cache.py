"""One network evaluation of a diffusers family (``kind: diffusion_transformer``) under a cache
schedule's step plan (docs/sources/schedules.md, "On the diffusers family").

The plan (``archsim.workloads.schedules.StepPlan``; per step, from ``dit_family_rules``) decides;
the blocks say what can be cached: each block asks a ``units`` policy for each of its cacheable
units (``dit_blocks.UNITS``: FLUX's double-stream blocks per stream, its single-stream blocks the
fused attention and MLP output, MMDiT per stream, PixArt's and Wan's self-attention,
cross-attention and MLP; HunyuanVideo's blocks as FLUX's, its token refiner none: it runs in
every step, before the blocks). ``StepLowering`` gives the forward, per plan kind:

- ``full``: every unit computed; a full step that a cached one follows writes what it reads
  (the outputs for ``reuse``, the Taylor terms for ``taylor``, each layer's input and output for
  ``icc``);
- ``reuse`` (FORA): each unit's output read from the cache; ``taylor``: forecast from its terms;
  the blocks' modulation, gates and residual adds run (as in the DiT lowering); ``speca``: a
  forecast whose check also computes the last block's units in full on one block's weights and
  takes each forecast's relative L1 error (SpeCa-FLUX: the single block's fused output);
- ``l2c`` / ``harmonica``: per block, its attention units (``attn``, ``attn_context``, ``attn1``,
  ``attn2``) and its MLP units (``ff``, ``ff_context``, ``ffn``) from the cache or run (FLUX's
  fused single-stream unit from the cache only when both are); blocks alike are one group on the
  stack's weights, the groups in series, as the DiT lowering's;
- ``icc``: the stacks' linear layers of ICC's six kinds (queries, keys, values and out
  projections of each stream's attention, the MLPs' two layers) compute y_cached + A B (x -
  x_cached); cross-attention runs in full (DiT, whose rule this is, has none);
- ``teacache`` / ``magcache``: the whole stack's residual on the image stream, per pass: a
  skipped step adds it instead of running any block, after the deciding work (TeaCache: block
  0's modulated input as TeaCache4FLUX, or the timestep embedding as TeaCache4Wan2.1).

Caches are per pass: sequential guidance's conditional and unconditional forwards keep their own
(their names carry the pass, as MagCache4Wan2.1's and TeaCache4Wan2.1's even/odd state).
"""

from __future__ import annotations

from typing import Callable

from archsim.dtypes import DType
from archsim.ir import ops
from archsim.ir.graph import OpGraph
from archsim.ir.tensor import Role, Tensor
from archsim.ir.transformer import Builder, Precision
from archsim.workloads.dit_blocks import compute_all, modulated_norm, modulation
from archsim.workloads.dit_family_rules import first_block, last_stack
from archsim.workloads.dit_family_toca import token_blocks, token_run
from archsim.workloads.schedules import FULL, StepPlan
from archsim.workloads.schedules_adaptive import AdaptiveWork
from archsim.workloads.schedules_ops import ScheduleWork

# diffusers' linear layers by ICC's six kinds (schedules.ICC_LAYERS): each stream's attention
# projections (FLUX's and SD3's text stream: add_*_proj, to_add_out), the MLPs' two layers, FLUX's
# single-stream proj_mlp and its fused proj_out (attention context and MLP back to the width: fc2)
ICC_NAMES = {"to_q": "q", "add_q_proj": "q", "to_k": "k", "add_k_proj": "k", "to_v": "v", "add_v_proj": "v",
             "to_out": "o", "to_add_out": "o", "net.0.proj": "fc1", "proj_mlp": "fc1", "net.2": "fc2",
             "proj_out": "fc2"}
CROSS_ATTENTION = {"pixart_alpha": "attn2", "wan2.1": "attn2"}  # the module ICC leaves in full
RESIDUAL_KINDS = ("teacache", "magcache")
BLOCK_KINDS = ("l2c", "harmonica")  # plans that decide per block
TOKEN_KINDS = ("toca", "duca")  # per block too, token-wise (dit_family_toca)
# L2C's and HarmoniCa's two parts of a block (attention 0, MLP 1) by unit; FLUX's fused unit: both
PART = {"attn": 0, "attn_context": 0, "attn1": 0, "attn2": 0, "ff": 1, "ff_context": 1, "ffn": 1, "proj_out": None}


class PassBuilder(Builder):
    """A builder for one of the network evaluations a step holds: op names under ``tag`` (the
    conditional and unconditional passes of sequential guidance share the graph and the
    weights, not the ops, nor the feature caches)."""

    tag = ""

    def add(self, cls, local: str, inputs: tuple[Tensor, ...], outputs: tuple[Tensor, ...], *args) -> None:
        name = f"{self.tag}/{self.name(local)}" if self.tag else self.name(local)
        self.graph.add(cls(name, inputs, outputs, *args, copies=self.copies))

    def feature_cache(self, local: str, rows: int, width: int) -> Tensor:
        """A persistent cache of this pass, one per block of the stack."""
        name = f"{self.tag}/{self.name(local)}" if self.tag else self.name(local)
        return Tensor(name, (rows, width), self.precision.kv, Role.FEATURE_CACHE, copies=self.copies)


class FirstBlockBuilder(PassBuilder):
    """Ops of a schedule's own on one block of a stack (TeaCache's probe: block 0; SpeCa's check:
    the last): its weights (the stack's tensors), not a copy."""

    stack = ""
    depth = 1
    root = ""  # the prefix the builder was made with: its children's names below it map into the stack

    def weight(self, local: str, *shape: int) -> Tensor:
        # a child builder's path (attn1.to_q) kept: the stack's own tensor, never a new one
        name = self.stack + self.name(local)[len(self.root):]
        return Tensor(name, tuple(shape), self.precision.weights, Role.WEIGHT, copies=self.depth)


class GroupBuilder(PassBuilder):
    """Some blocks of a stack alike under a per-block plan: op names under the group's prefix,
    weights and feature caches the stack's (one per block of the stack)."""

    stack = ""
    group = ""
    depth = 1

    def _in_stack(self, local: str) -> str:
        return self.stack + self.name(local)[len(self.group):]

    def weight(self, local: str, *shape: int) -> Tensor:
        return Tensor(self._in_stack(local), tuple(shape), self.precision.weights, Role.WEIGHT, copies=self.depth)

    def feature_cache(self, local: str, rows: int, width: int) -> Tensor:
        name = self._in_stack(local)
        return Tensor(f"{self.tag}/{name}" if self.tag else name, (rows, width), self.precision.kv,
                      Role.FEATURE_CACHE, copies=self.depth)


class GroupUnits:
    """A group's units under L2C or HarmoniCa: each part (attention, MLP) ``cached`` (its units'
    outputs from the cache), ``kept`` (run, its outputs written for a later step) or ``run``."""

    def __init__(self, modes: tuple[str, str], hidden: int):
        self.modes, self.hidden = modes, hidden

    def __call__(self, b: PassBuilder, names: tuple[str, ...], rows: tuple[int, ...],
                 compute: Callable[[PassBuilder], tuple[Tensor, ...]]) -> tuple[Tensor, ...]:
        part = PART[names[0]]
        modes = self.modes if part is None else (self.modes[part],)
        caches = tuple(b.feature_cache(f"cache.{n}_out", r, self.hidden) for n, r in zip(names, rows))
        if all(mode == "cached" for mode in modes):
            return caches
        outs = compute(b)
        if "kept" in modes:
            for n, out, cache in zip(names, outs, caches):
                b.add(ops.CacheWrite, f"cache.{n}_out.write", (out,), (cache,))
        return outs


class ICCPass(PassBuilder):
    """A stack under ICC: in a full step before an ICC step (``writing``) each of its layers
    keeps its input and output; in an ICC step the layers with a rank compute y_cached +
    A (B (x - x_cached)) (schedules.ICCBuilder's arithmetic, on diffusers' layer names)."""

    ranks: dict[str, int] = {}
    writing = False
    fixed = ""  # a module (cross-attention) whose layers run in full

    def matmul_layer(self, local: str, x: Tensor, rows: int, d_in: int, d_out: int) -> Tensor:
        layer = ICC_NAMES.get(local)
        if layer is None or (self.fixed and self.prefix.endswith(f".{self.fixed}")) or \
                (not self.writing and layer not in self.ranks):
            return super().matmul_layer(local, x, rows, d_in, d_out)
        x_cache = self.feature_cache(f"icc_cache.{x.name.rsplit('/', 1)[-1]}", rows, d_in)
        y_cache = self.feature_cache(f"{local}.icc_cache.y", rows, d_out)
        if self.writing:
            out = super().matmul_layer(local, x, rows, d_in, d_out)
            if x_cache.name not in self.graph.tensors:  # layers sharing an input write it once
                self.add(ops.CacheWrite, f"{local}.icc_x_write", (x,), (x_cache,))
            self.add(ops.CacheWrite, f"{local}.icc_y_write", (out,), (y_cache,))
            return out
        r = self.ranks[layer]
        delta = self.act(f"{local}.icc_delta", rows, d_in)
        self.add(ops.Elementwise, f"{local}.icc_delta", (x, x_cache), (delta,), rows, d_in, "sub")
        low = self.act(f"{local}.icc_low", rows, r)
        self.add(ops.Gemm, f"{local}.icc_B", (delta, self.weight(f"{local}.icc_B", d_in, r)), (low,), 1, rows, d_in, r,
                 False)
        update = self.act(f"{local}.icc_update", rows, d_out)
        self.add(ops.Gemm, f"{local}.icc_A", (low, self.weight(f"{local}.icc_A", r, d_out)), (update,), 1, rows, r,
                 d_out, False)
        return self.binary(f"{local}.icc_out", "add", (y_cache, update), rows, d_out)


class CachedUnits:
    """The units policy of a ``full`` step that writes caches, a ``reuse`` step or a ``taylor``
    or ``speca`` step (the blocks call it; ``dit_blocks.UnitPolicy``). ``checker(b)`` is the
    one-block builder of SpeCa's check when ``b`` is the stack it checks, else None."""

    def __init__(self, plan: StepPlan, hidden: int, checker: Callable[[PassBuilder], PassBuilder | None]):
        self.plan, self.hidden, self.checker = plan, hidden, checker

    def __call__(self, b: PassBuilder, names: tuple[str, ...], rows: tuple[int, ...],
                 compute: Callable[[PassBuilder], tuple[Tensor, ...]]) -> tuple[Tensor, ...]:
        plan, d = self.plan, self.hidden
        if plan.kind == "reuse":  # FORA: the output kept at the last full step
            return tuple(b.feature_cache(f"cache.{n}_out", r, d) for n, r in zip(names, rows))
        if plan.kind in ("taylor", "speca"):  # TaylorSeer: taylor_formula over the kept terms
            m, outs = plan.order, []
            for n, r in zip(names, rows):
                terms = tuple(b.feature_cache(f"cache.{n}_d{k}", r, d) for k in range(m + 1))
                outs.append(terms[0] if m == 0 else b.binary(f"{n}.forecast", f"taylor{m}", terms, r, d))
            check = self.checker(b) if plan.verify_blocks else None
            if check is not None:  # SpeCa: the unit in full on the last block, the forecast's error
                for n, r, forecast, full in zip(names, rows, outs, compute(check)):
                    check.add(ScheduleWork, f"{n}.relative_l1", (forecast, full),
                              (check.act(f"{n}.error", 1, dtype=DType.FP32),), r, d, "relative_l1")
            return tuple(outs)
        outs = compute(b)
        for n, out, r in zip(names, outs, rows):
            for kind in plan.writes:
                if kind == "outputs":
                    b.add(ops.CacheWrite, f"cache.{n}_out.write", (out,), (b.feature_cache(f"cache.{n}_out", r, d),))
                elif kind.startswith("taylor"):
                    _taylor_refresh(b, n, out, r, d, int(kind[len("taylor"):]))
        return outs


def _taylor_refresh(b: PassBuilder, name: str, out: Tensor, rows: int, d: int, m: int) -> None:
    """derivative_approximation: term 0 the new output; m finite differences against the old
    terms (a subtract and a scale each); the m + 1 terms written."""
    if m == 0:
        b.add(ops.CacheWrite, f"cache.{name}_d0.write", (out,), (b.feature_cache(f"cache.{name}_d0", rows, d),))
        return
    old = tuple(b.feature_cache(f"cache.{name}_d{k}", rows, d) for k in range(m))
    fresh = b.binary(f"{name}.taylor_refresh", f"diff{m}", (out, *old), rows, d)
    for k in range(m + 1):
        b.add(ops.CacheWrite, f"cache.{name}_d{k}.write", (fresh,), (b.feature_cache(f"cache.{name}_d{k}", rows, d),))


class StepLowering:
    """What one forward of ``model`` builds under ``plan``: its builders (the stacks' kind of
    builder), the blocks' units policy and the step around the block stacks."""

    def __init__(self, graph: OpGraph, model, plan: StepPlan, precision: Precision, scope: str, tp: int, tag: str):
        self.graph, self.model, self.plan = graph, model, plan
        self.precision, self.scope, self.tp, self.tag = precision, scope, tp, tag
        self.geo, self.batch = None, 1  # the forward's geometry and batch (dit_family.forward sets them)
        self._checks: dict[tuple[str, str], PassBuilder] = {}
        self.units = CachedUnits(plan, model.hidden, self._checker) \
            if plan != FULL and plan.kind in ("full", "reuse", "taylor", "speca") else compute_all

    def builder(self, prefix: str, copies: int = 1, shard: int = 1, cls: type[PassBuilder] = PassBuilder) -> PassBuilder:
        b = cls(self.graph, prefix, self.precision, copies=copies, scope=self.scope, tp=shard)
        b.tag = self.tag
        return b

    def _checker(self, b: PassBuilder) -> PassBuilder | None:
        """SpeCa's check runs on the last block of the model's last stack."""
        if b.prefix != last_stack(self.model):
            return None
        key = (b.prefix, b.tag)
        if key not in self._checks:  # one per stack and pass: units sharing a norm share it here too
            check = self.builder("speca_check", 1, self.tp, FirstBlockBuilder)
            assert isinstance(check, FirstBlockBuilder)
            check.stack, check.depth, check.root = b.prefix, b.copies, "speca_check"
            self._checks[key] = check
        return self._checks[key]

    def stack(self, prefix: str, blocks: int) -> PassBuilder:
        """The builder of a stack of ``blocks`` blocks (their ops stand for all of them)."""
        plan = self.plan
        if plan.kind != "icc" and "icc" not in plan.writes:
            return self.builder(prefix, blocks, self.tp)
        b = self.builder(prefix, blocks, self.tp, ICCPass)
        assert isinstance(b, ICCPass)
        b.ranks, b.writing = dict(plan.ranks), plan.kind != "icc"
        b.fixed = CROSS_ATTENTION.get(self.model.family, "")
        return b

    def run(self, name: str, blocks: int, first: int, call: Callable, state):
        """A stack of ``blocks`` blocks, the model's ``first`` on: ``call(builder, units, state)``
        lowers blocks alike and returns the state (the streams) the next group takes; one call
        for the whole stack unless the plan decides per block."""
        plan = self.plan
        if plan.kind in TOKEN_KINDS:
            return token_run(self, name, blocks, first, call, state)
        if plan.kind not in BLOCK_KINDS:
            return call(self.stack(name, blocks), self.units, state)
        keep = dict(plan.extra).get("keep", ((), ()))  # HarmoniCa: parts run and kept
        groups: dict[tuple[str, str], int] = {}
        for block in range(first, first + blocks):
            mode = tuple("cached" if block in plan.skip[part] else
                         "run" if plan.kind == "harmonica" and block not in keep[part] else "kept" for part in (0, 1))
            groups[mode] = groups.get(mode, 0) + 1  # type: ignore[index]
        for mode, count in sorted(groups.items()):
            g = self.builder(f"{name}.{plan.kind}_{mode[0]}_{mode[1]}", count, self.tp, GroupBuilder)
            assert isinstance(g, GroupBuilder)
            g.stack, g.group, g.depth = name, g.prefix, blocks
            state = call(g, GroupUnits(mode, self.model.hidden), state)
        return state

    def blocks(self, x: Tensor, cond: Tensor, run: Callable[[Tensor], Tensor]) -> Tensor:
        """The block stacks on the image stream ``x`` (``run``: every stack, to the image stream
        out), or for TeaCache and MagCache the decision and then the stacks or the residual."""
        plan = self.plan
        rank = dict(plan.extra).get("rank") if plan.kind == "harmonica" else None
        if rank is not None and self.tag != "uncond":  # HarmoniCa's load_ranking, once before sampling
            table = Tensor("harmonica.routers", rank, DType.FP32, Role.WEIGHT)
            g = self.builder("harmonica")
            g.add(AdaptiveWork, "load_ranking", (table,), (g.act("rank", *rank, dtype=DType.INT32),), *rank,
                  "router_rank")
        if plan.kind in TOKEN_KINDS:
            return token_blocks(self, x, run)
        if plan.kind not in RESIDUAL_KINDS:
            return run(x)
        flags = dict(plan.extra)
        rows, d = x.shape
        g = self.builder(plan.kind)
        residual = g.feature_cache("residual", rows, d)
        if plan.kind == "teacache":
            self._teacache_probe(g, plan, flags["decide"], x, cond)
        elif flags["decide"]:  # magcache_forward's host-side scalars
            table = Tensor("magcache.mag_ratios", (1, 1), DType.FP32, Role.CONSTANT)
            g.add(AdaptiveWork, "decide", (table,), (g.act("decision", 1, dtype=DType.FP32),), 1, 1, "magcache_decide")
        if not flags["compute"]:  # hidden_states += previous_residual
            return g.binary("residual_add", "add", (x, residual), rows, d)
        # TeaCache clones the blocks' input (ori_hidden_states = hidden_states.clone()); MagCache
        # keeps a reference to it
        start = g.binary("residual_input_clone", "copy", (x,), rows, d) if plan.kind == "teacache" else x
        out = run(x)
        fresh = g.binary("residual", "sub", (out, start), rows, d)
        if "residual" in plan.writes:
            g.add(ops.CacheWrite, "residual.write", (fresh,), (residual,))
        return out

    def _teacache_probe(self, g: PassBuilder, plan: StepPlan, measure: bool, x: Tensor, cond: Tensor) -> None:
        """TeaCache4FLUX: inp = hidden_states.clone(), temb_ = temb.clone(), block 0's norm1 on
        them (on SD3 the same; on PixArt block 0's table plus the shared timestep projection,
        norm1, modulate). TeaCache4Wan2.1: the timestep embedding e itself, cloned to keep.
        Then the relative L1 distance to the previous step's, and this one kept."""
        if self.model.family == "wan2.1":
            probe = cond
        else:
            rows, d = x.shape
            batch, width = cond.shape
            inp = g.binary("input_clone", "copy", (x,), rows, d)
            emb = g.binary("temb_clone", "copy", (cond,), batch, width)
            stack, depth, chunks = first_block(self.model)
            blk = self.builder(g.prefix, 1, self.tp, FirstBlockBuilder)  # block 0's weights, split as the stack's
            assert isinstance(blk, FirstBlockBuilder)
            blk.stack, blk.depth, blk.root = stack, depth, g.prefix
            norm = "norm" if stack == "single_transformer_blocks" else "norm1"
            if chunks is None:  # PixArt: scale_shift_table[None] + timestep.reshape(B, 6, -1)
                mod = blk.binary("scale_shift", "add", (blk.weight("scale_shift_table", 6, d), emb), batch, 6 * d)
            else:
                mod = modulation(blk, norm, emb, batch, d, chunks)
            probe = modulated_norm(blk, norm, inp, rows, d, mod)
        rows, width = probe.shape
        previous = g.feature_cache("previous_modulated", rows, width)
        if measure:  # ((m - p).abs().mean() / p.abs().mean()).cpu().item()
            g.add(AdaptiveWork, "rel_l1", (probe, previous), (g.act("rel_l1", 1, dtype=DType.FP32),), rows, width,
                  "rel_l1_mean")
        if "modulated" in plan.writes:
            g.add(ops.CacheWrite, "previous_modulated.write", (probe,), (previous,))
