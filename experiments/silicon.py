"""Silicon validation (issues 16, 17): archsim against LLMCompass's measurements of a TPUv3
and of an A100.

    python experiments/silicon.py --out DIR [--quick] [--jobs N]

Every measured data set has a config here (experiments/data/silicon/README.md), one per chip
(``CHIPS``): one TPUv3 TensorCore's single-op calls (tpuv3_core.csv, 114 rows, on
hw_configs/tpuv3.yaml; its all-reduce rows on a ring of 8 such cores) and one GPT-3 175B layer
on a TPUv3-8 (gpt3_175b_layer.csv, on hw_configs/systems/tpuv3_8.yaml); one A100 80GB's
single-op calls (a100_80gb.csv, 116 rows, on hw_configs/a100_80gb.yaml; all-reduce rows over 4
GPUs) and the same GPT-3 layer on 4 x A100 (hw_configs/systems/a100_80gb_x4.yaml). Per chip:

1. The single-op calls, per op kind and overall (count, mean and median |error|, mean signed
   error, worst): archsim with the bundled config; the plain roofline; a fit of the
   calibration fields on all 114 rows (in-sample); and three cross-validations, each fold
   fitted from the UNcalibrated config (every fitted field at its schema default:
   ``archsim.calibrate.parameters.uncalibrated``) so nothing of the held-out rows leaks in
   through the bundled values:
   - k-fold: 5 folds, each op kind's rows shuffled (seed 16) and dealt round the folds;
   - leave one size regime out: each kind's rows in thirds by size (GEMM m k n, a vector op's
     elements, an all-reduce's bytes); each third held out in turn (small: extrapolating the
     launch cost down; large: the throughput up);
   - leave one op kind out: the held-out kind's own fields cannot be fitted. Its dispatch cost
     is the fitted ``dispatch.call.default`` (the GEMM's launch; with the GEMMs held out, the
     median of the other kinds' fitted costs); fields only it informs stay at their schema
     defaults (GEMMs: a fully hidden weight load; softmax: exp at the config's
     ``special_cycles_per_op``; GELU: tanh likewise; all-reduce: ICI at full speed).
2. The GPT-3 175B layer, prefill and decode, per LLMCompass category: measured, archsim
   (``simulate(hw, workload, dispatch="call")``: each op launched on its own, as LLMCompass
   timed each operator; Q_K_V is the q, k and v projections, LLMCompass's one projection x 3),
   the error, and the plain roofline; the sum of the 12 categories and its error. These rows
   are never fitted on: an out-of-sample check. Also with this run's own in-sample fit.
3. TPU v4, unmeasured: the GEMM shapes of tpuv3_core.csv on hw_configs/tpuv4.yaml (which
   carries TPUv3's fitted calibration, an expectation rather than a fit): TFLOPS and % of peak
   per call, beside TPUv3's measured.

The A100's fits hold ``hbm.efficiency`` at the config's value (``Chip.hold``: measured on
read-only weight streaming, apart from the write share a fit cannot tell from it); so do its
cross-validation folds.

Writes under --out: summary.md and summary.json (the headline tables), silicon.md (every
table), rows.csv (every TPUv3 row under every model), fits.csv (every fit's values),
gpt3_layer.csv, tpuv4_gemm.csv, tpuv3_core_predicted_vs_measured.png (bundled config),
tpuv3_core_cv_predicted_vs_measured.png (5-fold predictions), gpt3_layer_errors.png, and the
A100's alike with an ``a100_`` prefix (no TPU v4 table).
It also tabulates the A100's expected times for LLaMA-2-7B's projections, norms and residual
adds at 1 to 4096 tokens (a100_llama2_7b_ops.csv), which nothing measured.
--quick skips the cross-validations (the in-sample fit still runs). --jobs: processes for the
fits (default 2). The chips and names are in silicon_data.py, the tables and figures in
silicon_report.py.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor

import _common as c
import numpy as np
import pandas as pd

from archsim.api import load_hardware, simulate
from archsim.calibrate.fit import fit
from archsim.calibrate.measurements import Measurement, load_measurements
from archsim.calibrate.parameters import REGISTRY, parameters_for, uncalibrated
from archsim.calibrate.predict import Predictor, op_roofline, roofline
from archsim.calibrate.report import Stats
from archsim.config.loader import Override
from archsim.dtypes import DType
from silicon_data import (A100_CHIP, ALL, CATEGORIES, CHIPS, K, LAYER_CSV, LLAMA_OPS, LLAMA_TOKENS, MODELS, PHASES,
                          REGIMES, SEED, TPUV3, TPUV3_CHIP, TPUV4, Chip)
from silicon_report import chip_markdown, figures, llama_markdown, markdown, summary


# --- the folds and their fits --------------------------------------------------------------

def size_of(row: Measurement) -> int:
    """A row's size, to rank its kind's rows by: a GEMM's m k n, a vector op's elements, an
    all-reduce's bytes."""
    if row.op == "gemm":
        return row.m * row.k * row.n
    if row.op == "all_reduce":
        return row.bytes
    return row.elements if row.elements is not None else row.rows * row.cols


def kfold(rows: list[Measurement]) -> dict[int, int]:
    """line -> fold: each op's rows (in file order) permuted with one generator (seed SEED, the
    ops in order of first appearance) and dealt round the K folds."""
    rng = np.random.default_rng(SEED)
    folds = {}
    for op in dict.fromkeys(r.op for r in rows):
        mine = [r for r in rows if r.op == op]
        for position, i in enumerate(rng.permutation(len(mine))):
            folds[mine[i].line] = position % K
    return folds


def regimes(rows: list[Measurement]) -> dict[int, str]:
    """line -> size regime: each op's rows ranked by size (file order breaks ties), in thirds."""
    out = {}
    for op in dict.fromkeys(r.op for r in rows):
        mine = sorted((r for r in rows if r.op == op), key=lambda r: (size_of(r), r.line))
        for rank, r in enumerate(mine):
            out[r.line] = REGIMES[3 * rank // len(mine)]
    return out


def plans(rows: list[Measurement], quick: bool, chip: Chip = TPUV3_CHIP) -> list[dict]:
    """Every fit to run: a name, the model it feeds, the lines it trains on and predicts."""
    lines = [r.line for r in rows]
    out = [{"name": "all rows", "model": "refit", "train": lines, "test": lines}]
    if quick:
        return [{**p, "chip": chip.key} for p in out]
    folds, sizes = kfold(rows), regimes(rows)
    out += [{"name": f"fold {f + 1} of {K}", "model": "kfold", "train": [n for n in lines if folds[n] != f],
             "test": [n for n in lines if folds[n] == f]} for f in range(K)]
    out += [{"name": f"without the {g} third", "model": "size_out", "train": [n for n in lines if sizes[n] != g],
             "test": [n for n in lines if sizes[n] == g]} for g in REGIMES]
    by_line = {r.line: r for r in rows}
    out += [{"name": f"without {op}", "model": "kind_out", "train": [n for n in lines if by_line[n].op != op],
             "test": [n for n in lines if by_line[n].op == op]} for op in dict.fromkeys(r.op for r in rows)]
    return [{**p, "chip": chip.key} for p in out]


def run_fit(plan: dict) -> dict:
    """One plan's fit from the uncalibrated chip (its ``hold`` fields at the config's values),
    and its predictions of the held-out rows (a process of its own: everything returned is
    plain data)."""
    chip = next(ch for ch in CHIPS if ch.key == plan["chip"])
    rows = {r.line: r for r in load_measurements(chip.csv)}
    bundled = load_hardware(chip.config)
    base = uncalibrated(bundled)
    held = {p.key: p for p in REGISTRY if p.key in chip.hold}
    base += tuple(o for key, p in held.items() for o in p.overrides(p.read(bundled), "held"))
    train = [rows[n] for n in plan["train"]]
    keys = None
    if held:
        keys = [p.key for p in parameters_for(load_hardware(chip.config, base), train)[0] if p.key not in held]
    result = fit(chip.config, train, keys, overrides=base, source=str(chip.csv))
    overrides, note = result.overrides, ""
    if "dispatch.call.default" not in {k for p in result.parameters for k in p.also}:
        # No GEMM rows trained on, so no default launch cost: the median of the fitted kinds'.
        fitted = [v for k, v in result.values.items() if k.startswith("dispatch.call.")]
        default = statistics.median(fitted)
        overrides += (Override(("dispatch", "call", "default"), f"{default!r} s", "dispatch.call.default", "silicon"),)
        note = (f"{plan['name']}: no GEMM rows to fit the default launch on; the held-out rows take "
                f"dispatch.call.default = {default * 1e6:.1f} us, the median of the fitted kinds'")
    predictor = Predictor(load_hardware(chip.config, overrides), chip.config, overrides)
    return {**plan, "values": result.values, "overrides": overrides, "note": note, "held": list(result.held),
            "evaluations": result.evaluations, "predicted": {n: predictor.predict(rows[n]) for n in plan["test"]}}


def run_fits(rows: list[Measurement], quick: bool, jobs: int, chip: Chip = TPUV3_CHIP) -> list[dict]:
    todo = plans(rows, quick, chip)
    if jobs <= 1:
        return [run_fit(p) for p in todo]
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        return list(pool.map(run_fit, todo))


# --- the single-op calls ---------------------------------------------------------------------

def core_rows(rows: list[Measurement], fits: list[dict], chip: Chip = TPUV3_CHIP) -> pd.DataFrame:
    """A row per measurement: its predictions under every model (NaN: not run) and errors."""
    hw = load_hardware(chip.config)
    bundled = Predictor(hw, chip.config)
    predicted = {m: {} for m in MODELS}
    for r in rows:
        predicted["archsim"][r.line] = bundled.predict(r)
        predicted["roofline"][r.line] = roofline(hw, r)
    folds, sizes = kfold(rows), regimes(rows)
    for f in fits:
        predicted[f["model"]].update(f["predicted"])
    out = []
    for r in rows:
        data = {"line": r.line, "op": r.op, "dtype": str(r.dtype), **r.dims, "size": size_of(r),
                "fold": folds[r.line] + 1, "regime": sizes[r.line], "measured_s": r.measured_s}
        for m in MODELS:
            value = predicted[m].get(r.line, np.nan)
            data[f"{m}_s"], data[f"{m}_error"] = value, (value - r.measured_s) / r.measured_s
        out.append(data)
    return pd.DataFrame(out)


def stats(frame: pd.DataFrame) -> dict[str, dict[str, Stats | None]]:
    """model -> op (and "all") -> the statistics of its errors (None: the model was not run)."""
    ops = list(dict.fromkeys(frame.op))
    out = {}
    for m in MODELS:
        out[m] = {}
        for op in [*ops, ALL]:
            mine = frame if op == ALL else frame[frame.op == op]
            pairs = [(int(n), float(e)) for n, e in zip(mine.line, mine[f"{m}_error"]) if np.isfinite(e)]
            out[m][op] = Stats.of(pairs) if pairs else None
    return out


def fits_frame(fits: list[dict]) -> pd.DataFrame:
    keys = [p.key for p in REGISTRY]
    out = []
    for f in fits:
        row = {"fit": f["name"], "model": f["model"], "rows_trained": len(f["train"]), "rows_predicted": len(f["test"]),
               "evaluations": f["evaluations"]}
        row.update({k: f["values"].get(k, np.nan) for k in keys if any(k in g["values"] for g in fits)})
        row["note"] = "; ".join([f["note"]] * bool(f["note"]) + f["held"])
        row["notes"] = [f["note"]] * bool(f["note"]) + f["held"]
        out.append(row)
    return pd.DataFrame(out)


# --- the GPT-3 layer ---------------------------------------------------------------------------

def gpt3_layer(overrides: tuple[Override, ...] = (), chip: Chip = TPUV3_CHIP) -> pd.DataFrame:
    """Per phase and category: measured, archsim (the chip's system with ``overrides``), roofline."""
    measured = pd.read_csv(LAYER_CSV)
    measured = measured[measured.system == chip.system_rows].set_index(["phase", "category"]).measured_s
    hw = load_hardware(chip.system, overrides)
    out = []
    for phase in PHASES:
        workload = c.workload(f"gpt3_175b_layer_{phase}.yaml", hw=hw)
        ops = {op.name: op for ph in workload.phases for op in ph.graph.ops()}
        result = simulate(hw, workload, dispatch="call")
        times = {}
        for stage in result.stages:
            for cost in stage.ops:
                times[cost.name] = times.get(cost.name, 0.0) + cost.latency_s
        for category, names in CATEGORIES.items():
            archsim = sum(times[n] for n in names)
            bound = sum(op_roofline(hw, ops[n]) for n in names)
            real = float(measured[(phase, category)])
            out.append({"phase": phase, "category": category, "ops": " + ".join(names), "measured_s": real,
                        "archsim_s": archsim, "error": archsim / real - 1, "roofline_s": bound,
                        "roofline_error": bound / real - 1})
    return pd.DataFrame(out)


def layer_totals(frame: pd.DataFrame) -> dict[str, dict]:
    out = {}
    for phase in PHASES:
        p = frame[frame.phase == phase]
        worst = p.loc[p.error.abs().idxmax()]
        measured, archsim, bound = p.measured_s.sum(), p.archsim_s.sum(), p.roofline_s.sum()
        qkv, wo = (p[p.category == name].iloc[0] for name in ("Q_K_V", "Wo_proj"))
        out[phase] = {"measured_s": measured, "archsim_s": archsim, "error": archsim / measured - 1,
                      "error_without_qkv": (archsim - qkv.archsim_s) / (measured - qkv.measured_s) - 1,
                      "qkv_s": qkv.measured_s, "wo_s": wo.measured_s, "qkv_over_wo": qkv.measured_s / wo.measured_s,
                      "roofline_s": bound, "roofline_error": bound / measured - 1,
                      "mean_abs_category_error": float(p.error.abs().mean()),
                      "worst_category": worst.category, "worst_error": float(worst.error)}
    return out


# --- TPU v4 -------------------------------------------------------------------------------------

def tpuv4(rows: list[Measurement]) -> pd.DataFrame:
    """The GEMM rows' shapes on TPUv4 (one call each, launch included, as measured on TPUv3)."""
    v3, v4 = load_hardware(TPUV3), load_hardware(TPUV4)
    p3, p4 = Predictor(v3, TPUV3), Predictor(v4, TPUV4)
    peak3, peak4 = (2 * hw.peak_macs_per_second(rows[0].dtype) for hw in (v3, v4))
    out = []
    for r in (r for r in rows if r.op == "gemm"):
        flops = 2 * r.m * r.k * r.n
        t3, t4 = p3.predict(r), p4.predict(r)
        out.append({"m": r.m, "k": r.k, "n": r.n, "tpuv3_measured_tflops": flops / r.measured_s / 1e12,
                    "tpuv3_measured_peak": flops / r.measured_s / peak3, "tpuv3_archsim_peak": flops / t3 / peak3,
                    "tpuv4_archsim_s": t4, "tpuv4_archsim_tflops": flops / t4 / 1e12,
                    "tpuv4_archsim_peak": flops / t4 / peak4,
                    "tpuv4_over_tpuv3_measured": r.measured_s / t4})
    return pd.DataFrame(out)


# --- the A100 on LLaMA-2-7B's ops: what the fit expects where nothing was measured --------------

def llama_a100() -> pd.DataFrame:
    """LLaMA-2-7B's projections, norms and residual adds at 1 to 4096 tokens on the bundled A100,
    one call each (as the measurements were taken), beside the plain roofline: predictions with
    no measurement to check them against."""
    hw = load_hardware(A100_CHIP.config)
    predictor = Predictor(hw, A100_CHIP.config)
    out = []
    for label, op, dims in LLAMA_OPS:
        for t in LLAMA_TOKENS:
            row = Measurement(0, op, DType.FP16, 1.0, **dims(t))
            time_s = predictor.predict(row)
            out.append({"op": label, "tokens": t, "archsim_s": time_s, "roofline_s": roofline(hw, row),
                        "launch_s": hw.dispatch.cost("call", row.kind)})
    return pd.DataFrame(out)


def main(argv: list[str] | None = None) -> int:
    parser = c.parser(__doc__)
    parser.add_argument("--jobs", type=int, default=2, help="processes for the fits (default 2)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    headlines, sections, data = [], [], {}
    for chip in CHIPS:
        rows = load_measurements(chip.csv)
        fits = run_fits(rows, args.quick, args.jobs, chip)
        frame = core_rows(rows, fits, chip)
        table = stats(frame)
        refit = next(f for f in fits if f["model"] == "refit")
        layer, layer_refit = gpt3_layer(chip=chip), gpt3_layer(refit["overrides"], chip)
        totals, totals_refit = layer_totals(layer), layer_totals(layer_refit)
        v4 = tpuv4(rows) if chip is TPUV3_CHIP else None
        headline, numbers = summary(table, totals, totals_refit, v4, args.quick, chip)
        headlines.append(f"### {chip.label}\n\n{headline}")
        fitted = fits_frame(fits)
        data.update(numbers)
        if v4 is not None:
            data["tpuv4_gemm"] = v4.to_dict("records")
        data[f"{chip.key}fits"] = [{k: v for k, v in f.items() if k in ("name", "model", "values", "note", "held")}
                                   for f in fits]
        sections.append(chip_markdown(frame, table, fitted, layer, layer_refit, v4, args.quick, chip))
        c.write_csv(frame, args.out / f"{chip.key}rows.csv")
        c.write_csv(fitted.drop(columns="notes"), args.out / f"{chip.key}fits.csv")
        c.write_csv(pd.concat([layer.assign(config="bundled"), layer_refit.assign(config="refit")]),
                    args.out / f"{chip.key}gpt3_layer.csv")
        if v4 is not None:
            c.write_csv(v4, args.out / "tpuv4_gemm.csv")
        if chip is A100_CHIP:
            llama = llama_a100()
            c.write_csv(llama, args.out / "a100_llama2_7b_ops.csv")
            sections.append(llama_markdown(llama))
        figures(rows, frame, layer, args.out, args.quick, chip)
    headline = "\n".join(headlines)
    c.write_atomic(args.out / "summary.md", headline)
    c.write_atomic(args.out / "summary.json", json.dumps(data, indent=1, default=float) + "\n")
    c.write_atomic(args.out / "silicon.md", markdown(sections, headline))
    print(headline)
    print(f"[silicon: {time.perf_counter() - start:.1f} s]", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
