"""Fit a chip's calibration fields (``parameters.REGISTRY``) to measured calls.

The fit minimises the residuals log(predicted / measured) over the rows, with
``scipy.optimize.least_squares`` (trust-region reflective, within each field's bounds), from the
config's own values (clipped just inside the bounds). Every candidate is the config file loaded again
with the candidate values as overrides, so the config layer validates it; its predictions are
memoised per row and per the values of the fields that affect that row, so the finite
differences of one field re-time only its own rows (the Jacobian's sparsity says the same to
scipy). Deterministic: the same file and rows give the same values.

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
from scipy.optimize import least_squares
from scipy.sparse import lil_matrix

from archsim.calibrate.measurements import Measurement
from archsim.calibrate.parameters import Parameter, parameters_for
from archsim.calibrate.predict import Predictor
from archsim.calibrate.report import RowResult, Stats, evaluate, summarize
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
    evaluations: int
    message: str  # scipy's reason for stopping

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
                                   "text": p.text(self.values[p.key])} for p in self.parameters},
                "evaluations": self.evaluations, "message": self.message}


def fit(path: str | Path, rows: Sequence[Measurement], keys: list[str] | None = None,
        overrides: Sequence[Override] = (), source: str = "measurements") -> FitResult:
    """Fit the calibration fields of the config at ``path`` (with ``overrides``) to ``rows``:
    every field the rows inform (``keys``: these only). ``source`` names the rows in errors."""
    path, overrides = Path(path), tuple(overrides)
    hw = load_hardware(path, overrides)
    before = evaluate(rows, Predictor(hw, path, overrides), source)
    params = parameters_for(hw, {r.op for r in rows}, keys)
    fixed = overrides + _dispatch_default(path, overrides, hw, params)
    old = {p.key: p.read(hw) for p in params}
    if not params:
        return FitResult(path, fixed, (), {}, {}, hw, before, before, 0, "nothing to fit")
    scale = np.array([p.scale for p in params])
    low = np.array([p.low for p in params]) / scale
    high = np.array([p.high for p in params]) / scale
    # Strictly inside the bounds: scipy's first trust region is as large as x0 (normalised), so
    # a start at 0 (no dispatch cost) would take steps of 1e-10 and stop at once on ftol.
    margin = np.minimum(0.01 * (high - low), 0.1)
    x0 = np.clip(np.array([old[p.key] for p in params]) / scale, low + margin, high - margin)
    affecting = [tuple(j for j, p in enumerate(params) if r.op in p.ops) for r in rows]
    sparsity = lil_matrix((len(rows), len(params)), dtype=int)
    for i, js in enumerate(affecting):
        for j in js:
            sparsity[i, j] = 1
    memo: dict[tuple, float] = {}
    measured = np.array([r.measured_s for r in rows])

    def candidate(x: np.ndarray) -> tuple[Override, ...]:
        return fixed + tuple(p.override(float(v * s), LABEL) for p, v, s in zip(params, x, scale))

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

    # The variables are the fields over their typical sizes (Parameter.scale), so x_scale is 1.
    # A sparsity pattern makes scipy use its lsmr solver, whose 2-D subspace step fails for a
    # single variable (IndexError in solve_lsq_trust_region_2d, scipy 1.x): one field goes dense.
    solution = least_squares(residuals, x0, jac_sparsity=sparsity if len(params) > 1 else None,
                             bounds=(low, high), x_scale=1.0, loss=LOSS, f_scale=F_SCALE, diff_step=DIFF_STEP,
                             method="trf")
    values = {p.key: p.rounded(float(min(max(v * s, p.low), p.high))) for p, v, s in zip(params, solution.x, scale)}
    final = fixed + tuple(p.override(values[p.key], LABEL) for p in params)
    fitted = load_hardware(path, final)
    after = evaluate(rows, Predictor(fitted, path, final), source)
    return FitResult(path, final, tuple(params), old, values, fitted, before, after, int(solution.nfev),
                     str(solution.message))


def _dispatch_default(path: Path, overrides: tuple[Override, ...], hw: HardwareConfig,
                      params: list[Parameter]) -> tuple[Override, ...]:
    """A ``dispatch.call`` table needs its ``default``: where the file leaves the whole table to
    the schema's, setting one kind must set the default too (at its value, unchanged)."""
    if not any(p.key.startswith("dispatch.call.") for p in params):
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
    """The fitted values, one line each: old -> new, and the rows that informed it."""
    lines = [f"fitted {len(result.parameters)} fields on {csv_name} ({len(result.before)} rows; {LOSS} loss on "
             f"log(predicted / measured); {result.evaluations} evaluations: {result.message})"]
    width = max((len(p.key) for p in result.parameters), default=0)
    for p in result.parameters:
        count, ops = result.rows_of(p)
        lines.append(f"  {p.key:{width}}  {p.text(result.old[p.key]):>10} -> {p.text(result.values[p.key]):<10}"
                     f"  ({count} {', '.join(ops)} rows)")
    return "\n".join(lines)

