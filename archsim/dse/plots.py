"""Figures readable in a paper (matplotlib, PNG and SVG): a Pareto scatter per workload,
stacked energy and latency breakdowns, and a roofline of a workload's phases."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display needed
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from archsim.config.sweep import OBJECTIVES  # noqa: E402
from archsim.fileio import atomic_write  # noqa: E402
from archsim.hw.energy import COMPONENTS  # noqa: E402

_AXIS = {"latency_s": ("latency", 1e3, "ms"), "energy_j": ("energy", 1e3, "mJ"), "area_mm2": ("area", 1, "mm$^2$"),
         "power_w": ("power", 1, "W"), "edp_js": ("energy x delay", 1e3 * 1e3, "mJ ms"),
         "throughput_per_s": ("throughput", 1, "runs/s"), "tops_per_w": ("TOPS/W", 1, ""), "utilization": ("MXU utilisation", 100, "%"),
         "ttft_s": ("time to first token", 1e3, "ms"), "tpot_s": ("time per output token", 1e3, "ms"),
         "tokens_per_s": ("output tokens/s", 1, "tokens/s"), "tokens_per_j": ("output tokens/J", 1, "tokens/J")}

# svg.hashsalt: the SVG's element ids from a fixed salt, not a random one: the same figure,
# the same bytes
plt.rcParams.update({"font.size": 9, "axes.titlesize": 10, "savefig.bbox": "tight", "svg.hashsalt": "archsim"})


def _save(fig, stem: Path) -> list[Path]:
    """PNG and SVG, each written atomically and never through a link (``atomic_write``); the
    SVG without its creation date, so that redrawing the same results gives the same files."""
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


def plot_pareto(frame: pd.DataFrame, x: str, y: str, stem: Path, color: str | None = None) -> list[Path]:
    """One panel per workload: every feasible design, the Pareto front joined and labelled."""
    xc, x_sense = OBJECTIVES[x]
    yc, y_sense = OBJECTIVES[y]
    ok = frame[frame["status"] == "ok"]
    workloads = sorted(ok["workload"].unique())
    cols = min(3, max(1, len(workloads)))
    rows = int(np.ceil(len(workloads) / cols)) or 1
    fig, axes = plt.subplots(rows, cols, figsize=(4.4 * cols, 3.6 * rows), squeeze=False, layout="constrained")
    for ax, workload in zip(axes.flat, workloads):
        g = ok[ok["workload"] == workload]
        sx, sy = _AXIS.get(xc, (xc, 1, ""))[1], _AXIS.get(yc, (yc, 1, ""))[1]
        from archsim.dse.pareto import pareto_mask

        front = pareto_mask(g[[xc, yc]].to_numpy(), [x_sense, y_sense])
        c = _colors(g, color)
        cmap = plt.get_cmap("viridis").with_extremes(bad="lightgrey")
        style = {"cmap": cmap, "plotnonfinite": True} if not isinstance(c, str) else {}
        points = ax.scatter(g[xc] * sx, g[yc] * sy, c=c, s=18, alpha=0.55, edgecolors="none", **style)
        if style:
            fig.colorbar(points, ax=ax, label=color)
        f = g[front].sort_values(xc)
        ax.plot(f[xc] * sx, f[yc] * sy, "-o", color="crimson", ms=5, lw=1.2, label="Pareto front")
        labelled = set()
        for _, r in f.iterrows():  # one label per position: equal designs share it
            position = (round(r[xc] * sx, 9), round(r[yc] * sy, 9))
            if position in labelled or len(labelled) >= 8:
                continue
            labelled.add(position)
            ax.annotate(r["design"], position, fontsize=6.5, xytext=(4, 3), textcoords="offset points")
        base = g[g["role"] == "baseline"]
        if len(base):
            ax.scatter(base[xc] * sx, base[yc] * sy, marker="*", s=140, color="black", label="baseline", zorder=5)
        ax.set_title(workload)
        ax.set_xlabel(_axis_label(xc))
        ax.set_ylabel(_axis_label(yc))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    for ax in list(axes.flat)[len(workloads):]:
        ax.axis("off")
    return _save(fig, stem)


def _colors(g: pd.DataFrame, color: str | None):
    if not color or color not in g:
        return "tab:blue"
    present = g[color].notna()  # the baseline has no swept value: drawn grey
    values = g[color].astype(object).where(present, "").astype(str)
    numeric = pd.to_numeric(values.where(present, None), errors="coerce")
    if numeric[present].notna().all():
        return numeric.to_numpy(dtype=float)
    codes = {v: i for i, v in enumerate(sorted(values[present].unique()))}
    return values.map(codes).where(present).to_numpy(dtype=float)


def plot_breakdowns(frame: pd.DataFrame, stem: Path, designs: int = 8) -> list[Path]:
    """Stacked energy per component and latency per unit, for each workload's Pareto designs."""
    ok = frame[(frame["status"] == "ok") & (frame["pareto"] | (frame["role"] == "baseline"))]
    workloads = sorted(ok["workload"].unique())
    fig, axes = plt.subplots(len(workloads) or 1, 2, figsize=(10, 2.8 * max(1, len(workloads))), squeeze=False,
                             layout="constrained")
    for (ax_e, ax_t), workload in zip(axes, workloads):
        g = ok[ok["workload"] == workload].sort_values("latency_s").head(designs)
        labels = g["design"].tolist()
        bottom = np.zeros(len(g))
        for comp in COMPONENTS:
            values = g.get(f"energy_{comp}_j", pd.Series(0.0, index=g.index)).fillna(0).to_numpy() * 1e3
            ax_e.barh(labels, values, left=bottom, label=comp)
            bottom += values
        ax_e.set_xlabel("energy (mJ)")
        ax_e.set_title(f"{workload}: energy")
        bottom = np.zeros(len(g))
        for unit in ("mxu", "vpu", "dma"):
            values = g.get(f"latency_{unit}_s", pd.Series(0.0, index=g.index)).fillna(0).to_numpy() * 1e3
            ax_t.barh(labels, values, left=bottom, label=unit)
            bottom += values
        ax_t.set_xlabel("latency (ms)")
        ax_t.set_title(f"{workload}: latency by unit")
        ax_t.set_yticklabels([])
    axes[0][0].legend(fontsize=7, ncol=4)
    axes[0][1].legend(fontsize=7)
    return _save(fig, stem)


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
