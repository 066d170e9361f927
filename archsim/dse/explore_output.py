"""What ``archsim explore`` writes besides the plots and reports a sweep writes: the results
table of the search's points (``results.parquet``, by the store's consolidation),
``sweep.json`` (its objectives, for ``archsim plot``/``report``/``pareto``) and ``explore.json``
(the spec, seed, evaluations, hypervolume per generation and the front).

With workload axes (a cache schedule), a workload's value is part of the design: the table
has a ``set.workload.<path>`` column, and rows of one listed workload share its
``workload_id`` (the workload as listed, before the axes' values; the built variant's id is
``workload_variant_id``), so each workload's Pareto front and baseline ratios span the
schedules rather than treating each as a workload of its own.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from archsim.config.sweep import OBJECTIVES
from archsim.dse.evaluate import FIELD_PREFIX
from archsim.dse.explore import OPTIMISER, REFERENCE, Outcome
from archsim.dse.report import RATIOS, results_table
from archsim.dse.store import RESULTS, ResultStore
from archsim.fileio import atomic_write, atomic_write_text

WORKLOAD_PREFIX = FIELD_PREFIX + "workload."
DERIVED = ("design", "design_id", "pareto", *RATIOS)  # what results_table adds, made again


def write_outputs(outcome: Outcome, out_dir: Path) -> pd.DataFrame:
    """Write the results table, ``sweep.json`` and ``explore.json``; the table."""
    space = outcome.space
    objectives = list(space.spec.objectives)
    store = ResultStore(out_dir)
    path = store.consolidate(outcome.keys, objectives)
    frame = pd.read_parquet(path)
    if space.spec.workload_axes and len(frame):
        frame = _workload_designs(outcome, frame)
        with store.writer():
            atomic_write(out_dir / RESULTS, lambda tmp: frame.to_parquet(tmp, index=False))
    fields = [d.path for d in space.domains if not d.workload]
    fields += [f"workload.{d.path}" for d in space.domains if d.workload]
    atomic_write_text(out_dir / "sweep.json", json.dumps({"objectives": objectives, "fields": fields,
                                                          "files": [str(space.file)]}, indent=2))
    atomic_write_text(out_dir / "explore.json", json.dumps(record(outcome), indent=2, default=str) + "\n")
    return frame


def _workload_designs(outcome: Outcome, frame: pd.DataFrame) -> pd.DataFrame:
    space = outcome.space
    origin: dict[str, tuple[tuple, int]] = {}  # point key -> (workload values, listed workload)
    for d in outcome.evaluated:
        if space.violation(d) == 0:
            wl = space.overrides(d)[1]
            for i, point in enumerate(space.points(d)):
                origin[point.key] = (wl, i)
    listed = [space._workload(i, ())[1] for i in range(len(space.refs))]
    for i, point in enumerate(space.baseline_points()):
        origin.setdefault(point.key, ((), i))
    frame = frame.drop(columns=[c for c in DERIVED if c in frame.columns])
    frame["workload_variant_id"] = frame["workload_id"]
    ids = [listed[origin[k][1]] if k in origin else w for k, w in zip(frame["key"], frame["workload_id"])]
    frame["workload_id"] = ids
    for dom in (d for d in space.domains if d.workload):
        values = [dict(origin[k][0]).get(dom.path) if k in origin else None for k in frame["key"]]
        frame[WORKLOAD_PREFIX + dom.path] = [None if v is None else json.dumps(v) for v in values]
    return results_table(frame, list(space.spec.objectives))


def record(outcome: Outcome) -> dict:
    """``explore.json``: what was searched, how, and what was found."""
    space = outcome.space
    spec = space.spec
    bounds = outcome.bounds()
    front = []
    for d in sorted(outcome.front()):
        f = outcome.evaluated[d]
        hw, wl = space.overrides(d)
        front.append({"design": dict(hw) | {f"workload.{k}": v for k, v in wl},
                      "objectives": {name: float(v if OBJECTIVES[name][1] == "min" else -v)
                                     for name, v in zip(spec.objectives, f)}})
    return {
        "file": str(space.file), "optimiser": OPTIMISER, "seed": outcome.seed,
        "spec": spec.model_dump(mode="json", by_alias=True),
        "space_size": space.size, "evaluations": len(outcome.evaluated),
        "feasible": len(outcome.feasible()[0]), "points_simulated_by_this_run": outcome.simulated,
        "seconds": round(outcome.seconds, 3), "stopped": outcome.stopped,
        "hypervolume": outcome.generations[-1]["hypervolume"] if outcome.generations else 0.0,
        "normalisation": {"reference": REFERENCE,
                          "ideal": None if bounds is None else [float(v) for v in bounds[0]],
                          "nadir": None if bounds is None else [float(v) for v in bounds[1]],
                          "note": "each objective minimised (maximised ones negated), each design's geometric "
                                  "mean over the workloads, scaled to [0, 1] from ideal to nadir"},
        "generations": outcome.generations,
        "front": front,
    }
