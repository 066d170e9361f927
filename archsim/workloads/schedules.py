"""Feature-caching schedules for diffusion transformers: which steps run in full, which
reuse or correct cached features, and what that costs the hardware.

A schedule is data: a registered generator (``none``, ``reuse``, ``icc``, ``l2c`` here;
``taylorseer``, ``speca`` in schedules_taylor.py; ``toca``, ``duca`` in schedules_toca.py;
``teacache``, ``magcache`` in schedules_adaptive.py; ``harmonica`` in schedules_harmonica.py) with
validated parameters, written ``NAME[:key=value,...]`` on the command line or as a mapping in a
workload file. It turns a step count into per-step plans, choosing steps as the method's
published code does (docs/sources/schedules.md); steps with the same plan form one phase of the
workload with a repeat count, so a 1000-step schedule is a few graphs (ToCa's and DuCa's token
shares change every step: a phase per cached step).

A full step writes the caches later steps read, and only then: a schedule whose every step is
full (period 1) is exactly ``none`` (ToCa's and DuCa's full steps also compute the attention
map their scoring reads, as their code does).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field

from archsim.config.fields import Count, Strict
from archsim.config.yamlio import read_yaml_text
from archsim.errors import ConfigError
from archsim.ir import ops
from archsim.ir.tensor import Role, Tensor
from archsim.ir.transformer import Builder

ICC_LAYERS = ("q", "k", "v", "o", "fc1", "fc2")  # the six linear layers of a DiT block


@dataclass(frozen=True)
class StepPlan:
    """What one network evaluation runs.

    ``kind`` is ``full`` or a cached kind; ``writes`` are the caches a full step fills for the
    cached steps that follow it (none when the next step is full). The other fields are the
    cached kind's parameters.
    """

    kind: str
    writes: tuple[str, ...] = ()  # cache kinds: "icc", "outputs", "taylor<m>"; toca/duca: "blocks_out"
    ranks: tuple[tuple[str, int], ...] = ()  # icc: rank per layer
    order: int = 0  # taylor / speca: Taylor order m
    verify_blocks: int = 0  # speca: 1 when the last block runs in full to check the forecast
    skip: tuple[tuple[int, ...], tuple[int, ...]] = ((), ())  # l2c: blocks whose attn / mlp come from cache
    # toca / duca, per block: ("full", 0, writes its caches), ("toca", fresh tokens per image,
    # False) or ("skip", 0, False)
    blocks: tuple[tuple[str, int, bool], ...] = ()
    extra: tuple[tuple[str, Any], ...] = ()  # kinds in STEP_KINDS: their own settings, (name, value)

    @property
    def label(self) -> str:
        if self.kind in STEP_KINDS:
            return STEP_KINDS[self.kind].label(self)
        if self.kind == "full":
            return f"full+{'+'.join(self.writes)} cache" if self.writes else "full"
        if self.kind == "icc":
            return f"icc r{'/'.join(map(str, sorted({r for _, r in self.ranks})))}"
        if self.kind in ("toca", "duca"):
            return _token_label(self)
        if self.kind == "taylor":
            return f"taylor m{self.order}"
        if self.kind == "speca":
            return f"speca m{self.order} verify{self.verify_blocks}"
        if self.kind == "l2c":  # the blocks themselves: steps caching different blocks are different phases
            parts = (f"{part} {_ranges(blocks)}" for part, blocks in zip(("attn", "mlp"), self.skip) if blocks)
            return "l2c cached " + " ".join(parts)
        return self.kind

    @property
    def needs(self) -> tuple[str, ...]:
        """The caches this (cached) step reads."""
        return {
            "icc": ("icc",), "reuse": ("outputs",), "l2c": ("outputs",),
            "taylor": (f"taylor{self.order}",), "speca": (f"taylor{self.order}",),
        }.get(self.kind, ())


FULL = StepPlan("full")

# The step kinds this module and dit.py label and lower themselves.
_OWN_KINDS = frozenset({"full", "icc", "reuse", "l2c", "toca", "duca", "taylor", "speca"})


class _StepKinds(dict):
    """Step kinds labelled and lowered by their own modules (schedules_adaptive.py,
    schedules_harmonica.py): kind -> an object with label(plan) and lower(plan, graph, precision,
    depth, scope, shape, b, t, x, c, tp), which returns the blocks' output as dit.py's _blocks does.
    Asked for a kind that is not one of this module's, it loads the schedule modules first
    (load_schedule_modules), so a kind is found whichever modules were imported so far."""

    _loaded = False

    def _load(self, kind) -> None:
        if not self._loaded and kind not in _OWN_KINDS and not dict.__contains__(self, kind):
            load_schedule_modules()
            self._loaded = True

    def __contains__(self, kind) -> bool:
        self._load(kind)
        return dict.__contains__(self, kind)

    def __getitem__(self, kind):
        self._load(kind)
        return dict.__getitem__(self, kind)

    def get(self, kind, default=None):
        self._load(kind)
        return dict.get(self, kind, default)


STEP_KINDS: dict[str, Any] = _StepKinds()


def _ranges(blocks: tuple[int, ...]) -> str:
    """``(0, 1, 2, 5)`` -> ``"0-2,5"``."""
    runs: list[list[int]] = []
    for block in blocks:
        if runs and block == runs[-1][1] + 1:
            runs[-1][1] = block
        else:
            runs.append([block, block])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)


def _token_label(plan: StepPlan) -> str:
    """ToCa / DuCa: runs of blocks alike, e.g. "toca full 0 +cache, mlp 1-27 (3-12 tokens)";
    a step whose every block is full: "full+toca cache", or "full (toca)" if it writes none."""
    if all(kind == "full" for kind, _, _ in plan.blocks):
        wrote = any(write for _, _, write in plan.blocks)
        return f"full+{plan.kind} cache" if wrote else f"full ({plan.kind})"
    runs: list[list] = []  # [kind, write, first block, last block, tokens...]
    for i, (kind, tokens, write) in enumerate(plan.blocks):
        if runs and runs[-1][:2] == [kind, write] and runs[-1][3] == i - 1:
            runs[-1][3] = i
            runs[-1].append(tokens)
        else:
            runs.append([kind, write, i, i, tokens])
    parts = []
    for kind, write, first, last, *tokens in runs:
        where = str(first) if first == last else f"{first}-{last}"
        if kind == "toca":
            lo, hi = min(tokens), max(tokens)
            parts.append(f"mlp {where} ({lo}{'' if lo == hi else f'-{hi}'} tokens)")
        else:
            parts.append(f"{'skipped' if kind == 'skip' else 'full'} {where}{' +cache' if write else ''}")
    return f"{plan.kind} {', '.join(parts)}{' +out cache' if plan.writes else ''}"


def phase_names(plans: list[StepPlan]) -> dict[StepPlan, str]:
    """A phase name per distinct plan, in first-seen order: steps with the same plan are one
    phase, and distinct plans get distinct names (a label two plans share is numbered)."""
    names: dict[StepPlan, str] = {}
    used: set[str] = set()
    for plan in plans:
        if plan in names:
            continue
        name, n = plan.label, 1
        while name in used:
            n += 1
            name = f"{plan.label} #{n}"
        names[plan] = name
        used.add(name)
    return names


class Schedule(Strict):
    NAME: ClassVar[str]

    def cached(self, step: int, steps: int) -> StepPlan | None:
        """The plan of a cached step, or None for a full step."""
        return None

    def plans(self, steps: int, depth: int | None = None, tokens: int | None = None) -> list[StepPlan]:
        """One plan per network evaluation; ``depth``, the model's blocks, lets a schedule
        that names blocks check them; ``tokens`` (per image) lets one count tokens."""
        return _with_writes([self.cached(i, steps) for i in range(steps)])


def _with_writes(cached: list[StepPlan | None]) -> list[StepPlan]:
    """Fill the gaps with full steps that write what the following cached steps read (one
    backward pass: the cost grows with the steps, not their square)."""
    out: list[StepPlan] = [None] * len(cached)  # type: ignore[list-item]
    run_needs: set[str] = set()  # what the cached steps up to the next full step read
    taylor_later: set[str] = set()  # Taylor terms any later cached step reads
    for i in range(len(cached) - 1, -1, -1):
        plan = cached[i]
        if plan is not None:
            out[i] = plan
            run_needs |= set(plan.needs)
            taylor_later |= {n for n in plan.needs if n.startswith("taylor")}
        else:
            # Taylor derivatives are finite differences over full steps: every full step
            # refreshes them while a forecast is still to come.
            out[i] = StepPlan("full", tuple(sorted(run_needs | taylor_later)))
            run_needs = set()
    return out


_SCHEDULES: dict[str, type[Schedule]] = {}


def register_schedule(cls: type[Schedule]) -> type[Schedule]:
    _SCHEDULES[cls.NAME] = cls
    return cls


def schedule_names() -> list[str]:
    load_schedule_modules()
    return sorted(_SCHEDULES)


@register_schedule
class NoSchedule(Schedule):
    """Every step in full."""

    NAME = "none"


@register_schedule
class Reuse(Schedule):
    """FORA (Selvaraju et al., 2024), as its code chooses steps: the sampler counts its steps
    down, i = n-1 ... 0, and step i runs in full when it is the first (i == n-1) or when
    i % period == 0 (so the last step, i = 0, is full too). In the other steps each block
    recomputes its adaLN modulation and applies the attention and MLP outputs cached at the
    last full step (no attention or MLP compute). Default period 3, the README's
    ``--cache-threshold 3``. docs/sources/schedules.md, FORA."""

    NAME = "reuse"
    period: Count = 3

    def cached(self, step: int, steps: int) -> StepPlan | None:
        # prathebaselva/FORA src/models.py, DiTBlock.forward ('boost_infer_static'):
        # should_cache = (step == numstep - 1) or (step % cache_threshold == 0), with step the
        # diffusion index counting down (src/diffusion/gaussian_diffusion.py, indices[::-1]).
        countdown = steps - 1 - step
        return None if step == 0 or countdown % self.period == 0 else StepPlan("reuse")


@register_schedule
class ICC(Schedule):
    """Increment-calibrated caching (Chen et al., CVPR 2025): step i is full when
    i % period == 0; in the others each of the chosen linear layers computes
    y = y_cached + A (B (x - x_cached)) with rank-r factors A (out x r), B (r x in).
    Attention itself, adaLN, norms, GELU and residuals run in full. Defaults are the ICC
    code's: period 2, rank 128 for q, k, v, attention out-projection (o), fc1 and fc2."""

    NAME = "icc"
    period: Count = 2
    rank: Count | dict[Literal[ICC_LAYERS], Count] = Field(default=128, description="one rank, or per layer")  # type: ignore[valid-type]
    layers: list[Literal[ICC_LAYERS]] = list(ICC_LAYERS)  # type: ignore[valid-type]

    def cached(self, step: int, steps: int) -> StepPlan | None:
        if step % self.period == 0:
            return None
        ranks = self.rank if isinstance(self.rank, dict) else {layer: self.rank for layer in self.layers}
        return StepPlan("icc", ranks=tuple((layer, ranks[layer]) for layer in self.layers if layer in ranks))


MAX_MASK_BYTES = 16 * 2**20  # a documented limit: an L2C mask CSV of at most 16 MiB
MAX_MASK_ROWS = 1_000_000  # a documented limit: rows of an L2C mask (5,000 steps x 200 blocks)
MASK_COLUMNS = ("step", "block", "attn", "mlp")


@register_schedule
class L2C(Schedule):
    """Learning-to-Cache (Ma et al., 2024): a learned, per-step mask of which blocks' attention
    and MLP are served from cache, read from a CSV (columns step, block, attn, mlp; 1 = from
    cache; one row per step and block at most, absent rows computed). A step with nothing
    cached is full; steps caching the same blocks are one phase."""

    NAME = "l2c"
    mask: str = Field(default="schedules/l2c_dit_xl_2_example.csv",
                      description="CSV path, relative to the current folder or to workloads/ (the bundled "
                      "example is illustrative, not a trained router)")

    def plans(self, steps: int, depth: int | None = None, tokens: int | None = None) -> list[StepPlan]:
        path = _mask_path(self.mask)
        masks = _read_mask(path, steps)
        if depth is not None:
            _check_blocks(path, masks, depth)
        cached = {i: StepPlan("l2c", skip=(tuple(sorted(a)), tuple(sorted(m))))
                  for i, (a, m) in masks.items() if a or m}
        return _with_writes([cached.get(i) for i in range(steps)])


def _mask_path(path: str) -> Path:
    resolved = Path(path)
    if not resolved.exists():  # exists, not is_file: a FIFO given here must be refused, not skipped
        bundled = Path(__file__).resolve().parents[2] / "workloads" / path
        resolved = bundled if bundled.exists() else resolved
    return resolved


def _read_mask(path: Path, steps: int) -> dict[int, tuple[set[int], set[int]]]:
    """Per step below ``steps``, the blocks whose attention and whose MLP come from cache.
    Rows for later steps are checked, then ignored (a mask for a longer generation)."""
    from archsim.workloads.inputs import read_text

    text = read_text(path, "an L2C mask CSV", "L2C masks", MAX_MASK_BYTES, "16 MiB")
    try:
        reader = csv.reader(io.StringIO(text, newline=""))
        header = next(reader, None)
        if header is None:
            raise ConfigError(f"the mask is empty; expected a header row {','.join(MASK_COLUMNS)}", file=str(path))
        header = [cell.strip() for cell in header]
        for column in header:
            if column not in MASK_COLUMNS or header.count(column) > 1:
                what = "repeated" if column in MASK_COLUMNS else "unknown"
                raise ConfigError(f"{what} column {column!r}; expected the columns {', '.join(MASK_COLUMNS)}",
                                  file=f"{path}:1")
        missing = [c for c in MASK_COLUMNS if c not in header]
        if missing:
            raise ConfigError(f"missing column {missing[0]!r}; expected the columns {', '.join(MASK_COLUMNS)}",
                              file=f"{path}:1")
        masks: dict[int, tuple[set[int], set[int]]] = {}
        first_line: dict[tuple[int, int], int] = {}
        rows = 0
        for cells in reader:
            if not cells:  # a blank line
                continue
            rows += 1
            where = f"{path}:{reader.line_num}"
            if rows > MAX_MASK_ROWS:
                raise ConfigError(f"more than {MAX_MASK_ROWS:,} rows; archsim's limit for an L2C mask", file=where)
            if len(cells) != len(header):
                raise ConfigError(f"the row has {len(cells)} cells, expected {len(header)} "
                                  f"({', '.join(header)})", file=where)
            row = {column: _mask_cell(cell, column, where) for column, cell in zip(header, cells)}
            step, block = row["step"], row["block"]
            if (step, block) in first_line:
                raise ConfigError(f"a second row for step {step}, block {block} (the first is at line "
                                  f"{first_line[step, block]}); expected one row per step and block", file=where)
            first_line[step, block] = reader.line_num
            if step >= steps:
                continue  # a mask for more steps than this generation has
            a, m = masks.setdefault(step, (set(), set()))
            if row["attn"]:
                a.add(block)
            if row["mlp"]:
                m.add(block)
    except csv.Error as exc:
        raise ConfigError(f"cannot read the L2C mask: {exc}", file=f"{path}:{reader.line_num}") from None
    return masks


def _mask_cell(cell: str, column: str, where: str) -> int:
    from archsim.workloads.inputs import whole_number

    value = whole_number(cell)
    value = -1 if value is None else value
    if column in ("attn", "mlp") and value not in (0, 1):
        raise ConfigError(f"expected 0 (computed) or 1 (from cache), got {cell!r}", file=where, key=column)
    if value < 0:
        raise ConfigError(f"expected a whole number from 0, got {cell!r}", file=where, key=column)
    return value


def _check_blocks(path: Path, masks: dict[int, tuple[set[int], set[int]]], depth: int) -> None:
    for step, parts in sorted(masks.items()):
        for column, blocks in zip(("attn", "mlp"), parts):
            if blocks and max(blocks) >= depth:
                raise ConfigError(f"step {step} caches the {column} of block {max(blocks)}; the model has "
                                  f"{depth} blocks, 0 to {depth - 1}", file=str(path), key="block")


def _split_top_level(text: str) -> list[str]:
    """Split on commas outside brackets: ``layers=[fc1,fc2],rank=64`` is two items."""
    items, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        depth += ch in "[{" and 1 or (-1 if ch in "]}" else 0)
        if ch == "," and depth == 0:
            items.append(text[start:i])
            start = i + 1
    items.append(text[start:])
    return items


def parse_schedule(value: Any, source: str = "--schedule") -> Schedule:
    """``"icc:period=3,rank=64"``, ``{name: icc, period: 3}``, or None for ``none``."""
    if value is None:
        return NoSchedule()
    if isinstance(value, Schedule):
        return value
    if isinstance(value, str):
        name, _, rest = value.partition(":")
        params: dict[str, Any] = {}
        for item in filter(None, _split_top_level(rest)):
            key, sep, raw = item.partition("=")
            if not sep:
                raise ConfigError(f"expected key=value in {value!r}", file=source)
            params[key.strip()] = read_yaml_text(raw, source)
    elif isinstance(value, dict):
        params = dict(value)
        name = params.pop("name", None)
    else:
        raise ConfigError(f"expected NAME[:key=value,...] or a mapping, got {type(value).__name__}", file=source)
    if name not in _SCHEDULES:
        load_schedule_modules()
    if name not in _SCHEDULES:
        raise ConfigError(f"unknown schedule {name!r}; expected one of: {', '.join(schedule_names())}", file=source)
    from archsim.config.loader import Layered, validate_layered

    layered = Layered()
    layered.merge(params, source)
    return validate_layered(_SCHEDULES[name], layered, source, key_prefix=("schedule",))


# -- lowering: builders whose linear layers write or use the ICC caches ---------------------

def _icc_cache(b: Builder, name: str, rows: int, width: int) -> Tensor:
    return b.cache(name, rows, width, role=Role.FEATURE_CACHE)


def _input_cache_name(x: Tensor) -> str:
    """Layers that share an input (q, k and v) share its cache entry."""
    local = x.name.split("/", 1)[-1]
    return f"icc_cache.{local}"


class ICCWritingBuilder(Builder):
    """A full step before an ICC step: every linear layer of ``ICC_LAYERS`` also stores its
    input and output in the feature cache."""

    def matmul_layer(self, local: str, x: Tensor, rows: int, d_in: int, d_out: int) -> Tensor:
        out = super().matmul_layer(local, x, rows, d_in, d_out)
        if local not in ICC_LAYERS:
            return out
        x_cache = _icc_cache(self, _input_cache_name(x), rows, d_in)
        if x_cache.name not in self.graph.tensors:  # q, k and v share their input: write it once
            self.add(ops.CacheWrite, f"{local}.icc_x_write", (x,), (x_cache,))
        self.add(ops.CacheWrite, f"{local}.icc_y_write", (out,), (_icc_cache(self, f"icc_cache.{self.name(local)}.y", rows, d_out),))
        return out


class ICCBuilder(Builder):
    """An ICC step: y = y_cached + A (B (x - x_cached)) for the layers with a rank."""

    def __init__(self, *args, ranks: dict[str, int], **kwargs):
        super().__init__(*args, **kwargs)
        self.ranks = ranks

    def matmul_layer(self, local: str, x: Tensor, rows: int, d_in: int, d_out: int) -> Tensor:
        r = self.ranks.get(local)
        if r is None:
            return super().matmul_layer(local, x, rows, d_in, d_out)
        x_cached = _icc_cache(self, _input_cache_name(x), rows, d_in)
        y_cached = _icc_cache(self, f"icc_cache.{self.name(local)}.y", rows, d_out)
        delta = self.act(f"{local}.icc_delta", rows, d_in)
        self.add(ops.Elementwise, f"{local}.icc_delta", (x, x_cached), (delta,), rows, d_in, "sub")
        low = self.act(f"{local}.icc_low", rows, r)
        self.add(ops.Gemm, f"{local}.icc_B", (delta, self.weight(f"{local}.icc_B", d_in, r)), (low,), 1, rows, d_in, r, False)
        update = self.act(f"{local}.icc_update", rows, d_out)
        self.add(ops.Gemm, f"{local}.icc_A", (low, self.weight(f"{local}.icc_A", r, d_out)), (update,), 1, rows, r, d_out, False)
        return self.binary(f"{local}.icc_out", "add", (y_cached, update), rows, d_out)


class SubsetBuilder(Builder):
    """Ops for some of a stack's blocks (``copies`` of them) on the stack's own weights: op
    names under its own prefix, weight names and copies the stack's ("blocks", ``depth``)."""

    def __init__(self, *args, depth: int, **kwargs):
        super().__init__(*args, **kwargs)
        self.depth = depth

    def weight(self, local: str, *shape: int) -> Tensor:
        name = "blocks" + self.name(local)[len(self.prefix.split(".")[0]):]
        return Tensor(name, tuple(shape), self.precision.weights, Role.WEIGHT, copies=self.depth)

    def stack_cache(self, local: str, *shape: int, dtype=None, copies: int | None = None) -> Tensor:
        """A feature cache of the stack ("blocks.cache.<local>"), one per block unless ``copies``."""
        return Tensor(f"blocks.cache.{local}", tuple(shape), dtype or self.precision.kv, Role.FEATURE_CACHE,
                      copies=copies or self.depth)


def load_schedule_modules() -> None:
    """The schedules in their own modules, which register on import: loaded when a schedule
    not defined here is named or the schedules are listed (a workload without one, or with
    ``none``, ``reuse``, ``icc`` or ``l2c``, does not load them, nor numpy for them: start-up)."""
    from archsim.workloads import schedules_taylor, schedules_toca  # noqa: F401
    from archsim.workloads import schedules_adaptive, schedules_harmonica  # noqa: F401


def check_schedule(value: Any) -> None:
    """A workload's ``schedule`` parsed, its error naming the schedule's own key
    (``schedule.period``) once, for the workload's validation to report."""
    from archsim.errors import FieldError

    try:
        parse_schedule(value, "")
    except ConfigError as exc:
        first = str(exc).splitlines()[0]
        key, sep, message = first.partition(": ")
        if sep and key.startswith("schedule.") and " " not in key:
            raise FieldError(key, message) from None
        raise FieldError("schedule", first) from None
