"""Chrome / Perfetto trace of a run (open in ui.perfetto.dev or chrome://tracing).

Each unit (MXU, VPU, DMA, ICI; a GPU's SMs) is a track. Without overlap, ops run one after
another; with it (``compiler.overlap``), each op sits where the schedule put it on the unit it
holds, and each memory channel (VMEM, CMEM or L2, HBM) has a track of its own showing when it
moves each op's data, prefetches included, so what ran beside what is plain to see. An op
standing for N layers is one bar N times as long. A phase repeated N times is drawn once with
its ops, and a span on the 'phases' track covers all N repetitions; the next phase starts after
them.
"""

from __future__ import annotations

import json
from pathlib import Path

from archsim.fileio import atomic_write_text
from archsim.sim.result import RunResult

_ORDER = ("mxu", "vpu", "sm", "dma", "ici", "vmem", "cmem", "hbm")


def trace_events(result: RunResult) -> list[dict]:
    events: list[dict] = [
        {"ph": "M", "pid": 0, "name": "process_name", "args": {"name": f"{result.hw.name}: {result.workload.name}"}}
    ]
    tracks = {"phases": 0}

    def tid(track: str) -> int:
        if track not in tracks:
            tracks[track] = len(tracks)
        return tracks[track]

    clock_us = 0.0
    phase_ops: dict[str, list] = {}
    for cost in result.ops:
        phase_ops.setdefault(cost.phase, []).append(cost)
    schedules = {s.phase: s for s in result.schedules or ()}
    for phase, costs in phase_ops.items():
        repeat, once_s = result.phase_times[phase]
        once_us = once_s * 1e6
        label = phase if repeat == 1 else f"{phase} x{repeat}"
        events.append({"ph": "X", "pid": 0, "tid": 0, "name": label, "ts": clock_us, "dur": once_us * repeat,
                       "args": {"repeat": repeat, "one_repetition_us": once_us}})
        schedule = schedules.get(phase)
        t = clock_us
        for i, c in enumerate(costs):
            args = {"kind": c.kind, "copies": c.copies, "macs": c.macs, "bound": c.bound, "bottleneck": c.bottleneck,
                    "compute_us": c.compute_s * 1e6, "memory_us": c.memory_s * 1e6,
                    "hbm_bytes": c.traffic.hbm_read + c.traffic.hbm_write, "tiling": c.tiling}
            if schedule is None:
                dur = c.latency_s * c.copies * 1e6
                events.append({"ph": "X", "pid": 0, "tid": tid(c.unit), "name": c.name, "ts": t, "dur": dur,
                               "args": args})
                t += dur
                continue
            held, *spans = schedule.windows[i]
            events.append({"ph": "X", "pid": 0, "tid": tid(held[0]), "name": c.name, "ts": clock_us + held[1] * 1e6,
                           "dur": (held[2] - held[1]) * 1e6, "args": args | {"standalone_us": c.latency_s * c.copies * 1e6}})
            for resource, begin, end in spans:
                if end > begin:
                    events.append({"ph": "X", "pid": 0, "tid": tid(resource), "name": c.name,
                                   "ts": clock_us + begin * 1e6, "dur": (end - begin) * 1e6})
        clock_us += once_us * repeat
    names = sorted(tracks, key=lambda n: (n != "phases", _ORDER.index(n) if n in _ORDER else len(_ORDER), n))
    for name in names:  # the tracks in a fixed order: units, then memory channels
        events.insert(1, {"ph": "M", "pid": 0, "tid": tracks[name], "name": "thread_name", "args": {"name": name}})
        events.insert(1, {"ph": "M", "pid": 0, "tid": tracks[name], "name": "thread_sort_index",
                          "args": {"sort_index": names.index(name)}})
    return events


def write_trace(result: RunResult, path: str | Path) -> None:
    atomic_write_text(Path(path), json.dumps({"traceEvents": trace_events(result), "displayTimeUnit": "ns"}))
