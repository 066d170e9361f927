"""The silicon study's tables and figures (``silicon.py`` computes what they show)."""

from __future__ import annotations

from pathlib import Path

import _common as c
import numpy as np
import pandas as pd

from archsim.api import load_hardware
from archsim.calibrate.measurements import Measurement
from archsim.calibrate.outputs import plot
from archsim.calibrate.report import RowResult
from archsim.dtypes import DType
from silicon_data import ALL, K, LAUNCHES, LLAMA_TOKENS, MODELS, PHASES, REGIMES, TPUV3, TPUV3_CHIP, TPUV4, Chip

def pct(x: float | None, signed: bool = False) -> str:
    if x is None or not np.isfinite(x):
        return "-"
    return f"{x * 100 + 0.0:+.1f}%" if signed else f"{x * 100:.1f}%"


def summary(table: dict, layer: dict, layer_refit: dict, v4: pd.DataFrame | None, quick: bool,
            chip: Chip = TPUV3_CHIP) -> tuple[str, dict]:
    """The headline tables and notes (markdown), and the same numbers as a dictionary (keys:
    the TPUv3's ``tpuv3_core`` and ``gpt3_175b_layer``; another chip's prefixed with its key)."""
    ops = [op for op in table["archsim"] if op != ALL] + [ALL]
    calls, layer_key = (chip.key + "core", chip.key + "gpt3_175b_layer") if chip.key else ("tpuv3_core", "gpt3_175b_layer")
    data = {calls: {op: {"n": table["archsim"][op].count, **{
        m: (table[m][op].mean_abs if table[m][op] else None) for m in MODELS}} for op in ops},
        layer_key: {phase: {**layer[phase], "refit_error": layer_refit[phase]["error"]} for phase in PHASES}}
    head = [f"{chip.csv.name}: mean abs. error", "n", *MODELS.values()]
    body = [[op, data[calls][op]["n"], *(pct(data[calls][op][m]) for m in MODELS)] for op in ops]
    decode, prefill = layer["decode"], layer["prefill"]
    text = [c.md_table(head, body), "",
            c.md_table([f"GPT-3 175B layer, {chip.system_rows} (out of sample)", "measured", "archsim", "error of the sum",
                        "without Q_K_V", "mean abs. error per category", "worst category", "refit: error of the sum",
                        "roofline: error of the sum"],
                       [[phase, c.ms(v["measured_s"]), c.ms(v["archsim_s"]), pct(v["error"], True),
                         pct(v["error_without_qkv"], True), pct(v["mean_abs_category_error"]),
                         f"{v['worst_category']} {pct(v['worst_error'], True)}", pct(layer_refit[phase]["error"], True),
                         pct(v["roofline_error"], True)] for phase, v in layer.items()]), "",
            f"- In-sample: the bundled config (fitted on these {table['archsim'][ALL].count} rows) and a refit on all of them "
            "from the uncalibrated config" + (f" ({', '.join(chip.hold)} held at the config's value)" if chip.hold else "")
            + ". " + ("Cross-validated: each fold fitted from the uncalibrated config (calibration "
                      "fields at their schema defaults) on the other rows only; leave-kind-out "
                      "gives the held-out kind the fitted default launch cost and leaves its own "
                      "fields at their defaults." if not quick else "Cross-validation not run (--quick)."),
            "- The GPT-3 layer is never fitted on."]
    if chip is not TPUV3_CHIP or v4 is None:
        return "\n".join(text) + "\n", data
    flops = 2 * v4.m * v4.k * v4.n
    big, small = v4.loc[flops.idxmax()], v4[(v4.k == 12288) & (v4.n == 12288)].sort_values("m").iloc[0]
    v3_peak, v4_peak = (2 * load_hardware(path).peak_macs_per_second(DType.BF16) for path in (TPUV3, TPUV4))
    text[-1] += (" Its decode Q_K_V measured "
                 f"{c.ms(decode['qkv_s'])}, only {decode['qkv_over_wo']:.2f}x Wo_proj's {c.ms(decode['wo_s'])}, a "
                 f"projection of the same weight size and MACs (prefill: {prefill['qkv_over_wo']:.2f}x). Three calls, "
                 "as archsim models it and as LLMCompass's GPU script times it (one projection x 3), would take about "
                 "3x; so the sums are also given without Q_K_V.")
    text += [
            f"- TPU v4 (no measurements; TPUv3's fitted calibration carried over), per call: {shape(big)} at "
            f"{pct(big.tpuv4_archsim_peak)} of v4's {v4_peak / 1e12:.0f} TFLOPS bf16 peak (TPUv3 measured "
            f"{pct(big.tpuv3_measured_peak)} of {v3_peak / 1e12:.1f}); {shape(small)} at "
            f"{pct(small.tpuv4_archsim_peak)} (TPUv3 measured {pct(small.tpuv3_measured_peak)}): the same launch "
            "cost weighs more on the faster chip."]
    return "\n".join(text) + "\n", data


def shape(row) -> str:
    return f"{int(row.m)} x {int(row.k)} x {int(row.n)}"


def stats_table(table: dict, model: str) -> str:
    rows = [[op, s.count, pct(s.mean_abs), pct(s.median_abs), pct(s.mean, True),
             f"{pct(s.worst, True)} (line {s.worst_line})"]
            for op, s in table[model].items() if s is not None]
    return c.md_table(["op", "n", "mean abs.", "median abs.", "mean signed", "worst"], rows)


def regime_table(frame: pd.DataFrame) -> str:
    ops = list(dict.fromkeys(frame.op))
    rows = []
    for op in [*ops, ALL]:
        mine = frame if op == ALL else frame[frame.op == op]
        rows.append([op, *(f"{pct(mine[mine.regime == g].size_out_error.abs().mean())} "
                           f"(n={int((mine.regime == g).sum())})" for g in REGIMES)])
    return c.md_table(["op", *(f"{g} third held out" for g in REGIMES)], rows)


# The fits table's headers of the non-dispatch fields.
SHORT = {"hbm.efficiency": "HBM eff.", "mxu.weight_load_overlap": "overlap", "vpu.pass_cycles_per_vreg": "pass cycles",
         "vpu.special_cycles.exp": "exp", "vpu.special_cycles.tanh": "tanh", "ici.efficiency": "ICI eff.",
         "sm.tensor_efficiency": "tensor eff.", "hbm.write_efficiency": "HBM write eff.", "l2.efficiency": "L2 eff.",
         "nvlink.efficiency": "NVLink eff.", "collectives.protocols.ll.bandwidth_share": "LL share",
         "collectives.protocols.ll128.base_latency": "LL128 latency",
         "collectives.protocols.simple.base_latency": "Simple latency"}


def markdown(sections: list[str], headline: str) -> str:
    return "\n".join(["# Silicon validation: archsim against LLMCompass's TPUv3 and A100 measurements", "",
                      "error = (predicted - measured) / measured.", "", "## Headline", "", headline, *sections])


def chip_markdown(frame: pd.DataFrame, table: dict, fits: pd.DataFrame, layer: pd.DataFrame, layer_refit: pd.DataFrame,
                  v4: pd.DataFrame | None, quick: bool, chip: Chip = TPUV3_CHIP) -> str:
    parts = [f"# {chip.label}", ""]
    for m, label in MODELS.items():
        if any(s is not None for s in table[m].values()):
            parts += [f"## {chip.csv.name}: {label}", "", stats_table(table, m), ""]
        else:
            parts += [f"## {chip.csv.name}: {label}", "", "not run (--quick)", ""]
    if not quick:
        parts += ["## Leave-size-regime-out, by the third held out", "",
                  "Each op's rows in thirds by size; each third predicted by a fit on the other two (mean abs. error).",
                  "", regime_table(frame), ""]
    overlaps = [k for k in fits.columns if k.startswith("dispatch.call_overlap.")]
    held = f" ({', '.join(chip.hold)} held at the config's value)" if chip.hold else ""
    parts += ["## The fits", "", f"Every fit starts from {chip.config.relative_to(c.ROOT)} with its calibration fields "
              f"at their schema defaults{held}. Leave-kind-out: the held-out kind's dispatch cost is the fitted "
              "default (the GEMM's launch); its own fields stay at their defaults.", "",
              c.md_table(["fit", "rows", "gemm launch", "softmax", "layernorm", "activation", "all-reduce",
                          *(f"overlap {k.rsplit('.', 1)[1]}" for k in overlaps), *(SHORT[k] for k in chip.fields)],
                         [[f["fit"], f["rows_trained"], *(_us(f.get(k, np.nan)) for k in (*LAUNCHES, *overlaps)),
                           *((_us if k.endswith("latency") else _num)(f.get(k, np.nan)) for k in chip.fields)]
                          for f in fits.to_dict("records")]), ""]
    notes = list(dict.fromkeys(n for each in fits.notes for n in each))
    parts += [f"- {n}" for n in notes] + [""]
    for label, cats in (("bundled config", layer), ("this run's in-sample refit", layer_refit)):
        parts += [f"## GPT-3 175B layer, {chip.system_rows}, {label}", "",
                  "Out of sample: these rows are never fitted on. Each op launched on its own (dispatch \"call\"), as "
                  "LLMCompass timed each operator.", ""]
        for phase in PHASES:
            p = cats[cats.phase == phase]
            rows = [[r.category, c.ms(r.measured_s), c.ms(r.archsim_s), pct(r.error, True), c.ms(r.roofline_s),
                     pct(r.roofline_error, True)] for r in p.itertuples()]
            m, a, b = p.measured_s.sum(), p.archsim_s.sum(), p.roofline_s.sum()
            rows.append(["**sum**", c.ms(m), c.ms(a), pct(a / m - 1, True), c.ms(b), pct(b / m - 1, True)])
            parts += [f"### {phase}", "", c.md_table(["category", "measured", "archsim", "error", "roofline",
                                                      "roofline error"], rows), ""]
    if v4 is None:
        return "\n".join(parts)
    parts += ["## TPU v4: the model's expectation (no measurements)", "",
              "hw_configs/tpuv4.yaml carries TPUv3's fitted calibration (an expectation, not a fit). The GEMM shapes "
              "of tpuv3_core.csv, one call each, launch included (as measured on TPUv3); % of each chip's bf16 peak.",
              "", c.md_table(["m x k x n", "TPUv3 measured", "TPUv3 archsim", "TPUv4 archsim",
                              "TPUv4 speed-up over TPUv3 measured"],
                             [[shape(r),
                               f"{r.tpuv3_measured_tflops:.1f} TFLOPS ({pct(r.tpuv3_measured_peak)})",
                               pct(r.tpuv3_archsim_peak),
                               f"{r.tpuv4_archsim_tflops:.1f} TFLOPS ({pct(r.tpuv4_archsim_peak)})",
                               f"{r.tpuv4_over_tpuv3_measured:.2f}x"] for r in v4.itertuples()]), ""]
    return "\n".join(parts)


def llama_markdown(frame: pd.DataFrame) -> str:
    head = ["op", *(f"{t} tokens" for t in LLAMA_TOKENS)]
    rows = [[op, *(f"{_us(r.archsim_s)} ({r.roofline_s / r.archsim_s:.0%} roofline)"
                   for r in frame[frame.op == op].itertuples())] for op in dict.fromkeys(frame.op)]
    return "\n".join(["## A100: LLaMA-2-7B's ops, unmeasured", "",
                      "The bundled hw_configs/a100_80gb.yaml, one call each (launch included, as measured); in "
                      "brackets the plain roofline as a share of archsim's time. No measurement checks these; "
                      "what to expect of them, by the nearest measured regime:", "",
                      c.md_table(head, rows), "",
                      "- projections from 128 tokens: within the measured GEMM shapes, about the cross-validated "
                      "3-6%, more (up to about 15-20% slow) where cuBLAS's kernel choice beats the model's "
                      "candidates (stream-K, odd wave counts);",
                      "- projections at 1-16 tokens: a weight stream plus the launch, like the measured M = 64 and "
                      "128 rows (within 5%);",
                      "- RMSNorm and adds up to about 1K tokens are their launch cost, fitted on compiled calls: "
                      "about 5% for one compiled kernel; an eager add (one eager kernel, a launch like the eager "
                      "softmax's) about 3x lower than predicted; Hugging Face's eager RMSNorm (about six kernels) "
                      "about 1.5x higher.", ""])


def _us(value: float) -> str:
    return "-" if not np.isfinite(value) else f"{value * 1e6:.1f} us"


def _num(value: float) -> str:
    return "-" if not np.isfinite(value) else f"{value:.3g}"


def figures(rows: list[Measurement], frame: pd.DataFrame, layer: pd.DataFrame, out: Path, quick: bool,
            chip: Chip = TPUV3_CHIP) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_line = {r.line: r for r in rows}
    stem = chip.key or "tpuv3_core_"
    written = [plot([RowResult(by_line[n], p, b) for n, p, b in zip(frame.line, frame.archsim_s, frame.roofline_s)],
                    out / f"{stem}predicted_vs_measured.png", f"{chip.label}: archsim (bundled config) vs measured")]
    if not quick:
        cv = [RowResult(by_line[n], p, b) for n, p, b in zip(frame.line, frame.kfold_s, frame.roofline_s)]
        written.append(plot(cv, out / f"{stem}cv_predicted_vs_measured.png",
                            f"{chip.label}: {K}-fold cross-validated predictions vs measured"))
    fig, ax = plt.subplots(figsize=(9, 3.8), layout="constrained")
    view = layer.pivot_table(index="category", columns="phase", values="error", sort=False)[list(PHASES)] * 100
    view.plot.bar(ax=ax, rot=35)
    ax.axhline(0, color="black", lw=0.8)
    ax.set(ylabel="archsim error (%)", xlabel="",
           title=f"GPT-3 175B layer on {chip.system_rows}: archsim vs measured, per category")
    ax.grid(True, axis="y", lw=0.3)
    written.append(c.save_figure(fig, out / f"{chip.key}gpt3_layer_errors.png"))
    return written
