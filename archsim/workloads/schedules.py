"""Feature-caching schedules for diffusion transformers: which steps run in full, which
reuse or correct cached features, and what that costs the hardware.

A schedule is data: a registered generator (``none``, ``reuse``, ``icc``) with validated
parameters, written ``NAME[:key=value,...]`` on the command line or as a mapping in a workload
file. It turns a step count into per-step plans; steps with the same plan form one phase of
the workload with a repeat count, so a 1000-step schedule is a few graphs.

A full step writes the caches the next step reads, and only then: a schedule whose every step
is full (period 1) is exactly ``none``.
"""

from __future__ import annotations

from dataclasses import dataclass
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
    """What one network evaluation runs: ``full`` (writing ``writes`` caches for the next
    step), or a cached kind with its parameters."""

    kind: str
    writes: str = ""  # the cache a full step fills: "", "icc", "reuse"
    ranks: tuple[tuple[str, int], ...] = ()  # icc: low-rank calibration per layer

    @property
    def label(self) -> str:
        if self.kind == "full":
            return f"full+{self.writes} cache" if self.writes else "full"
        if self.kind == "icc":
            ranks = sorted({r for _, r in self.ranks})
            return f"icc r{'/'.join(map(str, ranks))}"
        return self.kind


FULL = StepPlan("full")


class Schedule(Strict):
    NAME: ClassVar[str]

    def cached(self, step: int) -> StepPlan | None:
        """The plan of a cached step, or None for a full step."""
        return None

    def plans(self, steps: int) -> list[StepPlan]:
        cached = [self.cached(i) for i in range(steps)]
        out = []
        for i, plan in enumerate(cached):
            if plan is not None:
                out.append(plan)
            else:
                following = cached[i + 1] if i + 1 < steps else None
                out.append(StepPlan("full", following.kind) if following is not None else FULL)
        return out


_SCHEDULES: dict[str, type[Schedule]] = {}


def register_schedule(cls: type[Schedule]) -> type[Schedule]:
    _SCHEDULES[cls.NAME] = cls
    return cls


def schedule_names() -> list[str]:
    return sorted(_SCHEDULES)


@register_schedule
class NoSchedule(Schedule):
    """Every step in full."""

    NAME = "none"


@register_schedule
class Reuse(Schedule):
    """FORA-style reuse: step i is full when i % period == 0; in the others each block
    recomputes its adaLN gates and applies the attention and MLP outputs cached at the last
    full step (no attention or MLP compute)."""

    NAME = "reuse"
    period: Count = 2

    def cached(self, step: int) -> StepPlan | None:
        return None if step % self.period == 0 else StepPlan("reuse")


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

    def cached(self, step: int) -> StepPlan | None:
        if step % self.period == 0:
            return None
        ranks = self.rank if isinstance(self.rank, dict) else {layer: self.rank for layer in self.layers}
        return StepPlan("icc", ranks=tuple((layer, ranks[layer]) for layer in self.layers if layer in ranks))


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
        raise ConfigError(f"unknown schedule {name!r}; expected one of: {', '.join(schedule_names())}", file=source)
    from archsim.config.loader import Layered, validate_layered

    layered = Layered()
    layered.merge(params, source)
    return validate_layered(_SCHEDULES[name], layered, source, key_prefix=("schedule",))


# -- lowering: builders whose linear layers write or use the ICC caches ---------------------

def _icc_cache(b: Builder, name: str, rows: int, width: int) -> Tensor:
    return b.cache(name, rows, width, role=Role.FEATURE_CACHE)


def _input_cache_name(b: Builder, x: Tensor) -> str:
    """Layers that share an input (q, k and v) share its cache entry."""
    local = x.name.split("/", 1)[-1]
    return f"icc_cache.{local}"


class ICCWritingBuilder(Builder):
    """A full step before an ICC step: every linear layer of ``ICC_LAYERS`` also stores its
    input and output in the feature cache."""

    def linear(self, local: str, x: Tensor, rows: int, d_in: int, d_out: int) -> Tensor:
        out = super().linear(local, x, rows, d_in, d_out)
        if local not in ICC_LAYERS:
            return out
        x_name = _input_cache_name(self, x)
        if x_name not in self.graph.tensors:
            self.add(ops.CacheWrite, f"{local}.icc_x_write", (x,), (_icc_cache(self, x_name, rows, d_in),))
        self.add(ops.CacheWrite, f"{local}.icc_y_write", (out,), (_icc_cache(self, f"icc_cache.{self.name(local)}.y", rows, d_out),))
        return out


class ICCBuilder(Builder):
    """An ICC step: y = y_cached + A (B (x - x_cached)) for the layers with a rank."""

    def __init__(self, *args, ranks: dict[str, int], **kwargs):
        super().__init__(*args, **kwargs)
        self.ranks = ranks

    def linear(self, local: str, x: Tensor, rows: int, d_in: int, d_out: int) -> Tensor:
        r = self.ranks.get(local)
        if r is None:
            return super().linear(local, x, rows, d_in, d_out)
        x_cached = _icc_cache(self, _input_cache_name(self, x), rows, d_in)
        y_cached = _icc_cache(self, f"icc_cache.{self.name(local)}.y", rows, d_out)
        delta = self.act(f"{local}.icc_delta", rows, d_in)
        self.add(ops.Elementwise, f"{local}.icc_delta", (x, x_cached), (delta,), rows, d_in, "sub")
        low = self.act(f"{local}.icc_low", rows, r)
        self.add(ops.Gemm, f"{local}.icc_B", (delta, self.weight(f"{local}.icc_B", d_in, r)), (low,), 1, rows, d_in, r, False)
        update = self.act(f"{local}.icc_update", rows, d_out)
        self.add(ops.Gemm, f"{local}.icc_A", (low, self.weight(f"{local}.icc_A", r, d_out)), (update,), 1, rows, r, d_out, False)
        return self.binary(f"{local}.icc_out", "add", (y_cached, update), rows, d_out)
