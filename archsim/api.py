"""The Python API, for notebooks and scripts; the CLI is a thin layer over it.

    from archsim import api
    hw = api.load_hardware("hw_configs/tpuv4i.yaml", ["mxu.count=8"])
    result = api.simulate(hw, api.load_workload("workloads/gpt3_30b_layer_prefill.yaml", hw=hw))
    result.latency_s, result.utilization, result.table()

A config with a ``system:`` section (several chips, a parallel mapping) gives a ``SystemResult``;
load the workload with ``hw=`` so it is lowered for one chip of that mapping.

The whole design-space job, as ``archsim sweep``, ``pareto``, ``plot`` and ``report`` do it:

    table = api.sweep(["hw_configs/cim_tpu.yaml"], out="sweep-results")   # the typed results table
    front = api.pareto(table)                                             # per workload
    api.plot_pareto(table, "latency", "energy", "figures/pareto")
    api.report("sweep-results", "sweep-results/report.html")

The table's columns are listed in ``archsim.dse.report``'s docstring. pandas, matplotlib and
the sweep modules are imported when these functions are first called, not with this module.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from archsim.chips import build_chip
from archsim.config.loader import HARDWARE_KEYS, Override, load_hardware, load_layered, parse_overrides
from archsim.config.schema import HardwareConfig
from archsim.config.system import SystemConfig
from archsim.dtypes import DType
from archsim.errors import ArchsimError, ConfigError
from archsim.ir.graph import OpGraph, Phase, Workload
from archsim.ir.ops import Gemm
from archsim.ir.tensor import Role, Tensor
from archsim.sim.engine import Simulator
from archsim.sim.result import RunResult
from archsim.workloads import base as _workloads

if TYPE_CHECKING:  # for annotations only: pandas is imported by the functions that use it
    import pandas as pd

    from archsim.system.result import SystemResult
    from archsim.system.simulator import SystemSimulator

__all__ = ["Simulator", "SystemSimulator", "gemm_workload", "load_hardware", "load_results", "load_workload", "pareto",
           "plot_breakdowns", "plot_pareto", "report", "run_gemm", "simulate", "sweep"]


def __getattr__(name: str):
    """``SystemSimulator``, imported on first use (a plain chip's run does not need it)."""
    if name == "SystemSimulator":
        from archsim.system.simulator import SystemSimulator

        return SystemSimulator
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def is_system(hw: HardwareConfig) -> bool:
    """Whether ``hw`` describes more than one plain chip (several chips or micro-batches)."""
    return hw.system != SystemConfig()


def simulate(hw: HardwareConfig, workload: Workload, dispatch: str = "program") -> RunResult | SystemResult:
    """Evaluate ``workload`` on ``hw``: a chip's ``RunResult``, or a ``SystemResult`` when the
    config maps the workload onto a system. ``dispatch``: ``program`` (the ops of one compiled
    program) or ``call`` (every op launched on its own), for ``hw.dispatch``'s costs."""
    if is_system(hw):
        from archsim.system.simulator import SystemSimulator

        return SystemSimulator(hw, dispatch).run(workload)
    return build_chip(hw, dispatch=dispatch).run(workload)


def load_workload(path: str | Path, overrides: Sequence[Override] | Sequence[str] = (),
                  hw: HardwareConfig | None = None) -> Workload:
    """A workload file lowered for one chip of ``hw``'s parallel mapping (a plain chip: as is).
    ``overrides`` are ``Override`` objects or ``"key.path=value"`` strings, as for hardware."""
    lowering = _workloads.Lowering.of(hw) if hw is not None else _workloads.Lowering()
    parsed = [o if isinstance(o, Override) else parse_overrides([o])[0] for o in overrides]
    try:
        return _workloads.load_workload(path, parsed, lowering)
    except ConfigError:
        if file_kind(path) == "hardware":  # say so, rather than that its 'kind' is missing
            raise ConfigError(f"this is a hardware config, not a workload, which names its kind (one of: "
                              f"{', '.join(_workloads.workload_kinds())})", file=str(path)) from None
        raise


def file_kind(path: str | Path) -> str | None:
    """What a file holds, by its top-level keys (with its ``extends:`` chain): 'workload' (a
    ``kind:`` of a workload kind), 'hardware' (``clock``, ``mxu``, ...), or None (neither, or
    unreadable). For errors that tell the user which file goes where."""
    try:
        data = load_layered(path).data
    except ConfigError:
        return None
    if data.get("kind") in _workloads.workload_kinds():
        return "workload"
    return "hardware" if any(key in data for key in HARDWARE_KEYS) else None


def gemm_workload(m: int, k: int, n: int, dtype: DType = DType.INT8) -> Workload:
    """One GEMM: activations A[m, k] times weights B[k, n]."""
    a = Tensor("A", (m, k), dtype)
    b = Tensor("B", (k, n), dtype, Role.WEIGHT)
    out = Tensor("C", (m, n), dtype)
    graph = OpGraph([Gemm("gemm", (a, b), (out,), 1, m, k, n, False)])
    return Workload(f"gemm {m}x{k}x{n} {dtype}", (Phase("gemm", graph),))


def run_gemm(hw, m: int, k: int, n: int, dtype: DType = DType.INT8) -> RunResult:
    return build_chip(hw).run(gemm_workload(m, k, n, dtype))


# ------------------------------------------------------------------ sweeps: the whole job

EXECUTORS = ("serial", "pool", "dask")


def sweep(configs: str | Path | Sequence[str | Path], workloads: Sequence[str | Path] | None = None,
          out: str | Path | None = None, jobs: int | None = None, executor: str = "serial",
          sets: Sequence[str] = ()) -> "pd.DataFrame":
    """Sweep the design spaces of hardware configs (their ``sweep:`` sections; several files are
    one sweep) as ``archsim sweep`` does, and return the typed results table: one row per
    point, the columns of ``archsim.dse.report`` (``design_id``, ``design``, ``pareto``, the
    swept values typed, ``latency_s``, ``energy_j``, ``area_mm2``, ``speedup_vs_baseline``...),
    as ``results.parquet`` holds it. ``frame.attrs["objectives"]`` are the sweep's objectives.

    ``workloads``: files that replace the configs' ``sweep.workloads``; ``sets``:
    ``"key.path=value"`` overrides applied to every design (``--set``); ``executor``:
    ``serial`` (this process), ``pool`` (``jobs`` processes, default every core) or ``dask``.
    With ``out``, the results folder: ``results.parquet``, ``sweep.json`` and the parts, which
    a later call resumes (no reports or plots: see ``plot_pareto`` and ``report``); without,
    a temporary folder, deleted on return.

        table = api.sweep("hw_configs/cim_tpu.yaml", workloads=["workloads/gpt3_30b_layer_decode.yaml"])
        table[["design_id", "design", "latency_s", "speedup_vs_baseline", "pareto"]]
    """
    import tempfile

    import pandas as pd

    from archsim.dse.plan import plan_sweep
    from archsim.dse.runner import run_points
    from archsim.dse.store import ResultStore
    from archsim.fileio import atomic_write_text

    if executor not in EXECUTORS:
        raise ArchsimError(f"unknown executor {executor!r}; expected one of: {', '.join(EXECUTORS)}")
    files = [configs] if isinstance(configs, (str, Path)) else list(configs)
    if not files:
        raise ArchsimError("no hardware configs to sweep")
    if isinstance(workloads, (str, Path)):
        workloads = [workloads]
    plan = plan_sweep(files, parse_overrides(list(sets)), [str(w) for w in workloads or ()])
    with tempfile.TemporaryDirectory(prefix="archsim-sweep-") as scratch:
        folder = Path(out) if out is not None else Path(scratch)
        store = ResultStore(folder)
        run_points(plan.points, store, executor, jobs, progress=False)
        results = store.consolidate({p.key for p in plan.points}, plan.objectives)
        meta = {"objectives": list(plan.objectives), "fields": list(plan.fields), "files": [str(f) for f in files]}
        atomic_write_text(folder / "sweep.json", json.dumps(meta, indent=2))
        frame = pd.read_parquet(results)
    frame.attrs["objectives"] = list(plan.objectives)
    return frame


def load_results(path: str | Path, objectives: Sequence[str] | None = None) -> "pd.DataFrame":
    """The typed results table of a results folder or ``results.parquet`` (written by any
    archsim version: old tables are typed as they are read), with ``pareto`` over
    ``objectives`` (default: the sweep's, from its ``sweep.json``).

        table = api.load_results("sweep-results")
    """
    from archsim.dse.results_file import load_results as load, read_objectives

    objectives = list(objectives or read_objectives(path))
    frame = load(path, objectives=objectives)
    frame.attrs["objectives"] = objectives
    return frame


def _table(frame: "pd.DataFrame", objectives: Sequence[str] | None = None) -> tuple["pd.DataFrame", list[str]]:
    """``frame`` as the typed table, with ``pareto`` over ``objectives`` (default: the frame's
    sweep's, else latency and energy)."""
    from archsim.config.sweep import OBJECTIVES
    from archsim.dse.report import DEFAULT_OBJECTIVES, results_table

    chosen = list(objectives or frame.attrs.get("objectives") or DEFAULT_OBJECTIVES)
    unknown = [o for o in chosen if o not in OBJECTIVES]
    if unknown:
        raise ArchsimError(f"unknown objective {unknown[0]!r}; expected one of: {', '.join(OBJECTIVES)}")
    table = results_table(frame, chosen)
    table.attrs["objectives"] = chosen
    return table, chosen


def pareto(frame: "pd.DataFrame", objectives: Sequence[str] | None = None) -> "pd.DataFrame":
    """The non-dominated feasible rows of each workload over ``objectives`` (names of
    ``archsim.config.sweep.OBJECTIVES``: latency, energy, area, power, edp, throughput, ...;
    default: the sweep's), ordered by workload and the first objective.

        front = api.pareto(table, ["latency", "area"])
        front[["workload", "design_id", "design", "latency_s", "area_mm2"]]
    """
    from archsim.config.sweep import OBJECTIVES

    table, chosen = _table(frame, objectives)
    front = table[table["pareto"]]
    column = OBJECTIVES[chosen[0]][0]
    front = front.sort_values(["workload_file", "workload_id", column, "design_id"], kind="stable",
                              ascending=[True, True, OBJECTIVES[chosen[0]][1] == "min", True])
    return front.reset_index(drop=True)


def _stem(path: str | Path) -> Path:
    path = Path(path)
    return path.with_suffix("") if path.suffix.lower() in (".png", ".svg") else path


def plot_pareto(frame: "pd.DataFrame", x: str, y: str, path: str | Path, color: str | None = None) -> list[Path]:
    """Draw each workload's designs over objectives ``x`` and ``y`` (e.g. "latency", "energy")
    with its Pareto front: ``path`` .png and .svg (``path`` without suffix, or with one of
    them). ``color``: a column to colour the points by (e.g. "set.mxu.count"). Returns the
    files written.

        api.plot_pareto(table, "latency", "area", "figures/pareto_latency_area")
    """
    from archsim.dse import plots

    table, _ = _table(frame, [x, y])
    if color is not None:
        from archsim.dse.report import find_column

        if find_column(table, color) is None:
            raise ArchsimError(f"{color!r} is not a column of the results; available: {', '.join(table.columns)}")
        color = find_column(table, color)
    return list(plots.plot_pareto(table, x, y, _stem(path), color))


def plot_breakdowns(frame: "pd.DataFrame", path: str | Path) -> list[Path]:
    """Draw the energy by component and latency by unit of each workload's Pareto designs and
    baseline: ``path`` .png and .svg. Returns the files written.

        api.plot_breakdowns(table, "figures/breakdown")
    """
    from archsim.dse import plots

    table, _ = _table(frame)
    return list(plots.plot_breakdowns(table, _stem(path)))


def report(frame_or_dir: "pd.DataFrame | str | Path", path: str | Path, objectives: Sequence[str] | None = None,
           title: str | None = None) -> Path:
    """Write the sweep's interactive HTML report (``archsim.dse.html_report``) of a results
    table or a results folder to ``path``; returns it.

        api.report("sweep-results", "sweep-results/report.html")
        api.report(table, "report.html", title="CIM-TPU design space")
    """
    if importlib.util.find_spec("archsim.dse.html_report") is None:
        raise ArchsimError("the HTML report needs archsim.dse.html_report, which this archsim installation does not "
                           "have; the table, api.plot_pareto and api.plot_breakdowns work without it")
    from archsim.dse.html_report import write_html_report

    frame = frame_or_dir if hasattr(frame_or_dir, "columns") else load_results(frame_or_dir, objectives)
    table, chosen = _table(frame, objectives)
    extra = {"title": title} if title is not None else {}
    return Path(write_html_report(table, chosen, Path(path), **extra))

