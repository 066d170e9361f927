"""Cache schedules x hardware: the table, the rows as CSV and Parquet, and the plots of
``archsim compare-schedules``. A language model's decode schedules (``kind: llm``) are compared
by ``archsim.dse.compare_llm``, which these functions hand such a workload to."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import pandas as pd

from archsim.config.loader import Override, option_label
from archsim.config.schema import HardwareConfig
from archsim.errors import ConfigError
from archsim.hw.memory import Level
from archsim.ir.summary import summarize
from archsim.api import simulate
from archsim.workloads.base import Lowering, load_spec, load_spec_and_workload
from archsim.sim.result import RunResult
from archsim.system.result import SystemResult
from archsim.workloads.schedules import StepPlan, parse_schedule, phase_names


@dataclass(frozen=True)
class ScheduleRun:
    schedule: str
    plans: list[StepPlan]  # per network evaluation
    result: RunResult | SystemResult


def compare(hardware: Sequence[HardwareConfig], workload_file: Path, schedules: Sequence[str],
            workload_overrides: Sequence[Override] = ()) -> tuple[pd.DataFrame, list[ScheduleRun]]:
    rows, runs = [], []
    if _check_kind(workload_file, workload_overrides) == "llm":
        from archsim.dse import compare_llm
        from archsim.workloads.llm_schedules import CACHE_ONLY, is_cache_schedule

        if any(is_cache_schedule(str(s).partition(":")[0]) for s in schedules):
            raise ConfigError(f"{CACHE_ONLY}: llm", file=str(workload_file), key="kind")

        return compare_llm.compare(hardware, workload_file, schedules, workload_overrides)
    names = list(dict.fromkeys(["none", *schedules]))  # 'none' is every ratio's reference
    for text in names:
        parse_schedule(text)  # a clear error before any work
    for hw in hardware:
        reference = None
        for text in names:
            overrides = [*workload_overrides, Override(("schedule",), text, f"schedule={text}",
                                                       option_label(text, "--schedule"))]
            spec, workload = load_spec_and_workload(workload_file, overrides, Lowering.of(hw))
            summary = summarize(workload)
            result = simulate(hw, workload)
            runs.append(ScheduleRun(text, spec.plans(), result))
            row = {
                "schedule": text, "hardware": hw.name, "feasible": result.feasible, "reason": result.reason,
                "macs": summary.macs, "params": summary.params, "cache_bytes": summary.cache_bytes,
                "latency_s": result.latency_s if result.feasible else float("nan"),
                "energy_j": result.energy.total if result.feasible else float("nan"),
                "hbm_bytes": result.traffic.total(Level.HBM) if result.feasible else float("nan"),
            }
            if text == "none":
                reference = row
            row["macs_vs_none"] = row["macs"] / reference["macs"]
            row["speedup_vs_none"] = reference["latency_s"] / row["latency_s"]
            row["energy_vs_none"] = row["energy_j"] / reference["energy_j"]
            rows.append(row)
    return pd.DataFrame(rows), runs  # 'none' included: the reference of every ratio


def _check_kind(workload_file: Path, workload_overrides: Sequence[Override]) -> str:
    """Schedules are set through the workload's ``schedule`` key, which diffusion transformers
    (cache schedules) and language models (decode schedules, ``compare_llm``) have: say so for
    another kind, rather than report the key the comparison itself sets as unknown. Returns the kind."""
    spec = load_spec(workload_file, workload_overrides)
    if "schedule" not in type(spec).model_fields:
        raise ConfigError(f"schedules apply only to diffusion transformers (feature caching: kind: dit or "
                          f"diffusion_transformer) and language models (decoding: kind: llm); this workload is "
                          f"kind: {spec.kind}", file=str(workload_file), key="kind")
    return spec.kind


def default_schedules(workload_file: Path, workload_overrides: Sequence[Override] = ()) -> list[str]:
    """Every built-in schedule the workload's model runs (a diffusers family runs all but those
    its lowering refuses, ``archsim.workloads.dit_family_rules.SUPPORTED``)."""
    from archsim.workloads.schedules import schedule_names

    spec = load_spec(workload_file, workload_overrides)
    if spec.kind == "llm":
        from archsim.dse import compare_llm

        return compare_llm.default_schedules(workload_file, workload_overrides)
    names = schedule_names()
    if spec.kind != "diffusion_transformer":
        return names
    from archsim.workloads.dit_family_rules import SUPPORTED

    # the family's own list; when the file leaves the family to its model config, what every family runs
    runs = set(SUPPORTED[spec.family]) if spec.family else set.intersection(*(set(v) for v in SUPPORTED.values()))
    return [n for n in names if n in runs]


def table(frame: pd.DataFrame) -> str:
    if "tokens_per_round" in frame:  # a language model's decode schedules
        from archsim.dse import compare_llm

        return compare_llm.table(frame)
    view = pd.DataFrame({
        "schedule": frame["schedule"], "hardware": frame["hardware"],
        "latency": frame["latency_s"].map(lambda v: f"{v * 1e3:.4g} ms"),
        "speedup": frame["speedup_vs_none"].map(lambda v: f"{v:.3g}x"),
        "energy": frame["energy_j"].map(lambda v: f"{v:.4g} J"),
        "MACs": frame["macs"].map(lambda v: f"{v / 1e12:.4g} T"),
        "MACs vs none": frame["macs_vs_none"].map(lambda v: f"{v:.1%}"),
        "HBM traffic": frame["hbm_bytes"].map(lambda v: f"{v / 2**30:.4g} GiB"),
        "cache": frame["cache_bytes"].map(lambda v: f"{v / 2**20:.4g} MiB"),
        "params": frame["params"].map(lambda v: f"{v / 1e6:.4g} M"),
    })
    return view.to_string(index=False)


def plot(frame: pd.DataFrame, runs: list[ScheduleRun], stem: Path) -> list[Path]:
    """Per schedule, the generation's latency and energy on each chip and its work (bars); per
    chip, a heat map of schedules x steps: each step's time as a share of a full step of the
    schedule 'none' on that chip, the steps that run the whole network dotted (the others reuse
    a cache, for all the network or part of it). A language model's: ``compare_llm.plot``."""
    import numpy as np

    from archsim.dse import compare_llm

    if isinstance(runs, compare_llm.LLMRuns):
        return compare_llm.plot(frame, runs, stem)

    from archsim.dse.plots import _save, plt

    schedules = list(dict.fromkeys(frame["schedule"]))
    chips = list(dict.fromkeys(frame["hardware"]))
    steps = {(run.result.hw.name, run.schedule): _step_costs(run) for run in runs if run.result.feasible}
    maps = [hw for hw in chips if any((hw, s) in steps for s in schedules)]
    bars_h = 1.4 + 0.2 * len(schedules) * max(1, len(chips) / 2)
    map_h = 1.2 + 0.2 * len(schedules)
    fig = plt.figure(figsize=(12, bars_h + map_h * len(maps) + 0.5), layout="constrained")
    subs = fig.subfigures(1 + len(maps), 1, height_ratios=[bars_h] + [map_h] * len(maps), squeeze=False).ravel()
    axes = subs[0].subplots(1, 3, sharey=True)
    y = np.arange(len(schedules))
    width = 0.8 / len(chips)
    for i, hw in enumerate(chips):
        rows = frame[frame["hardware"] == hw].drop_duplicates("schedule").set_index("schedule").reindex(schedules)
        for ax, column, scale in ((axes[0], "latency_s", 1e3), (axes[1], "energy_j", 1.0)):
            ax.barh(y + (i - (len(chips) - 1) / 2) * width, rows[column].to_numpy(dtype=float) * scale, width,
                    color=f"C{i % 10}", label=hw)
    macs = frame.drop_duplicates("schedule").set_index("schedule")["macs"].reindex(schedules) / 1e12
    axes[2].barh(y, macs.to_numpy(dtype=float), 0.6, color="grey")
    axes[0].set_yticks(y, schedules)
    axes[0].invert_yaxis()
    for ax, title, label in ((axes[0], "generation latency", "latency (ms)"), (axes[1], "generation energy", "energy (J)"),
                             (axes[2], "work (the same on every chip)", "TMACs")):
        ax.set_title(title)
        ax.set_xlabel(label)
        ax.grid(axis="x", alpha=0.3)
    subs[0].legend(handles=axes[0].get_legend_handles_labels()[0], loc="outside upper center", ncol=min(len(chips), 6),
                   fontsize=8, frameon=False)
    for sub, hw in zip(subs[1:], maps):
        _step_map(sub, hw, schedules, steps)
    return _save(fig, stem)


def _step_costs(run: ScheduleRun) -> tuple[list[float], list[bool]]:
    """Each step's time (s) and whether it runs the whole network."""
    per_phase = run.result.latency_by("phase")
    repeats = {p.name: p.repeat for p in run.result.workload.phases}
    names = phase_names(run.plans)  # the workload's phase of each step
    return [per_phase[names[plan]] / repeats[names[plan]] for plan in run.plans], [_whole(p) for p in run.plans]


def _whole(plan: StepPlan) -> bool:
    """Whether a step runs the whole network: a full step, or a schedule's own 'full' kind
    ('teacache full', 'full (toca)'), not one that runs a few blocks in full ('toca full 0')."""
    return plan.kind == "full" or re.search(r"\bfull\b(?! \d)", plan.label) is not None


def _step_map(sub, hw: str, schedules: list[str], steps: dict) -> None:
    """Schedules x steps on one chip; a full step's time is 1 (the mean step of 'none')."""
    import numpy as np

    n = max(len(steps[(hw, s)][0]) for s in schedules if (hw, s) in steps)
    grid = np.full((len(schedules), n), np.nan)
    full_at = []
    for i, s in enumerate(schedules):
        if (hw, s) in steps:
            costs, full = steps[(hw, s)]
            grid[i, :len(costs)] = costs
            full_at += [(j, i) for j, f in enumerate(full) if f]
    reference = steps.get((hw, "none"))
    unit = float(np.mean(reference[0])) if reference and np.mean(reference[0]) > 0 else None
    values = grid / unit if unit else grid * 1e3
    ax = sub.subplots()
    image = ax.imshow(values, aspect="auto", interpolation="nearest", cmap="viridis",
                      vmin=0, vmax=max(1.0, float(np.nanmax(values))) if unit else None)
    if full_at:
        xs, ys = zip(*full_at)
        ax.scatter(xs, ys, s=max(1.0, min(9.0, 400 / n)), color="white", edgecolors="black", linewidths=0.3)
    ax.set_yticks(range(len(schedules)), schedules)
    ax.set_xlabel("step (network evaluation)")
    ax.set_title(f"per-step time on {hw} (dot: the step runs the whole network; none: it reuses a cache, for all "
                 "the network or part of it)", fontsize=9)
    sub.colorbar(image, ax=ax, label="step time / full step" if unit else "step time (ms)", shrink=0.9)
