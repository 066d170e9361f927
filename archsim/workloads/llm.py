"""``kind: llm``: autoregressive prefill and decode of a language model.

Prefill runs the prompt (``batch x prompt_len`` tokens) at once and computes the logits of
each sequence's last token: the first output token. Decode produces the other
``output_len - 1``, one per sequence per step: step j (from 1) feeds token j, appends its key
and value to the KV cache and attends to ``prompt_len + j`` keys. Decode steps are grouped
into ``decode_groups`` (at most two more) phases of consecutive steps with a repeat count,
each at its group's mean context length, so 4096 steps are a few graphs. Attention's cost is
linear in the context length, so the mean gives the group's exact total; the last step is a
phase of its own, so the KV cache is sized at its final length.

``schedule`` picks a decode schedule (``archsim.workloads.llm_schedules``): ``vanilla`` (this
lowering), speculative decoding (a draft model, LayerSkip self-speculation, Medusa heads and
token trees, EAGLE, Draft & Verify, FIRP) or layer skipping, lowered by
``archsim.workloads.llm_schedules_lower``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from archsim.config.fields import Count, NonNegativeCount

from archsim.ir.graph import Generation, Phase, Workload
from archsim.ir.transformer import Tokens
from archsim.workloads.base import PrecisionSpec, WorkloadSpec, register_workload
from archsim.workloads.lm import lm_forward, resolve_model
from archsim.workloads.llm_schedules import Vanilla, check_llm_schedule, parse_llm_schedule, schedule_names

MAX_TOKENS = 2**20  # a documented limit: sequences up to a million tokens


def decode_groups(first_context: int, steps: int, groups: int) -> list[tuple[int, int]]:
    """(context length, steps) pairs covering contexts first_context .. first_context+steps-1,
    each pair's steps summing to the exact total of the contexts it stands for.

    Groups are near-equal runs of consecutive steps. A run's mean context is whole only when
    its length is odd, so an even run passes one step on to the next; the last run, if even,
    leaves its last step to a pair of its own.
    """
    if steps == 0:
        return []
    groups = min(groups, steps)
    sizes = [round((i + 1) * steps / groups) - round(i * steps / groups) for i in range(groups)]
    for i in range(groups - 1):
        if sizes[i] % 2 == 0:
            sizes[i] -= 1
            sizes[i + 1] += 1
    out: list[tuple[int, int]] = []
    start = first_context
    for size in sizes:
        if size % 2 == 0:
            out.append((start + (size - 2) // 2, size - 1))
            out.append((start + size - 1, 1))
        else:
            out.append((start + (size - 1) // 2, size))
        start += size
    return out


@register_workload
class LLMWorkload(WorkloadSpec):
    KIND = "llm"
    kind: Literal["llm"] = Field(description="autoregressive prefill and decode of a language model")
    model: str | dict[str, Any] = Field(description="path to a config.json/YAML, or the fields inline")
    batch: Count = Field(description="sequences generated together")
    prompt_len: Count = Field(le=MAX_TOKENS, description="prompt tokens per sequence, run at once by prefill")
    output_len: NonNegativeCount = Field(le=MAX_TOKENS, description="tokens generated per sequence: the first by prefill, "
                                       "the others by one decode step each")
    precision: PrecisionSpec = Field(default=PrecisionSpec(), description="number formats of the weights, "
                                     "activations and KV cache")
    phases: list[Literal["prefill", "decode"]] = Field(default=["prefill", "decode"], description="the phases to "
                                                       "simulate: prefill (the prompt), decode (the other tokens)")
    decode_groups: Count = Field(default=8, le=4096, description="context-length groups of decode steps")
    schedule: str | dict[str, Any] | None = Field(default=None, description="a decode schedule, NAME[:key=value,...] "
                                                  f"or a mapping: {', '.join(schedule_names())}")

    @model_validator(mode="after")
    def _schedule(self) -> "LLMWorkload":
        check_llm_schedule(self.schedule)
        return self

    def decode_schedule(self):
        return parse_llm_schedule(self.schedule)

    def build(self, paths, tp: int = 1, ep: int = 1) -> Workload:
        schedule = self.decode_schedule()
        if not isinstance(schedule, Vanilla):
            from archsim.workloads.llm_schedules_lower import lower_schedule

            return lower_schedule(self, schedule, paths, tp, ep)
        model = resolve_model(self.model, paths)
        precision = self.precision.precision()
        phases = []
        if "prefill" in self.phases:
            tokens = Tokens(self.batch, self.prompt_len, self.prompt_len, kv_cache=True, causal=True)
            phases.append(Phase("prefill", lm_forward(model, precision, tokens, self.batch, "prefill", tp, ep)))
        if "decode" in self.phases:
            steps = self.output_len - 1
            groups = decode_groups(self.prompt_len + 1, steps - 1, self.decode_groups) if steps > 0 else []
            if steps > 0:
                groups.append((self.prompt_len + steps, 1))
            for context, steps in groups:
                name = f"decode@{context}"
                tokens = Tokens(self.batch, 1, context, kv_cache=True, causal=True)
                phases.append(Phase(name, lm_forward(model, precision, tokens, self.batch, name, tp, ep), steps))
        if not phases:
            raise ValueError("no phases: list prefill and/or decode, with output_len > 1 for decode")
        first = "prefill" if "prefill" in self.phases and self.output_len >= 1 else None
        steps = tuple(p.name for p in phases if p.name != "prefill")
        tokens = self.batch * ((first is not None) + sum(p.repeat for p in phases if p.name in steps))
        return Workload(self.name, tuple(phases), Generation(self.batch, tokens, first, steps))
