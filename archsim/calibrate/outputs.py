"""The files of ``archsim calibrate --out DIR``: every row as CSV, and predicted against
measured as a log-log scatter. Each written whole or not at all, never through a link
(``archsim.fileio.atomic_write``)."""

from __future__ import annotations

import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display needed
import matplotlib.pyplot as plt  # noqa: E402

from archsim.calibrate.measurements import DIM_COLUMNS  # noqa: E402
from archsim.calibrate.report import RowResult, row_dicts  # noqa: E402
from archsim.fileio import atomic_write  # noqa: E402

ROW_COLUMNS = ("line", "op", "kind", "dtype", *DIM_COLUMNS, "measured_s", "overhead_s", "predicted_s",
               "roofline_s", "error", "roofline_error", "fitted_s", "fitted_error", "source")


def write_outputs(results: list[RowResult], out_dir: Path, title: str,
                  fitted: list[RowResult] | None = None) -> list[Path]:
    """DIR/rows.csv (with the fitted config's times beside when there is one) and
    DIR/predicted_vs_measured.png (the fitted config's when there is one); the folder is
    created if missing."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    return [write_rows(results, out_dir / "rows.csv", fitted),
            plot(fitted or results, out_dir / "predicted_vs_measured.png", title)]


def write_rows(results: list[RowResult], path: Path, fitted: list[RowResult] | None = None) -> Path:
    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, ROW_COLUMNS, lineterminator="\n")
            writer.writeheader()
            for data in row_dicts(results, fitted):
                writer.writerow({c: "" if data.get(c) is None else data[c] for c in ROW_COLUMNS})

    return atomic_write(path, write)


def plot(results: list[RowResult], path: Path, title: str) -> Path:
    """Predicted against measured seconds, log-log: a colour per op, archsim filled, the
    roofline hollow in the same colour, and the line y = x."""
    fig, ax = plt.subplots(figsize=(6, 5.5))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    ops = list(dict.fromkeys(r.row.op for r in results))
    for i, op in enumerate(ops):
        mine = [r for r in results if r.row.op == op]
        colour = colours[i % len(colours)]
        measured = [r.row.measured_s for r in mine]
        ax.scatter(measured, [r.predicted_s for r in mine], s=18, color=colour, label=f"{op} (archsim)")
        ax.scatter(measured, [r.roofline_s for r in mine], s=18, facecolors="none", edgecolors=colour,
                   label=f"{op} (roofline)")
    values = [v for r in results for v in (r.row.measured_s, r.predicted_s, r.roofline_s) if v > 0]
    low, high = min(values) / 1.5, max(values) * 1.5
    ax.plot([low, high], [low, high], color="black", linewidth=0.8, label="predicted = measured")
    ax.set(xscale="log", yscale="log", xlim=(low, high), ylim=(low, high), xlabel="measured (s)",
           ylabel="predicted (s)", title=title)
    ax.grid(True, which="major", linewidth=0.3)
    ax.legend(fontsize=7, loc="upper left")
    try:
        return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=150, bbox_inches="tight"))
    finally:
        plt.close(fig)
