"""Chrome / Perfetto trace of a run (open in ui.perfetto.dev or chrome://tracing).

Each unit (MXU, VPU, DMA) is a track; ops run one after another; an op standing for N layers is one
bar N times as long. A phase repeated N times is
drawn once with its ops, and a span on the 'phases' track covers all N repetitions; the
next phase starts after them.
"""

from __future__ import annotations

import json
from pathlib import Path

from archsim.fileio import atomic_write_text
from archsim.sim.result import RunResult

_TRACKS = {"phases": 0, "mxu": 1, "vpu": 2, "dma": 3}


def trace_events(result: RunResult) -> list[dict]:
    events: list[dict] = [
        {"ph": "M", "pid": 0, "name": "process_name", "args": {"name": f"{result.hw.name}: {result.workload.name}"}}
    ]
    for track, tid in _TRACKS.items():
        events.append({"ph": "M", "pid": 0, "tid": tid, "name": "thread_name", "args": {"name": track}})
    clock_us = 0.0
    phase_ops: dict[str, list] = {}
    for cost in result.ops:
        phase_ops.setdefault(cost.phase, []).append(cost)
    for phase, costs in phase_ops.items():
        repeat, once_s = result.phase_times[phase]
        once_us = once_s * 1e6
        label = phase if repeat == 1 else f"{phase} x{repeat}"
        events.append({"ph": "X", "pid": 0, "tid": 0, "name": label, "ts": clock_us, "dur": once_us * repeat,
                       "args": {"repeat": repeat, "one_repetition_us": once_us}})
        t = clock_us
        for c in costs:
            dur = c.latency_s * c.copies * 1e6
            events.append({
                "ph": "X", "pid": 0, "tid": _TRACKS[c.unit], "name": c.name, "ts": t, "dur": dur,
                "args": {"kind": c.kind, "copies": c.copies, "macs": c.macs, "bound": c.bound, "bottleneck": c.bottleneck,
                         "compute_us": c.compute_s * 1e6, "memory_us": c.memory_s * 1e6,
                         "hbm_bytes": c.traffic.hbm_read + c.traffic.hbm_write, "tiling": c.tiling},
            })
            t += dur
        clock_us += once_us * repeat
    return events


def write_trace(result: RunResult, path: str | Path) -> None:
    atomic_write_text(Path(path), json.dumps({"traceEvents": trace_events(result), "displayTimeUnit": "ns"}))
