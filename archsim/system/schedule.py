"""The time of one phase on a pipeline of stages: micro-batches, bubbles, and repeats.

Per micro-batch, stage s takes T_s (its ops one after another, collectives included) and the
activations take c_k across cut k. A micro-batch's trip through the pipeline is
L = sum T_s + sum c_k. Each stage and each cut's link serve one micro-batch at a time; with
several micro-batches in flight a stage overlaps one micro-batch's collectives with the next
one's compute, so it is occupied R_s = max(compute, collectives) per micro-batch (T_s with one).
The slowest resource sets the period P = max(R_s, c_k).

One execution of m micro-batches (GPipe's forward schedule) takes L + (m - 1) P: for p balanced
stages of time T that is (m + p - 1) T, idle (p - 1) / (m + p - 1) of the time (the bubble).
Repeats depend on the previous one (diffusion steps, decoded tokens): a micro-batch starts its
next execution once its result is back at the first stage (feedback f), and a stage can start it
once it has served the others, so executions follow each other every max(L + f, m P).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StageTime:
    total_s: float  # one micro-batch, one execution: every op one after another
    collective_s: float  # the part of it spent in collectives

    def occupancy(self, micro_batches: int) -> float:
        if micro_batches == 1:
            return self.total_s
        return max(self.total_s - self.collective_s, self.collective_s)


@dataclass(frozen=True)
class PhaseSchedule:
    trip_s: float  # L: one micro-batch through every stage
    period_s: float  # P: the busiest stage's or link's time per micro-batch
    step_s: float  # between the starts of consecutive executions
    total_s: float  # every execution of the phase
    busy_s: tuple[float, ...]  # per stage: its chips' occupied time over the phase


def phase_schedule(stages: list[StageTime], sends: tuple[float, ...], feedback_s: float,
                   micro_batches: int, repeat: int) -> PhaseSchedule:
    m = micro_batches
    trip = 0.0
    for s, stage in enumerate(stages):
        trip += stage.total_s
        if s < len(sends):
            trip += sends[s]
    period = max(max(stage.occupancy(m) for stage in stages), *sends, 0.0)
    step = max(trip + feedback_s, m * period)
    # repeat * step + (the first execution's extra: its fill and drain) keeps one stage with
    # one micro-batch exactly repeat * T, the single chip's figure
    total = repeat * step + (trip + (m - 1) * period - step)
    busy = tuple(repeat * m * stage.occupancy(m) for stage in stages)
    return PhaseSchedule(trip, period, step, total, busy)
