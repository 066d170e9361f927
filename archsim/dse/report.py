"""Derived columns and tables of a sweep's results: design labels, ratios to the baseline,
Pareto membership, and the summary printed after a sweep."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from archsim import units
from archsim.dse.evaluate import FIELD_PREFIX
from archsim.dse.pareto import objective_columns, pareto_mask
from archsim.errors import UnitError


def swept_fields(frame: pd.DataFrame) -> list[str]:
    return [c for c in frame.columns if c.startswith(FIELD_PREFIX)]


def _short(value: str) -> str:
    try:
        v = json.loads(value)
    except (TypeError, ValueError):
        return str(value)
    if isinstance(v, list):
        return "x".join(str(x) for x in v)
    if isinstance(v, str):  # a quantity, as a range wrote it ("2000000000000.0 B/s"): "2 TB/s"
        try:
            exact, dim = units.parse_quantity_exact(v)
        except UnitError:
            return v
        return units.format_quantity(float(exact), dim)
    return str(v)


def _names(fields: list[str]) -> dict[str, str]:
    """Each swept field's label: its last key, or more of its path where that is ambiguous
    (cmem.capacity and vmem.capacity)."""
    paths = [f[len(FIELD_PREFIX):].split(".") for f in fields]
    names = {}
    for field, path in zip(fields, paths):
        depth = 1
        while depth < len(path) and sum(p[-depth:] == path[-depth:] for p in paths) > 1:
            depth += 1
        names[field] = ".".join(path[-depth:])
    return names


def enrich(frame: pd.DataFrame, objectives: list[str]) -> pd.DataFrame:
    """Add ``design`` (a label), ratios against the baseline and the ``pareto`` flag."""
    frame = frame.copy()
    fields = swept_fields(frame)
    names = _names(fields)

    def label(row) -> str:
        parts = [f"{names[f]}={_short(row[f])}" for f in fields if isinstance(row.get(f), str) and row.get(f) != ""]
        hardware = row.get("hardware")  # NaN for a point whose config did not validate
        return " ".join([hardware if isinstance(hardware, str) and hardware else str(row["config"])] + parts)

    frame["design"] = frame.apply(label, axis=1) if len(frame) else []
    frame["pareto"] = False
    if "status" not in frame or "latency_s" not in frame:
        return frame
    ok = frame["status"] == "ok"
    for _, group in frame[ok].groupby("workload_id", sort=True):  # the same workload, set: values included
        base = group[group["role"] == "baseline"]
        if len(base):
            b = base.iloc[0]
            frame.loc[group.index, "speedup_vs_baseline"] = b["latency_s"] / group["latency_s"]
            frame.loc[group.index, "energy_vs_baseline"] = group["energy_j"] / b["energy_j"]
            frame.loc[group.index, "mxu_energy_reduction"] = b["energy_mxu_j"] / group["energy_mxu_j"]
        columns, senses = objective_columns(objectives)
        frame.loc[group.index, "pareto"] = pareto_mask(group[columns].to_numpy(), senses)
    return frame


def summary_table(frame: pd.DataFrame, objectives: list[str]) -> str:
    """Per workload: every feasible design by latency, with the Pareto designs marked."""
    lines = []
    ok = frame[frame["status"] == "ok"] if "status" in frame else frame.iloc[0:0]
    for _, group in ok.groupby("workload_id", sort=True):
        workload = group["workload"].iloc[0] + (" (" + group["workload_file"].iloc[0] + ")" if ok["workload"].eq(group["workload"].iloc[0]).sum() > len(group) else "")
        group = group.sort_values(["latency_s", "design"], kind="stable")
        view = pd.DataFrame({
            "design": group["design"],
            "latency": group["latency_s"].map(lambda v: f"{v * 1e3:.4g} ms"),
            "speedup": group.get("speedup_vs_baseline", pd.Series(np.nan, index=group.index)).map(
                lambda v: "" if pd.isna(v) else f"{v:.3g}x"),
            "energy": group["energy_j"].map(lambda v: f"{v * 1e3:.4g} mJ"),
            "MXU energy red.": group.get("mxu_energy_reduction", pd.Series(np.nan, index=group.index)).map(
                lambda v: "" if pd.isna(v) else f"{v:.3g}x"),
            "area": group["area_mm2"].map(lambda v: f"{v:.4g} mm^2"),
            "pareto": group["pareto"].map(lambda v: "*" if v else ""),
        })
        lines.append(f"{workload}  (Pareto over {', '.join(objectives)}: *)")
        lines.append(view.to_string(index=False))
        lines.append("")
    bad = frame[frame["status"] != "ok"] if "status" in frame else frame.iloc[0:0]
    for _, row in bad.iterrows():
        workload = row.get("workload") if isinstance(row.get("workload"), str) else row["workload_file"]
        lines.append(f"{row['status']}: {row.get('design', row['config'])} on {workload}: {row['reason']}")
    return "\n".join(lines).rstrip()
