"""A system run's result: the stages' chip results, the boundaries between them, the schedule,
and totals over every chip. It answers what a single chip's ``RunResult`` answers (so reports,
sweeps and comparisons take either), plus per-chip and per-link figures.

Totals: energy is every chip's dynamic energy (each op of a stage runs once per micro-batch on
each of the stage's tensor-parallel ranks, in each data-parallel replica; the CMEM preload once
per chip) plus the boundaries' link energy plus every chip's static power over the whole run,
bubbles included. Latency is the preload (stages load in parallel) plus each phase's schedule.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING

from archsim.config.schema import HardwareConfig
from archsim.hw.area import Area, chip_area
from archsim.hw.energy import Energy
from archsim.hw.leakage import static_power
from archsim.hw.memory import Level, Traffic
from archsim.ir.graph import PRELOAD_PHASE, Workload
from archsim.memo import cached_property
from archsim.sim.cost import busy_totals
from archsim.sim.result import Rates, RunResult, totals_summary
from archsim.system.schedule import PhaseSchedule, StageTime, phase_schedule
from archsim.system.topology import NO_TRANSFER, Transfer

if TYPE_CHECKING:
    import pandas as pd

    from archsim.system.pipeline import PipelineSplit

PRELOAD = PRELOAD_PHASE


@dataclass(frozen=True)
class Boundary:
    """Activations from one stage to the next: the send, then the broadcast that shares them
    within the receiving tensor-parallel group."""

    send: Transfer
    share: Transfer = NO_TRANSFER

    @property
    def time_s(self) -> float:
        return self.send.time_s + self.share.time_s

    @property
    def energy_j(self) -> float:
        return self.send.energy_j + self.share.energy_j


@dataclass(frozen=True)
class SystemResult(Rates):
    hw: HardwareConfig
    workload: Workload
    split: "PipelineSplit | None"
    stages: tuple[RunResult, ...]
    boundaries: dict[str, tuple[Boundary, ...]]
    feedback: dict[str, Transfer]
    feasible: bool = True
    reason: str = ""

    @classmethod
    def infeasible(cls, hw: HardwareConfig, workload: Workload, reason: str) -> "SystemResult":
        return cls(hw, workload, None, (), {}, {}, False, reason)

    # -- the mapping ----------------------------------------------------------------------

    @property
    def chips(self) -> int:
        return self.hw.system.chips

    @property
    def micro_batches(self) -> int:
        return self.hw.system.parallelism.micro_batches

    @property
    def chips_per_stage(self) -> int:
        p = self.hw.system.parallelism
        return p.tensor * p.data

    def _runs(self, cost) -> int:
        """Executions of an op cost on one chip of its stage: once per micro-batch (the preload once)."""
        return cost.count * (1 if cost.phase == PRELOAD else self.micro_batches)

    # -- time -----------------------------------------------------------------------------

    @cached_property
    def schedules(self) -> dict[str, PhaseSchedule]:
        out = {}
        for phase in self.workload.phases:
            times = []
            for stage in self.stages:
                once = stage.phase_times.get(phase.name, (phase.repeat, 0.0))[1]
                collective = sum(c.latency_s * c.copies for c in stage.ops if c.phase == phase.name and c.unit == "ici")
                if stage.overlapped:  # what the chip's schedule already hid is taken off the collectives
                    serial = sum(c.latency_s * c.copies for c in stage.ops if c.phase == phase.name)
                    collective = max(0.0, collective - (serial - once))
                times.append(StageTime(once, collective))
            sends = tuple(b.time_s for b in self.boundaries[phase.name])
            out[phase.name] = phase_schedule(times, sends, self.feedback[phase.name].time_s,
                                             self.micro_batches, phase.repeat)
        return out

    @cached_property
    def preload_s(self) -> float:
        return max((s.phase_times.get(PRELOAD, (1, 0.0))[1] for s in self.stages), default=0.0)

    @cached_property
    def latency_s(self) -> float:
        total = 0.0
        if any(PRELOAD in s.phase_times for s in self.stages):
            total += self.preload_s
        for schedule in self.schedules.values():
            total += schedule.total_s
        return total

    @property
    def cycles(self) -> float:
        return self.latency_s * self.hw.clock

    @property
    def phase_wall_s(self) -> dict[str, float]:
        """Per phase, in run order, its wall time in the run (every execution, every micro-batch)."""
        return self.latency_by("phase")

    def latency_by(self, column: str) -> dict[str, float]:
        """'phase': the run's wall time per phase. Any other op attribute ('unit', 'kind',
        'bound'): the work time of the busiest stage's chip by that attribute (with several
        micro-batches, collectives overlapped with compute make it add up to more than the
        chip's occupied time)."""
        if column == "phase":
            out = {PRELOAD: self.preload_s} if any(PRELOAD in s.phase_times for s in self.stages) else {}
            return out | {name: s.total_s for name, s in self.schedules.items()}
        busiest = max(range(len(self.stages)), key=lambda s: (self.stage_busy_s[s], -s))
        out: dict[str, float] = {}
        for c in self.stages[busiest].ops:
            key = getattr(c, column)
            out[key] = out.get(key, 0.0) + c.latency_s * self._runs(c)
        return out

    @property
    def overlapped(self) -> bool:
        return any(s.overlapped for s in self.stages)

    @cached_property
    def busy(self) -> dict[str, float]:
        """Seconds each resource of the busiest stage's chip works in the run."""
        if not self.stages:
            return {}
        busiest = max(range(len(self.stages)), key=lambda s: (self.stage_busy_s[s], -s))
        return busy_totals((c, self._runs(c)) for c in self.stages[busiest].ops)

    @cached_property
    def stage_busy_s(self) -> tuple[float, ...]:
        """Per stage: the time one of its chips is occupied (its preload, and per micro-batch its
        ops, collectives overlapped with compute as the schedule overlaps them)."""
        return tuple(s.phase_times.get(PRELOAD, (1, 0.0))[1]
                     + sum(schedule.busy_s[i] for schedule in self.schedules.values())
                     for i, s in enumerate(self.stages))

    @property
    def bubble_fraction(self) -> float:
        """Of the chips' time over the run, the part they are idle."""
        if not self.latency_s:
            return 0.0
        return max(0.0, 1.0 - sum(self.stage_busy_s) / (len(self.stages) * self.latency_s))

    # -- work, traffic, energy, area ------------------------------------------------------

    @cached_property
    def macs(self) -> int:
        return self.chips_per_stage * sum(c.macs * self._runs(c) for stage in self.stages for c in stage.ops)

    @cached_property
    def traffic(self) -> Traffic:
        """Memory traffic summed over every chip."""
        per_chip = Traffic.weighted_total((c.traffic, self._runs(c)) for stage in self.stages for c in stage.ops)
        return per_chip.scaled(self.chips_per_stage)

    @cached_property
    def boundary_transfers(self) -> tuple[float, float]:
        """Over the run: bytes sent between stages, and their link energy."""
        sent = energy = 0.0
        for phase in self.workload.phases:
            runs = phase.repeat * self.micro_batches * self.hw.system.parallelism.data
            tp = self.hw.system.parallelism.tensor
            for b in self.boundaries[phase.name]:
                sent += runs * (b.send.sent_per_chip + (tp - 1) * b.share.sent_per_chip)
                energy += runs * b.energy_j
            back = self.feedback[phase.name]  # before every execution but the first
            returns = (phase.repeat - 1) * self.micro_batches * self.hw.system.parallelism.data
            sent += returns * back.sent_per_chip
            energy += returns * back.energy_j
        return sent, energy

    @cached_property
    def stage_ici_bytes(self) -> tuple[float, ...]:
        """Per stage: bytes one of its chips sends in its collectives."""
        return tuple(sum(c.ici_bytes * self._runs(c) for c in st.ops) for st in self.stages)

    @cached_property
    def ici_bytes(self) -> float:
        """Bytes sent over chip-to-chip links, all chips together."""
        return self.chips_per_stage * sum(self.stage_ici_bytes) + self.boundary_transfers[0]

    @cached_property
    def energy(self) -> Energy:
        dynamic = Energy.weighted_total((c.energy, self._runs(c)) for stage in self.stages for c in stage.ops)
        dynamic = dynamic.scaled(self.chips_per_stage) + Energy(ici=self.boundary_transfers[1])
        return dataclasses.replace(dynamic, static=self.chips * static_power(self.hw) * self.latency_s)

    @cached_property
    def area(self) -> Area:
        return chip_area(self.hw).scaled(self.chips)

    @cached_property
    def stage_utilization(self) -> tuple[float, ...]:
        """Per stage: its chips' matrix-unit utilisation over the whole run."""
        if not self.latency_s:
            return tuple(0.0 for _ in self.stages)
        return tuple(sum(c.macs * self._runs(c) / c.peak_macs_per_s for c in st.ops if c.peak_macs_per_s) / self.latency_s
                     for st in self.stages)

    @cached_property
    def utilization(self) -> float:
        """Matrix-unit utilisation over all chips and the whole run."""
        return sum(self.stage_utilization) / len(self.stages) if self.stages else 0.0

    @cached_property
    def link_utilization(self) -> float:
        """The busiest chip's links: bytes it sends over what its links could send in the run."""
        if not self.latency_s or self.chips == 1:
            return 0.0
        per_chip = list(self.stage_ici_bytes)
        for phase in self.workload.phases:
            runs = phase.repeat * self.micro_batches
            for k, b in enumerate(self.boundaries[phase.name]):
                per_chip[k] += runs * b.send.sent_per_chip
                per_chip[k + 1] += runs * b.share.sent_per_chip
        capacity = self.hw.ici.links * self.hw.ici.link_bandwidth * self.latency_s
        return max(per_chip) / capacity

    # -- views ----------------------------------------------------------------------------

    def table(self) -> "pd.DataFrame":
        """Per stage, its chips' ops (one chip's costs; ``count`` includes the micro-batches)."""
        import pandas as pd

        frames = []
        for s, stage in enumerate(self.stages):
            frame = stage.table()
            if self.micro_batches > 1:
                runs = frame["phase"].ne(PRELOAD).map({True: self.micro_batches, False: 1})
                frame["count"] *= runs
                frame["total_latency_s"] *= runs
            frame.insert(0, "stage", s)
            frames.append(frame)
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

    def system_summary(self) -> dict:
        p = self.hw.system.parallelism
        base = {"chips": self.chips, "topology": self.hw.system.topology.kind,
                "parallelism": p.model_dump()}
        if not self.feasible:
            return base
        tp = p.tensor
        return base | {
            "layers_per_stage": list(self.split.layers) if self.split else [],
            "bubble_fraction": self.bubble_fraction,
            "link_utilization": self.link_utilization,
            "ici_energy_j": self.energy.ici,
            "stages": [
                {"stage": s, "chips": [s * tp + r for r in range(tp)], "busy_s": self.stage_busy_s[s],
                 "utilization": self.stage_utilization[s],
                 "hbm_bytes_per_chip": sum(c.traffic.total(Level.HBM) * self._runs(c) for c in st.ops),
                 "ici_bytes_per_chip": self.stage_ici_bytes[s]}
                for s, st in enumerate(self.stages)
            ],
        }

    def summary(self) -> dict:
        """Totals as plain JSON-ready values (SI units), as a single chip's, plus ``system``."""
        return totals_summary(self) | {"system": self.system_summary()}
