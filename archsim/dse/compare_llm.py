"""``archsim compare-schedules`` for language models (``kind: llm``): decode schedules x chips.

Per schedule and chip: tokens per second, TPOT (the decode time over the decode tokens per
sequence: a speculative round yields several tokens, so this is the time per token a user sees),
energy per token, the expected tokens per verification and its distribution, and the speed-up,
energy and MACs against ``vanilla`` on the same chip. Each speculative schedule is also run at
constant acceptance rates from 0 to 1 (``ACCEPTANCE_GRID``), every other setting as given: the
speed-up against acceptance per chip, whose crossings between chips (and with 1, the break-even
rate) the plot ``speedup_vs_acceptance`` shows. The workload file's own schedule is run as the file
says (its draft model and traces relative to it); its sweep changes ``schedule.acceptance`` only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from archsim.api import simulate
from archsim.config.loader import Override, load_layered, option_label, validate_layered
from archsim.config.schema import HardwareConfig
from archsim.hw.memory import Level
from archsim.ir.summary import summarize
from archsim.sim.serving import serving
from archsim.workloads.base import Lowering, PathResolver, load_spec, lower
from archsim.workloads.llm import LLMWorkload
from archsim.workloads.llm_schedules import parse_llm_schedule, schedule_params

# The constant acceptance rates each speculative schedule is swept over (a plotting grid).
ACCEPTANCE_GRID = tuple(np.round(np.linspace(0.0, 1.0, 11), 2))


@dataclass(frozen=True)
class LLMRuns:
    """What the plots need besides the table: the speed-up against acceptance per schedule and chip."""

    curves: pd.DataFrame  # schedule, hardware, acceptance, tokens_per_round, speedup_vs_vanilla, ...


@dataclass(frozen=True)
class OwnSchedule:
    """The workload file's own schedule, run as the file says: no ``--schedule`` override, so the
    paths in it (a draft model, a trace) stay relative to the file."""

    value: str | dict


def default_schedules(workload_file: Path, workload_overrides: Sequence[Override] = ()) -> list:
    """The workload's own schedule, Medusa, EAGLE, and LayerSkip and FIRP where the model is
    deep enough for their default cuts (the draft and ssd schedules need a draft model or a skip
    set: give them)."""
    from archsim.workloads.lm import resolve_model
    from archsim.workloads.base import PathResolver

    spec = load_spec(workload_file, workload_overrides)
    layers = resolve_model(spec.model, PathResolver(default=Path(workload_file).parent)).num_hidden_layers
    own = ([] if spec.schedule is None or parse_llm_schedule(spec.schedule, str(workload_file)).NAME == "vanilla"
           else [OwnSchedule(spec.schedule)])
    return own + ["medusa", "eagle"] + [name for name, cut in (("self_spec", 8), ("firp", 16)) if layers > cut]


def _label(value) -> str:
    """A schedule's name in the rows: its text, the workload file's own by its name, a mapping by its name."""
    if isinstance(value, str):
        return value
    return f"{schedule_params(value.value)[0]} (workload file)" if isinstance(value, OwnSchedule) else \
        f"{value.get('name')} (a mapping)"


def run_schedule(hw: HardwareConfig, workload_file: Path, schedule: str | dict | OwnSchedule,
                 overrides: Sequence[Override], acceptance: float | None = None):
    """The spec, workload and result of ``schedule``: a ``--schedule`` text or mapping (set over
    the file's, its paths relative to the current folder), or the file's own (run as the file
    says), at a constant ``acceptance`` rate if given (every other setting as given)."""
    return _run(hw, workload_file, schedule, overrides, acceptance)[:3]


def _run(hw: HardwareConfig, workload_file: Path, schedule: str | dict | OwnSchedule,
         overrides: Sequence[Override], acceptance: float | None = None):
    """``run_schedule``'s spec, workload and result, and the path resolver that finds the files
    the schedule names (a trace: ``row_of`` reads it)."""
    extra = []
    if not isinstance(schedule, OwnSchedule):
        value = schedule
        if acceptance is not None:
            name, params = schedule_params(schedule)
            value = {"name": name, **params, "acceptance": acceptance}
        text = schedule if isinstance(schedule, str) else f"{schedule.get('name')} (a mapping)"
        extra.append(Override(("schedule",), value, f"schedule={text}", option_label(text, "--schedule")))
    layered = load_layered(workload_file, [*overrides, *extra])
    spec = validate_layered(LLMWorkload, layered, str(workload_file))
    if isinstance(schedule, OwnSchedule) and acceptance is not None:
        # only schedule.acceptance changes: the schedule stays the file's, its paths relative to it
        name, params = schedule_params(spec.schedule, str(workload_file))
        spec = spec.model_copy(update={"schedule": {"name": name, **params, "acceptance": acceptance}})
    paths = PathResolver(layered)
    workload = lower(spec, paths, Lowering.of(hw), str(workload_file))
    return spec, workload, simulate(hw, workload), paths


def row_of(label: str, hw: HardwareConfig, spec, workload, result, paths=None) -> dict:
    schedule = spec.decode_schedule()
    tree = schedule.token_tree()
    acceptance = schedule.acceptance_model(paths)
    distribution = acceptance.probabilities(tree.depth) if tree is not None and acceptance is not None else np.ones(1)
    feasible = result.feasible
    tokens = workload.generation.tokens
    row = {
        "schedule": label, "hardware": hw.name, "feasible": feasible, "reason": result.reason,
        "tokens_per_round": schedule.tokens_per_round(paths),
        "accepted_distribution": "/".join(f"{p:.3f}" for p in distribution),
        "macs": workload.macs, "params": summarize(workload).params,
        "latency_s": result.latency_s if feasible else float("nan"),
        "energy_j": result.energy.total if feasible else float("nan"),
        "hbm_bytes": result.traffic.total(Level.HBM) if feasible else float("nan"),
    }
    if feasible:
        figures = serving(result)  # the run's own serving figures: one definition of TPOT
        row["tokens_per_s"] = tokens / result.latency_s
        row["tpot_s"] = figures.tpot_s if figures is not None and figures.tpot_s is not None else float("nan")
        row["energy_per_token_j"] = result.energy.total / tokens
    else:
        row.update(tokens_per_s=float("nan"), tpot_s=float("nan"), energy_per_token_j=float("nan"))
    return row


def compare(hardware: Sequence[HardwareConfig], workload_file: Path, schedules: Sequence[str | OwnSchedule],
            workload_overrides: Sequence[Override] = ()) -> tuple[pd.DataFrame, LLMRuns]:
    values = {_label(v): v for v in ["vanilla", *schedules]}  # 'vanilla' is every ratio's reference
    parsed = {text: parse_llm_schedule(value.value, str(workload_file)) if isinstance(value, OwnSchedule)
              else parse_llm_schedule(value) for text, value in values.items()}  # a clear error before any work
    rows, curve_rows = [], []
    for hw in hardware:
        reference = None
        for text, value in values.items():
            spec, workload, result, paths = _run(hw, workload_file, value, workload_overrides)
            row = row_of(text, hw, spec, workload, result, paths)
            if text == "vanilla":
                reference = row
            for column, key in (("speedup_vs_vanilla", "latency_s"), ("energy_vs_vanilla", "energy_j"),
                                ("macs_vs_vanilla", "macs")):
                ratio = (reference[key] / row[key]) if column == "speedup_vs_vanilla" else (row[key] / reference[key])
                row[column] = ratio
            rows.append(row)
            schedule = parsed[text]
            if not schedule.SPECULATIVE:
                continue
            for a in ACCEPTANCE_GRID:
                spec_a, workload_a, result_a, paths_a = _run(hw, workload_file, value, workload_overrides,
                                                                     float(a))
                point = row_of(text, hw, spec_a, workload_a, result_a, paths_a)
                curve_rows.append({"schedule": text, "hardware": hw.name, "acceptance": float(a),
                                   "tokens_per_round": point["tokens_per_round"],
                                   "latency_s": point["latency_s"], "tpot_s": point["tpot_s"],
                                   "energy_per_token_j": point["energy_per_token_j"],
                                   "speedup_vs_vanilla": reference["latency_s"] / point["latency_s"],
                                   "energy_vs_vanilla": point["energy_j"] / reference["energy_j"]})
    columns = ["schedule", "hardware", "acceptance", "tokens_per_round", "latency_s", "tpot_s", "energy_per_token_j",
               "speedup_vs_vanilla", "energy_vs_vanilla"]
    return pd.DataFrame(rows), LLMRuns(pd.DataFrame(curve_rows, columns=columns))


def break_even(curve: pd.DataFrame) -> float:
    """The acceptance rate where the speed-up reaches 1 (linear between grid points), or NaN
    when it never does (or is above 1 already at 0)."""
    a, s = curve["acceptance"].to_numpy(dtype=float), curve["speedup_vs_vanilla"].to_numpy(dtype=float)
    above = np.nonzero(s >= 1.0)[0]
    if not above.size or above[0] == 0:
        return float("nan")
    i = above[0]
    return float(a[i - 1] + (1.0 - s[i - 1]) * (a[i] - a[i - 1]) / (s[i] - s[i - 1]))


def table(frame: pd.DataFrame) -> str:
    view = pd.DataFrame({
        "schedule": frame["schedule"], "hardware": frame["hardware"],
        "tokens/round": frame["tokens_per_round"].map(lambda v: f"{v:.3g}"),
        "tokens/s": frame["tokens_per_s"].map(lambda v: f"{v:.4g}"),
        "TPOT": frame["tpot_s"].map(lambda v: f"{v * 1e3:.4g} ms"),
        "energy/token": frame["energy_per_token_j"].map(lambda v: f"{v * 1e3:.4g} mJ"),
        "speedup": frame["speedup_vs_vanilla"].map(lambda v: f"{v:.3g}x"),
        "energy vs vanilla": frame["energy_vs_vanilla"].map(lambda v: f"{v:.1%}"),
        "MACs vs vanilla": frame["macs_vs_vanilla"].map(lambda v: f"{v:.1%}"),
        "HBM traffic": frame["hbm_bytes"].map(lambda v: f"{v / 2**30:.4g} GiB"),
    })
    return view.to_string(index=False)


def plot(frame: pd.DataFrame, runs: LLMRuns, stem: Path) -> list[Path]:
    """Per speculative schedule, the speed-up over vanilla against the acceptance rate, a line
    per chip (where they cross, the chips trade places), with 1 marked and each chip's
    break-even rate; and beside them tokens/s and energy per token per schedule and chip
    (bars). The curves' rows are written beside the plots (``speedup_vs_acceptance.csv``)."""
    from archsim.dse.plots import _save, plt
    from archsim.fileio import atomic_write

    curves = runs.curves
    out: list[Path] = []
    csv_path = stem.parent / "speedup_vs_acceptance.csv"
    stem.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(csv_path, lambda tmp: curves.to_csv(tmp, index=False))
    out.append(csv_path)
    schedules = list(dict.fromkeys(curves["schedule"])) if len(curves) else []
    chips = list(dict.fromkeys(frame["hardware"]))
    if schedules:
        fig, axes = plt.subplots(1, len(schedules), figsize=(4.2 * len(schedules), 3.8), squeeze=False,
                                 layout="constrained")
        for ax, schedule in zip(axes[0], schedules):
            for i, hw in enumerate(chips):
                curve = curves[(curves["schedule"] == schedule) & (curves["hardware"] == hw)]
                even = break_even(curve)
                label = hw if np.isnan(even) else f"{hw} (break-even a={even:.2f})"
                ax.plot(curve["acceptance"], curve["speedup_vs_vanilla"], marker="o", ms=3, color=f"C{i % 10}",
                        label=label)
            ax.axhline(1.0, color="grey", lw=0.8, ls="--")
            ax.set_title(schedule, fontsize=9)
            ax.set_xlabel("acceptance rate (constant)")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
        axes[0][0].set_ylabel("speed-up over vanilla decoding")
        out += _save(fig, stem.parent / "speedup_vs_acceptance")
    fig, axes = plt.subplots(1, 2, figsize=(11, 1.4 + 0.35 * len(frame)), layout="constrained", sharey=True)
    names = list(dict.fromkeys(frame["schedule"]))
    y = np.arange(len(names))
    width = 0.8 / max(1, len(chips))
    for i, hw in enumerate(chips):
        rows = frame[frame["hardware"] == hw].drop_duplicates("schedule").set_index("schedule").reindex(names)
        for ax, column, scale in ((axes[0], "tokens_per_s", 1.0), (axes[1], "energy_per_token_j", 1e3)):
            ax.barh(y + (i - (len(chips) - 1) / 2) * width, rows[column].to_numpy(dtype=float) * scale, width,
                    color=f"C{i % 10}", label=hw)
    axes[0].set_yticks(y, names)
    axes[0].invert_yaxis()
    for ax, title in ((axes[0], "tokens/s"), (axes[1], "energy per token (mJ)")):
        ax.set_title(title)
        ax.grid(axis="x", alpha=0.3)
    axes[0].legend(fontsize=7)
    return out + _save(fig, stem)
