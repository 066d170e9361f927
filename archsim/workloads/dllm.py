"""``kind: dllm``: diffusion language models (LLaDA) under three decoding schemes.

A generation of ``gen_len`` tokens after a ``prompt_len`` prompt is a sequence of forwards,
each over some query tokens against some keys (REFERENCE.md section 7):

- ``vanilla``: every step is a full forward over prompt + generation (no cache); each step
  unmasks ``tokens_per_step`` tokens, so there are gen_len / tokens_per_step steps.
- ``fast-dllm`` (dual cache): the window is cut into blocks of ``block_len``. Each block starts
  with a *refresh*, a full forward that rebuilds the K/V cache (and decodes its first
  tokens); its remaining steps are *decode* forwards of the block's tokens against the cache.
- ``odb``: Fast-dLLM plus (a) adaptive length: once the answer's end is known (after
  ``known_after_blocks`` refreshes) refreshes shrink to the block-aligned predicted answer
  length and later blocks are not decoded; (b) jump-share speculative decoding: a *jump*
  forward runs ``jump_copies`` x block query tokens (block-diagonal mask) and advances
  1 + ``jump_acceptance`` iterations on average; when at most ``share_below`` masks remain, a
  *share* forward runs block + ``share_copies`` x m query tokens (m masks left).

Forwards with the same kind and shape form one phase with a repeat count. A recorded ``trace``
(query and key lengths per forward) replaces the modelled schedule, to replay real runs.
Every forward computes logits for all its query tokens, as the reference implementations do.
"""

from __future__ import annotations

import csv
import math
from collections import Counter
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, NonNegativeFloat, NonNegativeInt, PositiveInt, model_validator

from archsim.config.fields import Strict
from archsim.errors import ConfigError, FieldError
from archsim.ir.graph import Phase, Workload
from archsim.ir.transformer import Tokens
from archsim.workloads.base import PrecisionSpec, WorkloadSpec, register_workload
from archsim.workloads.lm import lm_forward, resolve_model

Kind = Literal["full", "refresh", "decode", "jump", "share"]


class Forward(Strict):
    """One forward pass: its kind, query tokens and keys per sequence."""

    kind: Kind
    q_len: PositiveInt
    kv_len: PositiveInt
    count: PositiveInt = 1

    @model_validator(mode="after")
    def _shape(self) -> "Forward":
        if self.kv_len < self.q_len:
            raise FieldError("kv_len", f"kv_len {self.kv_len} is below q_len {self.q_len}")
        if self.kind == "full" and self.kv_len != self.q_len:
            raise FieldError("kv_len", "a full (uncached) forward has kv_len equal to q_len")
        return self

    @property
    def cached(self) -> bool:
        return self.kind != "full"


class ODBSpec(Strict):
    answer_len: PositiveInt = Field(description="predicted answer length in tokens")
    known_after_blocks: PositiveInt = Field(default=1, description="refreshes at full length before the end is known")
    jump_copies: PositiveInt = Field(default=4, description="copies of the block per jump forward (ODB: 4)")
    jump_acceptance: NonNegativeFloat = Field(description="mean extra iterations a jump forward advances")
    share_copies: PositiveInt = Field(default=7, description="copies of the masked positions in share mode (ODB: 7)")
    share_below: NonNegativeInt = Field(description="share mode once at most this many masks remain")

    @model_validator(mode="after")
    def _acceptance(self) -> "ODBSpec":
        if self.jump_acceptance > self.jump_copies - 1:
            raise FieldError("jump_acceptance", f"jump_acceptance {self.jump_acceptance} exceeds jump_copies - 1 = {self.jump_copies - 1}")
        return self


@register_workload
class DLLMWorkload(WorkloadSpec):
    KIND = "dllm"
    kind: Literal["dllm"]
    model: str | dict[str, Any]
    batch: PositiveInt = 1
    prompt_len: PositiveInt
    gen_len: PositiveInt
    block_len: PositiveInt = 32
    mode: Literal["vanilla", "fast-dllm", "odb"]
    tokens_per_step: float = Field(default=1.0, ge=1.0, description="mean tokens unmasked per step")
    odb: ODBSpec | None = None
    trace: str | list[Forward] | None = Field(default=None, description="CSV path or list of forwards to replay")
    precision: PrecisionSpec = PrecisionSpec()

    @model_validator(mode="after")
    def _consistent(self) -> "DLLMWorkload":
        if self.mode != "vanilla" and self.gen_len % self.block_len:
            raise FieldError("gen_len", f"gen_len {self.gen_len} is not a multiple of block_len {self.block_len}")
        if self.tokens_per_step > self.block_len:
            raise FieldError("tokens_per_step", f"tokens_per_step {self.tokens_per_step} exceeds block_len {self.block_len}")
        if self.mode == "odb" and self.odb is None and self.trace is None:
            raise FieldError("odb", "mode odb needs an 'odb' section (answer_len, jump_acceptance, share_below)")
        return self

    def forwards(self, paths) -> list[Forward]:
        if isinstance(self.trace, str):
            return read_trace(paths("trace", self.trace))
        if self.trace is not None:
            return list(self.trace)
        return SCHEDULES[self.mode](self)

    def build(self, paths) -> Workload:
        model = resolve_model(self.model, paths)
        counts: Counter[tuple[str, int, int]] = Counter()
        for f in self.forwards(paths):
            counts[(f.kind, f.q_len, f.kv_len)] += f.count
        phases = []
        for (kind, q, kv), count in counts.items():  # first-seen order: the generation's order
            name = f"{kind} q{q} kv{kv}"
            tokens = Tokens(self.batch, q, kv, kv_cache=kind != "full")
            graph = lm_forward(model, self.precision.precision(), tokens, self.batch * q, name)
            phases.append(Phase(name, graph, count))
        return Workload(self.name, tuple(phases))


def vanilla(spec: DLLMWorkload) -> list[Forward]:
    seq = spec.prompt_len + spec.gen_len
    return [Forward(kind="full", q_len=seq, kv_len=seq, count=math.ceil(spec.gen_len / spec.tokens_per_step))]


def fast_dllm(spec: DLLMWorkload) -> list[Forward]:
    seq = spec.prompt_len + spec.gen_len
    blocks = spec.gen_len // spec.block_len
    steps = math.ceil(spec.block_len / spec.tokens_per_step)
    out = [Forward(kind="refresh", q_len=seq, kv_len=seq, count=blocks)]
    if steps > 1:
        out.append(Forward(kind="decode", q_len=spec.block_len, kv_len=seq, count=blocks * (steps - 1)))
    return out


def odb(spec: DLLMWorkload) -> list[Forward]:
    o, block, tps = spec.odb, spec.block_len, spec.tokens_per_step
    full_seq = spec.prompt_len + spec.gen_len
    answer_blocks = math.ceil(min(o.answer_len, spec.gen_len) / block)
    short_seq = spec.prompt_len + answer_blocks * block
    blocks = min(spec.gen_len // block, max(o.known_after_blocks, answer_blocks))
    steps = math.ceil(block / tps)
    out: list[Forward] = []
    for index in range(blocks):
        seq = full_seq if index < o.known_after_blocks else short_seq
        out.append(Forward(kind="refresh", q_len=seq, kv_len=seq))
        done = 1.0  # iterations done: the refresh unmasked the first tokens
        while done < steps:
            masks = max(1, math.ceil(block - tps * done))
            if masks > o.share_below:
                q = o.jump_copies * block
                out.append(Forward(kind="jump", q_len=q, kv_len=seq - block + q))
            else:
                q = block + o.share_copies * masks
                out.append(Forward(kind="share", q_len=q, kv_len=seq - block + q))
            done += 1 + o.jump_acceptance
    return out


SCHEDULES = {"vanilla": vanilla, "fast-dllm": fast_dllm, "odb": odb}


def read_trace(path: Path) -> list[Forward]:
    """A CSV with columns kind, q_len, kv_len and optionally count."""
    try:
        with path.open(newline="") as f:
            rows = list(csv.DictReader(f))
    except FileNotFoundError:
        raise ConfigError("file not found", file=str(path)) from None
    forwards = []
    for line, row in enumerate(rows, start=2):
        try:
            forwards.append(Forward.model_validate({k: v for k, v in row.items() if v not in (None, "")}))
        except ValueError as exc:
            first = exc.errors()[0] if hasattr(exc, "errors") else {"loc": (), "msg": str(exc)}
            key = ".".join(str(p) for p in first["loc"]) or "row"
            raise ConfigError(first["msg"].removeprefix("Value error, "), file=f"{path}:{line}", key=key) from None
    if not forwards:
        raise ConfigError("the trace has no forwards", file=str(path))
    return forwards
