"""A sweep's interactive report: one self-contained HTML file (plotly, its JavaScript inlined,
so that the file opens offline) with, per workload, the Pareto front in 2-D (every pair of
the sweep's objectives) and 3-D, latency and energy breakdowns per design, the sortable
results table; and the infeasible or invalid points with their reasons.

Every feasible design is its own point; designs at the same position are not moved apart
(that would misstate their figures): each one's hover names all the designs at that point.
The same results give the same bytes: plot ids come from a counter, nothing is timed or random.
"""

from __future__ import annotations

import html
import itertools
import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio

from archsim import units
from archsim.config.sweep import OBJECTIVES
from archsim.dse.evaluate import FIELD_PREFIX
from archsim.dse.pareto import pareto_mask
from archsim.dse.report import SHOWN_DESIGNS, enrich, thinned
from archsim.errors import UnitError
from archsim.fileio import atomic_write
from archsim.hw.energy import COMPONENTS

# results column -> (label, scale to the shown unit, unit)
AXES = {
    "latency_s": ("latency", 1e3, "ms"), "energy_j": ("energy", 1e3, "mJ"), "area_mm2": ("area", 1, "mm²"),
    "power_w": ("power", 1, "W"), "edp_js": ("energy x delay", 1e6, "mJ·ms"),
    "throughput_per_s": ("throughput", 1, "runs/s"), "tops_per_w": ("TOPS/W", 1, ""),
    "utilization": ("MXU utilisation", 100, "%"), "ttft_s": ("time to first token", 1e3, "ms"),
    "tpot_s": ("time per output token", 1e3, "ms"), "tokens_per_s": ("output tokens/s", 1, "tokens/s"),
    "tokens_per_j": ("output tokens/J", 1, "tokens/J"), "speedup_vs_baseline": ("speedup vs baseline", 1, "x"),
}
HOVER = ("latency_s", "energy_j", "area_mm2", "power_w", "speedup_vs_baseline")  # always in a point's hover
SERVING = ("ttft_s", "tpot_s", "tokens_per_s", "tokens_per_j")
TABLE = ("latency_s", "speedup_vs_baseline", "energy_j", "area_mm2", "power_w", "utilization")
MAX_BARS = 40  # designs in a breakdown before only the Pareto designs and the baseline are shown
MAX_TABLE_ROWS = 1_000  # a workload's results table: the Pareto designs, the baseline, then the fastest
CATEGORIES = (  # (name, marker symbol, colour): each feasible design is in exactly one
    ("baseline", "star", "#111111"), ("Pareto-optimal", "diamond", "#d62728"), ("other designs", "circle", "#1f77b4"))
PLOT_CONFIG = {"displaylogo": False, "responsive": True}

STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
h1{font-size:1.5em}h2{margin-top:1.6em;border-bottom:1px solid #ccc}h3{margin:1.2em 0 .4em}
.meta{color:#444}.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(520px,1fr));gap:12px}
.figure{border:1px solid #e3e3e3;border-radius:4px;min-height:200px}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0}
th,td{border:1px solid #ddd;padding:3px 7px;text-align:right}
td.text,th.text{text-align:left}table.results td{white-space:nowrap}
th{background:#f3f3f3;cursor:pointer;user-select:none;white-space:nowrap}
th[data-dir=asc]::after{content:" \\25B2"}th[data-dir=desc]::after{content:" \\25BC"}
tr.pareto td{background:#fff4f2}
select{font-size:1em;padding:2px}.note{color:#666;font-size:.9em}
"""

SCRIPT = """
(function(){
  var select = document.getElementById('workload-select');
  function show(id){
    document.querySelectorAll('section.workload').forEach(function(s){
      s.hidden = s.id !== id;
      if (!s.hidden) s.querySelectorAll('.plotly-graph-div').forEach(function(g){ Plotly.Plots.resize(g); });
    });
  }
  if (select) { select.addEventListener('change', function(){ show(select.value); }); show(select.value); }
  function key(row, i){
    var cell = row.cells[i];
    if (cell.hasAttribute('data-v')) { var v = parseFloat(cell.getAttribute('data-v')); return isNaN(v) ? null : v; }
    return cell.textContent;
  }
  document.querySelectorAll('table.sortable th').forEach(function(th){
    th.addEventListener('click', function(){
      var table = th.closest('table'), body = table.tBodies[0], i = th.cellIndex;
      var asc = th.getAttribute('data-dir') !== 'asc';
      table.querySelectorAll('th').forEach(function(h){ h.removeAttribute('data-dir'); });
      th.setAttribute('data-dir', asc ? 'asc' : 'desc');
      var rows = Array.prototype.slice.call(body.rows);
      rows.sort(function(p, q){
        var a = key(p, i), b = key(q, i);
        if (a === null || b === null) return a === b ? 0 : (a === null ? 1 : -1);  // blanks last
        var d = (typeof a === 'number' && typeof b === 'number') ? a - b : String(a).localeCompare(String(b), undefined, {numeric: true});
        return asc ? d : -d;
      });
      rows.forEach(function(r){ body.appendChild(r); });
    });
  });
})();
"""


def _finite(value) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool) \
        and math.isfinite(float(value))


def _label(column: str) -> str:
    name, _, unit = AXES.get(column, (column, 1, ""))
    return f"{name} ({unit})" if unit and unit != "x" else name


def _value(column: str, value) -> str:
    if not _finite(value):
        return ""
    _, scale, unit = AXES.get(column, (column, 1, ""))
    return f"{float(value) * scale:.4g}" + ("x" if unit == "x" else f" {unit}" if unit else "")


def _number(column: str, value) -> str:
    """A table cell: the number in the unit its heading names."""
    if not _finite(value):
        return ""
    _, scale, unit = AXES.get(column, (column, 1, ""))
    return f"{float(value) * scale:.4g}" + ("x" if unit == "x" else "")


def _scaled(frame: pd.DataFrame, column: str) -> list:
    scale = AXES.get(column, (column, 1, ""))[1]
    return [float(v) * scale if _finite(v) else None for v in frame[column]]


_UNIT = re.compile(r"^(?P<field>.+) \[(?P<unit>[^\[\]]+)\]$")  # a typed quantity's column: "set.x [B/s]"


def _param_names(fields: list[str]) -> dict[str, str]:
    """Each swept column's label: its last key, more of its path where that is ambiguous."""
    paths = [((m["field"] if (m := _UNIT.match(f)) else f)[len(FIELD_PREFIX):]).split(".") for f in fields]
    names = {}
    for field, path in zip(fields, paths):
        depth = 1
        while depth < len(path) and sum(p[-depth:] == path[-depth:] for p in paths) > 1:
            depth += 1
        names[field] = ".".join(path[-depth:])
    return names


def _quantity(text: str) -> str:
    try:
        exact, dim = units.parse_quantity_exact(text)
    except UnitError:
        return text
    return units.format_quantity(float(exact), dim)


def _param(column: str, value) -> str | None:
    """A swept value as shown, from JSON text (a results part: "[16, 8]", "2e12 B/s") or a typed
    table (16x8; a float in SI units, the unit in the column's name); None if the row has none."""
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or value is pd.NA or value == "" or (isinstance(value, float) and math.isnan(value)):
        return None
    unit = _UNIT.match(column)
    if unit and isinstance(value, (int, float)):
        return _quantity(f"{value!r} {unit['unit']}")
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return value
        if isinstance(value, str):
            return _quantity(value)
    if isinstance(value, list):
        return "x".join(str(v) for v in value)
    return f"{value:g}" if isinstance(value, float) else str(value)


class _Report:
    """The page, built section by section; ``figure`` numbers the plots' ids in order."""

    def __init__(self, frame: pd.DataFrame, objectives: list[str]):
        self.frame, self.objectives = frame, objectives
        self.fields = [c for c in frame.columns if c.startswith(FIELD_PREFIX)]
        self.names = _param_names(self.fields)
        self.columns = [OBJECTIVES[o][0] for o in objectives]
        self.count = itertools.count(1)
        self.plotlyjs = True  # inlined once, with the first figure
        self._lines: dict[str, list[str]] = {}  # a row's key -> its hover's lines but the coincidences

    def figure(self, fig: go.Figure, kind: str) -> str:
        n = next(self.count)
        fig.update_layout(template="plotly_white", margin={"l": 60, "r": 20, "t": 50, "b": 50},
                          hoverlabel={"align": "left"}, legend={"orientation": "h", "y": -0.18})
        div = pio.to_html(fig, full_html=False, include_plotlyjs=self.plotlyjs, div_id=f"plot-{n}",
                          config=PLOT_CONFIG, default_width="100%")
        self.plotlyjs = False
        return f'<div class="figure" data-kind="{kind}">{div}</div>'

    # --- hover text -------------------------------------------------------------------------

    def params(self, row) -> str:
        parts = [f"{self.names[f]} = {v}" for f in self.fields if (v := _param(f, row.get(f))) is not None]
        role = "the baseline" if row.get("role") == "baseline" else ""
        return " · ".join(parts + [role] if role else parts) if parts else \
            f"{row.get('config')}: {role or 'no swept values'}"

    def hover(self, row, at: list[str]) -> str:
        lines = self._lines.get(row["key"])
        if lines is None:  # the same in every panel: made once a row
            lines = [f"<b>{html.escape(str(row['design']))}</b>", html.escape(self.params(row))]
            shown = list(HOVER) + [c for c in self.columns if c not in HOVER]
            shown += [c for c in SERVING if c not in shown and _finite(row.get(c))]
            figures = [f"{AXES.get(c, (c,))[0]} {_value(c, row.get(c))}" for c in shown if _finite(row.get(c))]
            lines += [" · ".join(figures[i:i + 3]) for i in range(0, len(figures), 3)]
            if row.get("pareto"):
                lines.append(f"Pareto-optimal over {', '.join(self.objectives)}")
            self._lines[row["key"]] = lines
        lines = list(lines)
        if len(at) > 1:
            others = list(at)
            others.remove(str(row["design"]))  # once: two designs may share a label
            lines.append(f"<b>{len(at)} designs at this point</b>: this one and "
                         + "; ".join(html.escape(d) for d in others))
        return "<br>".join(lines)

    # --- figures ----------------------------------------------------------------------------

    def scatter(self, group: pd.DataFrame, columns: list[str], kind: str) -> str:
        has = group[columns].apply(lambda c: c.map(_finite)).all(axis=1)
        g = group[has]
        position = [tuple(f"{float(v):.12g}" for v in r) for r in g[columns].to_numpy()]
        at: dict[tuple, list[str]] = {}
        for p, design in zip(position, g["design"]):
            at.setdefault(p, []).append(str(design))
        hovers = [self.hover(r, at[p]) for p, r in zip(position, _records(g))]
        g = g.assign(_hover=hovers, _stack=[len(at[p]) for p in position])
        category = np.where(g["role"] == "baseline", "baseline", np.where(g["pareto"], "Pareto-optimal", "other designs"))
        fig = go.Figure()
        three = len(columns) == 3
        for name, symbol, colour in CATEGORIES:
            part = g[category == name]
            if part.empty:
                continue
            marker = {"symbol": symbol if not three else {"star": "cross"}.get(symbol, symbol),
                      "color": colour, "size": [9 + 3 * min(s - 1, 4) for s in part["_stack"]],
                      "opacity": 0.85, "line": {"width": 1, "color": "white"}}
            coords = dict(zip("xyz", (_scaled(part, c) for c in columns)))
            trace = go.Scatter3d if three else go.Scatter
            fig.add_trace(trace(mode="markers", name=f"{name} ({len(part)})", marker=marker,
                                hovertext=part["_hover"].tolist(), hoverinfo="text", **coords))
        if not three and len(g):
            front = g[pareto_mask(g[columns].to_numpy(dtype=float), [self.sense(c) for c in columns])]
            front = front.sort_values(columns)
            fig.add_trace(go.Scatter(x=_scaled(front, columns[0]), y=_scaled(front, columns[1]), mode="lines",
                                     name=f"front of {AXES.get(columns[0], (columns[0],))[0]} and "
                                          f"{AXES.get(columns[1], (columns[1],))[0]}",
                                     line={"color": "#d62728", "width": 1, "dash": "dot"}, hoverinfo="skip"))
        title = " vs ".join(AXES.get(c, (c,))[0] for c in columns)
        missing = int((~has).sum())
        if missing:
            title += f" ({missing} designs without these figures not shown)"
        axes = {f"{a}axis": {"title": {"text": _label(c)}, "type": self.axis_type(g, c)} for a, c in zip("xyz", columns)}
        if three:
            fig.update_layout(scene=axes, height=560)
        else:
            fig.update_layout(height=440, **axes)
        fig.update_layout(title={"text": title}, hovermode="closest")
        return self.figure(fig, kind)

    def sense(self, column: str) -> str:
        return next((s for c, s in OBJECTIVES.values() if c == column), "min")

    @staticmethod
    def axis_type(g: pd.DataFrame, column: str) -> str:
        v = g[column].astype(float)
        return "log" if len(v) and (v > 0).all() and v.max() / v.min() > 50 else "linear"

    def bars(self, g: pd.DataFrame, parts: list[tuple[str, str]], title: str, unit_of: str, kind: str) -> str:
        _, scale, unit = AXES[unit_of]
        fig = go.Figure()
        labels = g["_bar"].tolist()
        for name, column in parts:
            values = [float(v) * scale if _finite(v) else 0.0 for v in g[column]]
            fig.add_trace(go.Bar(y=labels, x=values, name=name, orientation="h",
                                 hovertemplate=f"%{{y}}<br>{html.escape(name)}: %{{x:.4g}} {unit}<extra></extra>"))
        fig.update_layout(barmode="stack", title={"text": title}, height=160 + 24 * len(g),
                          xaxis={"title": {"text": f"{AXES[unit_of][0]} ({unit})"}},
                          yaxis={"autorange": "reversed", "automargin": True, "type": "category"})
        return self.figure(fig, kind)

    def breakdowns(self, group: pd.DataFrame) -> str:
        g = group.sort_values(["latency_s", "design", "key"], kind="stable")
        note = ""
        if len(g) > MAX_BARS:
            g = g[g["pareto"] | (g["role"] == "baseline")].head(MAX_BARS)
            note = f'<p class="note">{len(g)} of {len(group)} designs: the Pareto-optimal ones and the baseline.</p>'
        seen: dict[str, int] = {}
        labels = []
        for design in g["design"].astype(str):  # bars are by label: the same label twice is numbered
            seen[design] = seen.get(design, 0) + 1
            labels.append(design if seen[design] == 1 else f"{design} ({seen[design]})")
        g = g.assign(_bar=labels)

        def parts(prefix: str, suffix: str, order=()) -> list[tuple[str, str]]:
            found = [c[len(prefix):-len(suffix)] for c in g.columns if c.startswith(prefix) and c.endswith(suffix)
                     and c != prefix.rstrip("_") + suffix and g[c].map(_finite).any()]
            names = [n for n in order if n in found] + sorted(n for n in found if n not in order)
            return [(n.replace("_", " "), f"{prefix}{n}{suffix}") for n in names if (g[f"{prefix}{n}{suffix}"].fillna(0) != 0).any()]

        figures = []
        units = parts("latency_", "_s", ("mxu", "vpu", "dma"))
        if units:
            figures.append(self.bars(g, units, "latency by unit (busy time)", "latency_s", "latency-unit"))
        bounds = parts("bound_", "_s", ("compute", "memory"))
        if bounds:
            figures.append(self.bars(g, bounds, "latency by bound (what limits each op)", "latency_s", "latency-bound"))
        energy = parts("energy_", "_j", COMPONENTS)
        if energy:
            figures.append(self.bars(g, energy, "energy by component", "energy_j", "energy"))
        area = parts("area_", "_mm2")
        if area:
            figures.append(self.bars(g, area, "area by component", "area_mm2", "area"))
        return note + '<div class="grid">' + "".join(figures) + "</div>"

    # --- tables -----------------------------------------------------------------------------

    @staticmethod
    def table(header: list[tuple[str, bool]], rows: list[tuple[str, list[tuple[str, object]]]], cls: str) -> str:
        """``header``: (title, text column); a row: (tr class, cells of (text, sort value or None))."""
        head = "".join(f'<th class="{"text" if text else "num"}">{html.escape(t)}</th>' for t, text in header)
        body = []
        for row_cls, cells in rows:
            tds = []
            for (text, v), (_, is_text) in zip(cells, header):
                attr = "" if is_text else f' data-v="{v!r}"' if _finite(v) else ' data-v=""'
                tds.append(f'<td class="{"text" if is_text else "num"}"{attr}>{html.escape(text)}</td>')
            body.append(f'<tr class="{row_cls}">' + "".join(tds) + "</tr>")
        return (f'<table class="sortable {cls}"><thead><tr>{head}</tr></thead><tbody>' + "\n".join(body)
                + "</tbody></table>")

    def results_table(self, group: pd.DataFrame) -> str:
        g = group.sort_values(["latency_s", "design", "key"], kind="stable")
        note = ""
        if len(g) > MAX_TABLE_ROWS:
            must = g["pareto"].astype(bool) | (g["role"] == "baseline")
            room = max(0, MAX_TABLE_ROWS - int(must.sum()))
            g = g[must | g.index.isin(g[~must].index[:room])]
            note = (f'<p class="note">{len(g):,} of {len(group):,} designs: the Pareto-optimal ones, the baseline '
                    "and the fastest others; every design is in results.parquet.</p>")
        numbers = list(TABLE) + [c for c in self.columns if c not in TABLE]
        numbers += [c for c in SERVING if c in g and c not in numbers and g[c].map(_finite).any()]
        numbers = [c for c in numbers if c in g]
        ids = "design_id" in g  # D1, D2, ...: as the summary and results.parquet name the designs
        header = [("id", True)] * ids + [("design", True), ("Pareto", True)] + [(_label(c), False) for c in numbers]
        header += [(self.names[f], True) for f in self.fields] + [("key", True)]
        rows = []
        for r in _records(g):
            cells = [(str(r["design_id"]), None)] * ids + [(str(r["design"]), None), ("yes" if r["pareto"] else "", None)]
            cells += [(_number(c, r.get(c)), float(r[c]) if _finite(r.get(c)) else None) for c in numbers]
            cells += [(_param(f, r.get(f)) or "", None) for f in self.fields]
            cells.append((str(r["key"]), None))
            rows.append(("pareto" if r["pareto"] else "", cells))
        return note + self.table(header, rows, "results")

    def bad_table(self, bad: pd.DataFrame) -> str:
        if bad.empty:
            return "<p>None: every point ran.</p>"
        rows = []
        for r in _records(bad):
            workload = r.get("workload") if isinstance(r.get("workload"), str) and r.get("workload") else r.get("workload_file")
            rows.append(("", [(str(r.get("design", r.get("config"))), None), (str(workload), None),
                              (str(r["status"]), None), (str(r.get("reason") or ""), None)]))
        return self.table([("design", True), ("workload", True), ("status", True), ("reason", True)], rows, "bad")


def _records(frame: pd.DataFrame) -> list[dict]:
    """The rows as dicts, in order (``iterrows`` builds a Series a row: 100x slower on 10^4 rows)."""
    return frame.to_dict("records")


def _workloads(ok: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """(label, rows) per workload (its id: the same file with other set: values is another)."""
    groups = [(g["workload"].iloc[0], g) for _, g in ok.groupby("workload_id", sort=True)]
    names = [name for name, _ in groups]
    labelled = [(f"{name} ({g['workload_file'].iloc[0]}, {g['workload_id'].iloc[0][:8]})" if names.count(name) > 1
                 else name, g) for name, g in groups]
    return sorted(labelled, key=lambda item: item[0])


def render_html(frame: pd.DataFrame, objectives: list[str], title: str = "archsim sweep report") -> str:
    """The page's text for a sweep's results (enriched by ``archsim.dse.report.enrich`` if not yet)."""
    if "design" not in frame or "pareto" not in frame:
        frame = enrich(frame, objectives)
    frame = frame.sort_values(["workload_id", "key"], kind="stable").reset_index(drop=True)
    frame = frame.assign(**{OBJECTIVES[o][0]: np.nan for o in objectives if OBJECTIVES[o][0] not in frame})
    report = _Report(frame, objectives)
    ok_mask = frame["status"] == "ok"
    ok, bad = frame[ok_mask], frame[~ok_mask]
    workloads = _workloads(ok) if len(ok) else []
    senses = ", ".join(f"{o} ({'lower' if OBJECTIVES[o][1] == 'min' else 'higher'} is better)" for o in objectives)
    designs = frame["design"].nunique()
    parts = [f"<h1>{html.escape(title)}</h1>",
             f'<p class="meta">{len(frame)} points: {designs} designs x {frame["workload_id"].nunique()} workloads; '
             f"{len(ok)} feasible, {len(bad)} infeasible or invalid. Objectives: {html.escape(senses)}. "
             "Hover a point for its design, swept values and figures; designs with equal figures share a "
             "point and its hover names them all. Click a column heading to sort a table.</p>"]
    if workloads:
        options = "".join(f'<option value="workload-{i}">{html.escape(name)} ({len(g)} designs)</option>'
                          for i, (name, g) in enumerate(workloads, 1))
        parts.append(f'<p><label>Workload: <select id="workload-select">{options}</select></label></p>')
    else:
        parts.append("<p>No design point could run: the reasons are below.</p>")
    pairs = list(itertools.combinations(report.columns, 2)) if len(report.columns) > 1 else \
        [(report.columns[0], "energy_j" if report.columns[0] != "energy_j" else "latency_s")]
    for i, (name, group) in enumerate(workloads, 1):
        section = [f'<section class="workload" id="workload-{i}" data-workload="{html.escape(name)}">',
                   f"<h2>{html.escape(name)}</h2>",
                   f"<h3>Pareto front ({len(group)} feasible designs, {int(group['pareto'].sum())} Pareto-optimal "
                   f"over {html.escape(', '.join(objectives))})</h3>"]
        drawn = thinned(group)
        if len(drawn) < len(group):
            section.append(f'<p class="note">{len(drawn):,} of {len(group):,} designs drawn (at most '
                           f"{SHOWN_DESIGNS:,}): every Pareto-optimal one and the baseline, the others an evenly "
                           "spaced sample in order of latency; every design is in results.parquet.</p>")
        section.append('<div class="grid">')
        section += [report.scatter(drawn, list(pair), "pareto2d") for pair in pairs]
        if len(report.columns) >= 3:
            section.append(report.scatter(drawn, report.columns[:3], "pareto3d"))
        section += ["</div>", "<h3>Breakdowns per design</h3>", report.breakdowns(group),
                    "<h3>Results</h3>", report.results_table(group), "</section>"]
        parts.append("\n".join(section))
    parts.append(f'<section id="infeasible"><h2>Infeasible and invalid points ({len(bad)})</h2>'
                 f"{report.bad_table(bad)}</section>")
    head = (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f"<title>{html.escape(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n")
    return head + "\n".join(parts) + f"\n<script>{SCRIPT}</script>\n</body>\n</html>\n"


def write_html_report(frame: pd.DataFrame, objectives: list[str], out_path: str | Path,
                      title: str = "archsim sweep report") -> Path:
    """Write the report to ``out_path`` atomically (never through a link there); returns the path."""
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    page = render_html(frame, objectives, title)
    return atomic_write(out_path, lambda tmp: tmp.write_text(page, encoding="utf-8"))
