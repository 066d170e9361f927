"""Cache schedules x hardware: which DiT feature-caching schedule wins on which chip, and the
co-designed Pareto front of (schedule, hardware) pairs.

    python experiments/cache_codesign.py --out DIR [--quick]

The study no peer tool can run: every built-in cache schedule (docs/sources/schedules.md; the
papers in docs/sources/papers.md#feature-caching-for-dit), at its default setting plus a few more
aggressive settings, on TPUv4i and on every CIM-TPU design of the DATE 2025 Table IV space (which
holds Designs A and B and the iso-MAC CIM-TPU), for DiT-XL/2 generation at 256x256 with 50 DDIM
steps and classifier-free guidance, batch 8, INT8 (the CIM-TPU study's batch and precision). Each
pair is simulated whole: the schedule's full and cached steps, its caches' capacity and traffic,
the chip's MXUs and memories.

What it does not model: image quality. Each schedule is run at the settings its paper reports
as near-lossless (the defaults) or at a named, more aggressive setting; the front says what each
setting costs in hardware, not whether its images are good enough.

Beside the design space, one A100 80GB and one H100 SXM run every schedule too, as references:
they are reported next to the other chips (``codesign_gpu.csv``, their own columns and findings)
but kept out of the design space's rankings and fronts, which are over the chips one could build
from TPUv4i; a finding says where they would stand on those fronts.

Writes under --out: ``codesign.csv`` (one row per pair), ``codesign_gpu.csv``, ``codesign.md`` and the figures
``codesign_speedup.png`` (schedule speedup per chip) and ``codesign_pareto.png``. Besides
latency and energy, the front keeps the share of the full model's MACs each pair computes as a
stand-in for fidelity, so that it is not simply "the most aggressive schedule everywhere".
"""

from __future__ import annotations

import sys

import _common as c
import numpy as np
import pandas as pd

from archsim.api import simulate
from archsim.dse.pareto import pareto_mask
from archsim.hw.memory import Level
from archsim.ir.summary import summarize

WORKLOAD = "dit_xl_2.yaml"
WSETS = ("batch=8", "precision={weights: int8, activations: int8, kv: int8}")  # the CIM-TPU study's
SCHEDULES = ["none", "reuse", "reuse:period=4", "icc", "icc:period=3", "icc:period=3,rank=64", "toca",
             "duca", "taylorseer", "taylorseer:interval=6", "speca", "l2c"]


def hardware(quick: bool) -> dict[str, tuple[str, tuple[str, ...]]]:
    """Label -> (config, overrides): TPUv4i and the Table IV designs."""
    out = {"TPUv4i": ("tpuv4i.yaml", ())}
    for grid, count in list(c.NAMED_DESIGNS) if quick else c.TABLE_IV:
        name = c.NAMED_DESIGNS.get((grid, count))
        out[f"{count}x CIM {grid[0]}x{grid[1]}" + (f" ({name})" if name else "")] = ("cim_tpu.yaml", c.cim_sets(grid, count))
    return out


def evaluate(hw_label: str, config: str, sets: tuple[str, ...], schedule: str, wsets: tuple[str, ...]) -> dict:
    hw = c.chip(config, *sets)
    workload = c.workload(WORKLOAD, *wsets, f"schedule={schedule}", hw=hw)
    summary = summarize(workload)
    result = simulate(hw, workload)
    row = {"schedule": schedule, "hardware": hw_label, "feasible": result.feasible, "reason": result.reason,
           "macs": summary.macs, "cache_bytes": summary.cache_bytes, "area_mm2": result.area.total * 1e6}
    if result.feasible:
        row |= {"latency_s": result.latency_s, "energy_j": result.energy.total, "mxu_energy_j": result.energy.mxu,
                "hbm_bytes": result.traffic.total(Level.HBM), "utilization": result.utilization}
    return row


def run(hw: dict, schedules: list[str], wsets: tuple[str, ...]) -> pd.DataFrame:
    frame = pd.DataFrame([evaluate(label, config, sets, s, wsets) for label, (config, sets) in hw.items() for s in schedules])
    none = frame[frame.schedule == "none"].set_index("hardware")
    frame["speedup_vs_none"] = frame.hardware.map(none.latency_s) / frame.latency_s
    frame["energy_vs_none"] = frame.energy_j / frame.hardware.map(none.energy_j)
    frame["macs_vs_none"] = frame.macs / frame.hardware.map(none.macs)
    reference = none.loc["TPUv4i"]  # TPUv4i without caching: the study's starting point
    frame["speedup_vs_tpuv4i"] = reference.latency_s / frame.latency_s
    frame["energy_vs_tpuv4i"] = frame.energy_j / reference.energy_j
    # The share of the MACs a schedule removes that its chip turns into time saved.
    frame["realised"] = (1 - 1 / frame.speedup_vs_none) / (1 - frame.macs_vs_none)
    frame["pareto_latency_energy"] = pareto_mask(frame[["latency_s", "energy_j"]].to_numpy(), ["min", "min"])
    # Image quality is not modelled; the fraction of the full model's MACs a schedule still
    # computes stands in for its fidelity (more computed, less approximated), so the front
    # shows the cheapest pair at each level of approximation.
    frame["pareto_fidelity"] = pareto_mask(frame[["latency_s", "energy_j", "macs_vs_none"]].to_numpy(),
                                           ["min", "min", "max"])
    frame["pareto_fidelity_area"] = pareto_mask(frame[["latency_s", "energy_j", "macs_vs_none", "area_mm2"]].to_numpy(),
                                                ["min", "min", "max", "min"])
    return frame


def gpu_run(frame: pd.DataFrame, schedules: list[str], wsets: tuple[str, ...]) -> pd.DataFrame:
    """Every schedule on each GPU, with the design space's per-pair columns (against the GPU's own
    no caching, and against TPUv4i without caching), and where each pair stands against the
    design space's fronts."""
    g = pd.DataFrame([evaluate(label, config, (), s, wsets) for label, config in c.GPUS.items() for s in schedules])
    none = g[g.schedule == "none"].set_index("hardware")
    g["speedup_vs_none"] = g.hardware.map(none.latency_s) / g.latency_s
    g["energy_vs_none"] = g.energy_j / g.hardware.map(none.energy_j)
    g["macs_vs_none"] = g.macs / g.hardware.map(none.macs)
    reference = frame[(frame.schedule == "none") & (frame.hardware == "TPUv4i")].iloc[0]
    g["speedup_vs_tpuv4i"] = reference.latency_s / g.latency_s
    g["energy_vs_tpuv4i"] = g.energy_j / reference.energy_j
    g["realised"] = (1 - 1 / g.speedup_vs_none) / (1 - g.macs_vs_none)
    # With the GPUs' pairs added to the design space's, which pairs would the fronts hold?
    both = pd.concat([frame, g], ignore_index=True)
    gpu = both.index >= len(frame)
    g["pareto_fidelity_with_gpus"] = pareto_mask(both[["latency_s", "energy_j", "macs_vs_none"]].to_numpy(),
                                                 ["min", "min", "max"])[gpu]
    g["pareto_fidelity_area_with_gpus"] = pareto_mask(
        both[["latency_s", "energy_j", "macs_vs_none", "area_mm2"]].to_numpy(), ["min", "min", "max", "min"])[gpu]
    return g


def gpu_findings(frame: pd.DataFrame, gpu: pd.DataFrame) -> list[str]:
    """Where the GPUs stand: each schedule's speedup there, the order against TPUv4i's, and the
    fronts with their pairs added."""
    out = []
    m = speedup_matrix(gpu).drop("none")
    tpu = speedup_matrix(frame)["TPUv4i"].drop("none")
    out.append("**On the GPUs** (references, outside the design space) a schedule's speedup over no caching is "
               + "; ".join(f"{c.times(m[h].min())} ({m[h].idxmin()}) to {c.times(m[h].max())} ({m[h].idxmax()}) on {h}"
                           for h in m.columns)
               + f", against {c.times(tpu.min())} to {c.times(tpu.max())} on TPUv4i"
               + (f"; slower than not caching on a GPU: {', '.join(m.index[(m < 1).any(axis=1)])}."
                  if (m < 1).any().any() else "."))
    flips = rank_flips(pd.concat([frame[frame.hardware == "TPUv4i"], gpu], ignore_index=True))
    out.append(f"**Order against TPUv4i's:** {len(flips)} pair{'' if len(flips) == 1 else 's'} of schedules "
               f"swap{'s' if len(flips) == 1 else ''} their latency order, by more than 2% each way, between TPUv4i and a GPU"
               + (f": {'; '.join(flips[:3])}." if flips else "."))
    both = pd.concat([frame, gpu], ignore_index=True)
    fidelity = pareto_mask(both[["latency_s", "energy_j", "macs_vs_none"]].to_numpy(), ["min", "min", "max"])
    area = pareto_mask(both[["latency_s", "energy_j", "macs_vs_none", "area_mm2"]].to_numpy(), ["min", "min", "max", "min"])
    on_gpu = both.index >= len(frame)
    dominated = frame.pareto_fidelity.to_numpy() & ~fidelity[~on_gpu]
    out.append(f"**The fronts with the GPUs' pairs added.** Over latency, energy and MACs computed, "
               f"{int(dominated.sum())} of the design space's {int(frame.pareto_fidelity.sum())} front pairs are dominated"
               + (f" (kept: {'; '.join(f'{r.schedule} on {r.hardware}' for r in frame[frame.pareto_fidelity.to_numpy() & ~dominated].itertuples())})"
                  if (frame.pareto_fidelity.to_numpy() & ~dominated).any() else "") + "; "
               f"the front then holds {int(fidelity.sum())} pairs, {int((fidelity & on_gpu).sum())} of them on a GPU "
               f"({', '.join(sorted(set(both[fidelity & on_gpu].hardware))) or 'none'}). With area as a fourth "
               f"objective it holds {int(area.sum())} pairs (the design space alone: {int(frame.pareto_fidelity_area.sum())}), "
               f"{int((area & on_gpu).sum())} of them on a GPU, whose die is {c.times(gpu.area_mm2.min() / frame.area_mm2.max())}"
               f" to {c.times(gpu.area_mm2.max() / frame.area_mm2.min())} the design space's.")
    best = frame.loc[frame.latency_s.idxmin()]
    for h, g in gpu.groupby("hardware", sort=False):
        none = g[g.schedule == "none"].iloc[0]
        out.append(f"**{h} without caching** takes {c.ms(none.latency_s)} and {none.energy_j:.4g} J: "
                   f"{c.times(best.latency_s / none.latency_s)} faster than the best co-designed pair ({best.schedule} on "
                   f"{best.hardware}, {c.ms(best.latency_s)}, {best.energy_j:.4g} J), with "
                   f"{c.times(none.energy_j / best.energy_j)} its energy and {c.times(none.area_mm2 / best.area_mm2)} its die area.")
    return out


def winners(frame: pd.DataFrame) -> list[list[str]]:
    """Per chip: the fastest and the most frugal schedule, and how much caching buys there."""
    rows = []
    for hw, g in frame.groupby("hardware", sort=False):
        fast, frugal = g.loc[g.latency_s.idxmin()], g.loc[g.energy_j.idxmin()]
        icc = g[g.schedule == "icc"]
        rows.append([hw, f"{fast.schedule} ({c.ms(fast.latency_s)}, {c.times(fast.speedup_vs_none)})",
                     f"{frugal.schedule} ({frugal.energy_j:.4g} J, {c.times(1 / frugal.energy_vs_none)} less)",
                     c.times(icc.speedup_vs_none.iloc[0]) if not icc.empty else "-",
                     c.ms(g[g.schedule == "none"].latency_s.iloc[0])])
    return rows


def speedup_matrix(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.pivot_table(index="schedule", columns="hardware", values="speedup_vs_none", sort=False)


def realised_matrix(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[frame.schedule != "none"].pivot_table(index="schedule", columns="hardware", values="realised", sort=False)


def rank_flips(frame: pd.DataFrame, tolerance: float = 0.02) -> list[str]:
    """Pairs of schedules whose latency order on a CIM design is the reverse of TPUv4i's, each
    by more than ``tolerance``; chips with identical results are counted once."""
    lat = frame.pivot_table(index="schedule", columns="hardware", values="latency_s", sort=False)
    lat = lat.T.drop_duplicates().T  # e.g. 8 x 8x8 and 4 x 16x8 map alike
    flips = []
    names = list(lat.index)
    for hw in lat.columns[1:]:
        for i, a in enumerate(names):
            for b in names[i + 1:]:
                before = lat.at[a, "TPUv4i"] / lat.at[b, "TPUv4i"] - 1
                after = lat.at[a, hw] / lat.at[b, hw] - 1
                if before * after < 0 and min(abs(before), abs(after)) > tolerance:
                    flips.append(f"{a} vs {b} on {hw}")
    return flips


def findings(frame: pd.DataFrame) -> list[str]:
    out = []
    m = speedup_matrix(frame)
    spread = (m.max(axis=1) / m.min(axis=1)).drop("none")
    s = spread.idxmax()
    out.append(f"**A schedule's speedup depends on the chip.** {s} runs at {c.times(m.loc[s].min())} the speed of no caching on "
               f"{m.loc[s].idxmin()} but {c.times(m.loc[s].max())} on {m.loc[s].idxmax()}; across the study the spread "
               f"between a schedule's best and worst chip is {c.times(spread.min())} to {c.times(spread.max())}.")
    flips = rank_flips(frame)
    if flips:
        out.append(f"**Rankings change with the hardware:** {len(flips)} pairs of schedules swap their latency order, by more than 2% each way, "
                   f"between TPUv4i and a CIM design, e.g. {'; '.join(flips[:3])}.")
    else:
        out.append("**Rankings hold:** the schedules' latency order is the same on every chip; their margins differ.")
    cached = frame[frame.schedule != "none"]
    lo, hi = cached.loc[cached.realised.idxmin()], cached.loc[cached.realised.idxmax()]
    slower = cached[cached.speedup_vs_none < 1]
    out.append(f"**MACs saved are not time saved.** A schedule turns {lo.realised:.0%} ({lo.schedule} on {lo.hardware}) to "
               f"{hi.realised:.0%} ({hi.schedule} on {hi.hardware}) of the MACs it removes into time saved"
               + (f"; {len(slower)} pairs are slower than not caching at all, e.g. {slower.iloc[0].schedule} on "
                  f"{slower.iloc[0].hardware} ({c.times(slower.iloc[0].speedup_vs_none)}): on a chip with many MACs per "
                  "cycle the work a schedule adds or keeps costs more than the matrix work it removes: the steps that "
                  "fill the cache (the cache reads the layers' outputs, so the compiler cannot fuse their element-wise "
                  "work into the GEMMs, as it does in a plain step) and a cached step's vector ops (see the ICC "
                  "study's per-step breakdown)." if len(slower) else "."))
    front = frame[frame.pareto_fidelity].sort_values("macs_vs_none", ascending=False)
    out.append("**The co-designed front** (latency, energy, and the share of the full model's MACs computed, standing in "
               "for fidelity) holds " + "; ".join(
                   f"{r.schedule} on {r.hardware} ({r.macs_vs_none:.0%} of the MACs, {c.ms(r.latency_s)}, {r.energy_j:.4g} J)"
                   for r in front.itertuples()) + ".")
    with_area = frame[frame.pareto_fidelity_area]
    tpu = frame[frame.hardware == "TPUv4i"].set_index("schedule")
    beaters = [hw for hw, g in frame[frame.hardware != "TPUv4i"].groupby("hardware", sort=False)
               if all(g.set_index("schedule").loc[s, k] <= tpu.loc[s, k] for s in tpu.index
                      for k in ("latency_s", "energy_j", "area_mm2"))]
    out.append(f"**With area as a fourth objective** the front holds {len(with_area)} pairs over "
               f"{with_area.hardware.nunique()} chips" + (", none of them TPUv4i" if "TPUv4i" not in set(with_area.hardware) else "")
               + (f"; {', '.join(beaters)} beat{'s' if len(beaters) == 1 else ''} TPUv4i in latency, energy and area under "
                  "every schedule." if beaters else "."))
    base = frame[(frame.hardware == "TPUv4i")]
    best_sched = base.loc[base.latency_s.idxmin()]
    none = frame[frame.schedule == "none"]
    best_hw = none.loc[none.latency_s.idxmin()]
    best = frame.loc[frame.latency_s.idxmin()]
    out.append(f"**Co-design beats either lever alone:** the fastest schedule on TPUv4i ({best_sched.schedule}) gives "
               f"{c.times(best_sched.speedup_vs_tpuv4i)}, the fastest chip without caching ({best_hw.hardware}) "
               f"{c.times(best_hw.speedup_vs_tpuv4i)}, the best pair ({best.schedule} on {best.hardware}) "
               f"{c.times(best.speedup_vs_tpuv4i)} at {c.times(1 / best.energy_vs_tpuv4i)} less energy than TPUv4i without caching.")
    icc = frame[frame.schedule == "icc"]
    if not icc.empty:
        out.append(f"**ICC** removes {1 - icc.macs_vs_none.iloc[0]:.0%} of the MACs but saves {1 - 1 / icc.speedup_vs_none.max():.0%} "
                   f"of the time at best ({icc.loc[icc.speedup_vs_none.idxmax()].hardware}): its cached steps still run "
                   "attention and adaLN in full and read and write the activation cache (see the ICC study).")
    return out


def plot_speedups(frame: pd.DataFrame, path, gpu: pd.DataFrame | None = None):
    import matplotlib.pyplot as plt

    m = speedup_matrix(frame)
    designs = len(m.columns)
    if gpu is not None:  # the GPUs' columns after the design space's, past a white rule
        m = m.join(speedup_matrix(gpu))
    fig, ax = plt.subplots(figsize=(1.1 * len(m.columns) + 3, 0.42 * len(m) + 1.6), layout="constrained")
    image = ax.imshow(m.to_numpy(), cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(m.columns)), labels=m.columns, rotation=35, ha="right", fontsize=7)
    ax.set_yticks(range(len(m)), labels=m.index, fontsize=7)
    for (i, j), v in np.ndenumerate(m.to_numpy()):
        ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=6, color="w" if v < m.to_numpy().mean() else "k")
    if len(m.columns) > designs:
        ax.axvline(designs - 0.5, color="w", lw=3)
    fig.colorbar(image, ax=ax, label="speedup over no caching, same chip")
    ax.set_title("DiT-XL/2 256px, 50 steps, batch 8: cache schedule x hardware")
    return c.save_figure(fig, path)


def plot_pareto(frame: pd.DataFrame, path, gpu: pd.DataFrame | None = None):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.6), layout="constrained")
    markers = dict(zip(dict.fromkeys(frame.hardware), "os^vD<>pPX*h"))
    colors = {s: f"C{i % 10}" for i, s in enumerate(dict.fromkeys(frame.schedule))}
    for r in frame.itertuples():
        ax.scatter(r.latency_s * 1e3, r.energy_j, marker=markers[r.hardware], color=colors[r.schedule], s=22, alpha=0.8)
    front = frame[frame.pareto_latency_energy].sort_values("latency_s")
    ax.plot(front.latency_s * 1e3, front.energy_j, "k-", lw=1, label="latency-energy front")
    fidelity = frame[frame.pareto_fidelity]
    ax.scatter(fidelity.latency_s * 1e3, fidelity.energy_j, s=70, facecolor="none", edgecolor="k", lw=0.8,
               label="front with MACs computed")
    for r in fidelity.itertuples():
        ax.annotate(f"{r.schedule} / {r.hardware}", (r.latency_s * 1e3, r.energy_j), fontsize=6, xytext=(4, 2), textcoords="offset points")
    for s, col in colors.items():
        ax.scatter([], [], color=col, label=s, s=15)
    for h, mk in markers.items():
        ax.scatter([], [], marker=mk, color="grey", label=h, s=15)
    if gpu is not None:  # references, outside the fronts
        gpu_markers = dict(zip(dict.fromkeys(gpu.hardware), "h*"))
        for r in gpu.itertuples():
            ax.scatter(r.latency_s * 1e3, r.energy_j, marker=gpu_markers[r.hardware], color=colors[r.schedule], s=40,
                       edgecolor="k", lw=0.5, alpha=0.9)
        for h, mk in gpu_markers.items():
            ax.scatter([], [], marker=mk, color="grey", edgecolor="k", lw=0.5, label=f"{h} (reference, not in the fronts)", s=30)
    from matplotlib.ticker import NullFormatter

    ax.set_xscale("log")
    ax.set_yscale("log")
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_minor_formatter(NullFormatter())  # minor labels overlap on a one-decade axis
    ax.set_xlabel("generation latency (ms)")
    ax.set_ylabel("energy (J)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=6, ncol=2, loc="upper left", bbox_to_anchor=(1.01, 1))
    return c.save_figure(fig, path)


def main(argv: list[str] | None = None) -> int:
    args = c.parser(__doc__).parse_args(argv)
    wsets = (*WSETS, "steps=10") if args.quick else WSETS
    schedules = ["none", "reuse", "icc", "taylorseer"] if args.quick else SCHEDULES
    frame = run(hardware(args.quick), schedules, wsets)
    gpu = gpu_run(frame, schedules, wsets)
    c.write_csv(frame, args.out / "codesign.csv")
    c.write_csv(gpu, args.out / "codesign_gpu.csv")
    plot_speedups(frame, args.out / "codesign_speedup.png", gpu)
    plot_pareto(frame, args.out / "codesign_pareto.png", gpu)
    m = speedup_matrix(frame).join(speedup_matrix(gpu))
    realised = realised_matrix(frame).join(realised_matrix(gpu))
    front = frame[frame.pareto_fidelity].sort_values("macs_vs_none", ascending=False)
    text = "\n\n".join([
        "## Cache schedules x hardware: the co-design study",
        "### Findings\n\n" + "\n".join(f"- {f}" for f in findings(frame) + gpu_findings(frame, gpu)),
        "### Per chip: the winning schedule",
        c.md_table(["chip", "fastest schedule (latency, vs no caching)", "least energy", "ICC speedup", "no caching"],
                   winners(frame) + winners(gpu)),
        f"### Speedup of each schedule over no caching, per chip (the last {len(c.GPUS)} columns: GPUs, as references)",
        c.md_table(["schedule", *m.columns], [[s, *(c.times(v) for v in row)] for s, row in m.iterrows()]),
        "### Share of the removed MACs turned into time saved, per chip",
        c.md_table(["schedule", *m.columns], [[s, *(f"{v:.0%}" for v in row)] for s, row in realised.iterrows()]),
        "### Pareto front over latency, energy and MACs computed (the fidelity proxy)",
        c.md_table(["schedule", "chip", "latency", "energy", "area", "MACs vs none", "vs TPUv4i without caching"],
                   [[r.schedule, r.hardware, c.ms(r.latency_s), f"{r.energy_j:.4g} J", f"{r.area_mm2:.4g} mm^2",
                     f"{r.macs_vs_none:.0%}", c.times(r.speedup_vs_tpuv4i)] for r in front.itertuples()]),
    ])
    c.write_atomic(args.out / "codesign.md", text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
