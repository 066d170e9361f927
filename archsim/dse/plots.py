"""Figures readable in a paper (matplotlib, PNG and SVG): a sweep's designs in the planes of its
objectives with the Pareto front over all of them, latency (by bound, by unit) and energy
breakdowns, a roofline, and per-operator latency and energy across designs.

Design labels run to 90 characters: the figures name designs D1, D2, ..., list those they name
at their foot, and ``design_key.txt`` beside them lists every one."""

from __future__ import annotations

import re
from itertools import combinations
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display needed
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from archsim.config.sweep import OBJECTIVES  # noqa: E402
from archsim.dse.figures_labels import place_labels  # noqa: E402
from archsim.dse.figures_ops import op_group, plot_op_comparison  # noqa: E402  (in __all__)
from archsim.dse.pareto import objective_columns, pareto_mask  # noqa: E402
from archsim.dse.report import thinned  # noqa: E402
from archsim.fileio import atomic_write, atomic_write_text  # noqa: E402
from archsim.hw.energy import COMPONENTS  # noqa: E402

__all__ = ["KEY_FILE", "design_key", "op_group", "plot_breakdowns", "plot_op_comparison", "plot_pareto",
           "plot_roofline", "write_key"]

_AXIS = {"latency_s": ("latency", 1e3, "ms"), "energy_j": ("energy", 1e3, "mJ"), "area_mm2": ("area", 1, "mm$^2$"),
         "power_w": ("power", 1, "W"), "edp_js": ("energy x delay", 1e3 * 1e3, "mJ ms"),
         "throughput_per_s": ("throughput", 1, "runs/s"), "tops_per_w": ("TOPS/W", 1, ""), "utilization": ("MXU utilisation", 100, "%"),
         "ttft_s": ("time to first token", 1e3, "ms"), "tpot_s": ("time per output token", 1e3, "ms"),
         "tokens_per_s": ("output tokens/s", 1, "tokens/s"), "tokens_per_j": ("output tokens/J", 1, "tokens/J")}
KEY_FILE = "design_key.txt"
_MAX_KEY = 24  # designs a figure's foot lists; the key file lists every one
_MAX_LABELS = 12  # labelled positions per Pareto panel
_FRONT = "crimson"
# what each op's time is mostly spent on (archsim.sim.cost.OpCost.bound; array-fill as array_fill)
_BOUNDS = {"memory": "tab:purple", "compute": "tab:blue", "array_fill": "tab:orange", "dispatch": "tab:gray"}
_UNITS = {"mxu": "#1b9e77", "vpu": "#d95f02", "dma": "#7570b3", "ici": "#e7298a"}

# svg.hashsalt: the SVG's element ids from a fixed salt, not a random one: the same figure,
# the same bytes
plt.rcParams.update({"font.size": 9, "axes.titlesize": 10, "savefig.bbox": "tight", "svg.hashsalt": "archsim"})


def _save(fig, stem: Path) -> list[Path]:
    """PNG and SVG, each written atomically, never through a link (``atomic_write``); the SVG
    without its creation date: redrawing the same results gives the same files."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    png, svg = stem.with_suffix(".png"), stem.with_suffix(".svg")
    try:
        atomic_write(png, lambda tmp: fig.savefig(tmp, format="png", dpi=200))
        atomic_write(svg, lambda tmp: fig.savefig(tmp, format="svg", metadata={"Date": None}))
    finally:
        plt.close(fig)
    return [png, svg]


def _axis_label(column: str) -> str:
    name, _, unit = _AXIS.get(column, (column, 1, ""))
    return f"{name} ({unit})" if unit else name


def _scale(column: str) -> float:
    return _AXIS.get(column, (column, 1, ""))[1]


# -- designs and their short names -------------------------------------------------------------

def _prepared(frame: pd.DataFrame, objectives: list[str] | None,
              fallback: list[str]) -> tuple[pd.DataFrame, list[str] | None, str]:
    """The feasible rows with ``design`` and ``pareto``, the objectives the front is over (None:
    not known here) and a phrase saying so. With
    ``objectives``, the front over all of them (as the sweep's summary table has it); without,
    the frame's own ``pareto`` column (the summary table's), or else the front over ``fallback``."""
    from archsim.dse.report import enrich

    objectives = objectives or frame.attrs.get("objectives")  # archsim.api's tables carry them
    if "design" not in frame:
        frame = enrich(frame, list(objectives or fallback))
    ok = frame[frame["status"] == "ok"].copy()
    if "design_id" not in ok:  # the baseline first, then by label
        base = set(ok.loc[ok["role"] == "baseline", "design"])
        order = {d: f"D{i}" for i, d in enumerate(sorted(set(ok["design"]), key=lambda d: (d not in base, d)), 1)}
        ok["design_id"] = ok["design"].map(order)
    ok["design_id"] = ok["design_id"].astype(str)
    if objectives:
        columns, senses = objective_columns(list(objectives))
        ok["pareto"] = False
        for _, g in ok.groupby("workload_id", sort=True):  # per workload, as report.enrich does
            ok.loc[g.index, "pareto"] = pareto_mask(_values(g, columns), senses)
        return ok, list(objectives), "Pareto front over " + ", ".join(objectives)
    if "pareto" in ok:
        return ok, None, "Pareto front (as in the summary table)"
    columns, senses = objective_columns(list(fallback))
    ok["pareto"] = False
    for _, g in ok.groupby("workload_id", sort=True):
        ok.loc[g.index, "pareto"] = pareto_mask(_values(g, columns), senses)
    return ok, list(fallback), "Pareto front over " + ", ".join(fallback)


def _values(g: pd.DataFrame, columns: list[str]) -> np.ndarray:
    """The objectives' values (a missing or non-numeric one NaN: on no front, as report.mark_pareto)."""
    return g.reindex(columns=columns).apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float)


def design_key(ok: pd.DataFrame) -> dict[str, str]:
    """Short name (the results' ``design_id``, D1, D2, ..., as the summary names designs) ->
    design label, in order."""
    return dict(sorted(zip(ok["design_id"], ok["design"]), key=lambda kv: (len(kv[0]), kv[0])))


def write_key(ok: pd.DataFrame, folder: Path) -> Path:
    """``design_key.txt``: each D-number of the figures and the design it stands for."""
    base = set(ok.loc[ok["role"] == "baseline", "design_id"])
    lines = ["Designs in the figures of this folder, by the short names they carry:"]
    lines += [f"{i:>5}  {d}{'  (baseline)' if i in base else ''}" for i, d in design_key(ok).items()]
    folder.mkdir(parents=True, exist_ok=True)
    return atomic_write_text(folder / KEY_FILE, "\n".join(lines) + "\n")


def _key_labels(key: dict[str, str], named: set[str], width_in: float) -> tuple[list[str], int]:
    """The foot's entries (the designs a figure names, in key order, at most ``_MAX_KEY``) and
    how many columns of them fit ``width_in`` inches."""
    labels = [f"{i}: {key[i]}" for i in key if i in named][:_MAX_KEY]
    if not labels:
        return [], 1
    longest = max(len(s) for s in labels)
    return labels, max(1, min(len(labels), int(width_in * 72 / (longest * 7 * 0.62 + 24))))


def key_height(key: dict[str, str], named: set[str], width_in: float) -> float:
    """The inches the foot's key takes (its title and rows of 7-point text), for a figure to
    grow by: else a long key squeezes the panels to nothing."""
    labels, ncol = _key_labels(key, named, width_in)
    return 0.0 if not labels else (1 + -(-len(labels) // ncol)) * 0.16 + 0.1


def _key_legend(fig, key: dict[str, str], named: set[str]) -> None:
    """The figure's foot: the designs it names, in key order (at most ``_MAX_KEY``)."""
    shown = [i for i in key if i in named]
    if not shown:
        return
    labels, ncol = _key_labels(key, named, fig.get_figwidth())
    title = f"designs (all {len(key)} in {KEY_FILE})" if len(shown) <= _MAX_KEY else \
        f"designs ({_MAX_KEY} of the {len(shown)} named here; all in {KEY_FILE})"
    fig.legend([Line2D([], [], ls="none")] * len(labels), labels, loc="outside lower center", ncol=ncol, fontsize=7,
               title=title, title_fontsize=7, handlelength=0, handletextpad=0, columnspacing=1.5, frameon=False)


def _workloads(ok: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """Each workload's rows and title; a name two workload files share gets its file."""
    groups = [g for _, g in ok.groupby("workload_id", sort=True)]
    groups.sort(key=lambda g: (g["workload"].iloc[0], g["workload_file"].iloc[0]))
    names = [g["workload"].iloc[0] for g in groups]
    return [(n if names.count(n) == 1 else f"{n} ({g['workload_file'].iloc[0]})", g) for n, g in zip(names, groups)]


def _ids_text(ids: list[str]) -> str:
    return ", ".join(ids) if len(ids) <= 3 else f"{ids[0]}, {ids[1]}, ... +{len(ids) - 2}"


# -- the Pareto figure -----------------------------------------------------------------------

def plot_pareto(frame: pd.DataFrame, x: str, y: str, stem: Path, color: str | None = None,
                objectives: list[str] | None = None) -> list[Path]:
    """Each workload's feasible designs in the plane of ``x`` and ``y`` and, with
    ``objectives`` (default: ``frame.attrs["objectives"]``, as archsim.api's tables have
    them), of every other pair of them; the Pareto front over ALL the objectives marked in
    every plane, and points where several designs coincide say how many. Without objectives,
    the front is the frame's ``pareto`` column (the summary table's), else over x and y."""
    ok, over, front_what = _prepared(frame, objectives, [x, y])
    names = [n for n in dict.fromkeys([x, y, *(over or [])]) if n in (x, y) or OBJECTIVES[n][0] in ok]
    key = design_key(ok)
    pairs = list(combinations(names, 2))[:6]
    groups = _workloads(ok)
    if len(pairs) == 1:
        cols = min(3, max(1, len(groups)))
        rows = int(np.ceil(len(groups) / cols)) or 1
    else:
        rows, cols = max(1, len(groups)), len(pairs)
    fig, axes = plt.subplots(rows, cols, figsize=(4.3 * cols, 3.5 * rows + 1.2), squeeze=False, layout="constrained")
    values, categories = _colors(ok, color)
    cmap = plt.get_cmap("viridis").with_extremes(bad="lightgrey")
    norm = plt.Normalize(*(np.nanmin(values), np.nanmax(values))) if values is not None and np.isfinite(values).any() else None
    labels, named = [], set()
    for i, (title, g) in enumerate(groups):
        c = None if values is None else pd.Series(values, index=ok.index).loc[g.index].to_numpy()
        for j, (a, b) in enumerate(pairs):
            ax = axes.flat[i] if len(pairs) == 1 else axes[i][j]
            joined = over is not None and set(over) == {a, b}  # a front over this plane's pair: a curve
            drawn = thinned(g)  # at most SHOWN_DESIGNS: the front, the baseline, a sample of the rest
            shade = None if c is None else c[g.index.get_indexer(drawn.index)]
            labels += _pareto_panel(ax, drawn, OBJECTIVES[a][0], OBJECTIVES[b][0], shade, cmap, norm, joined, named)
            ax.set_title(title if len(drawn) == len(g) else f"{title}\n({len(drawn):,} of {len(g):,} designs drawn: "
                         "the front and a sample)", fontsize=None if len(drawn) == len(g) else 9)
    for ax in list(axes.flat)[len(groups) * (1 if len(pairs) == 1 else cols):]:
        ax.axis("off")
    baselines = set(ok.loc[ok["role"] == "baseline", "design_id"])
    handles = [Line2D([], [], ls="none", marker="o", color=_FRONT, mfc=_FRONT if values is None else "none", mew=1.3,
                      label=front_what + ("" if len(pairs) == 1 else " (every panel: one pair of them)")),
               Line2D([], [], ls="none", marker="o", color="tab:blue" if values is None else "grey", alpha=0.6,
                      label="other design" if values is None else f"design, coloured by {color}"),
               Line2D([], [], ls="none", marker="*", color="black", ms=10,
                      label="baseline " + ", ".join(f"({i}: {key[i]})" for i in key if i in baselines)),
               Line2D([], [], ls="none", label='"n designs": n designs at one point')]
    if not (ok["role"] == "baseline").any():
        handles.pop(2)
    fig.legend(handles=handles, loc="outside upper center", ncol=min(len(handles), max(1, int(fig.get_figwidth() / 3.2))),
               fontsize=7.5, frameon=False)
    if norm is not None:
        bar = fig.colorbar(plt.cm.ScalarMappable(norm=norm, cmap=cmap), ax=axes.ravel().tolist(), label=color, shrink=0.6)
        if categories:
            bar.set_ticks(range(len(categories)), labels=categories)
    _key_legend(fig, key, named)
    place_labels(fig, labels)
    paths = _save(fig, stem)
    return paths + [write_key(ok, stem.parent)]


def _pareto_panel(ax, g, xc, yc, c, cmap, norm, joined, named) -> list:
    sx, sy = _scale(xc), _scale(yc)
    xs, ys = g[xc].to_numpy(dtype=float) * sx, g[yc].to_numpy(dtype=float) * sy
    front = g["pareto"].to_numpy(dtype=bool)
    if c is None:
        ax.scatter(xs[~front], ys[~front], s=22, color="tab:blue", alpha=0.6, edgecolors="none", zorder=2)
        ax.scatter(xs[front], ys[front], s=30, color=_FRONT, edgecolors="none", zorder=3)
    else:
        ax.scatter(xs, ys, c=c, cmap=cmap, norm=norm, s=26, edgecolors="none", plotnonfinite=True, zorder=2)
        ax.scatter(xs[front], ys[front], s=70, facecolors="none", edgecolors=_FRONT, linewidths=1.3, zorder=3)
    if joined and front.any():
        order = np.lexsort((ys[front], xs[front]))
        ax.plot(xs[front][order], ys[front][order], "-", color=_FRONT, lw=0.9, zorder=1)
    base = (g["role"] == "baseline").to_numpy()
    if base.any():
        ax.scatter(xs[base], ys[base], marker="*", s=120, color="black", zorder=5)
    ax.set_xlabel(_axis_label(xc))
    ax.set_ylabel(_axis_label(yc))
    ax.xaxis.set_major_locator(MaxNLocator(5))
    ax.yaxis.set_major_locator(MaxNLocator(6))
    ax.grid(alpha=0.3)
    at: dict[tuple, list] = {}  # designs at one point of this plane
    for x, y, design, on in zip(xs, ys, g["design_id"], front):
        if np.isfinite(x) and np.isfinite(y):
            at.setdefault((float(f"{x:.6g}"), float(f"{y:.6g}")), []).append((design, on))
    labels = [(ax, np.column_stack([xs, ys]), None, None)]  # the panel's markers: no label covers one
    for (x, y), here in sorted(at.items(), key=lambda kv: (not any(on for _, on in kv[1]), kv[0])):
        on_front = [d for d, on in here if on]
        if not on_front and len(here) < 2:
            continue
        if len(labels) > _MAX_LABELS:
            break
        count = f"{len(here)} designs" if len(here) > 1 else ""
        if on_front:
            shown = sorted(on_front, key=lambda s: (len(s), s))
            named.update(on_front)
            text = f"{count}: {_ids_text(shown)}" if count else shown[0]
            labels.append((ax, (x, y), text, {"fontsize": 6.5, "color": "black"}))
        else:
            labels.append((ax, (x, y), count, {"fontsize": 6.5, "color": "dimgrey"}))
    return labels


def _colors(g: pd.DataFrame, color: str | None) -> tuple[np.ndarray | None, list[str]]:
    """Values to colour by (NaN: no value, drawn grey) and, for text values, their categories."""
    if not color or color not in g:
        return None, []
    present = g[color].notna()  # the baseline has no swept value: drawn grey
    values = g[color].astype(object).where(present, "").astype(str)
    numeric = pd.to_numeric(values.where(present, None), errors="coerce")
    if numeric[present].notna().all():
        return numeric.to_numpy(dtype=float), []
    categories = sorted(values[present].unique(), key=lambda v: [(0, int(t), "") if t.isdigit() else (1, 0, t)
                                                                 for t in re.split(r"(\d+)", v)])  # 8x8 before 16x8
    codes = {v: i for i, v in enumerate(categories)}
    return values.map(codes).where(present).to_numpy(dtype=float), categories


# -- breakdowns ------------------------------------------------------------------------------

def plot_breakdowns(frame: pd.DataFrame, stem: Path, designs: int = 8, objectives: list[str] | None = None) -> list[Path]:
    """For each workload, the baseline and up to ``designs`` Pareto designs (the fastest):
    latency by bound (memory, compute, array-fill, dispatch: what each op's time went to),
    latency by the unit of the op on the critical path, and energy by component."""
    ok, _, front_what = _prepared(frame, objectives, ["latency", "energy"])
    key = design_key(ok)
    groups = _workloads(ok)
    swept = [c for c in ok.columns if c.startswith("set.")]
    chosen = []
    for title, g in groups:
        point = g["role"] != "baseline"
        # the configs' own designs (no swept value, e.g. CIM-Design-B): shown on or off the front
        own = point & g[swept].isna().all(axis=1) & ~g["pareto"] if swept else point & False
        front = g[g["pareto"] & point].sort_values(["latency_s", "design"], kind="stable")
        sel = pd.concat([g[~point], g[own].sort_values(["latency_s", "design"], kind="stable"), front.head(designs)])
        chosen.append((title, sel, len(front)))
    heights = [0.9 + 0.26 * max(1, len(sel)) for _, sel, _ in chosen] or [1.0]
    foot = key_height(key, {i for _, sel, _ in chosen for i in sel["design_id"]}, 12)  # the key, below the subfigures
    fig = plt.figure(figsize=(12, sum(heights) + 1.15 + foot + 0.45 * len(heights)), layout="constrained")
    subs = fig.subfigures(len(heights) + 1, 1, height_ratios=[h + 0.45 for h in heights] + [0.65], squeeze=False).ravel()
    units = sorted({c[len("latency_"):-2] for c in ok.columns if c.startswith("latency_") and c != "latency_s"},
                   key=lambda u: (u not in _UNITS, list(_UNITS).index(u) if u in _UNITS else 0, u))
    bounds = [b for b in _BOUNDS if f"bound_{b}_s" in ok] + \
        sorted(c[6:-2] for c in ok.columns if c.startswith("bound_") and c.endswith("_s") and c[6:-2] not in _BOUNDS)
    named = set()
    for sub, (title, sel, n_front) in zip(subs, chosen):
        ax_b, ax_u, ax_e = sub.subplots(1, 3, sharey=True)
        named.update(sel["design_id"])
        y = np.arange(len(sel))
        ax_b.set_yticks(y, [i + (" (baseline)" if r == "baseline" else " *" if on else "")
                            for i, r, on in zip(sel["design_id"], sel["role"], sel["pareto"])])
        ax_b.invert_yaxis()
        if bounds:
            _stack(ax_b, y, sel, [f"bound_{b}_s" for b in bounds], bounds, 1e3, _BOUNDS)
        else:
            ax_b.text(0.5, 0.5, "no bound_*_s columns in these results:\nrun the sweep again", ha="center",
                      va="center", transform=ax_b.transAxes, fontsize=8)
        _stack(ax_u, y, sel, [f"latency_{u}_s" for u in units], units, 1e3, _UNITS)
        _stack(ax_e, y, sel, [f"energy_{c}_j" for c in COMPONENTS], list(COMPONENTS), 1e3, {})
        for ax, what, unit in ((ax_b, "latency by bound", "ms"), (ax_u, "latency by unit", "ms"),
                               (ax_e, "energy by component", "mJ")):
            ax.set_title(what)
            ax.set_xlabel(f"{what.split()[0]} ({unit})")
            ax.xaxis.set_major_locator(MaxNLocator(5))
            ax.set_xlim(0, max(ax.dataLim.x1, 0) * 1.04 or 1)
            ax.grid(axis="x", alpha=0.3)
        sub.suptitle(_breakdown_title(title, sel, n_front, front_what), fontsize=9.5)
    legend_axes = subs[-1].subplots(1, 3)
    energy_colors = {c: f"C{i}" for i, c in enumerate(COMPONENTS)}
    for ax, title, names, colors in ((legend_axes[0], "bound", bounds, _BOUNDS), (legend_axes[1], "op's unit", units, _UNITS),
                                     (legend_axes[2], "energy component", list(COMPONENTS), energy_colors)):
        ax.axis("off")
        if names:
            ax.legend(handles=[Patch(color=colors.get(n, "grey"), label=n.replace("_", "-")) for n in names],
                      loc="upper center", ncol=min(4, len(names)), fontsize=7.5, title=title, title_fontsize=8,
                      frameon=False)
    _key_legend(fig, key, named)
    return _save(fig, stem) + [write_key(ok, stem.parent)]


def _breakdown_title(title: str, sel: pd.DataFrame, n_front: int, front_what: str) -> str:
    point = sel["role"] != "baseline"
    shown, own = int((point & sel["pareto"]).sum()), int((point & ~sel["pareto"]).sum())
    parts = ["the baseline"] * int((~point).sum()) + [f"{own} config design{'s' if own != 1 else ''} off the front"] * (own > 0)
    parts.append(f"the {n_front} design{'s' if n_front != 1 else ''} (*)" if shown == n_front else
                 f"the {shown} fastest of the {n_front} designs (*)")
    return f"{title}: {', '.join(parts[:-1])}{' and ' if len(parts) > 1 else ''}{parts[-1]} on the {front_what}"


def _stack(ax, y, sel: pd.DataFrame, columns: list[str], names: list[str], scale: float, colors: dict) -> None:
    left = np.zeros(len(sel))
    for i, (column, name) in enumerate(zip(columns, names)):
        values = sel[column].fillna(0).to_numpy(dtype=float) * scale if column in sel else np.zeros(len(sel))
        ax.barh(y, values, left=left, height=0.7, color=colors.get(name, f"C{i}"), label=name)
        left += values


# -- roofline ---------------------------------------------------------------------------------

def plot_roofline(result, summary, stem: Path) -> list[Path]:
    """Each phase at its arithmetic intensity (MACs per compulsory byte) and achieved MAC/s,
    under the chip's compute roof and HBM slope."""
    hw = result.hw
    # the roof of the dtype the workload's matmuls run at (their costs carry its peak)
    peak = max((op.peak_macs_per_s for op in result.ops if op.macs), default=0.0) or \
        hw.peak_macs_per_second(hw.matrix_dtypes[0])
    phase_time = result.latency_by("phase")
    fig, ax = plt.subplots(figsize=(5.5, 4), layout="constrained")
    xs = np.logspace(-2, 5, 200)
    ax.loglog(xs, np.minimum(peak, hw.hbm.bandwidth * xs), "k-", lw=1.5, label=f"roof: HBM {hw.hbm.bandwidth / 1e9:.0f} GB/s, {peak * 2 / 1e12:.0f} TOPS")
    if hw.cmem is not None:
        ax.loglog(xs, np.minimum(peak, hw.cmem.bandwidth * xs), "k:", lw=1, label="CMEM roof")
    for p in summary.phases:
        if p.name in phase_time and phase_time[p.name] > 0 and p.macs:
            achieved = p.macs * p.repeat / phase_time[p.name]
            ax.scatter(p.intensity, achieved, s=30, zorder=5)
            ax.annotate(p.name, (p.intensity, achieved), fontsize=7, xytext=(4, 3), textcoords="offset points")
    ax.set_xlabel("arithmetic intensity (MACs per byte)")
    ax.set_ylabel("achieved MACs/s")
    ax.set_title(f"{result.workload.name} on {hw.name}")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="lower right")
    return _save(fig, stem)
