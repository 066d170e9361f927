"""archsim's and the roofline's error on measured calls: per row, per op and overall.

The error of a prediction is signed and relative: (predicted - measured) / measured, so -0.5 is
a prediction at half the measured time. Per op (the CSV's op names, in their order of first
appearance) and over all rows: the count, the mean and median absolute error, the mean signed
error and the worst error (signed: the row whose absolute error is largest, with its line).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from archsim.calibrate.measurements import Measurement
from archsim.calibrate.predict import Predictor, roofline
from archsim.errors import ArchsimError, ConfigError

ALL = "all"  # the overall statistics' key
MAX_ERROR_LINES = 20


@dataclass(frozen=True)
class RowResult:
    row: Measurement
    predicted_s: float
    roofline_s: float

    @property
    def error(self) -> float:
        return (self.predicted_s - self.row.measured_s) / self.row.measured_s

    @property
    def roofline_error(self) -> float:
        return (self.roofline_s - self.row.measured_s) / self.row.measured_s

    def as_dict(self) -> dict:
        r = self.row
        return {"line": r.line, "op": r.op, "kind": r.kind, "dtype": str(r.dtype), **r.dims,
                "measured_s": r.measured_s, "overhead_s": r.overhead_s, "predicted_s": self.predicted_s,
                "roofline_s": self.roofline_s, "error": self.error, "roofline_error": self.roofline_error,
                "source": r.source}


@dataclass(frozen=True)
class Stats:
    count: int
    mean_abs: float
    median_abs: float
    mean: float
    worst: float
    worst_line: int

    @classmethod
    def of(cls, errors: list[tuple[int, float]]) -> "Stats":
        """Statistics of (line, signed error) pairs; the first of equally bad rows is the worst."""
        absolute = [abs(e) for _, e in errors]
        line, worst = max(errors, key=lambda pair: abs(pair[1]))
        return cls(len(errors), statistics.fmean(absolute), statistics.median(absolute),
                   statistics.fmean(e for _, e in errors), worst, line)

    def as_dict(self) -> dict:
        return {"count": self.count, "mean_abs_error": self.mean_abs, "median_abs_error": self.median_abs,
                "mean_error": self.mean, "worst_error": self.worst, "worst_line": self.worst_line}


def evaluate(rows: Iterable[Measurement], predictor: Predictor, source: str | Path) -> list[RowResult]:
    """Predict every row; the rows archsim cannot run are errors, one line each."""
    results, problems = [], []
    for row in rows:
        try:
            results.append(RowResult(row, predictor.predict(row), roofline(predictor.hw, row)))
        except ArchsimError as exc:
            problems += [str(ConfigError(line, file=f"{source}: line {row.line}")) for line in str(exc).splitlines()]
    if problems:
        more = len(problems) - MAX_ERROR_LINES
        shown = problems[:MAX_ERROR_LINES] + ([f"{source}: ... and {more} more"] if more > 0 else [])
        raise ConfigError("\n".join(shown))
    return results


def row_dicts(results: list[RowResult], fitted: list[RowResult] | None = None) -> list[dict]:
    """Every row: its inputs, measured, predicted and roofline times and errors (and the fitted
    config's time and error)."""
    rows = [r.as_dict() for r in results]
    for data, f in zip(rows, fitted or ()):
        data["fitted_s"], data["fitted_error"] = f.predicted_s, f.error
    return rows


def summarize(results: list[RowResult]) -> dict[str, dict[str, Stats]]:
    """{model: {op: Stats, ..., "all": Stats}} for model archsim and roofline."""
    ops = list(dict.fromkeys(r.row.op for r in results))
    out = {}
    for model, error in (("archsim", lambda r: r.error), ("roofline", lambda r: r.roofline_error)):
        groups = {op: [(r.row.line, error(r)) for r in results if r.row.op == op] for op in ops}
        groups[ALL] = [(r.row.line, error(r)) for r in results]
        out[model] = {op: Stats.of(errors) for op, errors in groups.items()}
    return out


def stats_json(summary: dict[str, dict[str, Stats]]) -> dict:
    return {model: {op: s.as_dict() for op, s in per_op.items()} for model, per_op in summary.items()}


def _pct(x: float) -> str:
    return f"{x * 100:+.1f}%"


def _cells(s: Stats) -> str:
    worst = f"{_pct(s.worst)} ({s.worst_line})"
    return f"{s.mean_abs * 100:7.1f}% {s.median_abs * 100:8.1f}% {_pct(s.mean):>8} {worst:>17}"


def table(summary: dict[str, dict[str, Stats]], title: str = "") -> str:
    """A plain-text table: a row per op and one for all rows; archsim's errors, the roofline's beside."""
    width = len(_cells(Stats(0, 0, 0, 0, 0, 0)))
    lines = [title] if title else []
    lines.append(f"{'':12} {'':>4}  {'archsim':<{width}}   roofline")
    head = f"{'mean|e|':>8} {'median|e|':>9} {'mean e':>8} {'worst e (line)':>17}"
    lines.append(f"{'op':12} {'rows':>4}  {head}   {head}")
    for op, s in summary["archsim"].items():
        lines.append(f"{op:12} {s.count:4d}  {_cells(s)}   {_cells(summary['roofline'][op])}")
    return "\n".join(lines)
