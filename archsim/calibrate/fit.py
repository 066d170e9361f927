"""Fit a chip's calibration fields (``parameters.REGISTRY``) to measured calls.

The fit minimises the residuals log(predicted / measured) over the rows (soft-l1 loss), within
each field's bounds. The model has kinks (an op is memory- or compute-bound: a max()), so a
local fit started at a poor value stays there (at 2 cycles per exp every softmax row looks
memory-bound and the exp cost has no gradient). So the fit does not start from the config:

1. a coordinate search: each gridded field in turn over its ``grid`` of 12 values within its
   bounds, the others held, the best kept; two sweeps over the fields in the registry's
   order. The dispatch costs are not gridded: a row's time is its work plus its kind's
   dispatch cost, so at every point of the search each cost is set to its best for its own
   rows (a 1-D fit on times already known);
2. ``scipy.optimize.least_squares`` (trust-region reflective) over every field at once, from
   the search's best point;
3. both from three fixed starts (``STARTS``: the ideal machine, and every gridded field a
   quarter and three quarters along its grid); the lowest cost wins. On the TPUv3 rows the
   starts land in two basins a single field's move cannot cross, and the better is kept.

The config's own values of the fitted fields are never read by either stage (only reported as
"was"), so a fit of the bundled config and of the same config with its calibration reset to
the schema's defaults (``parameters.uncalibrated``) give the same values. Every candidate is
the config file loaded again with the candidate values as overrides, so the config layer
validates it; its predictions are memoised per row and per the values of the fields that
affect that row, so a step in one field re-times only its own rows (the Jacobian's sparsity
says the same to scipy). Deterministic: the same file and rows give the same values.

``fit(path, rows)`` is the function (an experiment cross-validates with it: fit on some rows,
``FitResult.predictor()`` predicts the others); ``write_fitted`` writes the result as a config
that ``extends:`` the input file and sets only the fitted keys.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from scipy.optimize import least_squares, minimize_scalar
from scipy.sparse import lil_matrix

from archsim.calibrate.measurements import Measurement
from archsim.calibrate.parameters import Parameter, parameters_for
from archsim.calibrate.predict import Predictor
from archsim.calibrate.report import ALL, RowResult, Stats, evaluate, summarize
from archsim.config.loader import Override, load_hardware, load_layered
from archsim.config.schema import HardwareConfig
from archsim.errors import ConfigError
from archsim.fileio import atomic_write_text

LABEL = "archsim calibrate --fit"
# soft_l1 rather than linear: a few rows the model cannot follow in shape (a tiny op lost in
# the host's noise, a size where the real kernel switches algorithm) would otherwise pull the
# chip's fields away from what the other rows agree on; within F_SCALE (about 10% in log) the
# loss is still quadratic, so a fit that can match the data is the plain least-squares one.
LOSS = "soft_l1"
F_SCALE = 0.1
DIFF_STEP = 1e-3  # finite-difference step, relative to the (normalised) variables: large enough
                  # that cycle counts rounded to whole cycles still move


SWEEPS = 2  # coordinate-search sweeps over the fields
# Where the searches start: None, every field at its ``start`` (the ideal machine: no dispatch
# cost, full efficiencies and overlap, a cycle per transcendental, no pass cost); q, every
# gridded field a share q of the way along its grid. Fixed, never the config's values.
STARTS = (None, 0.25, 0.75)
OFFSET_GRID = 240  # log-spaced dispatch costs tried for one kind before refining


@dataclass(frozen=True)
class FitResult:
    path: Path  # the config file fitted
    overrides: tuple[Override, ...]  # the user's overrides, then the fitted values: load_hardware(path, overrides)
    parameters: tuple[Parameter, ...]
    old: dict[str, float]  # key -> the config's value before
    values: dict[str, float]  # key -> the fitted value, as written (4 significant digits)
    hw: HardwareConfig  # the fitted config
    before: list[RowResult]
    after: list[RowResult]
    evaluations: int  # candidates evaluated: the coordinate search's and least_squares'
    message: str  # scipy's reason for stopping
    held: tuple[str, ...] = ()  # fields left at the config's value, each with the reason

    @property
    def before_stats(self) -> dict[str, dict[str, Stats]]:
        return summarize(self.before)

    @property
    def after_stats(self) -> dict[str, dict[str, Stats]]:
        return summarize(self.after)

    def predictor(self) -> Predictor:
        """Predictions with the fitted values (for rows the fit did not see, say)."""
        return Predictor(self.hw, self.path, self.overrides)

    def rows_of(self, p: Parameter) -> tuple[int, list[str]]:
        """How many fitted rows inform ``p``, and of which ops."""
        ops = [r.row.op for r in self.before if r.row.op in p.ops]
        return len(ops), list(dict.fromkeys(ops))

    def as_dict(self) -> dict:
        return {"values": {p.key: {"old": self.old[p.key], "fitted": self.values[p.key],
                                   "text": p.text(self.values[p.key]), "also": list(p.also)} for p in self.parameters},
                "held": list(self.held), "evaluations": self.evaluations, "message": self.message,
                "mean_abs_error": {"before": self.before_stats["archsim"][ALL].mean_abs,
                                   "after": self.after_stats["archsim"][ALL].mean_abs}}


def soft_l1_cost(residuals: np.ndarray) -> float:
    """least_squares' cost for ``LOSS`` and ``F_SCALE``: 0.5 f^2 sum rho((r / f)^2), rho(z) = 2 (sqrt(1 + z) - 1)."""
    z = (residuals / F_SCALE) ** 2
    return float(0.5 * F_SCALE**2 * np.sum(2 * (np.sqrt(1 + z) - 1)))


def fit(path: str | Path, rows: Sequence[Measurement], keys: list[str] | None = None,
        overrides: Sequence[Override] = (), source: str = "measurements") -> FitResult:
    """Fit the calibration fields of the config at ``path`` (with ``overrides``) to ``rows``:
    every field the rows inform and can tell apart (``keys``: these only). ``source`` names the
    rows in errors."""
    path, overrides = Path(path), tuple(overrides)
    hw = load_hardware(path, overrides)
    before = evaluate(rows, Predictor(hw, path, overrides), source)
    params, held_params = parameters_for(hw, rows, keys)
    held = tuple(f"{p.key} kept at {p.text(p.read(hw))} (the config's): {p.held}" for p in held_params)
    fixed = overrides + _dispatch_default(path, overrides, hw, params)
    old = {p.key: p.read(hw) for p in params}
    if not params:
        return FitResult(path, fixed, (), {}, {}, hw, before, before, 0, "nothing to fit", held)
    scale = np.array([p.scale for p in params])
    low = np.array([p.low for p in params]) / scale
    high = np.array([p.high for p in params]) / scale
    affecting = [tuple(j for j, p in enumerate(params) if r.op in p.ops) for r in rows]
    sparsity = lil_matrix((len(rows), len(params)), dtype=int)
    for i, js in enumerate(affecting):
        for j in js:
            sparsity[i, j] = 1
    memo: dict[tuple, float] = {}
    measured = np.array([r.measured_s for r in rows])

    def candidate(x: np.ndarray) -> tuple[Override, ...]:
        return fixed + tuple(o for p, v, s in zip(params, x, scale) for o in p.overrides(float(v * s), LABEL))

    def residuals(x: np.ndarray) -> np.ndarray:
        predictor = None
        out = np.empty(len(rows))
        for i, row in enumerate(rows):
            key = (row.signature, tuple(float(x[j]) for j in affecting[i]))
            if key not in memo:
                if predictor is None:  # built only when some row is not known yet
                    chosen = candidate(x)
                    predictor = Predictor(load_hardware(path, chosen), path, chosen)
                memo[key] = predictor.predict(row)
            out[i] = memo[key]
        return np.log(out / measured)

    margin = np.minimum(0.01 * (high - low), 0.1)
    evaluations = 0
    # The dispatch costs are offsets: a row's time is its work plus its kind's cost, less the part
    # of the cost its work hides (DispatchConfig.exposed), and each row has one of them. So the
    # search never grids them: at every point it times the work once (the dispatch costs at 0)
    # and sets each cost to its best for its own rows, a 1-D fit on numbers already known
    # (``_best_offset``). That keeps the small rows, which only the dispatch cost explains, from
    # holding the others back.
    offsets = [j for j, p in enumerate(params) if p.key.startswith("dispatch.call.")]
    searched = [j for j in range(len(params)) if j not in offsets]
    members = {j: np.array([i for i, js in enumerate(affecting) if j in js]) for j in offsets}
    # per kind, the part of a call's cost its work hides (DispatchConfig.exposed): fitted, or the
    # config's value
    overlap_at = {p.key.rsplit(".", 1)[1]: j for j, p in enumerate(params) if p.key.startswith("dispatch.call_overlap.")}

    def overlap_of(x: np.ndarray, kind: str) -> float:
        j = overlap_at.get(kind)
        return hw.dispatch.overlap(kind) if j is None else x[j] * scale[j]

    def projected(x: np.ndarray) -> tuple[np.ndarray, float]:
        nonlocal evaluations
        evaluations += 1
        x = x.copy()
        x[offsets] = 0.0
        work = np.exp(residuals(x)) * measured
        time = work.copy()
        for j in offsets:
            mine = members[j]
            overlap = overlap_of(x, params[j].key.rsplit(".", 1)[1])
            x[j] = _best_offset(work[mine], measured[mine], low[j] * scale[j], high[j] * scale[j], overlap) / scale[j]
            d = x[j] * scale[j]
            time[mine] = work[mine] + d - np.minimum(np.minimum(overlap, work[mine]), d)
        return x, soft_l1_cost(np.log(time / measured))

    def search(x: np.ndarray, best: float) -> tuple[np.ndarray, float]:
        """The coordinate search: SWEEPS sweeps over the gridded fields, strict improvements
        only (ties keep the earlier value)."""
        for _ in range(SWEEPS):
            for j in searched:
                for value in params[j].grid:
                    trial = x.copy()
                    trial[j] = value / scale[j]
                    trial, cost = projected(trial)
                    if cost < best:
                        best, x = cost, trial
        return x, best

    def polish(x: np.ndarray, best: float) -> tuple[np.ndarray, float, str]:
        """least_squares from ``x``, every field at once. Strictly inside the bounds: scipy's
        first trust region is as large as x0 (normalised), so a start at 0 (no dispatch cost)
        would take steps of 1e-10 and stop at once on ftol. The variables are the fields over
        their typical sizes (Parameter.scale), so x_scale is 1. A sparsity pattern makes scipy
        use its lsmr solver, whose 2-D subspace step fails for a single variable (IndexError
        in solve_lsq_trust_region_2d, scipy 1.x): one field goes dense."""
        nonlocal evaluations
        x0 = np.clip(x, low + margin, high - margin)
        solution = least_squares(residuals, x0, jac_sparsity=sparsity if len(params) > 1 else None,
                                 bounds=(low, high), x_scale=1.0, loss=LOSS, f_scale=F_SCALE, diff_step=DIFF_STEP,
                                 method="trf")
        evaluations += int(solution.nfev)
        for point in (solution.x, projected(solution.x)[0]):
            cost = soft_l1_cost(residuals(point))
            if cost < best:
                best, x = cost, point
        return x, best, str(solution.message)

    # Each start: the search, then least_squares; the best of the starts wins (the first of
    # equals). The model's kinks leave more than one basin (on the TPUv3 rows: HBM at full
    # speed with 13 cycles a register per pass, or HBM at 0.74 with 5 cycles a pass and dearer
    # transcendentals; 0.3055 against 0.3131), and a move of one field cannot cross from one to
    # the other: the starts land in both, and the better is kept.
    results = []
    for start in STARTS:
        x = np.array([p.start if start is None or not p.grid else p.grid[round(start * (len(p.grid) - 1))]
                      for p in params]) / scale
        x, best = search(*projected(x))
        x, best, message = polish(x, best)
        results.append((best, len(results), x, message))
    best, _, x, message = min(results, key=lambda r: r[:2])
    values = {p.key: p.rounded(float(min(max(v * s, p.low), p.high))) for p, v, s in zip(params, x, scale)}
    final = fixed + tuple(o for p in params for o in p.overrides(values[p.key], LABEL))
    fitted = load_hardware(path, final)
    after = evaluate(rows, Predictor(fitted, path, final), source)
    return FitResult(path, final, tuple(params), old, values, fitted, before, after, evaluations, message, held)


def _best_offset(work: np.ndarray, measured: np.ndarray, low: float, high: float, overlap: float = 0.0) -> float:
    """The dispatch cost d in [low, high] that minimises the soft-l1 cost of log(time / measured)
    over one kind's rows, time = work + d - min(overlap, work, d) (``DispatchConfig.exposed``):
    the best of a log grid, then refined between its neighbours."""
    grid = np.unique(np.concatenate(([low, high], np.geomspace(max(low, high * 1e-6), high, OFFSET_GRID))))

    def time(d):
        return work + d - np.minimum(np.minimum(overlap, work), d)

    def cost(d: float) -> float:
        return soft_l1_cost(np.log(time(d) / measured))

    z = (np.log(time(grid[:, None]) / measured[None, :]) / F_SCALE) ** 2
    k = int(np.argmin(np.sum(np.sqrt(1 + z) - 1, axis=1)))
    best = float(grid[k])
    lo, hi = float(grid[max(k - 1, 0)]), float(grid[min(k + 1, len(grid) - 1)])
    if hi > lo:
        refined = minimize_scalar(cost, bounds=(lo, hi), method="bounded", options={"xatol": 1e-12})
        if refined.fun < cost(best):
            best = float(refined.x)
    return best


def _dispatch_default(path: Path, overrides: tuple[Override, ...], hw: HardwareConfig,
                      params: list[Parameter]) -> tuple[Override, ...]:
    """A ``dispatch.call`` table needs its ``default``: where the file leaves the whole table to
    the schema's, setting one kind must set the default too (at its value, unchanged)."""
    if not any(p.key.startswith("dispatch.call.") for p in params) or any(
            "dispatch.call.default" in p.keys for p in params):
        return ()
    table = load_layered(path, overrides).data.get("dispatch", {})
    if isinstance(table, dict) and isinstance(table.get("call"), dict) and "default" in table["call"]:
        return ()
    default = hw.dispatch.call["default"]
    value = f"{default!r} s" if default else "0 s"
    return (Override(("dispatch", "call", "default"), value, f"dispatch.call.default={value}", LABEL),)


def write_fitted(result: FitResult, out: str | Path, csv_name: str, user_overrides: Sequence[Override] = ()) -> Path:
    """Write ``out``: a config that ``extends:`` the fitted file (a path relative to ``out``'s
    folder) and sets the fitted keys, each commented with its rows and its old value; the
    command line's ``--set`` values too, so that the file is the config that was fitted."""
    out = Path(out)
    parent = os.path.relpath(result.path.resolve(), out.resolve().parent)
    tree: dict = {}
    for o in user_overrides:
        _put(tree, o.path, json.dumps(o.value), f"from the command line: --set {o.text}")
    for o in result.overrides:
        if o.source == LABEL and o.path[-1] == "default":
            _put(tree, o.path, o.value, "kept: a dispatch.call table needs a default")
    for p in result.parameters:
        count, ops = result.rows_of(p)
        was = p.text(result.old[p.key])
        _put(tree, p.path, p.text(result.values[p.key]),
             f"fitted on {csv_name} ({count} {', '.join(ops)} rows); was {was}")
        for key in p.also:
            _put(tree, tuple(key.split(".")), p.text(result.values[p.key]), f"as {p.key}: the default for kinds "
                 "no row measures")
    lines = [f"# {out.name}: {result.path.name} calibrated against {csv_name} by archsim calibrate --fit",
             f"# ({LOSS} loss on log(predicted / measured), {result.evaluations} evaluations)",
             f"extends: {json.dumps(parent)}"]
    lines += _emit(tree, 0)
    atomic_write_text(out, "\n".join(lines) + "\n")
    written = load_hardware(out)
    if written.model_dump() != result.hw.model_dump():  # a --set of a whole section, merged in a file
        raise ConfigError(f"the file written does not reproduce the fitted config (a --set of a whole section "
                          f"merges with {result.path.name}'s in a file); set the fields one by one", file=str(out))
    return out


def _put(tree: dict, path: tuple[str, ...], text: str, comment: str) -> None:
    for part in path[:-1]:
        if not isinstance(tree.get(part), dict):  # a section set whole on the command line: the
            tree[part] = {}                        # check after writing says so
        tree = tree[part]
    tree[path[-1]] = (text, comment)


def _emit(tree: dict, depth: int) -> list[str]:
    lines = []
    for key, value in tree.items():
        if isinstance(value, dict):
            lines.append(f"{'  ' * depth}{key}:")
            lines += _emit(value, depth + 1)
        else:
            text, comment = value
            lines.append(f"{'  ' * depth}{key}: {text}  # {comment}")
    return lines


def describe(result: FitResult, csv_name: str) -> str:
    """The fitted values, one line each: old -> new, and the rows that informed it; the fields
    held at the config's value and why; the mean |error| before and after."""
    lines = [f"fitted {len(result.parameters)} fields on {csv_name} ({len(result.before)} rows; {LOSS} loss on "
             f"log(predicted / measured); a coordinate search, then least squares: {result.evaluations} "
             f"evaluations: {result.message})"]
    width = max((len(p.key) for p in result.parameters), default=0)
    for p in result.parameters:
        count, ops = result.rows_of(p)
        also = f"; also {', '.join(p.also)}" if p.also else ""
        lines.append(f"  {p.key:{width}}  {p.text(result.old[p.key]):>10} -> {p.text(result.values[p.key]):<10}"
                     f"  ({count} {', '.join(ops)} rows{also})")
    lines += [f"  not fitted: {note}" for note in result.held]
    before, after = (s["archsim"][ALL].mean_abs for s in (result.before_stats, result.after_stats))
    lines.append(f"mean |error| over the {len(result.before)} rows: {before * 100:.1f}% before, "
                 f"{after * 100:.1f}% after")
    return "\n".join(lines)
