"""Cache schedules x hardware: the table, the rows as CSV and Parquet, and the plots of
``archsim compare-schedules``."""

from __future__ import annotations

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
    _check_kind(workload_file, workload_overrides)
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


def _check_kind(workload_file: Path, workload_overrides: Sequence[Override]) -> None:
    """Schedules are set through the workload's ``schedule`` key, which only diffusion
    transformers have: say so, rather than report the key the comparison itself sets as unknown."""
    spec = load_spec(workload_file, workload_overrides)
    if "schedule" not in type(spec).model_fields:
        raise ConfigError(f"feature-caching schedules apply only to diffusion transformers (kind: dit or "
                          f"diffusion_transformer); this workload is kind: {spec.kind}", file=str(workload_file),
                          key="kind")


def default_schedules(workload_file: Path, workload_overrides: Sequence[Override] = ()) -> list[str]:
    """Every built-in schedule the workload's model runs (a diffusers family runs all but those
    its lowering refuses, ``archsim.workloads.dit_family_rules.SUPPORTED``)."""
    from archsim.workloads.schedules import schedule_names

    spec = load_spec(workload_file, workload_overrides)
    names = schedule_names()
    if spec.kind != "diffusion_transformer":
        return names
    from archsim.workloads.dit_family_rules import SUPPORTED

    # the family's own list; when the file leaves the family to its model config, what every family runs
    runs = set(SUPPORTED[spec.family]) if spec.family else set.intersection(*(set(v) for v in SUPPORTED.values()))
    return [n for n in names if n in runs]


def table(frame: pd.DataFrame) -> str:
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
    from archsim.dse.plots import _save, plt

    fig, (ax_l, ax_m, ax_t) = plt.subplots(1, 3, figsize=(14, 3.8), layout="constrained")
    pivot = frame.pivot_table(index="schedule", columns="hardware", values="latency_s", sort=False) * 1e3
    pivot.plot.bar(ax=ax_l, rot=30)
    ax_l.set_ylabel("latency (ms)")
    ax_l.set_title("generation latency")
    macs = frame.drop_duplicates("schedule").set_index("schedule")["macs"] / 1e12
    macs.plot.bar(ax=ax_m, rot=30, color="grey")
    ax_m.set_ylabel("TMACs")
    ax_m.set_title("work")
    first_hw = frame["hardware"].iloc[0]
    for run in runs:
        if run.result.hw.name != first_hw or not run.result.feasible:
            continue
        per_phase = run.result.latency_by("phase")
        repeats = {p.name: p.repeat for p in run.result.workload.phases}
        names = phase_names(run.plans)  # the workload's phase of each step
        costs = [per_phase[names[plan]] / repeats[names[plan]] * 1e3 for plan in run.plans]
        ax_t.step(range(len(costs)), costs, where="mid", label=run.schedule)
    ax_t.set_xlabel("step")
    ax_t.set_ylabel("step cost (ms)")
    ax_t.set_title(f"per-step cost on {first_hw}")
    ax_t.legend(fontsize=7)
    return _save(fig, stem)
