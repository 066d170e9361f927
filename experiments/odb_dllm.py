"""ODB-dLLM on TPUv4i, CIM-TPU and GPUs: LLaDA-8B vanilla vs Fast-dLLM vs ODB, next to the paper.

    python experiments/odb_dllm.py --out DIR [--quick]

LLaDA-8B, generation 1024, block 32 (docs/sources/papers.md#odb-dllm-results), as the bundled
workloads model it, on TPUv4i and CIM Designs A and B. In bf16 it needs about 15 GiB and a chip has
8 GiB: the study shows why one chip and two tensor-parallel chips fail, runs four chips in a
tensor-parallel ring in bf16 (the paper's precision) as the main deployment, and two chips with
int8 weights (W8A16) and with int8 throughout (the CIM-TPU paper's precision). Speedups, not
latencies, are compared with the paper's GPU measurements. Beside them, one A100 80GB and one H100
SXM (the model fits one 80 GB GPU in bf16), the hardware class the paper measured: once as one
compiled program (dispatch "program", XLA's 1 us per kernel) and once with every op launched from
PyTorch and synchronised on its own (dispatch "call", the per-call costs fitted on the A100's
single-op measurements, an upper bound on eager PyTorch's launch cost).

Writes under --out: odb.csv (deployment x chip x mode), odb_phases.csv (per phase and chip of the
mapping: MACs, bytes, intensity, time, achieved MAC/s, bound), odb_sensitivity.csv (speedups as
the workloads' assumptions vary), odb.md (tables and findings, also printed), odb_roofline.png.
--quick: generation 128, TPUv4i and the GPUs only, the main deployment only.
"""

from __future__ import annotations

import functools
import sys
from collections import defaultdict

import _common as common
import pandas as pd

from archsim.api import simulate
from archsim.dtypes import DType
from archsim.hw.memory import Level
from archsim.ir.summary import summarize

# docs/sources/papers.md#odb-dllm-results (Wei et al., arXiv 2511.21759): LLaDA-8B-Instruct,
# gen 1024, block 32, measured on GPUs. Per task: (ODB over vanilla, ODB over Fast-dLLM).
PAPER = {
    "tasks": {"GSM8K": (87.96, 3.81), "MATH": (46.11, 2.63), "BBH": (70.86, 2.96),
              "HumanEval": (86.96, 5.26), "MBPP": (161.79, 6.30)},
    "fast_over_vanilla": (16.5, 25.7),
}
PAPER_RANGE = {"Fast/vanilla": PAPER["fast_over_vanilla"],
               "ODB/Fast": tuple(f(t[1] for t in PAPER["tasks"].values()) for f in (min, max)),
               "ODB/vanilla": tuple(f(t[0] for t in PAPER["tasks"].values()) for f in (min, max))}
MODES = {"vanilla": "llada_8b_vanilla.yaml", "Fast-dLLM": "llada_8b_fast_dllm.yaml", "ODB": "llada_8b_odb.yaml"}
GEN_LEN, QUICK_GEN_LEN = 1024, 128  # the workloads' (ODB-dLLM's) generation length; --quick's
ANSWER_LEN = 256  # llada_8b_odb.yaml's answer length, scaled with the generation length
BF16, W8A16, INT8 = ("bf16",) * 3, ("int8", "bf16", "bf16"), ("int8",) * 3  # weights, activations, KV
# label -> (chips in a tensor-parallel ring, precision); the first is the main deployment
DEPLOYMENTS = {"4 chips TP, bf16": (4, BF16), "2 chips TP, W8A16": (2, W8A16), "2 chips TP, int8": (2, INT8)}
TRIED = {"1 chip, bf16": (1, BF16), "2 chips TP, bf16": (2, BF16)}  # shown to justify the choice
# label -> (GPUs, precision, dispatch): one 80 GB GPU holds LLaDA-8B in bf16
GPU_DEPLOYMENTS = {"1 GPU, bf16": (1, BF16, "program"), "1 GPU, bf16, eager calls": (1, BF16, "call")}
# The workloads' assumptions (yaml comments) and the prompt length, each varied alone on TPUv4i;
# answer lengths are for GEN_LEN and scale with --quick.
SENSITIVITY = {"tokens_per_step": [1, 2, 3, 4, 6], "odb.answer_len": [128, 256, 512, 1024],
               "odb.jump_acceptance": [0, 0.5, 1, 2, 3], "prompt_len": [128, 256, 512, 1024]}


@functools.cache  # configs are read once: the sensitivity sweep reuses them
def chip(config: str, chips: int):
    tp = [f"system.chips={chips}", "system.topology={kind: ring}", f"system.parallelism.tensor={chips}"]
    return common.chip(config, *(tp if chips > 1 else []))


def wsets(mode: str, precision: tuple, params: dict) -> list[str]:
    """Workload overrides: ODB's fields only for ODB, tokens per step only for the cached modes
    (vanilla unmasks one token per step, as the paper's baseline does)."""
    skip = {"vanilla": ("odb.", "tokens_per_step"), "Fast-dLLM": ("odb.",), "ODB": ()}[mode]
    return ([f"precision.{k}={v}" for k, v in zip(("weights", "activations", "kv"), precision)]
            + [f"{k}={v}" for k, v in params.items() if not k.startswith(skip)])


def run_modes(config: str, chips: int, precision: tuple, params: dict, modes=tuple(MODES), dispatch="program") -> dict:
    """mode -> (chip, workload lowered for one chip of the mapping, result)."""
    hw, out = chip(config, chips), {}
    for mode in modes:
        workload = common.workload(MODES[mode], *wsets(mode, precision, params), hw=hw)
        out[mode] = (hw, workload, simulate(hw, workload, dispatch))
    return out


def speedups(runs: dict) -> dict:
    lat = {mode: r.latency_s if r.feasible else float("nan") for mode, (_, _, r) in runs.items()}
    return {"Fast/vanilla": lat["vanilla"] / lat["Fast-dLLM"], "ODB/Fast": lat["Fast-dLLM"] / lat["ODB"],
            "ODB/vanilla": lat["vanilla"] / lat["ODB"]}


def mode_rows(dep: str, chips: int, chip: str, runs: dict) -> list[dict]:
    s = speedups(runs)
    return [{"deployment": dep, "chips": chips, "chip": chip, "mode": mode, "feasible": r.feasible, "reason": r.reason}
            | ({"latency_s": r.latency_s, "energy_j": r.energy.total, "mxu_energy_j": r.energy.mxu,
                "hbm_bytes_all_chips": r.traffic.total(Level.HBM)} if r.feasible else {}) | s
            for mode, (_, _, r) in runs.items()]


def phase_rows(chip: str, runs: dict, precision: tuple) -> list[dict]:
    """Per phase, for one chip of the tensor-parallel mapping (every chip runs the same share):
    the lowered workload's MACs and compulsory bytes, the phase's wall time (collectives
    included), its bound: where the chip's time goes (compute- or memory-bound ops, or ICI)."""
    dtype = max(DType(precision[0]), DType(precision[1]), key=lambda d: d.bytes)  # as the engine
    rows = []
    for mode, (hw, workload, result) in runs.items():
        peak, wall = hw.peak_macs_per_second(dtype), result.latency_by("phase")
        ops = result.stages[0].ops if hasattr(result, "stages") else result.ops
        for p in summarize(workload).phases:
            busy, hbm = defaultdict(float), 0.0
            for op in (o for o in ops if o.phase == p.name):
                busy["ici" if op.unit == "ici" else op.bound] += op.latency_s * op.copies
                hbm += op.traffic.total(Level.HBM) * op.copies
            once = wall[p.name] / p.repeat
            rows.append({"chip": chip, "mode": mode, "phase": p.name, "kind": p.name.split()[0], "repeat": p.repeat,
                         "macs": p.macs, "bytes": p.min_bytes, "hbm_bytes_simulated": hbm, "intensity": p.intensity,
                         "peak_macs_per_s": peak, "ridge": peak / hw.hbm.bandwidth, "time_s": once,
                         "achieved_macs_per_s": p.macs / once, "fraction_of_peak": p.macs / once / peak,
                         "bound": max(busy, key=busy.get)})
    return rows


def verdict(name: str, value: float) -> str:
    lo, hi = PAPER_RANGE[name]
    return "below" if value < lo else "above" if value > hi else "within"


def nearest_task(odb_over_fast: float) -> str:
    """The paper's task whose ODB/Fast-dLLM speedup is nearest, or beyond which all of them lie."""
    task, (_, x) = min(PAPER["tasks"].items(), key=lambda kv: abs(kv[1][1] - odb_over_fast))
    v = verdict("ODB/Fast", odb_over_fast)
    return f"{task} ({x}x)" if v == "within" else f"{v} all ({task} {x}x)"


def figure(phases: pd.DataFrame, out) -> None:
    import matplotlib.pyplot as plt
    import numpy as np

    chips = list(dict.fromkeys(phases["chip"]))
    cols = min(len(chips), 3)  # the TPU-class chips, then the GPUs
    rows = -(-len(chips) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 4.2 * rows), squeeze=False, layout="constrained")
    for ax in axes.flat[len(chips):]:
        ax.set_visible(False)
    xs = np.logspace(0.5, 3.5, 200)
    style = {"vanilla": ("o", "tab:red", 90, 10), "Fast-dLLM": ("s", "tab:blue", 36, -10), "ODB": ("D", "tab:green", 20, 7)}
    for ax, chip in zip(axes.flat, chips):
        g, labelled = phases[phases["chip"] == chip], set()
        peak = g["peak_macs_per_s"].iloc[0]
        ax.loglog(xs, np.minimum(peak, peak / g["ridge"].iloc[0] * xs), "k-", lw=1.3, label="roof (one chip, HBM)")
        for mode, (marker, color, size, dy) in style.items():
            m = g[g["mode"] == mode]
            ax.scatter(m["intensity"], m["achieved_macs_per_s"], marker=marker, s=size, label=mode, zorder=5,
                       facecolors="none" if mode == "vanilla" else color, edgecolors=color)
            for r in m.itertuples():  # one label per shape ("refresh q1280"): kv lengths differ little
                if (label := r.phase.rsplit(" ", 1)[0]) not in labelled:
                    labelled.add(label)
                    ax.annotate(label, (r.intensity, r.achieved_macs_per_s), fontsize=7, xytext=(5, dy),
                                textcoords="offset points")
        where = "one GPU" if chip in common.GPUS else "per chip of the mapping"
        ax.set(title=f"{chip} ({where})", xlabel="MACs per compulsory byte", ylabel="achieved MAC/s")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7, loc="lower right")
    common.save_figure(fig, out / "odb_roofline.png")


def main(argv: list[str] | None = None) -> int:
    args = common.parser(__doc__).parse_args(argv)
    gen = QUICK_GEN_LEN if args.quick else GEN_LEN
    chips = {"TPUv4i": common.CHIPS["TPUv4i"]} if args.quick else common.CHIPS
    deployments = dict(list(DEPLOYMENTS.items())[:1]) if args.quick else DEPLOYMENTS
    dep, (n, prec) = next(iter(deployments.items()))
    base = {"gen_len": gen, "odb.answer_len": ANSWER_LEN * gen // GEN_LEN}

    # HBM capacity is the same on every chip: TPUv4i's vanilla run tells whether a deployment fits
    tried = {label: run_modes(chips["TPUv4i"], k, p, base, ("vanilla",))["vanilla"][2] for label, (k, p) in TRIED.items()}
    rows, phases, sens, gpu_phases = [], [], [], []
    for d, (k, p) in deployments.items():
        for name, config in chips.items():
            runs = run_modes(config, k, p, base)
            rows += mode_rows(d, k, name, runs)
            phases += phase_rows(name, runs, p) if d == dep else []
    for d, (k, p, dispatch) in GPU_DEPLOYMENTS.items():
        for name, config in common.GPUS.items():
            runs = run_modes(config, k, p, base, dispatch=dispatch)
            rows += mode_rows(d, k, name, runs)
            gpu_phases += [r | {"dispatch": dispatch} for r in phase_rows(name, runs, p)]
    for key, values in SENSITIVITY.items():
        for v in values[:3] if args.quick else values:  # three points still show the trend
            v = max(1, v * gen // GEN_LEN) if key == "odb.answer_len" else v
            s = speedups(run_modes(chips["TPUv4i"], n, prec, base | {key: v}))
            sens.append({"assumption": key, "value": v, **s, "nearest_task": nearest_task(s["ODB/Fast"])})
    main, phases, sens = pd.DataFrame(rows), pd.DataFrame(phases), pd.DataFrame(sens)
    gpu_phases = pd.DataFrame(gpu_phases)

    md = markdown(main, phases, sens, tried, gen, dep, gpu_phases)
    common.write_csv(main, args.out / "odb.csv")
    gpu_deployment = {dispatch: d for d, (_, _, dispatch) in GPU_DEPLOYMENTS.items()}
    common.write_csv(pd.concat([phases.assign(deployment=dep, dispatch="program"),
                                gpu_phases.assign(deployment=gpu_phases["dispatch"].map(gpu_deployment))],
                               ignore_index=True), args.out / "odb_phases.csv")
    common.write_csv(sens, args.out / "odb_sensitivity.csv")
    common.write_atomic(args.out / "odb.md", md)
    figure(pd.concat([phases, gpu_phases[gpu_phases["dispatch"] == "program"]], ignore_index=True), args.out)
    print(md, end="")
    return 0


def markdown(main: pd.DataFrame, phases: pd.DataFrame, sens: pd.DataFrame, tried: dict, gen: int, dep: str,
             gpu_phases: pd.DataFrame) -> str:
    x = common.times
    why = "; ".join(f"{label}: {r.reason or 'fits'}" for label, r in tried.items())
    table = [[d, name, *(f"{v:.4g} s" if pd.notna(v) else "infeasible" for v in g["latency_s"]),
              *(f"{x(g.iloc[0][k])} ({verdict(k, g.iloc[0][k])})" for k in PAPER_RANGE)]
             for (d, name), g in main.groupby(["deployment", "chip"], sort=False)]
    def phase_table(frame):
        return [[r.chip, r.mode, r.phase, r.repeat, f"{r.macs / 1e9:.4g}", f"{r.bytes / 1e9:.3g}",
                 f"{r.hbm_bytes_simulated / 1e9:.3g}", f"{r.intensity:.1f}", f"{r.ridge:.0f}", common.ms(r.time_s),
                 f"{r.fraction_of_peak:.0%}", r.bound] for r in frame.itertuples()]

    ph = phase_table(phases)
    phase_header = ["chip", "mode", "phase", "runs", "GMAC/run", "GB/run", "HBM GB/run (sim.)", "MAC/B", "ridge MAC/B",
                    "time/run", "of peak", "bound"]
    gpu_dep = next(iter(GPU_DEPLOYMENTS))
    se = [[r["assumption"], f"{r['value']:g}", *(x(r[k]) for k in PAPER_RANGE), r["nearest_task"]]
          for r in sens.to_dict("records")]
    tasks = ", ".join(f"{t} {v}x / {f}x" for t, (v, f) in PAPER["tasks"].items())
    return "\n\n".join([
        f"# ODB-dLLM on TPUv4i, CIM-TPU and GPUs: LLaDA-8B, generation {gen}, block 32",
        (f"Deployment. LLaDA-8B in bf16 (the paper's precision) does not fit 8 GiB chips ({why}): "
         "embeddings and LM head are replicated under tensor parallelism. The main deployment is "
         f"**{dep}** (ring), the fewest chips that fit in bf16. Speedups are compared, not latencies "
         "(the paper measured GPUs). One 80 GB GPU holds it in bf16: the A100 80GB and H100 SXM rows run "
         f"**{gpu_dep}**, as one compiled program (dispatch 'program': 1 us per kernel) and with every op "
         "launched and synchronised on its own ('eager calls', dispatch 'call': the A100's fitted per-call "
         "costs, carried to the H100), which bounds eager PyTorch's launch cost from above."),
        f"## Latency and speedups\n\nPaper, per task (ODB over vanilla / over Fast-dLLM): {tasks}.\n\n"
        + common.md_table(["deployment", "chip", *MODES,
                           *(f"{k} (paper {lo:g}-{hi:g}x)" for k, (lo, hi) in PAPER_RANGE.items())], table),
        f"## Phases ({dep}; per chip: its share of MACs and compulsory bytes, the phase's wall time "
        "with collectives; ridge = peak MAC/s / HBM bandwidth)\n\n"
        + common.md_table(phase_header, ph),
        f"## Phases on one GPU ({gpu_dep}, one compiled program)\n\n"
        + common.md_table(phase_header, phase_table(gpu_phases[gpu_phases["dispatch"] == "program"])),
        f"## Sensitivity (TPUv4i, {dep}; one assumption varied at a time)\n\n"
        + common.md_table(["assumption", "value", *PAPER_RANGE, "nearest paper task (ODB/Fast)"], se),
        "## Findings\n\n" + "\n".join(f"- {f}" for f in findings(main, phases, sens, dep) + gpu_findings(main, gpu_phases)),
    ]) + "\n"


def findings(main: pd.DataFrame, phases: pd.DataFrame, sens: pd.DataFrame, dep: str) -> list[str]:
    """Bullets computed from the tables: what the numbers say, not what the paper claims."""
    x, (flo, fhi), (olo, ohi) = common.times, PAPER_RANGE["Fast/vanilla"], PAPER_RANGE["ODB/Fast"]
    speed = main[main["deployment"] == dep].groupby("chip", sort=False).first()
    ok = main[~main["chip"].isin(common.GPUS)].dropna(subset=["latency_s"])  # the GPUs have a finding of their own
    sweep = {key: g for key, g in sens.groupby("assumption", sort=False)}
    tpu = speed.loc["TPUv4i"]
    out = [(f"On TPUv4i ({dep}) archsim predicts Fast-dLLM {x(tpu['Fast/vanilla'])} over vanilla "
           f"({verdict('Fast/vanilla', tpu['Fast/vanilla'])} the paper's {flo}-{fhi}x) and ODB {x(tpu['ODB/Fast'])} "
           f"over Fast-dLLM ({verdict('ODB/Fast', tpu['ODB/Fast'])} {olo}-{ohi}x); over every deployment and chip "
           f"run, Fast/vanilla {x(ok['Fast/vanilla'].min())}-{x(ok['Fast/vanilla'].max())} and ODB/Fast {x(ok['ODB/Fast'].min())}-"
           f"{x(ok['ODB/Fast'].max())}.")]
    costs, jumps = [], []
    for name, g in phases.groupby("chip", sort=False):
        k = g.drop_duplicates("kind").set_index("kind")  # the first of each kind: full-length shapes
        ref, dec, j = k.loc["refresh"], k.loc["decode"], g[g["kind"] == "jump"].iloc[-1]
        costs.append(f"{dec.time_s / ref.time_s:.0%} of its time on {name} (ridge {dec.ridge:.0f} MAC/B, "
                     f"{dec.bound}-bound at {dec.intensity:.0f}; Fast/vanilla {x(speed.loc[name, 'Fast/vanilla'])})")
        jumps.append(f"on {name} {j.intensity:.0f} against {dec.intensity:.0f} MAC/B (ridge {dec.ridge:.0f}), "
                     f"{j.bound}-bound, {j.time_s / dec.time_s:.2f}x the time (ODB/Fast {x(speed.loc[name, 'ODB/Fast'])})")
    ridges = phases.groupby("chip")["ridge"].max()
    trend = (": the lower the ridge, the larger Fast-dLLM's gain" if ridges.nunique() > 1
             and speed["Fast/vanilla"].idxmax() == ridges.idxmin() else "")
    tps = sweep["tokens_per_step"]
    hit = tps[tps["Fast/vanilla"] >= flo]["value"]
    out.append(f"A 32-token decode step does {dec.macs / ref.macs:.1%} of a refresh's MACs but takes "
               + ", ".join(costs) + trend + f". The paper's {flo}x on TPUv4i needs "
               + (f"{hit.min():g} or more tokens per step." if len(hit) else f"more than {tps['value'].max():g} tokens per step."))
    out.append("A jump step (4 copies of the block) against a decode step: " + "; ".join(jumps) + ".")
    within = []
    for key in ("odb.answer_len", "odb.jump_acceptance"):
        g = sweep[key]
        hits = [f"{v:g}" for v, s in zip(g["value"], g["ODB/Fast"]) if verdict("ODB/Fast", s) == "within"]
        within.append(f"{key} {', '.join(hits) or 'none tried'} (of {', '.join(f'{v:g}' for v in g['value'])})")
    out.append(f"ODB/Fast falls in the paper's {olo}-{ohi}x for " + " and for ".join(within) + ", each varied alone"
               + (": a longer answer leaves fewer blocks to skip." if sweep["odb.answer_len"]["ODB/Fast"].is_monotonic_decreasing else "."))
    g = sweep["prompt_len"]["Fast/vanilla"]
    out.append(f"Prompt {sweep['prompt_len']['value'].iloc[0]:g} to {sweep['prompt_len']['value'].iloc[-1]:g} tokens moves "
               f"Fast/vanilla from {x(g.iloc[0])} to {x(g.iloc[-1])}" + (": vanilla recomputes the prompt at every step, "
               "while a decode step's cost is mostly weights." if g.is_monotonic_increasing else "."))
    return out


def gpu_findings(main: pd.DataFrame, gpu_phases: pd.DataFrame) -> list[str]:
    """The GPU rows: the speedups archsim predicts on the paper's class of hardware, and what the
    launch cost of eager calls does to them."""
    x, out = common.times, []
    gpus = main[main["chip"].isin(common.GPUS)]
    if gpus.empty:
        return out
    cells = {}
    for (d, name), g in gpus.groupby(["deployment", "chip"], sort=False):
        r = g.iloc[0]
        cells.setdefault(d, []).append(f"{name} Fast/vanilla {x(r['Fast/vanilla'])} ({verdict('Fast/vanilla', r['Fast/vanilla'])}), "
                                       f"ODB/Fast {x(r['ODB/Fast'])} ({verdict('ODB/Fast', r['ODB/Fast'])}), "
                                       f"ODB/vanilla {x(r['ODB/vanilla'])} ({verdict('ODB/vanilla', r['ODB/vanilla'])})")
    (prog, prog_cells), (call, call_cells) = list(cells.items())[:2]
    out.append(f"On the paper's class of hardware ({prog}, one compiled program) archsim predicts " + "; ".join(prog_cells)
               + f". With eager calls ({call}): " + "; ".join(call_cells) + ".")
    steps = []
    for name, g in gpu_phases[gpu_phases["mode"] == "Fast-dLLM"].groupby("chip", sort=False):
        k = {d: f.drop_duplicates("kind").set_index("kind") for d, f in g.groupby("dispatch")}
        dec, ref = k["program"].loc["decode"], k["program"].loc["refresh"]
        steps.append(f"on {name} a 32-token decode step takes {common.ms(dec.time_s)} as a program "
                     f"({dec.bound}-bound at {dec.intensity:.0f} MAC/B, ridge {dec.ridge:.0f}) and "
                     f"{common.ms(k['call'].loc['decode'].time_s)} with eager calls, a refresh {common.ms(ref.time_s)} "
                     f"and {common.ms(k['call'].loc['refresh'].time_s)}")
    out.append("Launch costs fall on the short steps that Fast-dLLM and ODB are made of, not on vanilla's long "
               "forwards: " + "; ".join(steps) + ". So eager calls lower Fast/vanilla and ODB/vanilla; ODB/Fast moves "
               "little, as both run the same kind of step.")
    return out


if __name__ == "__main__":
    sys.exit(main())
