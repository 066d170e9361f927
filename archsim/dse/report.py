"""A sweep's typed results table, and the summary printed after a sweep.

``results_table`` is the one function that makes the table every reader sees: it writes
``results.parquet`` (``ResultStore.consolidate``), is applied where results are loaded for
reports (``load_results``), to ``results.csv`` and to the Python API's frames. It is
idempotent: applied to a table it made (or to one written before it existed, whose swept
values are JSON text) it gives the same table. The results parts keep their raw rows.

Columns, in this order (a column no row has is left out, but for the derived ones):

- ``key``, ``design_id`` (D1, D2, ...: one per design, the baseline first, then by config
  file and swept values, in natural order (8x8 before 16x8); the same design has the same
  id on every workload, whatever its points' status), ``design``
  (its hardware name and swept values, e.g. ``CIM-TPU grid=16x8 count=4``), ``role``
  (point or baseline), ``config``, ``hardware``, ``workload``, ``workload_file``,
  ``workload_id``, ``status`` (ok, infeasible, invalid, error), ``reason``, ``pareto``
  (bool: on its workload's front over the sweep's objectives);
- the swept values, one column per swept key path: ``set.<path>`` holding numbers (an
  integer column for integers), text, or, for a quantity, a float in SI units with the
  unit in the name: ``set.hbm.bandwidth [B/s]``, ``set.vmem.capacity [B]``,
  ``set.clock.frequency [Hz]``; a list is text, its items joined by x (``set.mxu.cim.grid``
  ``[16, 8]``: ``16x8``); a row without the key (the baseline) holds a missing value;
- ``latency_s``, ``energy_j``, ``area_mm2``, then the ratios to the baseline on the same
  workload: ``speedup_vs_baseline`` (baseline latency / latency), ``energy_vs_baseline``
  (energy / baseline energy) and ``mxu_energy_reduction`` (baseline MXU energy / MXU
  energy), missing without a baseline;
- every other figure of a run by name, each with its unit in the name (``_s``, ``_j``,
  ``_w``, ``_mm2``, ``_bytes``, ``_per_s``; counts and fractions without one);
- ``code``, ``config_hash``, ``traceback`` (an error's).

Rows are ordered by workload file, workload and design id.
"""

from __future__ import annotations

import json
import math
import re
import textwrap
from functools import lru_cache

import numpy as np
import pandas as pd

from archsim import units
from archsim.dse.evaluate import FIELD_PREFIX
from archsim.dse.pareto import objective_columns, pareto_mask
from archsim.errors import UnitError

DEFAULT_OBJECTIVES = ("latency", "energy")
RATIOS = ("speedup_vs_baseline", "energy_vs_baseline", "mxu_energy_reduction")
LEAD = ("key", "design_id", "design", "role", "config", "hardware", "workload", "workload_file", "workload_id",
        "status", "reason", "pareto")
FIGURES = ("latency_s", "energy_j", "area_mm2", *RATIOS)
TAIL = ("code", "config_hash", "traceback")
WIDTH = 120  # the summary's width, in characters
ROWS = 15  # designs shown per workload in the summary
_UNIT = re.compile(r"^(?P<field>.+) \[(?P<unit>[^\[\]]+)\]$")
_MISSING = object()


def swept_fields(frame: pd.DataFrame) -> list[str]:
    return [c for c in frame.columns if c.startswith(FIELD_PREFIX)]


def field_path(column: str) -> str:
    """The key path of a swept value's column: 'set.hbm.bandwidth [B/s]' -> 'hbm.bandwidth'."""
    match = _UNIT.match(column)
    return (match["field"] if match else column)[len(FIELD_PREFIX):]


def find_column(frame: pd.DataFrame, name: str) -> str | None:
    """``name`` if it is a column, else the typed column of that swept key written without its
    unit ('set.hbm.bandwidth' -> 'set.hbm.bandwidth [B/s]'); None if neither."""
    if name in frame.columns:
        return name
    return next((c for c in swept_fields(frame) if _UNIT.match(c) and _UNIT.match(c)["field"] == name), None)


@lru_cache(maxsize=64)
def _dim(unit: str) -> units.Dim:
    return units.parse_quantity_exact("1 " + unit)[1]


def _decode(value):
    """A swept value as the sweep gave it: JSON text in a results part, as is in a typed table."""
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return _MISSING
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value  # already text in a typed table ("16x8")
    return value.item() if isinstance(value, np.generic) else value


def _short(value) -> str:
    """A swept value as shown: JSON text as a results part holds it ("[16, 8]": 16x8; a quantity
    as a range wrote it, "2000000000000.0 B/s": 2 TB/s), or a typed value as is."""
    v = _decode(value)
    if v is _MISSING:
        return ""
    if isinstance(v, str):
        try:
            exact, dim = units.parse_quantity_exact(v)
        except UnitError:
            return v
        return units.format_quantity(float(exact), dim)
    return _text(v) if isinstance(v, list) else (f"{v:g}" if isinstance(v, float) else str(v))


def swept_values(row, fields: list[str] | None = None) -> list[tuple[str, str]]:
    """A row's swept values as (short name, value as shown), e.g. ('bandwidth', '2 TB/s'); a
    field the row has no value of is left out."""
    fields = swept_fields(pd.DataFrame(columns=list(row.index))) if fields is None else fields
    names = _names(fields)
    return [(names[f], _shown(f, _plain(row[f]))) for f in fields if _plain(row[f]) is not None]


def _text(value) -> str:
    if isinstance(value, list):
        return "x".join(_text(v) for v in value)
    return value if isinstance(value, str) else json.dumps(value)


def _quantities(values: list) -> tuple[list[float], units.Dim] | None:
    """Strings with units (numbers with none) of one dimension, in SI units; None otherwise."""
    numbers, dims = [], set()
    for v in values:
        if isinstance(v, str):
            try:
                exact, dim = units.parse_quantity_exact(v)
                numbers.append(units.to_float(exact, v))
            except UnitError:
                return None
            dims.add(dim)
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            numbers.append(float(v))
        else:
            return None
    return (numbers, dims.pop()) if len(dims) == 1 else None


def _typed_column(name: str, column: pd.Series) -> tuple[str, pd.Series]:
    """A swept value's column, typed (see the module's docstring); its name gains the unit of a
    quantity."""
    if _UNIT.match(name) or not (pd.api.types.is_object_dtype(column) or pd.api.types.is_string_dtype(column)):
        return name, column  # typed already
    decoded = _each(_decode, column)
    rows = [i for i, v in enumerate(decoded) if v is not _MISSING]
    present = [decoded[i] for i in rows]
    if not present:
        return name, column

    def filled(values: list, dtype, empty) -> pd.Series:
        out = [empty] * len(column)
        for i, v in zip(rows, values):
            out[i] = v
        series = pd.Series(out, index=column.index, dtype=dtype)
        # text keeps the column's own text type (pandas 3's str, as Parquet reads it back)
        return series.astype(column.dtype) if dtype is object and pd.api.types.is_string_dtype(column) else series

    if all(isinstance(v, bool) for v in present):
        return name, filled(present, "boolean", pd.NA)
    if all(isinstance(v, int) and not isinstance(v, bool) for v in present):
        return name, filled(present, "Int64", pd.NA)
    quantities = _quantities(present)
    if quantities is not None:
        numbers, dim = quantities
        if dim != units.DIMENSIONLESS:
            try:
                name = f"{name} [{units.si_unit(dim)}]"
            except UnitError:  # a dimension without a unit string: kept as text
                return name, filled([_text(v) for v in present], object, None)
        return name, filled(numbers, "float64", np.nan)
    return name, filled([_text(v) for v in present], object, None)


def typed(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame with its swept values typed (numbers, SI floats with the unit in the name,
    text); other columns untouched."""
    renamed, columns = {}, {}
    for c in swept_fields(frame):
        new, column = _typed_column(c, frame[c])
        if new != c or column is not frame[c]:
            renamed[c], columns[new] = new, column
    if not renamed:
        return frame
    frame = frame.rename(columns=renamed)
    for name, column in columns.items():
        frame[name] = column
    return frame


def _names(fields: list[str]) -> dict[str, str]:
    """Each swept field's label: its last key, or more of its path where that is ambiguous
    (cmem.capacity and vmem.capacity)."""
    paths = [field_path(f).split(".") for f in fields]
    names = {}
    for field, path in zip(fields, paths):
        depth = 1
        while depth < len(path) and sum(p[-depth:] == path[-depth:] for p in paths) > 1:
            depth += 1
        names[field] = ".".join(path[-depth:])
    return names


def _plain(value):
    """A cell as a Python value; None when missing."""
    if value is None or value is pd.NA or (not isinstance(value, str) and pd.isna(value)):
        return None
    return value.item() if isinstance(value, np.generic) else value


def _shown(column: str, value) -> str:
    match = _UNIT.match(column)
    if match:
        text = units.format_quantity(float(value), _dim(match["unit"]))
        return f"{text} {match['unit']}" if text == f"{float(value):.4g}" else text  # no display unit: SI
    if isinstance(value, float):
        return f"{value:g}"
    return _short(value) if isinstance(value, str) else str(value)


def _order(value) -> tuple:
    """A sort key for any cell: missing first, numbers by value, text in natural order (8x8
    before 16x8)."""
    if value is None:
        return (0, 0.0, ())
    if isinstance(value, (bool, int, float)):
        return (1, float(value), ())
    parts = re.split(r"(\d+)", str(value))
    return (2, 0.0, tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in parts))


def _each(fn, values) -> list:
    """``[fn(v) for v in values]``, ``fn`` called once per distinct value (a sweep's columns
    repeat a few values over up to 10^6 rows); ``fn`` must be pure. Values are told apart by
    type too (1 and 1.0 and True print differently); unhashable ones are not shared."""
    seen: dict = {}
    out = []
    for v in values:
        try:
            key = (type(v), v)
            hit = seen.get(key, seen)
        except TypeError:  # a list: computed each time
            out.append(fn(v))
            continue
        if hit is seen:
            hit = seen[key] = fn(v)
        out.append(hit)
    return out


def label(frame: pd.DataFrame) -> pd.DataFrame:
    """Add ``design`` and ``design_id`` where the frame has none (a subset keeps its ids)."""
    if "design" in frame.columns and "design_id" in frame.columns:
        return frame
    frame = frame.copy()
    fields = swept_fields(frame)
    names = _names(fields)
    values = [[_plain(v) for v in frame[f]] for f in fields]
    configs = [str(_plain(c)) for c in frame["config"]]
    hardware = [_plain(h) for h in frame.get("hardware", pd.Series(None, index=frame.index))]
    # each column's cells as shown ("name=value"; None when missing), formatted once per value
    texts = [_each(lambda v, f=f: None if v is None else f"{names[f]}={_shown(f, v)}", column)
             for f, column in zip(fields, values)]
    labels, idents = [], []
    for i, config in enumerate(configs):
        shown = [t[i] for t in texts if t[i] is not None]
        # no hardware name: the config did not validate
        name = hardware[i] if isinstance(hardware[i], str) and hardware[i] else config
        labels.append(" ".join([name, *shown]))
        idents.append((config, *(column[i] for column in values)))
    base = {ident for ident, role in zip(idents, frame["role"]) if role == "baseline"}
    order_of: dict = {}  # _order per distinct cell (type and value)

    def ordered_cell(v) -> tuple:
        key = (type(v), v)
        found = order_of.get(key)
        if found is None:
            found = order_of[key] = _order(v)
        return found

    order = sorted(set(idents), key=lambda ident: (ident not in base, *map(ordered_cell, ident)))
    ids = {ident: f"D{n}" for n, ident in enumerate(order, 1)}
    frame["design"] = labels
    frame["design_id"] = [ids[ident] for ident in idents]
    return frame


def ratios(frame: pd.DataFrame) -> pd.DataFrame:
    """The ratios to each workload's baseline (``RATIOS``); a workload without a baseline row
    keeps the values it has (missing in a new column)."""
    frame = frame.copy()
    for column in RATIOS:
        if column not in frame.columns:
            frame[column] = np.nan
    if "status" not in frame.columns or "latency_s" not in frame.columns:
        return frame
    for _, group in frame[frame["status"] == "ok"].groupby("workload_id", sort=True):
        base = group[group["role"] == "baseline"]
        if len(base):
            b = base.iloc[0]
            frame.loc[group.index, "speedup_vs_baseline"] = b["latency_s"] / group["latency_s"]
            frame.loc[group.index, "energy_vs_baseline"] = group["energy_j"] / b["energy_j"]
            frame.loc[group.index, "mxu_energy_reduction"] = b["energy_mxu_j"] / group["energy_mxu_j"]
    return frame


def mark_pareto(frame: pd.DataFrame, objectives) -> pd.DataFrame:
    """``pareto``: whether a feasible row is non-dominated among its workload's feasible rows
    over ``objectives`` (an unknown value is on no front)."""
    frame = frame.copy()
    frame["pareto"] = False
    if "status" not in frame.columns or not len(frame):
        return frame
    columns, senses = objective_columns(list(objectives))
    for _, group in frame[frame["status"] == "ok"].groupby("workload_id", sort=True):
        values = group.reindex(columns=columns).apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float)
        frame.loc[group.index, "pareto"] = pareto_mask(values, senses)
    frame["pareto"] = frame["pareto"].astype(bool)
    return frame


def ordered(frame: pd.DataFrame) -> pd.DataFrame:
    """Columns in the documented order; rows by workload file, workload and design id."""
    fields = swept_fields(frame)
    first = [c for c in (*LEAD, *fields, *FIGURES) if c in frame.columns]
    last = [c for c in TAIL if c in frame.columns]
    rest = sorted(c for c in frame.columns if c not in first and c not in last)
    frame = frame[first + rest + last]
    if not len(frame) or not {"workload_file", "workload_id", "design_id", "key"} <= set(frame.columns):
        return frame.reset_index(drop=True)
    number = frame["design_id"].astype(str).str.slice(1).astype(int)
    order = np.lexsort((frame["key"].astype(str).to_numpy(), number.to_numpy(),
                        frame["workload_id"].astype(str).to_numpy(), frame["workload_file"].astype(str).to_numpy()))
    return frame.iloc[order].reset_index(drop=True)


def results_table(frame: pd.DataFrame, objectives=None) -> pd.DataFrame:
    """The typed results table (the module's docstring lists its columns) of a sweep's rows,
    with ``pareto`` over ``objectives`` (default: latency and energy)."""
    if frame.empty and not len(frame.columns):
        return frame
    objectives = list(objectives or DEFAULT_OBJECTIVES)
    return ordered(mark_pareto(ratios(label(typed(frame))), objectives))


# Designs a figure or the HTML report draws for one workload: more makes a page of tens of MB
# (10,000 designs: 32 MB) that a browser opens slowly, and a cloud no eye reads point by point.
SHOWN_DESIGNS = 2_500


def thinned(group: pd.DataFrame, limit: int = SHOWN_DESIGNS) -> pd.DataFrame:
    """At most ``limit`` of a workload's rows to draw, in their order: every Pareto-optimal one
    and the baseline, then the others evenly spaced in order of latency (a deterministic sample
    that keeps the cloud's extent and density); every row when they fit."""
    if len(group) <= limit:
        return group
    must = group["pareto"].fillna(False).astype(bool) | (group["role"] == "baseline")
    rest = group[~must].sort_values(["latency_s", "key"], kind="stable")
    room = max(0, limit - int(must.sum()))
    picked = rest.index[np.unique(np.linspace(0, len(rest) - 1, room).round().astype(int))] if room else rest.index[:0]
    return group[must | group.index.isin(picked)]


def enrich(frame: pd.DataFrame, objectives: list[str]) -> pd.DataFrame:
    """Former name of ``results_table``."""
    return results_table(frame, objectives)


# ------------------------------------------------------------------ the summary


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
