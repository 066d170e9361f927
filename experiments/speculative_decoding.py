"""Speculative decoding on TPUv4i, CIM Designs A and B and an A100: LLaMA-2-7B over acceptance
rates and draft sizes, beside the speed-ups the papers report (issue 23).

    python experiments/speculative_decoding.py --out DIR [--quick]

LLaMA-2-7B (docs/sources/papers.md#llm-model-shapes), a 1024-token prompt and 256 output tokens,
batch 1, int8 throughout (the CIM-TPU study's precision, docs/sources/papers.md#the-cim-mxu: the
7B model and a draft fit one TPUv4i's 8 GiB), on each chip, under the decode schedules of
docs/sources/speculative.md: a TinyLlama-1.1B draft model (workloads/llama2_7b_spec_draft.yaml)
drafting k = 2, 4, 6, 8 tokens; LayerSkip self-speculation (exit after layer 8, k = 6, its
README's setting); Medusa (4 heads, the 64-token tree mc_sim_7b_63, and a chain of 4); EAGLE-2
(its draft head, depth 5, top 8, 63 tokens verified: cnets1.py's defaults); FIRP
(layer 16, k = 3: ASSUMPTIONs). Each at constant acceptance rates from 0 to 1. The papers'
acceptance rates are not known to archsim: the study gives, per chip, the speed-up at each rate,
the break-even rate, and the rate each paper's reported speed-up needs on that chip.

Writes under --out: speculative.csv (schedule x k x chip x acceptance: tokens per round,
latency, tokens/s, TPOT, energy per token, speed-up and energy against vanilla),
speculative_breakeven.csv, speculative_passes.csv (per chip, the time of one verification pass
of q tokens against one vanilla decode step: what the hardware changes), speculative.md (tables
and findings, also printed), speculative_speedup.png, speculative_passes.png.
--quick: LLaMA-2-7B cut to 4 layers, a 128-token prompt and 33 output tokens, three rates,
TPUv4i, CIM Design B and the A100, draft k = 4 and Medusa's chain only.
"""

from __future__ import annotations

import sys

import _common as common
import numpy as np
import pandas as pd

from archsim.dse.compare_llm import break_even, row_of, run_schedule

WORKLOAD = common.WORKLOAD_DIR / "llama2_7b_spec_draft.yaml"  # the draft model's file (its schedule is replaced)
CHIPS = {**common.CHIPS, "A100 80GB": common.GPUS["A100 80GB"]}
QUICK_CHIPS = ("TPUv4i", "CIM Design B", "A100 80GB")
RATES, QUICK_RATES = (0.0, 0.2, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0), (0.0, 0.6, 1.0)
# docs/sources/speculative.md#reported-speed-ups: end-to-end speed-ups the papers report (GPUs)
PAPERS = {"S4C": (2.26, 2.60), "FIRP": (1.9, 3.0), "Make Some Noise": (2.3, 2.7), "LayerSkip": (1.82, 2.16)}
VERIFY_TOKENS = (1, 2, 3, 5, 7, 9, 17, 33, 64)  # q of a verification pass (k + 1; 64: Medusa's tree)
LLAMA2_7B = str(common.WORKLOAD_DIR / "models" / "llama2_7b.json")
# --quick: the target cut to 4 layers; its draft one layer of half the width (as in
# tests/test_llm_schedules_props.py)
QUICK_TARGET = f"model={{from: {LLAMA2_7B}, num_hidden_layers: 4}}"
QUICK_DRAFT = {"from": LLAMA2_7B, "num_hidden_layers": 1, "hidden_size": 2048, "intermediate_size": 5504,
               "num_attention_heads": 16, "num_key_value_heads": 16}


def schedules(quick: bool) -> dict[str, dict]:
    """label -> schedule mapping (acceptance filled in per point); the draft model is the file's."""
    from archsim.workloads.base import load_spec

    model = QUICK_DRAFT if quick else load_spec(WORKLOAD).decode_schedule().model
    out = {f"draft k={k}": {"name": "draft", "model": model, "k": k} for k in ((4,) if quick else (2, 4, 6, 8))}
    out["medusa chain 4"] = {"name": "medusa", "heads": 4, "tree": "chain"}
    if not quick:
        out["medusa tree 64"] = {"name": "medusa", "heads": 4, "tree": "mc_sim_7b_63"}
        out["eagle depth 5, top-8, 63 tokens"] = {"name": "eagle", "depth": 5, "top_k": 8, "total_tokens": 63}
        out["self_spec exit 8, k=6"] = {"name": "self_spec", "exit_layer": 8, "k": 6}
        out["firp layer 16, k=3"] = {"name": "firp", "layer": 16, "k": 3}
    return out


def wsets(quick: bool) -> list[str]:
    if not quick:
        return []
    return [QUICK_TARGET, "prompt_len=128", "output_len=33"]


def run(quick: bool) -> tuple[pd.DataFrame, pd.DataFrame]:
    from archsim.config.loader import parse_overrides

    overrides = parse_overrides(wsets(quick), "--wset")
    rows, passes = [], []
    for chip_name, config in CHIPS.items():
        if quick and chip_name not in QUICK_CHIPS:
            continue
        hw = common.chip(config)
        spec, workload, result = run_schedule(hw, WORKLOAD, "vanilla", overrides)
        base = row_of("vanilla", hw, spec, workload, result)
        rows.append(base | {"chip": chip_name, "label": "vanilla", "k": 0, "acceptance": float("nan")})
        step = _phase_time(result, lambda n: n.startswith("decode@")) / _repeats(workload, lambda n: n.startswith("decode@"))
        for q in VERIFY_TOKENS[:4] if quick else VERIFY_TOKENS:
            passes.append({"chip": chip_name, "q": q, "pass_over_step": _pass_time(hw, q, overrides) / step})
        for label, schedule in schedules(quick).items():
            for a in QUICK_RATES if quick else RATES:
                spec, workload, result = run_schedule(hw, WORKLOAD, schedule | {"acceptance": a}, overrides)
                row = row_of(label, hw, spec, workload, result)
                rows.append(row | {"chip": chip_name, "label": label, "k": spec.decode_schedule().token_tree().depth,
                                   "acceptance": a, "speedup_vs_vanilla": base["latency_s"] / row["latency_s"],
                                   "energy_vs_vanilla": row["energy_j"] / base["energy_j"]})
    return pd.DataFrame(rows), pd.DataFrame(passes)


def _phase_time(result, keep) -> float:
    return sum(t for name, t in result.latency_by("phase").items() if keep(name))


def _repeats(workload, keep) -> int:
    return sum(p.repeat for p in workload.phases if keep(p.name))


def _pass_time(hw, q: int, overrides) -> float:
    """One verification pass of q tokens: the target's verify phases of a draft schedule with
    k = q - 1 at acceptance 0 (each run of them is one such pass; the draft's time excluded)."""
    schedule = {"name": "draft", "model": {"from": LLAMA2_7B, "num_hidden_layers": 1}, "k": q - 1,
                "acceptance": 0.0} if q > 1 else "vanilla"
    spec, workload, result = run_schedule(hw, WORKLOAD, schedule, overrides)
    keep = (lambda n: n.startswith("verify@")) if q > 1 else (lambda n: n.startswith("decode@"))
    return _phase_time(result, keep) / _repeats(workload, keep)


def breakevens(frame: pd.DataFrame) -> pd.DataFrame:
    rows = []
    spec = frame[frame["label"] != "vanilla"]
    for (label, chip), curve in spec.groupby(["label", "chip"], sort=False):
        row = {"label": label, "chip": chip, "break_even_acceptance": break_even(curve),
               "speedup_at_0": curve["speedup_vs_vanilla"].iloc[0],
               "speedup_at_1": curve["speedup_vs_vanilla"].iloc[-1]}
        for paper, (low, high) in PAPERS.items():
            row[f"acceptance_for_{paper}_{low}x"] = _rate_for(curve, low)
        rows.append(row)
    return pd.DataFrame(rows)


def _rate_for(curve: pd.DataFrame, target: float) -> float:
    """The acceptance rate at which the speed-up reaches ``target`` (linear between points)."""
    return break_even(curve.assign(speedup_vs_vanilla=curve["speedup_vs_vanilla"] / target))


def figures(frame: pd.DataFrame, passes: pd.DataFrame, out) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    spec = frame[frame["label"] != "vanilla"]
    labels = list(dict.fromkeys(spec["label"]))
    chips = list(dict.fromkeys(spec["chip"]))
    cols = min(4, len(labels))
    rows = -(-len(labels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3.2 * rows), squeeze=False, layout="constrained")
    for ax, label in zip(axes.ravel(), labels):
        for i, chip in enumerate(chips):
            curve = spec[(spec["label"] == label) & (spec["chip"] == chip)]
            ax.plot(curve["acceptance"], curve["speedup_vs_vanilla"], marker="o", ms=3, color=f"C{i}", label=chip)
        ax.axhline(1.0, color="grey", lw=0.8, ls="--")
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("acceptance rate")
        ax.grid(alpha=0.3)
    for ax in axes.ravel()[len(labels):]:
        ax.axis("off")
    axes[0][0].set_ylabel("speed-up over vanilla")
    axes[0][0].legend(fontsize=7)
    common.save_figure(fig, out / "speculative_speedup.png")
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for i, chip in enumerate(chips):
        sub = passes[passes["chip"] == chip]
        ax.plot(sub["q"], sub["pass_over_step"], marker="o", ms=3, color=f"C{i}", label=chip)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("tokens verified in one pass (q)")
    ax.set_ylabel("pass time / vanilla decode step")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    common.save_figure(fig, out / "speculative_passes.png")


def report(frame: pd.DataFrame, passes: pd.DataFrame, even: pd.DataFrame, quick: bool) -> str:
    vanilla = frame[frame["label"] == "vanilla"].set_index("chip")
    lines = ["# Speculative decoding x hardware (issue 23)", "",
             "LLaMA-2-7B, int8, batch 1, " + ("4 layers, 128-token prompt, 33 tokens (--quick)" if quick
                                               else "1024-token prompt, 256 output tokens") + ".", "",
             "## Vanilla decoding", "",
             common.md_table(["chip", "tokens/s", "TPOT", "energy/token"],
                             [(c, f"{r.tokens_per_s:.4g}", common.ms(r.tpot_s), f"{r.energy_per_token_j * 1e3:.4g} mJ")
                              for c, r in vanilla.iterrows()]), "",
             "## One verification pass of q tokens against one vanilla decode step", "",
             "The time a pass of q tokens (the last token and q - 1 drafts) takes against the cache, over the time of a "
             "one-token step: 1 while the pass is bound by reading the weights, rising once the chip's matrix units "
             "become the limit.", ""]
    qs = list(dict.fromkeys(passes["q"]))
    lines.append(common.md_table(["chip", *(f"q={q}" for q in qs)],
                                 [(c, *(f"{v:.3g}" for v in sub["pass_over_step"]))
                                  for c, sub in passes.groupby("chip", sort=False)]))
    lines += ["", "## Speed-up over vanilla by acceptance rate", ""]
    spec = frame[frame["label"] != "vanilla"]
    rates = list(dict.fromkeys(spec["acceptance"]))
    lines.append(common.md_table(["schedule", "chip", *(f"a={a:g}" for a in rates)],
                                 [(label, chip, *(f"{v:.3g}" for v in curve["speedup_vs_vanilla"]))
                                  for (label, chip), curve in spec.groupby(["label", "chip"], sort=False)]))
    lines += ["", "## Break-even acceptance and the rate each paper's speed-up needs", "",
              "The papers report end-to-end speed-ups on GPUs (docs/sources/speculative.md#reported-speed-ups): the "
              "rate is where archsim's speed-up reaches the lower end of each paper's range ('-': never, up to a = 1).",
              ""]
    papers = [c for c in even.columns if c.startswith("acceptance_for_")]
    lines.append(common.md_table(
        ["schedule", "chip", "break-even a", "speed-up at a=0", "at a=1", *(c.removeprefix("acceptance_for_") for c in papers)],
        [(r.label, r.chip, _rate(r.break_even_acceptance), f"{r.speedup_at_0:.3g}", f"{r.speedup_at_1:.3g}",
          *(_rate(r[c]) for c in papers)) for _, r in even.iterrows()]))
    lines += ["", "## Findings", ""] + findings(frame, passes, even)
    return "\n".join(lines) + "\n"


def _rate(value: float) -> str:
    return "-" if np.isnan(value) else f"{value:.2f}"


def findings(frame: pd.DataFrame, passes: pd.DataFrame, even: pd.DataFrame) -> list[str]:
    out = []
    spec = frame[frame["label"] != "vanilla"]
    chips = list(dict.fromkeys(spec["chip"]))
    for label in dict.fromkeys(spec["label"]):
        sub = even[even["label"] == label].set_index("chip")
        best = sub["speedup_at_1"].idxmax()
        low = sub["break_even_acceptance"]
        out.append(f"- {label}: break-even acceptance " + ", ".join(f"{c} {_rate(low[c])}" for c in chips)
                   + f"; at a = 1 the best chip is {best} ({sub.loc[best, 'speedup_at_1']:.3g}x).")
    largest = passes[passes["q"] == passes["q"].max()].set_index("chip")["pass_over_step"]
    out.append(f"- A {passes['q'].max()}-token pass costs " + ", ".join(f"{largest[c]:.3g}" for c in largest.index)
               + " one-token steps on " + ", ".join(largest.index) + ": the chip whose pass stays near 1 the longest "
               "gives speculation its verification for free, the others pay for every drafted token.")
    for column, what in (("speedup_vs_vanilla", "speed-up over its own vanilla decoding"),
                         ("tokens_per_s", "tokens/s")):
        crossings = []
        for label in dict.fromkeys(spec["label"]):
            curves = {c: spec[(spec["label"] == label) & (spec["chip"] == c)] for c in chips}
            for systolic in [c for c in chips if not c.startswith("CIM")]:
                for cim in [c for c in chips if c.startswith("CIM")]:
                    crossing = cross(curves[systolic], curves[cim], column)
                    if crossing is not None:
                        rate, below = crossing
                        above = cim if below == systolic else systolic
                        crossings.append(f"{label}, {systolic} / {cim} at a = {rate:.2f} ({below} ahead below, "
                                         f"{above} above)")
        out.append(f"- Where a systolic chip and a CIM design trade places in {what} as acceptance grows: "
                   + ("; ".join(crossings) if crossings else "nowhere on this grid") + ".")
    return out


def cross(first: pd.DataFrame, second: pd.DataFrame, column: str) -> tuple[float, str] | None:
    """The first acceptance rate where ``column`` of two chips' curves cross (linear between
    grid points) and which chip leads below it; None when one stays ahead (or they only touch)."""
    a = first["acceptance"].to_numpy(dtype=float)
    diff = first[column].to_numpy(dtype=float) - second[column].to_numpy(dtype=float)
    for i in range(len(diff) - 1):
        if diff[i] * diff[i + 1] < 0:
            rate = a[i] + diff[i] / (diff[i] - diff[i + 1]) * (a[i + 1] - a[i])
            return float(rate), str(first["chip"].iloc[0] if diff[i] > 0 else second["chip"].iloc[0])
    return None


def main(argv: list[str] | None = None) -> int:
    args = common.parser(__doc__).parse_args(argv)
    frame, passes = run(args.quick)
    even = breakevens(frame)
    common.write_csv(frame, args.out / "speculative.csv")
    common.write_csv(even, args.out / "speculative_breakeven.csv")
    common.write_csv(passes, args.out / "speculative_passes.csv")
    figures(frame, passes, args.out)
    text = report(frame, passes, even, args.quick)
    common.write_atomic(args.out / "speculative.md", text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
