"""The summary printed after a sweep: per workload, its best designs, in a table that fits
the terminal."""

from __future__ import annotations

import textwrap

import numpy as np
import pandas as pd

from archsim.dse.pareto import objective_columns
from archsim.dse.report import _names, _plain, _shown, mark_pareto, results_table, swept_fields

WIDTH = 120  # the summary's width, in characters
ROWS = 15  # designs shown per workload in the summary


_PREFIXES = ((1.0, ""), (1e-3, "m"), (1e-6, "u"), (1e-9, "n"), (1e-12, "p"))
_SHOW = {"latency_s": ("latency", "s"), "energy_j": ("energy", "J"), "area_mm2": ("area", "mm^2"),
         "power_w": ("power", "W"), "edp_js": ("EDP", "J s"), "throughput_per_s": ("throughput", "1/s"),
         "tops_per_w": ("TOPS/W", ""), "utilization": ("utilization", "%"), "ttft_s": ("TTFT", "s"),
         "tpot_s": ("TPOT", "s"), "tokens_per_s": ("tokens/s", ""), "tokens_per_j": ("tokens/J", "")}


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _number(v: float) -> str:
    return "" if pd.isna(v) else (f"{v:.4g}" if abs(v) < 1e4 else f"{v:.0f}")


def _figure(column: str, values: pd.Series) -> tuple[str, list[str]]:
    """A column's header with its unit (scaled to the values: ms, mJ) and its cells."""
    name, unit = _SHOW.get(column, (column, ""))
    values = pd.to_numeric(values, errors="coerce").astype(float)
    scale = 100.0 if unit == "%" else 1.0
    if unit in ("s", "J", "W"):
        typical = values.abs().median()
        factor, prefix = next(((f, p) for f, p in _PREFIXES if typical >= f), _PREFIXES[-1]) \
            if typical > 0 else _PREFIXES[0]
        scale, unit = 1 / factor, prefix + unit
    return (f"{name} [{unit}]" if unit else name), [_number(v * scale) for v in values]


def _rows(group: pd.DataFrame, objectives: list[str], limit: int) -> tuple[pd.DataFrame, int]:
    """The rows shown of a workload: the front first, each part by the first objective; at most
    ``limit``, and the baseline; and how many are left out."""
    column, sense = objective_columns(objectives[:1])[0][0], objective_columns(objectives[:1])[1][0]
    key = pd.to_numeric(group.get(column), errors="coerce") * (-1 if sense == "max" else 1)
    number = group["design_id"].str.slice(1).astype(int)
    order = np.lexsort((number.to_numpy(), key.fillna(np.inf).to_numpy(), ~group["pareto"].to_numpy(dtype=bool)))
    rows = group.iloc[order]
    shown = rows.head(limit)
    base = rows.iloc[limit:][rows.iloc[limit:]["role"] == "baseline"].head(1)
    return pd.concat([shown, base]), len(rows) - len(shown) - len(base)


def _table(rows: pd.DataFrame, columns: list[tuple[str, list[str]]]) -> list[str]:
    widths = [max(len(head), *(len(c) for c in cells)) for head, cells in columns]
    left = [i < 1 or not any(c and (c[0].isdigit() or c[0] in "-.") for c in cells)
            for i, (_, cells) in enumerate(columns)]
    lines = ["  ".join(h.ljust(w) if lft else h.rjust(w) for (h, _), w, lft in zip(columns, widths, left)).rstrip()]
    for i in range(len(rows)):
        lines.append("  ".join(cells[i].ljust(w) if lft else cells[i].rjust(w)
                               for (_, cells), w, lft in zip(columns, widths, left)).rstrip())
    return lines


def _workload_tables(ok: pd.DataFrame, objectives: list[str], fields: list[str], inline: bool,
                     limit: int, source: str) -> tuple[list[str], set[str]]:
    lines, shown_ids = [], set()
    names = _names(fields)
    for _, group in sorted(ok.groupby("workload_id", sort=True), key=lambda g: (str(g[1]["workload"].iloc[0]), g[0])):
        name = group["workload"].iloc[0]
        if (ok["workload"] == name).sum() > len(group):  # the same workload with other set: values
            name += f" ({group['workload_file'].iloc[0]})"
        rows, hidden = _rows(group, objectives, limit)
        shown_ids |= set(rows["design_id"])
        columns = [("design", rows["design_id"].tolist())]
        if inline:
            hardware = rows.get("hardware", rows["config"])
            columns.append(("hardware", [h if isinstance(h, str) else "" for h in hardware]))
            columns += [(names[f], ["" if _plain(v) is None else _shown(f, _plain(v)) for v in rows[f]])
                        for f in fields]
        columns += [_figure(c, rows[c]) for c in objective_columns(objectives)[0] if c in rows.columns]
        if rows["speedup_vs_baseline"].notna().any():
            columns.append(("speedup", ["" if pd.isna(v) else f"{v:.3g}x" for v in rows["speedup_vs_baseline"]]))
        columns.append(("pareto", ["*" if p else "" for p in rows["pareto"]]))
        lines.append(f"{name}: {_count(len(group), 'design')}, {int(group['pareto'].sum())} on the Pareto front "
                     f"over {', '.join(objectives)} (*)")
        lines += _table(rows, columns)
        if hidden:
            lines.append(f"{_count(hidden, 'more design')}: see {source}")
        lines.append("")
    return lines, shown_ids


def summary_table(frame: pd.DataFrame, objectives: list[str], width: int = WIDTH, limit: int = ROWS,
                  source: str = "results.parquet") -> str:
    """Per workload, the designs on the front then the others, by the first objective (at most
    ``limit`` and the baseline): design id, hardware and swept values (in a key table below
    when they would not fit in ``width`` characters), the objectives, the speed-up and a
    star for the front. Then the points that did not run, in short."""
    frame = results_table(frame, objectives) if "design_id" not in frame.columns else mark_pareto(frame, objectives)
    has_status = "status" in frame.columns
    ok = frame[frame["status"] == "ok"] if has_status else frame.iloc[0:0]
    fields = swept_fields(frame)
    lines, shown = _workload_tables(ok, objectives, fields, True, limit, source)
    if max(map(len, lines), default=0) > width:
        lines, shown = _workload_tables(ok, objectives, fields, False, limit, source)
        designs = frame[frame["design_id"].isin(shown)].drop_duplicates("design_id")
        designs = designs.iloc[np.argsort(designs["design_id"].str.slice(1).astype(int).to_numpy(), kind="stable")]
        lines.append("designs:")
        lines += [f"  {d}  {label}" for d, label in zip(designs["design_id"], designs["design"])]
        lines.append("")
    bad = frame[frame["status"] != "ok"] if has_status else frame.iloc[0:0]
    for _, row in bad.head(10).iterrows():
        workload = row.get("workload") if isinstance(row.get("workload"), str) else row["workload_file"]
        reason = row["reason"].strip().splitlines() if isinstance(row["reason"], str) else []
        reason = reason[0] if reason else ""
        lines += textwrap.wrap(f"{row['status']}: {row['design_id']} {row['design']} on {workload}: {reason}",
                               width, subsequent_indent="    ", break_on_hyphens=False)
    if len(bad) > 10:
        lines.append(f"{_count(len(bad) - 10, 'more point')} did not run: see status and reason in {source}")
    return "\n".join(lines).rstrip()
