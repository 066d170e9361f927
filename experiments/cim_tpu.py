"""CIM-TPU (DATE 2025): TPUv4i against CIM-TPU, one chip and 1, 2 and 4 chips in a pipeline ring.

    python experiments/cim_tpu.py --out DIR [--quick]

Reproduces Zhu et al., "Leveraging Compute-in-Memory for Efficient Generative Model Inference
in TPUs" (docs/sources/papers.md#cim-tpu) from the bundled configs:

- the study's workloads: one GPT-3-30B layer (batch 8, INT8) in prefill of 1024 tokens and in
  decode of the 256th token, and one DiT-XL/2 block (512x512, batch 8, INT8);
- the Table IV design space (CIM-MXU grid {8x8, 16x8, 16x16} x count {2, 4, 8}; Design A is
  4 x 8x8, Design B 8 x 16x8) against TPUv4i under both systolic fold models (``pipelined``,
  a TPU's overlapped folds, and ``scalesim``, SCALE-Sim's count that the paper used);
- Designs A and B against TPUv4i on 1, 2 and 4 chips in a pipeline-parallel ring;
- the paper's headline figures beside archsim's, and an attribution table: each row changes one
  assumption and shows how far it moves archsim's figure toward (or away from) the paper's;
- TPUv4i and Designs A and B against one H100 SXM and one A100 80GB on each workload: latency,
  energy per run, die area, and performance per mm^2 (the paper compares only with TPUv4i).

Writes under --out: ``cim_tpu_designs.csv``, ``cim_tpu_multichip.csv``, ``cim_tpu_attribution.csv``,
``cim_tpu_gpu.csv``, ``cim_tpu.md`` and the figures ``cim_tpu_design_space.png``,
``cim_tpu_multichip.png`` and ``cim_tpu_gpu.png``.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from functools import cache

import _common as c
import multichip
import numpy as np
import pandas as pd

from archsim.api import simulate
from archsim.dtypes import DType
from archsim.hw.energy import EnergyModel
from archsim.hw.leakage import static_power

# The paper's figures (docs/sources/papers.md#cim-tpu-results; all but the abstract's three are
# unconfirmed).
PAPER = {
    "llm_best": -0.442,       # abstract: "up to 44.2% performance improvement for LLM inference"
    "dit_best": -0.338,       # abstract: "33.8% for DiT inference"
    "mxu_energy_best": 27.3,  # abstract: "up to 27.3x lower MXU energy"
    "decode_a": -0.299,       # LLM decode latency -29.9%
    "dit_block_b": -0.0667,   # DiT block -6.67% latency ...
    "dit_block_b_mxu": 10.4,  # ... and 10.4x less MXU energy
    "multi_a_speedup": 0.28, "multi_a_mxu": 24.2,    # Design A, multi-device LLM: +28% average, 24.2x
    "multi_b_speedup": 0.33, "multi_b_energy": 6.34,  # Design B, multi-device DiT: +33% throughput, 6.34x
}
WORKLOADS = {"GPT-3-30B prefill": "gpt3_30b_layer_prefill.yaml", "GPT-3-30B decode": "gpt3_30b_layer_decode.yaml",
             "DiT-XL/2 block": "dit_xl_2_block_512.yaml"}
LLM = ("GPT-3-30B prefill", "GPT-3-30B decode")
FOLDS = ("pipelined", "scalesim")  # the systolic baseline's two fold models


@dataclass(frozen=True)
class Point:
    latency_s: float
    mxu_j: float       # MXU energy as archsim counts it: per MAC, plus CIM weight writes
    mxu_busy_j: float  # MXU energy if every busy cycle cost a full array's MACs (time-based)
    energy_j: float
    attn_context_util: float  # of attention's P x V GEMMs (N = head dimension), or of its flash kernels


@cache  # the attribution table re-asks for points the design space computed
def evaluate(config: str, file: str, *sets: str) -> Point:
    hw = c.chip(config, *sets)
    result = simulate(hw, c.workload(file, hw=hw))
    assert result.feasible, result.reason  # every single-chip point of the study fits
    per_mac = EnergyModel.of(hw).mac[DType.INT8]  # the study is INT8 throughout
    busy = sum(op.compute_s * op.peak_macs_per_s * op.count for op in result.ops if op.unit == "mxu")
    pv = [op for op in result.ops if op.kind in ("attn_context", "attention")]  # dense P x V, or the flash kernel
    pv_util = sum(op.macs * op.count for op in pv) / sum(op.latency_s * op.peak_macs_per_s * op.count for op in pv) if pv else np.nan
    return Point(result.latency_s, result.energy.mxu, busy * per_mac, result.energy.total, pv_util)


def design_label(grid, count) -> str:
    name = c.NAMED_DESIGNS.get((tuple(grid), count))
    return f"{count} x {grid[0]}x{grid[1]}" + (f" ({name})" if name else "")


def design_space(workloads: dict[str, str], designs) -> pd.DataFrame:
    rows = []
    for label, file in workloads.items():
        base = {fold: evaluate("tpuv4i.yaml", file, f"mxu.fold_model={fold}") for fold in FOLDS}
        for grid, count in designs:
            p = evaluate("cim_tpu.yaml", file, *c.cim_sets(grid, count))
            rows.append({"workload": label, "design": design_label(grid, count), "grid": f"{grid[0]}x{grid[1]}",
                         "count": count, "latency_s": p.latency_s, "mxu_energy_j": p.mxu_j, "energy_j": p.energy_j,
                         **{f"tpuv4i_{f}_latency_s": base[f].latency_s for f in FOLDS},
                         **{f"latency_change_{f}": p.latency_s / base[f].latency_s - 1 for f in FOLDS},
                         "tpuv4i_mxu_energy_j": base["pipelined"].mxu_j, "attn_context_util": p.attn_context_util,
                         "tpuv4i_attn_context_util": base["pipelined"].attn_context_util,
                         "mxu_energy_reduction": base["pipelined"].mxu_j / p.mxu_j,
                         **{f"mxu_energy_reduction_busy_{f}": base[f].mxu_busy_j / p.mxu_busy_j for f in FOLDS}})
    return pd.DataFrame(rows)


def multichip_rows(workloads: dict[str, str], chip_counts, micro_batches) -> pd.DataFrame:
    """Each chip on 1, 2, 4 chips in a pipeline ring, against TPUv4i on as many chips (its folds
    pipelined; ``speedup_vs_tpuv4i_scalesim`` against SCALE-Sim's folds)."""
    rows = []
    for label, file in workloads.items():
        for n in chip_counts:
            runs = {name: multichip.best_run(config, file, [], n, micro_batches) for name, config in c.CHIPS.items()}
            scalesim, _ = multichip.best_run("tpuv4i.yaml", file, [], n, micro_batches, ["mxu.fold_model=scalesim"])
            base = runs["TPUv4i"][0]
            for name, (result, m) in runs.items():
                rows.append({"workload": label, "chip": name, "chips": n, "micro_batches": m,
                             "latency_s": result.latency_s, "throughput_per_s": 1 / result.latency_s,
                             "mxu_energy_j": result.energy.mxu, "energy_j": result.energy.total,
                             "bubble": result.bubble_fraction, "speedup_vs_tpuv4i": base.latency_s / result.latency_s,
                             "speedup_vs_tpuv4i_scalesim": scalesim.latency_s / result.latency_s,
                             "mxu_energy_reduction": base.energy.mxu / result.energy.mxu,
                             "energy_reduction": base.energy.total / result.energy.total})
    return pd.DataFrame(rows)


# Against the GPUs: every chip of the study beside one A100 and one H100, each run as configured
# (INT8 throughout, dispatch "program": a GPU pays XLA's 1 us per kernel, a TPU nothing).
VERSUS = {"H100 SXM": "h100", "A100 80GB": "a100"}  # the GPUs the ratios are taken against


def gpu_rows(workloads: dict[str, str]) -> pd.DataFrame:
    """Per workload and chip: latency, energy per run (batch 8), die area, and each figure as a
    ratio to the H100's and the A100's (latency and energy: > 1 is slower or more; performance
    per mm^2, 1 / (latency x area): > 1 is better)."""
    rows = []
    for label, file in workloads.items():
        runs = {}
        for name, config in {**c.CHIPS, **c.GPUS}.items():
            hw = c.chip(config)
            result = simulate(hw, c.workload(file, hw=hw))
            assert result.feasible, (name, label, result.reason)  # one layer or block fits every chip
            runs[name] = (hw, result)
        for name, (hw, r) in runs.items():
            row = {"workload": label, "chip": name, "kind": hw.kind, "node_nm": round(hw.technology.node * 1e9),
                   "area_mm2": r.area.total * 1e6, "tdp_w": hw.tdp, "latency_s": r.latency_s, "energy_j": r.energy.total,
                   "mxu_energy_j": r.energy.mxu, "static_energy_j": r.energy.static, "power_w": r.power_w,
                   "matrix_s": r.latency_by("unit").get("mxu", 0.0), "vector_s": r.latency_by("unit").get("vpu", 0.0)}
            row["per_s_per_mm2"] = 1 / (row["latency_s"] * row["area_mm2"])
            for gpu, key in VERSUS.items():
                g = runs[gpu][1]
                row[f"latency_vs_{key}"] = r.latency_s / g.latency_s
                row[f"energy_vs_{key}"] = r.energy.total / g.energy.total
                row[f"perf_per_area_vs_{key}"] = g.latency_s * g.area.total / (r.latency_s * r.area.total)
            rows.append(row)
    return pd.DataFrame(rows)


def gpu_table(gpu: pd.DataFrame) -> str:
    keys = list(VERSUS.values())
    rows = [[r.workload, r.chip, f"{r.node_nm} nm, {r.area_mm2:.4g} mm^2", c.ms(r.latency_s),
             f"{c.ms(r.matrix_s)} / {c.ms(r.vector_s)}", f"{r.energy_j * 1e3:.4g} mJ",
             f"{r.power_w:.0f} W of {r.tdp_w:.0f}",
             *(" / ".join(c.times(getattr(r, f"{m}_vs_{k}")) for k in keys) for m in ("latency", "energy", "perf_per_area"))]
            for r in gpu.itertuples()]
    vs = " / ".join(VERSUS)
    return c.md_table(["workload", "chip", "node, die area", "latency", "of which matrix / vector units",
                       "energy per run", "mean power",
                       f"latency, x {vs}", f"energy, x {vs}", f"performance per mm^2, x {vs}"], rows)


def gpu_findings(gpu: pd.DataFrame) -> list[str]:
    """One sentence per workload: where Designs A and B stand against the H100 and the A100."""
    out = []
    for wl, g in gpu.groupby("workload", sort=False):
        g = g.set_index("chip")

        def versus(chip, key):
            r = g.loc[chip]
            return (f"{c.times(r[f'latency_vs_{key}'])} the time and {c.times(r[f'energy_vs_{key}'])} the energy, with "
                    f"{c.times(r[f'perf_per_area_vs_{key}'])} the performance per mm^2")

        def static(chip):
            return f"{g.loc[chip, 'static_energy_j'] / g.loc[chip, 'energy_j']:.0%}"

        def mxu(chip):
            return f"{g.loc[chip, 'mxu_energy_j'] / g.loc[chip, 'energy_j']:.0%}"

        out.append(f"**{wl}.** Against one H100, Design B needs {versus('CIM Design B', 'h100')}; Design A "
                   f"{versus('CIM Design A', 'h100')}; TPUv4i {versus('TPUv4i', 'h100')}. Against one A100 (the same "
                   f"7 nm node), Design B needs {versus('CIM Design B', 'a100')}. Static power is {static('CIM Design B')} "
                   f"of Design B's energy and {static('H100 SXM')} of the H100's; the matrix units' share is "
                   f"{mxu('CIM Design B')} and {mxu('H100 SXM')}.")
    return out


# Attribution: each variant changes one assumption: (baseline overrides, CIM overrides, MXU
# energy accounting, what it can move: latency, MXU energy or both).
VARIANTS = {
    "archsim as configured": ((), (), "mac", "both"),
    "baseline folds as SCALE-Sim counts them": (("mxu.fold_model=scalesim",), (), "mac", "latency"),
    "CIM weight reloads not overlapped with compute": ((), ("mxu.cim.reload_overlap=false",), "mac", "latency"),
    # both arrays place their weights for free: CIM's writes and the systolic array's loads
    "weight placement free": (("mxu.weight_load_energy=0 pJ/B",), ("mxu.cim.weight_write_energy=0 pJ/B",), "mac", "mxu"),
    "MXU energy per busy cycle (pipelined folds)": ((), (), "busy", "mxu"),
    "MXU energy per busy cycle (SCALE-Sim folds)": (("mxu.fold_model=scalesim",), (), "busy", "mxu"),
}
ISO = ((16, 8), 4)  # the CIM-TPU of [CIM] proper: TPUv4i's four MXUs replaced, the same MACs per cycle
TARGETS = {  # label -> (workload, design, metric, the paper's figure)
    "LLM decode, CIM-TPU: latency": ("GPT-3-30B decode", ISO, "latency", PAPER["decode_a"]),
    "LLM prefill, CIM-TPU: latency": ("GPT-3-30B prefill", ISO, "latency", None),
    "DiT block, CIM-TPU: latency": ("DiT-XL/2 block", ISO, "latency", PAPER["dit_block_b"]),
    "DiT block, Design B: latency": ("DiT-XL/2 block", ((16, 8), 8), "latency", PAPER["dit_best"]),
    "DiT block, CIM-TPU: MXU energy": ("DiT-XL/2 block", ISO, "mxu", PAPER["dit_block_b_mxu"]),
    "LLM decode, Design A: MXU energy": ("GPT-3-30B decode", ((8, 8), 4), "mxu", PAPER["mxu_energy_best"]),
    "LLM prefill, Design A: MXU energy": ("GPT-3-30B prefill", ((8, 8), 4), "mxu", PAPER["mxu_energy_best"]),
}


def attribution(workloads: dict[str, str], variants: dict) -> pd.DataFrame:
    rows = []
    for target, (wl, (grid, count), metric, paper) in TARGETS.items():
        if wl not in workloads:
            continue
        for variant, (base_sets, cim_extra, kind, moves) in variants.items():
            if moves not in ("both", metric):
                continue
            base = evaluate("tpuv4i.yaml", workloads[wl], *base_sets)
            cim = evaluate("cim_tpu.yaml", workloads[wl], *c.cim_sets(grid, count), *cim_extra)
            if metric == "latency":
                value = cim.latency_s / base.latency_s - 1
            else:
                value = base.mxu_busy_j / cim.mxu_busy_j if kind == "busy" else base.mxu_j / cim.mxu_j
            rows.append({"target": target, "variant": variant, "metric": metric, "archsim": value,
                         "paper": np.nan if paper is None else paper})
    return pd.DataFrame(rows)


def fmt(metric: str, value: float) -> str:
    if np.isnan(value):
        return "-"
    return f"{value * 100:+.1f}%" if metric == "latency" else c.times(value)


def headline(designs: pd.DataFrame, multi: pd.DataFrame) -> list[list[str]]:
    """The paper's figures beside archsim's, against each systolic fold model."""
    rows = []

    def best_latency(label, frame, paper):
        if frame.empty:
            return
        cells = []
        for f in FOLDS:
            r = frame.loc[frame[f"latency_change_{f}"].idxmin()]
            cells.append(f"{fmt('latency', r[f'latency_change_{f}'])} ({r['design']}, {r['workload']})")
        rows.append([label, f"{fmt('latency', paper)} (speedup {1 / (1 + paper):.3g}x)", *cells])

    def energy_cells(r):
        return [f"{c.times(r['mxu_energy_reduction'])} per MAC, {c.times(r[f'mxu_energy_reduction_busy_{f}'])} per busy cycle"
                for f in FOLDS]

    def design_row(label, wl, name, paper, metric="latency"):
        r = designs[(designs.workload == wl) & designs.design.str.endswith(f"({name})")]
        if r.empty:
            return
        r = r.iloc[0]
        if metric == "latency":
            rows.append([label, fmt("latency", paper), *(fmt("latency", r[f"latency_change_{f}"]) for f in FOLDS)])
        else:
            rows.append([label, c.times(paper), *energy_cells(r)])

    best_latency("LLM, best design: latency", designs[designs.workload.isin(LLM)], PAPER["llm_best"])
    best_latency("DiT, best design: latency", designs[designs.workload == "DiT-XL/2 block"], PAPER["dit_best"])
    top = designs.loc[designs.mxu_energy_reduction.idxmax()]
    rows.append([f"MXU energy, best design ({top.design}, {top.workload})", c.times(PAPER["mxu_energy_best"]), *energy_cells(top)])
    design_row("LLM decode, CIM-TPU: latency", "GPT-3-30B decode", "CIM-TPU", PAPER["decode_a"])
    design_row("LLM decode, Design A: latency", "GPT-3-30B decode", "Design A", PAPER["decode_a"])
    design_row("DiT block, CIM-TPU: latency", "DiT-XL/2 block", "CIM-TPU", PAPER["dit_block_b"])
    design_row("DiT block, CIM-TPU: MXU energy", "DiT-XL/2 block", "CIM-TPU", PAPER["dit_block_b_mxu"], "mxu")
    a = multi[(multi.chip == "CIM Design A") & multi.workload.isin(LLM)]
    b = multi[(multi.chip == "CIM Design B") & (multi.workload == "DiT-XL/2 block")]
    n = "/".join(map(str, sorted(multi.chips.unique())))
    if not a.empty:
        rows.append([f"Design A, LLM on {n} chips: mean speedup", f"+{PAPER['multi_a_speedup']:.0%}",
                     f"{(a.speedup_vs_tpuv4i.mean() - 1) * 100:+.1f}%", f"{(a.speedup_vs_tpuv4i_scalesim.mean() - 1) * 100:+.1f}%"])
        rows.append([f"Design A, LLM on {n} chips: MXU energy", c.times(PAPER["multi_a_mxu"]),
                     f"{c.times(a.mxu_energy_reduction.mean())} per MAC", ""])
    if not b.empty:
        rows.append([f"Design B, DiT on {n} chips: mean throughput", f"+{PAPER['multi_b_speedup']:.0%}",
                     f"{(b.speedup_vs_tpuv4i.mean() - 1) * 100:+.1f}%", f"{(b.speedup_vs_tpuv4i_scalesim.mean() - 1) * 100:+.1f}%"])
        rows.append([f"Design B, DiT on {n} chips: energy", c.times(PAPER["multi_b_energy"]),
                     f"MXU {c.times(b.mxu_energy_reduction.mean())} per MAC, total {c.times(b.energy_reduction.mean())}", ""])
    return rows


def design_table(designs: pd.DataFrame) -> str:
    """Per design: latency change against TPUv4i (pipelined / SCALE-Sim folds) and MXU energy."""
    wls = list(dict.fromkeys(designs.workload))
    rows = []
    for design, g in designs.groupby("design", sort=False):
        cells = []
        for wl in wls:
            r = g[g.workload == wl].iloc[0]
            cells.append(f"{c.ms(r.latency_s)}: {fmt('latency', r.latency_change_pipelined)} / "
                         f"{fmt('latency', r.latency_change_scalesim)}, {c.times(r.mxu_energy_reduction)}")
        rows.append([design, *cells])
    base = designs.drop_duplicates("workload")
    rows.append(["TPUv4i (pipelined / SCALE-Sim folds)",
                 *(f"{c.ms(r.tpuv4i_pipelined_latency_s)} / {c.ms(r.tpuv4i_scalesim_latency_s)}" for r in base.itertuples())])
    return c.md_table(["CIM-MXUs", *wls], rows)


def multichip_table(multi: pd.DataFrame) -> str:
    rows = [[r.workload, r.chip, r.chips, r.micro_batches, c.ms(r.latency_s), f"{r.bubble:.0%}",
             c.times(r.speedup_vs_tpuv4i), "-" if r.chip == "TPUv4i" else c.times(r.speedup_vs_tpuv4i_scalesim),
             c.times(r.mxu_energy_reduction), c.times(r.energy_reduction)]
            for r in multi.itertuples()]
    return c.md_table(["workload", "chip", "chips", "micro-batches", "latency", "bubble", "speedup vs TPUv4i",
                       "vs TPUv4i (SCALE-Sim folds)", "MXU energy reduction", "energy reduction"], rows)


def attribution_table(attr: pd.DataFrame) -> str:
    rows = [[r.target, r.variant, fmt(r.metric, r.archsim), fmt(r.metric, r.paper)] for r in attr.itertuples()]
    return c.md_table(["figure", "assumption changed", "archsim", "paper"], rows)


def nearest(designs: pd.DataFrame, workloads, paper: float) -> str:
    """The design, workload and fold model whose latency change is closest to ``paper``."""
    rows = designs[designs.workload.isin(workloads)]
    best = min(((abs(r[f"latency_change_{f}"] - paper), r, f) for _, r in rows.iterrows() for f in FOLDS), key=lambda x: x[0])
    _, r, f = best
    return f"{r['design']} on {r['workload']} against {f} folds ({r[f'latency_change_{f}'] * 100:+.1f}%)"


def findings(designs: pd.DataFrame, attr: pd.DataFrame, multi: pd.DataFrame) -> list[str]:
    """Sentences whose numbers come from this run's tables."""
    out = []

    def value(target, variant="archsim as configured"):
        r = attr[(attr.target == target) & (attr.variant == variant)]
        return r.archsim.iloc[0] if not r.empty else None

    def between(x, lo, hi):
        return "lies between the two" if min(lo, hi) <= x <= max(lo, hi) else "lies outside both"

    d, d_s = value("LLM decode, CIM-TPU: latency"), value("LLM decode, CIM-TPU: latency", "baseline folds as SCALE-Sim counts them")
    if d is not None:
        out.append(f"**Decode is decided by the fold model.** CIM-TPU's decode latency changes by {d * 100:+.1f}% against a "
                   f"TPU that overlaps its folds, by {d_s * 100:+.1f}% against SCALE-Sim's folds; the paper's {PAPER['decode_a'] * 100:+.1f}% "
                   f"{between(PAPER['decode_a'], d, d_s)}. With M = 8 rows a systolic fold is mostly fill and drain "
                   "(2R + C - 2 cycles for 8 rows of work), which SCALE-Sim charges at every fold and a real TPU hides "
                   "behind the next fold's weight load; CIM has no fill, and decode is then bound by HBM weight reads.")
    t = value("DiT block, CIM-TPU: latency")
    if t is not None:
        iso = designs[(designs.workload == "DiT-XL/2 block") & designs.design.str.endswith("(CIM-TPU)")].iloc[0]
        out.append(f"**DiT block on the iso-MAC CIM-TPU: {t * 100:+.1f}%** (paper {PAPER['dit_block_b'] * 100:+.2f}%, for a design our "
                   "summary of the paper does not name). "
                   f"Attention's P x V has N = 72 (the head dimension): a CIM-MXU row of 8 cores produces 256 int8 outputs, "
                   f"a systolic MXU 128, so the CIM's attention (its flash kernels' Q K^T and P x V, the default "
                   f"compiler's) runs at {iso.attn_context_util:.0%} of peak against "
                   f"TPUv4i's {iso.tpuv4i_attn_context_util:.0%}. The paper's mapping of attention onto CIM is not published; "
                   "this mapping assumption is the likeliest source of the gap (no variant of the attribution table tests it).")
    p = value("LLM prefill, CIM-TPU: latency")
    pre = designs[designs.workload == "GPT-3-30B prefill"].set_index("design")
    if p is not None and {"4 x 8x8 (Design A)", "8 x 16x8 (Design B)"} <= set(pre.index):
        a, b = pre.loc["4 x 8x8 (Design A)"], pre.loc["8 x 16x8 (Design B)"]
        out.append(f"**Prefill follows MACs per cycle** (its GEMMs are compute-bound): the iso-MAC CIM-TPU is "
                   f"{p * 100:+.1f}%, Design A (half TPUv4i's MACs per cycle) {a.latency_change_pipelined * 100:+.1f}%, "
                   f"Design B (twice) {b.latency_change_pipelined * 100:+.1f}% ({b.latency_change_scalesim * 100:+.1f}% "
                   f"against SCALE-Sim folds). The archsim point nearest the paper's LLM figure "
                   f"({PAPER['llm_best'] * 100:+.1f}%, read as a latency change) is {nearest(designs, LLM, PAPER['llm_best'])}; "
                   "Design A, with half the MAC rate, cannot approach it on prefill in any model that counts MACs per cycle.")
    a = multi[(multi.chip == "CIM Design A") & multi.workload.isin(LLM)]
    if not a.empty:
        out.append(f"**Design A across chips:** mean LLM speedup {(a.speedup_vs_tpuv4i.mean() - 1) * 100:+.1f}% against "
                   f"pipelined folds, {(a.speedup_vs_tpuv4i_scalesim.mean() - 1) * 100:+.1f}% against SCALE-Sim's; the "
                   f"paper's +{PAPER['multi_a_speedup']:.0%} "
                   f"{between(PAPER['multi_a_speedup'], a.speedup_vs_tpuv4i.mean() - 1, a.speedup_vs_tpuv4i_scalesim.mean() - 1)}"
                   f" (per chip count: {', '.join(f'{v:.2f}x' for v in a.groupby('chips').speedup_vs_tpuv4i.mean())}).")
    e, free = value("DiT block, CIM-TPU: MXU energy"), value("DiT block, CIM-TPU: MXU energy", "weight placement free")
    busy = value("LLM decode, Design A: MXU energy", "MXU energy per busy cycle (pipelined folds)")
    if e is not None and busy is not None:
        out.append(f"**MXU energy depends on what idle cycles cost.** Charged per MAC, the DiT block saves {c.times(e)} "
                   f"({c.times(free)} with weights placed for free, CIM's writes and the systolic loads alike: the Table II macro ratio, 9.43x, is the ceiling of per-MAC "
                   f"accounting). Charged per busy cycle (a full array's MACs whether used or not, i.e. power x time), decode "
                   f"saves {c.times(busy)}. The paper's {c.times(PAPER['dit_block_b_mxu'])} (DiT) and up to "
                   f"{c.times(PAPER['mxu_energy_best'])} (LLM) exceed the macro ratio, so the paper presumably charges "
                   "the systolic array for some idle or fill cycles; archsim's per-MAC figure is the conservative end.")
    b = multi[(multi.chip == "CIM Design B") & (multi.workload == "DiT-XL/2 block")]
    if not b.empty:
        out.append(f"**Design B across chips:** {(b.speedup_vs_tpuv4i.mean() - 1) * 100:+.1f}% mean DiT throughput over TPUv4i "
                   f"on the same chips (paper +{PAPER['multi_b_speedup']:.0%}), with {c.times(b.mxu_energy_reduction.mean())} "
                   f"less MXU energy; per chip count {', '.join(f'{v:.2f}x' for v in b.speedup_vs_tpuv4i)}: its advantage "
                   "narrows as pipeline bubbles and boundary transfers take a larger share.")
    return out


def gpu_basis() -> str:
    """What the GPU rows rest on, with the configs' own figures."""
    a, h = (c.chip(c.GPUS[name]) for name in ("A100 80GB", "H100 SXM"))
    tpu = c.chip(c.CHIPS["TPUv4i"])
    pj_a, pj_h = (f"{gpu.sm.mac_energy[DType.BF16] * 1e12:.3g} pJ" for gpu in (a, h))
    return (
        "What the GPU rows rest on (the comments of hw_configs/a100_80gb.yaml and h100_sxm.yaml). **Cited** (NVIDIA's "
        "whitepapers and datasheets): SM counts, clocks, tensor-core rates (INT8 twice fp16), L2 and HBM capacities and "
        "bandwidths, TDPs and die areas (the A100's 826 mm^2 modelled by LLMCompass's die-photo breakdown; the H100's "
        "814 mm^2). **Fitted** on (or, HBM's, read off) measured A100 fp16 operators (per-op mean error 2-7%): the "
        "tensor-core, L2 and HBM efficiencies; the H100 carries the tensor-core and HBM ones unfitted ([A100FIT]) and runs "
        "its L2 at a throughput measured on an H800, not derated; both carry them to INT8. "
        f"**ASSUMPTION**: all GPU energy. The MAC energy is set so that a long GEMM runs near the TDP ({pj_a} on the "
        f"A100, {pj_h} on the H100 per 16-bit MAC, half that for INT8); static power is leakage per mm^2 of the "
        f"modelled die plus 5 W always on: the A100 at TPUv4i's 7 nm density ({static_power(a):.0f} W), the H100 at a "
        f"density giving 17% of its TDP ({static_power(h):.0f} W), as TPUv4i's {static_power(tpu):.0f} W of {tpu.tdp:.0f} W; "
        "the L2, HBM (HBM2's 3.9 pJ/bit) and NVLink energies are TPUv4i's 7 nm figures, not scaled to the H100's 4 nm. "
        "A GPU pays 1 us per kernel (XLA's launch cost, dispatch 'program'), a TPU nothing. An H100 is a 4 nm die of "
        f"814 mm^2 drawing up to {h.tdp:.0f} W, against TPU-class dies of about 350 mm^2 at 7 nm and {tpu.tdp:.0f} W: "
        "latency and energy per run compare one chip with one chip, performance per mm^2 divides out the die size but "
        f"not the node, and the A100 (7 nm, {a.tdp:.0f} W) is the same-node comparison.")


PAPER_LINES = {"GPT-3-30B prefill": [("LLM, up to", PAPER["llm_best"])],
               "GPT-3-30B decode": [("decode", PAPER["decode_a"]), ("LLM, up to", PAPER["llm_best"])],
               "DiT-XL/2 block": [("DiT block", PAPER["dit_block_b"]), ("DiT, up to", PAPER["dit_best"])]}


def plot_designs(designs: pd.DataFrame, attr: pd.DataFrame, path):
    """Latency change of every design under both fold models, and MXU energy under each accounting."""
    import matplotlib.pyplot as plt

    wls = list(dict.fromkeys(designs.workload))
    fig, axes = plt.subplots(1, len(wls) + 1, figsize=(4.2 * (len(wls) + 1), 0.32 * designs.design.nunique() + 2.2),
                             squeeze=False, layout="constrained")
    for ax, wl in zip(axes[0], wls):
        g = designs[designs.workload == wl]
        y = np.arange(len(g))
        ax.barh(y - 0.2, g.latency_change_pipelined * 100, 0.4, label="vs pipelined folds")
        ax.barh(y + 0.2, g.latency_change_scalesim * 100, 0.4, label="vs SCALE-Sim folds")
        for i, (name, value) in enumerate(PAPER_LINES.get(wl, [])):
            ax.axvline(value * 100, color="k", ls=("--", ":")[i % 2], lw=1, label=f"paper: {name} {value * 100:+.1f}%")
        ax.axvline(0, color="0.4", lw=0.8)
        ax.set_yticks(y, labels=g.design, fontsize=7)
        ax.invert_yaxis()
        ax.set_xlabel("latency change vs TPUv4i (%)")
        ax.set_title(wl)
        ax.grid(alpha=0.3, axis="x")
        ax.legend(fontsize=6)
    ax = axes[0][-1]
    energy = attr[attr.metric == "mxu"].pivot_table(index="target", columns="variant", values="archsim", sort=False)
    energy.plot.barh(ax=ax, logx=True, width=0.8, fontsize=7)
    papers = attr[attr.metric == "mxu"].drop_duplicates("target").set_index("target").paper
    ax.scatter(papers.reindex(energy.index), np.arange(len(energy)), marker="*", s=90, color="k", zorder=5, label="paper")
    ax.invert_yaxis()
    ax.set_ylabel("")
    ax.set_xlabel("MXU energy reduction vs TPUv4i (x, log)")
    ax.set_title("MXU energy, by accounting")
    ax.legend(fontsize=6, loc="upper center", bbox_to_anchor=(0.5, -0.15))
    return c.save_figure(fig, path)


def plot_multichip(multi: pd.DataFrame, path):
    import matplotlib.pyplot as plt

    wls = list(dict.fromkeys(multi.workload))
    fig, axes = plt.subplots(1, len(wls), figsize=(4 * len(wls), 3.2), squeeze=False, layout="constrained")
    for ax, wl in zip(axes[0], wls):
        for i, chip_name in enumerate(("CIM Design A", "CIM Design B")):
            g = multi[(multi.workload == wl) & (multi.chip == chip_name)]
            ax.plot(g.chips, g.speedup_vs_tpuv4i, "o-", color=f"C{i}", label=f"{chip_name}, vs pipelined folds")
            ax.plot(g.chips, g.speedup_vs_tpuv4i_scalesim, "o--", color=f"C{i}", alpha=0.6, label=f"{chip_name}, vs SCALE-Sim folds")
        ax.axhline(1, color="0.5", lw=0.8)
        ax.set_xscale("log", base=2)
        ax.set_xticks(sorted(multi.chips.unique()), labels=[str(n) for n in sorted(multi.chips.unique())])
        ax.set_title(wl)
        ax.set_xlabel("chips (pipeline ring)")
        ax.set_ylabel("speedup over TPUv4i, same chips")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=6)
    return c.save_figure(fig, path)


def plot_gpus(gpu: pd.DataFrame, path):
    """Each chip's latency, energy per run and performance per mm^2 as a multiple of the H100's."""
    import matplotlib.pyplot as plt

    wls, chips = list(dict.fromkeys(gpu.workload)), [k for k in dict.fromkeys(gpu.chip) if k != "H100 SXM"]
    metrics = {"latency_vs_h100": "latency (x H100; > 1 slower)", "energy_vs_h100": "energy per run (x H100; > 1 more)",
               "perf_per_area_vs_h100": "performance per mm^2 (x H100; > 1 better)"}
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 0.5 * len(wls) * len(chips) / 3 + 2.2),
                             squeeze=False, layout="constrained")
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    y, width = np.arange(len(wls)), 0.8 / len(chips)
    for ax, (col, title) in zip(axes[0], metrics.items()):
        for i, chip_name in enumerate(chips):
            v = gpu[gpu.chip == chip_name].set_index("workload")[col].reindex(wls)
            pos = y + (i - (len(chips) - 1) / 2) * width
            ax.barh(pos, v - 1, width, left=1, label=chip_name, color=f"C{i}")  # from 1x, either way
            for p, x in zip(pos, v):
                ax.text(x, p, f" {x:.2g}x " if x != 1 else "", va="center", ha="left" if x >= 1 else "right", fontsize=6)
        ax.axvline(1, color="k", lw=0.8, label="H100 SXM (= 1x)")
        ax.set_xscale("log")
        lo, hi = gpu[col].min(), gpu[col].max()
        ax.set_xlim(min(lo, 1) / 1.8, max(hi, 1) * 1.8)  # room for the labels
        ax.xaxis.set_major_locator(LogLocator(subs=(1, 2, 5)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}x"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_yticks(y, labels=wls, fontsize=7)
        ax.invert_yaxis()
        ax.set_title(title, fontsize=9)
        ax.grid(alpha=0.3, axis="x", which="both")
    fig.legend(*axes[0][0].get_legend_handles_labels(), loc="outside lower center", ncol=len(chips) + 1, fontsize=7)
    fig.suptitle("One chip against one H100 SXM, INT8, batch 8 (log scale)", fontsize=10)
    return c.save_figure(fig, path)


def robustness(workloads: dict[str, str], quick: bool) -> pd.DataFrame:
    """For each named CIM design and workload against TPUv4i: the speedup, and which of the
    design's assumptions (its config's ASSUMPTION-marked fields), each at x0.5 and x2 on its
    own (on both chips where both make it), would flip the verdict (``archsim sensitivity``)."""
    from archsim.dse.sensitivity import sensitivity

    rows = []
    designs = {"CIM Design A": c.CHIPS["CIM Design A"], "CIM Design B": c.CHIPS["CIM Design B"]}
    for name, config in designs.items():
        for label, file in workloads.items():
            fields = ["mxu.cim.clock_ratio", "mxu.cim.psum_buffer", "leakage.logic"] if quick else None
            base, ref, swings = sensitivity(c.HW_DIR / config, c.WORKLOAD_DIR / file, (0.5, 2.0), fields,
                                            c.HW_DIR / c.CHIPS["TPUv4i"])
            speedup = ref.latency_s / base.latency_s
            flips = [f"{s.field} x{f:g} ({v:.3g}x)" for s in swings for f, v in zip(s.factors, s.versus)
                     if v is not None and (v > 1) != (speedup > 1)]
            rows.append({"design": name, "workload": label, "speedup": speedup, "fields": len(swings),
                         "flips": "; ".join(flips)})
    return pd.DataFrame(rows)


def robustness_table(frame: pd.DataFrame) -> str:
    body = [[r.design, r.workload, f"{r.speedup:.3g}x", r.fields,
             r.flips or "none: the verdict holds for every value of every assumption in range"]
            for r in frame.itertuples()]
    return c.md_table(["design", "workload", "speedup vs TPUv4i", "assumptions varied", "what flips the verdict "
                       "(each assumption at x0.5 or x2, alone)"], body)


def main(argv: list[str] | None = None) -> int:
    args = c.parser(__doc__).parse_args(argv)
    if args.quick:  # two workloads, the named designs, 1 and 2 chips
        workloads = {k: WORKLOADS[k] for k in ("GPT-3-30B decode", "DiT-XL/2 block")}
        designs, chips, micro, variants = list(c.NAMED_DESIGNS), [1, 2], [1, 2], VARIANTS
    else:
        workloads, designs, chips, micro, variants = WORKLOADS, c.TABLE_IV, [1, 2, 4], [1, 2, 4, 8], VARIANTS
    space = design_space(workloads, designs)
    multi = multichip_rows(workloads, chips, micro)
    attr = attribution(workloads, variants)
    gpu = gpu_rows(workloads)
    robust = robustness(workloads, args.quick)
    out = args.out
    c.write_csv(space, out / "cim_tpu_designs.csv")
    c.write_csv(multi, out / "cim_tpu_multichip.csv")
    c.write_csv(attr, out / "cim_tpu_attribution.csv")
    c.write_csv(gpu, out / "cim_tpu_gpu.csv")
    c.write_csv(robust, out / "cim_tpu_robustness.csv")
    plot_designs(space, attr, out / "cim_tpu_design_space.png")
    plot_multichip(multi, out / "cim_tpu_multichip.png")
    plot_gpus(gpu, out / "cim_tpu_gpu.png")
    text = "\n\n".join([
        "## CIM-TPU (DATE 2025): archsim against the paper",
        c.md_table(["figure", "paper", "archsim vs TPUv4i, pipelined folds", "archsim vs TPUv4i, SCALE-Sim folds"],
                   headline(space, multi)),
        "### Findings\n\n" + "\n".join(f"- {f}" for f in findings(space, attr, multi)),
        "### Table IV design space (latency: change vs TPUv4i pipelined / SCALE-Sim folds, MXU energy reduction)",
        design_table(space),
        "### Which assumption drives each figure",
        attribution_table(attr),
        "### Pipeline-parallel ring, batch 8 (fastest micro-batching per point)",
        multichip_table(multi),
        "### Against GPUs: one chip each, INT8, batch 8 (ratios: this chip's figure over the GPU's)",
        gpu_table(gpu),
        "\n".join(f"- {f}" for f in gpu_findings(gpu)),
        gpu_basis(),
        "### Robustness: the assumptions that could flip each verdict (archsim sensitivity, one at a time)",
        robustness_table(robust),
    ])
    c.write_atomic(out / "cim_tpu.md", text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
