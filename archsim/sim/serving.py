"""Serving figures of a language-model run: time to first token, time per output token, and
output tokens per second and per joule.

Definitions (one run of the workload, as archsim times it: its batch of sequences together):
- **TTFT**: from the start of the run to the end of the phase that gives each sequence its
  first token (``Generation.first_token_phase``, prefill), the one-time CMEM preload of
  weights included: the wait of a request arriving at an idle chip.
- **TPOT**: the mean time per output token after the first: the decode phases' wall time
  (``Generation.step_phases``) over the tokens they give each sequence (one per execution, or
  ``Generation.step_tokens`` for speculative rounds, which give several).
- **tokens/s**: output tokens of every sequence over the run's whole time.
- **tokens/J**: output tokens over the run's whole energy (static included).
"""

from __future__ import annotations

from dataclasses import dataclass

from archsim.ir.graph import PRELOAD_PHASE


@dataclass(frozen=True)
class Serving:
    ttft_s: float | None  # None: the run has no first-token phase (decode only, a diffusion LM)
    tpot_s: float | None  # None: no decode steps
    tokens_per_s: float
    tokens_per_j: float
    tokens: int  # output tokens of the run, every sequence's

    def as_dict(self) -> dict[str, float | None]:
        return {"ttft_s": self.ttft_s, "tpot_s": self.tpot_s, "tokens_per_s": self.tokens_per_s,
                "tokens_per_j": self.tokens_per_j}


def serving(result) -> Serving | None:
    """A feasible run's serving figures (``RunResult`` or ``SystemResult``); None when its
    workload generates no tokens (a DiT, a single layer)."""
    generation = result.workload.generation
    if generation is None or not result.feasible or generation.tokens == 0:
        return None
    wall = result.phase_wall_s  # phase -> its wall time in the run, executions included
    ttft = None
    if generation.first_token_phase is not None:
        ttft = wall.get(PRELOAD_PHASE, 0.0) + wall[generation.first_token_phase]
    steps = generation.step_tokens or sum(p.repeat for p in result.workload.phases if p.name in generation.step_phases)
    tpot = sum(wall[name] for name in generation.step_phases) / steps if steps else None
    latency, energy = result.latency_s, result.energy.total
    return Serving(ttft, tpot, generation.tokens / latency if latency else 0.0,
                   generation.tokens / energy if energy else 0.0, generation.tokens)
