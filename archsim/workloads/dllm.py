"""``kind: dllm``: diffusion language models (LLaDA) under three decoding schemes.

A generation of ``gen_len`` tokens after a ``prompt_len`` prompt is a sequence of forwards,
each over some query tokens against some keys (docs/sources/papers.md#dllm-decoding-schemes):

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
import itertools
import math
from collections import Counter
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, NonNegativeFloat, model_validator

from archsim.config.fields import Count, NonNegativeCount, Strict
from archsim.errors import ConfigError, FieldError
from archsim.ir.graph import Generation, Phase, Workload
from archsim.ir.transformer import Tokens
from archsim.workloads.base import PrecisionSpec, WorkloadSpec, register_workload
from archsim.workloads.lm import lm_forward, resolve_model
from archsim.workloads.inputs import whole_number

Kind = Literal["full", "refresh", "decode", "jump", "share"]
MAX_TOKENS = 2**20  # a documented limit: sequences up to a million tokens
MAX_TRACE_ROWS = 1_000_000  # a documented limit: rows of a trace CSV
MAX_FORWARD_SHAPES = 2048  # a documented limit: distinct (kind, q_len, kv_len) forwards, one phase each


class Forward(Strict):
    """One forward pass: its kind, query tokens and keys per sequence."""

    kind: Kind = Field(description="full (no cache), refresh (rebuilds the K/V cache), decode (a block's tokens "
                       "against the cache), or jump or share (ODB's speculative forwards)")
    q_len: Count = Field(description="query tokens per sequence")
    kv_len: Count = Field(description="keys each query attends to, query tokens included (a full forward: q_len)")
    count: Count = Field(default=1, description="times this forward runs in the generation")

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
    answer_len: Count = Field(description="predicted answer length in tokens")
    known_after_blocks: Count = Field(default=1, description="refreshes at full length before the end is known")
    jump_copies: Count = Field(default=4, description="copies of the block per jump forward (ODB: 4)")
    jump_acceptance: NonNegativeFloat = Field(description="mean extra iterations a jump forward advances")
    share_copies: Count = Field(default=7, description="copies of the masked positions in share mode (ODB: 7)")
    share_below: NonNegativeCount = Field(description="share mode once at most this many masks remain (ODB's code: "
                                          "18, 19 or 20 after a jump accepting 0, 1 or 2 drafts)")

    @model_validator(mode="after")
    def _acceptance(self) -> "ODBSpec":
        if self.jump_acceptance > self.jump_copies - 1:
            raise FieldError("jump_acceptance", f"jump_acceptance {self.jump_acceptance} exceeds jump_copies - 1 = {self.jump_copies - 1}")
        return self


@register_workload
class DLLMWorkload(WorkloadSpec):
    KIND = "dllm"
    kind: Literal["dllm"] = Field(description="a diffusion language model (LLaDA) under a decoding scheme")
    model: str | dict[str, Any] = Field(description="path to a config.json/YAML, or the fields inline")
    batch: Count = Field(default=1, description="sequences generated together")
    prompt_len: Count = Field(le=MAX_TOKENS, description="prompt tokens per sequence")
    gen_len: Count = Field(le=MAX_TOKENS, description="tokens generated per sequence (a multiple of block_len, "
                           "except in vanilla mode)")
    block_len: Count = Field(default=32, le=MAX_TOKENS, description="tokens per block: fast-dllm and odb decode "
                             "the generation block by block, each starting with a cache refresh")
    mode: Literal["vanilla", "fast-dllm", "odb"] = Field(description="decoding scheme: vanilla (a full forward "
                                                         "every step), fast-dllm (dual cache) or odb (Fast-dLLM plus "
                                                         "adaptive length and jump-share speculative decoding)")
    tokens_per_step: float = Field(default=1.0, ge=1.0, description="mean tokens unmasked per step")
    odb: ODBSpec | None = Field(default=None, description="ODB-dLLM's settings, needed by mode odb (unless a "
                                "trace is given)")
    trace: str | list[Forward] | None = Field(default=None, min_length=1, description="CSV path or list of forwards to replay")
    precision: PrecisionSpec = Field(default=PrecisionSpec(), description="number formats of the weights, "
                                     "activations and KV cache")

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
            path = paths("trace", self.trace)
            if not path.exists():
                raise ConfigError(f"trace {path} not found", file=paths.source("trace"), key="trace")
            return read_trace(path)
        if self.trace is not None:
            return list(self.trace)
        return SCHEDULES[self.mode](self)

    def build(self, paths, tp: int = 1, ep: int = 1) -> Workload:
        model = resolve_model(self.model, paths)
        counts: Counter[tuple[str, int, int]] = Counter()
        for f in self.forwards(paths):
            counts[(f.kind, f.q_len, f.kv_len)] += f.count
        if len(counts) > MAX_FORWARD_SHAPES:
            raise ConfigError(f"{len(counts):,} distinct forwards (kind, q_len, kv_len), each a phase; archsim's "
                              f"limit is {MAX_FORWARD_SHAPES:,}", file=paths.source("trace"), key="trace")
        phases = []
        for (kind, q, kv), count in counts.items():  # first-seen order: the generation's order
            name = f"{kind} q{q} kv{kv}"
            tokens = Tokens(self.batch, q, kv, kv_cache=kind != "full")
            graph = lm_forward(model, self.precision.precision(), tokens, self.batch * q, name, tp, ep)
            phases.append(Phase(name, graph, count))
        return Workload(self.name, tuple(phases), Generation(self.batch, self.batch * self.gen_len))


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
    # A block's forwards depend only on its sequence length: work one block out, then count.
    within: Counter[tuple[str, int]] = Counter()  # (kind, query tokens) per block
    done = 1.0  # iterations done: the refresh unmasked the first tokens
    while done < steps:
        masks = max(1, math.ceil(block - tps * done))
        if masks > o.share_below:
            within[("jump", o.jump_copies * block)] += 1
        else:
            within[("share", block + o.share_copies * masks)] += 1
        done += 1 + o.jump_acceptance  # accepted drafts skip iterations, in either mode
    out: list[Forward] = []
    full_blocks = min(blocks, o.known_after_blocks)
    for seq, count in ((full_seq, full_blocks), (short_seq, blocks - full_blocks)):
        if count:
            out.append(Forward(kind="refresh", q_len=seq, kv_len=seq, count=count))
            # drafts attend densely under a block-diagonal mask: the cache without the block,
            # plus every query token's copy
            out += [Forward(kind=k, q_len=q, kv_len=seq - block + q, count=n * count) for (k, q), n in within.items()]
    return out


SCHEDULES = {"vanilla": vanilla, "fast-dllm": fast_dllm, "odb": odb}


def read_trace(path: Path) -> list[Forward]:
    """A CSV with columns kind, q_len, kv_len and optionally count; every row has a cell per
    column (an empty cell is an absent value)."""
    try:
        if path.exists() and not path.is_file():
            raise ConfigError("is not a regular file, expected a CSV trace", file=str(path))
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            rows = []  # (line, row): the reader's line, right past blank lines and quoted line breaks
            for row in itertools.islice(reader, MAX_TRACE_ROWS + 1):
                rows.append((reader.line_num, row))
            columns = reader.fieldnames or []
        if len(rows) > MAX_TRACE_ROWS:
            raise ConfigError(f"more than {MAX_TRACE_ROWS:,} rows; archsim's limit for a trace", file=str(path))
    except FileNotFoundError:
        raise ConfigError("file not found", file=str(path)) from None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ConfigError(f"cannot read the trace: {exc}", file=str(path)) from None
    forwards = []
    for line, row in rows:
        # DictReader files extra cells under None and fills missing ones with None: either way
        # the row does not say what its header does
        cells = len(columns) + len(row.get(None) or ()) - sum(v is None for k, v in row.items() if k is not None)
        if cells != len(columns):
            raise ConfigError(f"the row has {cells} cells, expected {len(columns)} ({', '.join(columns)})",
                              file=f"{path}:{line}")
        try:
            # CSV cells are text: whole numbers are read as such, anything else is left for
            # validation to reject with the column's name
            values = {k: whole_number(v) if k != "kind" and whole_number(v) is not None else v
                      for k, v in row.items() if v != ""}
            forwards.append(Forward.model_validate(values))
        except ValueError as exc:
            first = exc.errors()[0] if hasattr(exc, "errors") else {"loc": (), "msg": str(exc)}
            key = ".".join(str(p) for p in first["loc"]) or "row"
            raise ConfigError(first["msg"].removeprefix("Value error, "), file=f"{path}:{line}", key=key) from None
    if not forwards:
        raise ConfigError("the trace has no forwards", file=str(path))
    return forwards
