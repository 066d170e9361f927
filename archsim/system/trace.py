"""Perfetto trace of a system run: a track per chip and per link between stages.

Each phase's first execution is drawn micro-batch by micro-batch as the schedule runs it (a stage
starts a micro-batch once it has finished the previous one and the activations have arrived);
each chip's slice holds its ops, the links carry the sends between stages. A span on the
'phases' track covers all of a phase's repetitions; the next phase starts after them. Chips of
other data-parallel replicas run the same and are not drawn.
"""

from __future__ import annotations

import json
from pathlib import Path

from archsim.fileio import atomic_write_text
from archsim.sim import trace as chip_trace
from archsim.sim.result import RunResult
from archsim.system.result import PRELOAD, SystemResult


def trace_events(result: SystemResult) -> list[dict]:
    p = result.hw.system.parallelism
    chips = p.pipeline * p.tensor
    links = p.pipeline - 1
    events: list[dict] = [{"ph": "M", "pid": 0, "name": "process_name",
                           "args": {"name": f"{result.hw.name} x{result.chips}: {result.workload.name}"}}]
    names = ["phases", *(f"chip {c} (stage {c // p.tensor})" for c in range(chips)),
             *(f"link stage {k} -> {k + 1}" for k in range(links))]
    for tid, name in enumerate(names):
        events.append({"ph": "M", "pid": 0, "tid": tid, "name": "thread_name", "args": {"name": name}})
        events.append({"ph": "M", "pid": 0, "tid": tid, "name": "thread_sort_index", "args": {"sort_index": tid}})

    def chip_tid(stage: int, rank: int) -> int:
        return 1 + stage * p.tensor + rank

    clock = result.preload_s * 1e6
    if clock:
        events.append({"ph": "X", "pid": 0, "tid": 0, "name": PRELOAD, "ts": 0.0, "dur": clock})
    for phase in result.workload.phases:
        schedule = result.schedules[phase.name]
        events.append({"ph": "X", "pid": 0, "tid": 0, "name": f"{phase.name} x{phase.repeat}", "ts": clock,
                       "dur": schedule.total_s * 1e6, "args": {"repeat": phase.repeat, "step_us": schedule.step_s * 1e6}})
        stage_free = [clock] * len(result.stages)
        link_free = [clock] * links
        for mb in range(result.micro_batches):
            ready = clock
            for s, stage in enumerate(result.stages):
                start = max(ready, stage_free[s])
                ops = [c for c in stage.ops if c.phase == phase.name]
                length = stage.phase_times.get(phase.name, (phase.repeat, 0.0))[1] * 1e6
                for rank in range(p.tensor):
                    events.append({"ph": "X", "pid": 0, "tid": chip_tid(s, rank), "name": f"{phase.name} mb{mb}",
                                   "ts": start, "dur": length})
                    t = start
                    for c in ops:
                        dur = c.latency_s * c.copies * 1e6
                        events.append({"ph": "X", "pid": 0, "tid": chip_tid(s, rank), "name": c.name, "ts": t, "dur": dur,
                                       "args": {"kind": c.kind, "unit": c.unit, "copies": c.copies, "bound": c.bottleneck}})
                        t += dur
                stage_free[s] = ready = start + length
                if s < links:
                    boundary = result.boundaries[phase.name][s]
                    send_start = max(ready, link_free[s])
                    dur = boundary.time_s * 1e6
                    events.append({"ph": "X", "pid": 0, "tid": 1 + chips + s, "name": f"send mb{mb}", "ts": send_start,
                                   "dur": dur, "args": {"bytes": boundary.send.sent_per_chip}})
                    link_free[s] = ready = send_start + dur
        clock += schedule.total_s * 1e6
    return events


def write_trace(result: RunResult | SystemResult, path: str | Path) -> None:
    """A chip's trace (``archsim.sim.trace``) or a system's."""
    if isinstance(result, SystemResult):
        atomic_write_text(Path(path), json.dumps({"traceEvents": trace_events(result), "displayTimeUnit": "ns"}))
    else:
        chip_trace.write_trace(result, path)
