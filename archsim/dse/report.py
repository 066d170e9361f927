"""A sweep's typed results table (the summary printed after a sweep: ``dse.summary``).

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
    quantity. Each distinct cell is decoded once (a sweep repeats a few values over up to
    10^6 rows)."""
    if _UNIT.match(name) or not (pd.api.types.is_object_dtype(column) or pd.api.types.is_string_dtype(column)):
        return name, column  # typed already
    codes, cells = distinct(column)
    decoded = [_decode(v) for v in cells]
    present = [v for v in decoded if v is not _MISSING]
    if not present:
        return name, column
    missing = np.array([v is _MISSING for v in decoded], dtype=bool)[codes]

    def per_cell(values: list, empty) -> list:  # ``values`` of ``present``, placed at their cells
        found = iter(values)
        return [empty if v is _MISSING else next(found) for v in decoded]

    if all(isinstance(v, bool) for v in present):
        cell = np.array(per_cell(present, False), dtype=bool)
        return name, pd.Series(pd.arrays.BooleanArray(cell[codes], missing), index=column.index)
    if all(isinstance(v, int) and not isinstance(v, bool) for v in present):
        cell = np.array(per_cell(present, 0), dtype=np.int64)
        return name, pd.Series(pd.arrays.IntegerArray(cell[codes], missing), index=column.index)

    def text() -> pd.Series:
        cell = np.array(per_cell([_text(v) for v in present], None), dtype=object)
        series = pd.Series(cell[codes], index=column.index, dtype=object)
        # text keeps the column's own text type (pandas 3's str, as Parquet reads it back)
        return series.astype(column.dtype) if pd.api.types.is_string_dtype(column) else series

    quantities = _quantities(present)
    if quantities is not None:
        numbers, dim = quantities
        if dim != units.DIMENSIONLESS:
            try:
                name = f"{name} [{units.si_unit(dim)}]"
            except UnitError:  # a dimension without a unit string: kept as text
                return name, text()
        return name, pd.Series(np.array(per_cell(numbers, np.nan), dtype=float)[codes], index=column.index)
    return name, text()


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


_UNIFORM = frozenset({"string", "floating", "integer", "boolean", "empty"})


def distinct(values: pd.Series) -> tuple[np.ndarray, list]:
    """``(codes, cells)``: ``values[i]`` is ``cells[codes[i]]``, each distinct cell once (a
    missing one, None, NaN or NA, as None). Cells are told apart by type too (1 and 1.0 and
    True print differently): a column of one kind is factorised at once, any other cell by cell
    (an unhashable one, a list, is its own cell)."""
    if pd.api.types.infer_dtype(values, skipna=True) in _UNIFORM:
        codes, uniques = pd.factorize(values, use_na_sentinel=True)
        cells = [v.item() if isinstance(v, np.generic) else v for v in uniques]
        if len(codes) and codes.min() < 0:
            codes = np.where(codes < 0, len(cells), codes)
            cells.append(None)
        return codes, cells
    seen: dict = {}
    cells, codes = [], np.empty(len(values), dtype=np.intp)
    for i, v in enumerate(values):
        try:
            key = (type(v), v)
            code = seen.get(key)
        except TypeError:  # unhashable: a cell of its own
            key = code = None
        if code is None:
            code = len(cells)
            cells.append(v)
            if key is not None:
                seen[key] = code
        codes[i] = code
    return codes, cells


def label(frame: pd.DataFrame) -> pd.DataFrame:
    """Add ``design`` and ``design_id`` where the frame has none (a subset keeps its ids).
    Computed per distinct cell and per distinct design, not per row (10^6 rows: seconds)."""
    if "design" in frame.columns and "design_id" in frame.columns:
        return frame
    frame = frame.copy(deep=False)  # whole columns are added: the caller's frame stays as it is
    fields = swept_fields(frame)
    names = _names(fields)
    configs, columns = _design_cells(frame)
    config_codes, config_cells = configs
    hardware_codes, hardware = distinct(frame["hardware"]) if "hardware" in frame.columns else \
        (np.zeros(len(frame), dtype=np.intp), [None])
    # the label: once per distinct config, hardware name and swept values (each column's cells
    # as shown, "name=value"; None when missing)
    texts = [[None if v is None else f"{names[f]}={_shown(f, v)}" for v in cells]
             for f, (_, cells) in zip(fields, columns)]
    codes = [config_codes, hardware_codes, *(c for c, _ in columns)]
    combo, first = _combined(codes, [len(config_cells), len(hardware), *(len(v) for _, v in columns)])
    # " ".join([name, *shown]), a column at a time; no hardware name: the config did not validate
    named = np.array([isinstance(h, str) and h != "" for h in map(_plain, hardware)], dtype=bool)
    hardware = np.array([str(_plain(h)) for h in hardware], dtype=object)
    labels = np.where(named[hardware_codes[first]], hardware[hardware_codes[first]],
                      np.array(config_cells, dtype=object)[config_codes[first]])
    for t, (c, _) in zip(texts, columns):
        labels = labels + np.array(["" if v is None else " " + v for v in t], dtype=object)[c[first]]
    frame["design"] = labels[combo].tolist()
    del labels, combo
    ident, number = _design_numbers(frame, configs, columns)
    frame["design_id"] = np.array([f"D{k}" for k in number.tolist()], dtype=object)[ident].tolist()
    return frame


def _design_cells(frame: pd.DataFrame) -> tuple[tuple, list[tuple]]:
    """What names a design, as (codes, distinct cells): its config file's name, and each swept
    value (cells as Python values, None when missing)."""
    codes, configs = distinct(frame["config"])
    columns = [distinct(frame[f]) for f in swept_fields(frame)]
    return (codes, [str(_plain(c)) for c in configs]), [(c, [_plain(v) for v in cells]) for c, cells in columns]


def _design_numbers(frame: pd.DataFrame, configs: tuple, columns: list[tuple]) -> tuple[np.ndarray, np.ndarray]:
    """Each row's design (a code) and each design's number: a design is its config and swept
    values (equal as Python values: 1 and 1.0 alike), numbered from 1, the baseline first,
    then in natural order of config and values (8x8 before 16x8)."""
    ranks = [_ranks(configs[1])[configs[0]], *(_ranks(cells)[c] for c, cells in columns)]
    ident, first = _combined(ranks, [len(frame) + 1] * len(ranks))
    base = np.zeros(len(first), dtype=bool)
    base[ident[(frame["role"] == "baseline").to_numpy(dtype=bool)]] = True
    order = np.lexsort([r[first] for r in reversed(ranks)] + [~base])
    number = np.empty(len(first), dtype=np.intp)
    number[order] = np.arange(1, len(first) + 1)
    return ident, number


def _ranks(cells: list) -> np.ndarray:
    """Each cell's rank in natural order (``_order``) among the distinct values of ``cells``
    (Python values: 1 and 1.0 rank alike)."""
    rank = {v: i for i, v in enumerate(sorted(set(cells), key=_order))}
    return np.array([rank[v] for v in cells], dtype=np.intp)


def _combined(columns: list[np.ndarray], sizes: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """One code per distinct row of the code ``columns`` (each below its ``sizes``), in order of
    first appearance, and each code's first row."""
    n = len(columns[0]) if columns else 0
    key = np.zeros(n, dtype=np.int64)
    for codes, size in zip(columns, sizes):
        key, _ = pd.factorize(key * max(size, 1) + codes)  # dense again: the next product fits
    first = np.full(int(key.max(initial=-1)) + 1, n, dtype=np.intp)
    np.minimum.at(first, key, np.arange(n))
    return key, first


def ratios(frame: pd.DataFrame) -> pd.DataFrame:
    """The ratios to each workload's baseline (``RATIOS``); a workload without a baseline row
    keeps the values it has (missing in a new column)."""
    frame = frame.copy(deep=False)  # whole columns are set: the caller's frame stays as it is
    out = {c: frame[c].copy() if c in frame.columns else pd.Series(np.nan, index=frame.index) for c in RATIOS}
    if "status" in frame.columns and "latency_s" in frame.columns:
        for _, group in frame[frame["status"] == "ok"].groupby("workload_id", sort=True):
            base = group[group["role"] == "baseline"]
            if len(base):
                b = base.iloc[0]
                out["speedup_vs_baseline"].loc[group.index] = b["latency_s"] / group["latency_s"]
                out["energy_vs_baseline"].loc[group.index] = group["energy_j"] / b["energy_j"]
                out["mxu_energy_reduction"].loc[group.index] = b["energy_mxu_j"] / group["energy_mxu_j"]
    for column, values in out.items():
        frame[column] = values
    return frame


def mark_pareto(frame: pd.DataFrame, objectives) -> pd.DataFrame:
    """``pareto``: whether a feasible row is non-dominated among its workload's feasible rows
    over ``objectives`` (an unknown value is on no front)."""
    frame = frame.copy(deep=False)  # a whole column is set: the caller's frame stays as it is
    pareto = pd.Series(False, index=frame.index)
    if "status" in frame.columns and len(frame):
        columns, senses = objective_columns(list(objectives))
        for _, group in frame[frame["status"] == "ok"].groupby("workload_id", sort=True):
            values = group.reindex(columns=columns).apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float)
            pareto.loc[group.index] = pareto_mask(values, senses)
    frame["pareto"] = pareto.astype(bool)
    return frame


def ordered(frame: pd.DataFrame) -> pd.DataFrame:
    """Columns in the documented order; rows by workload file, workload and design id."""
    fields = swept_fields(frame)
    first = [c for c in (*LEAD, *fields, *FIGURES) if c in frame.columns]
    last = [c for c in TAIL if c in frame.columns]
    rest = sorted(c for c in frame.columns if c not in first and c not in last)
    frame = frame[first + rest + last]
    order = _row_order(frame)
    if order is None or (order == np.arange(len(order))).all():  # in order already: not copied
        return frame.reset_index(drop=True)
    return frame.iloc[order].reset_index(drop=True)


def _row_order(frame: pd.DataFrame, number: np.ndarray | None = None) -> np.ndarray | None:
    """``ordered``'s row positions (None: the frame has no columns to order by); ``number``:
    each row's design number, if not read from ``design_id``."""
    if not len(frame) or not {"workload_file", "workload_id", "key"} <= set(frame.columns):
        return None
    if number is None:
        if "design_id" not in frame.columns:
            return None
        codes, ids = pd.factorize(frame["design_id"].astype(str))
        number = np.array([int(i[1:]) for i in ids], dtype=np.int64)[codes]
    # text columns by their rank among their distinct values (sorted as the values would be)
    file, workload = (pd.factorize(frame[c].astype(str), sort=True)[0] for c in ("workload_file", "workload_id"))
    return np.lexsort((frame["key"].astype(str).to_numpy(), number, workload, file))


_ORDER_READS = frozenset({"key", "config", "hardware", "role", "workload_file", "workload_id", "design", "design_id"})


def table_reads(column: str) -> bool:
    """Whether ``table_order`` reads this column."""
    return column in _ORDER_READS or column.startswith(FIELD_PREFIX)


def table_order(frame: pd.DataFrame) -> np.ndarray:
    """Positions of a sweep's rows in the order ``results_table`` gives them, from their
    ``table_reads`` columns alone (``ResultStore.consolidate`` orders the rows before loading
    the rest)."""
    order = None
    if len(frame) and "design_id" in frame.columns:  # a typed table's rows keep their ids
        order = _row_order(frame)
    elif len(frame) and "config" in frame.columns:  # numbered as ``label`` numbers them
        frame = typed(frame)
        ident, number = _design_numbers(frame, *_design_cells(frame))
        order = _row_order(frame, number[ident])
    return np.arange(len(frame)) if order is None else order


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
