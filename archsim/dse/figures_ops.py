"""Per-operator comparison across designs (``archsim.dse.plots.plot_op_comparison``): for each
named op group (QKV projection, attention, FFN, norms, ...) or op kind, the latency and energy
of its ops on each design, as grouped bars."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

# the groups in the order they are drawn; an op is in the first whose rule it meets (op_group)
GROUPS = ("QKV projection", "attention", "attention output", "KV cache", "FFN", "norms", "modulation (adaLN)",
          "embedding", "output head", "preload", "other")
_NORM_KINDS = {"layernorm", "rmsnorm", "groupnorm", "norm"}
_ATTENTION_KINDS = {"attention", "attn_score", "attn_context", "softmax"}
_QKV = re.compile(r"(add_|to_)?(q|k|v|qk|qkv|kv)(_[ab])?(_proj)?(_with_mqa)?|w[qkv]|qkv_proj|to_qkv")
_OUT = re.compile(r"o|o_proj|out_proj|to_out|to_add_out|wo|out|dense")
_FFN = re.compile(r"(^|\.)(mlp|ffn|ff|ff_context|feed_forward|moe|experts?|shared_experts?|router|gate)(\.|$)|"
                  r"(^|\.)(fc1|fc2|w1|w2|w3|up|down|gate_proj|up_proj|down_proj)$")


def op_group(name: str, kind: str) -> str:
    """The named group of an op, from its name and kind: 'QKV projection', 'attention' (scores,
    softmax, context, fused attention), 'attention output', 'KV cache', 'FFN' (MLP and experts),
    'norms', 'modulation (adaLN)', 'embedding', 'output head', 'preload' or 'other'."""
    lowered = name.lower()
    parts = lowered.split(".")
    last = parts[-1] if not parts[-1].isdigit() or len(parts) < 2 else parts[-2]
    if kind in _NORM_KINDS:
        return "norms"
    if kind in _ATTENTION_KINDS:
        return "attention"
    if kind == "cache_write":
        return "KV cache"
    if kind == "preload":
        return "preload"
    if "adaln" in lowered or (kind != "activation" and "norm" in lowered) or "modulation" in lowered:
        return "modulation (adaLN)"
    if kind == "embedding" or "embed" in lowered:
        return "embedding"
    if _FFN.search(lowered):
        return "FFN"
    if "attn" in lowered or "attention" in lowered or "self_attn" in lowered:
        if _QKV.fullmatch(last):
            return "QKV projection"
        if _OUT.fullmatch(last):
            return "attention output"
        return "attention"
    if kind == "gemm" and _QKV.fullmatch(last):
        return "QKV projection"
    if any(p in ("final", "lm_head", "proj_out", "head", "norm_out") for p in parts) or last in ("lm_head", "proj_out"):
        return "output head"
    return "other"


def op_frame(results, by: str = "group") -> pd.DataFrame:
    """Rows: op groups (or kinds); columns: (metric, design) with metric ``latency_s`` (the
    ops' time, every execution) and ``energy_j`` (every execution's energy)."""
    if by not in ("group", "kind"):
        raise ValueError(f"by={by!r}: expected 'group' or 'kind'")
    runs = list(results.items()) if isinstance(results, Mapping) else [(r.hw.name, r) for r in results]
    if not runs:
        raise ValueError("no results to compare")
    seen: dict[str, int] = {}
    parts = []
    for label, result in runs:
        seen[label] = seen.get(label, 0) + 1
        label = label if seen[label] == 1 else f"{label} #{seen[label]}"  # two runs on one chip stay apart
        if not getattr(result, "feasible", True):
            raise ValueError(f"{label}: infeasible ({result.reason}); per-op figures need runs that fit")
        if not hasattr(result, "table"):
            raise ValueError(f"{label}: a {type(result).__name__} has no per-op table; compare single-chip runs")
        t = result.table()
        key = [op_group(o, k) for o, k in zip(t["op"], t["kind"])] if by == "group" else list(t["kind"])
        t = t.assign(group=key, total_energy_j=t["energy_j"] * t["count"])
        agg = t.groupby("group", sort=False).agg(latency_s=("total_latency_s", "sum"), energy_j=("total_energy_j", "sum"))
        agg.columns = pd.MultiIndex.from_tuples([(c, label) for c in agg.columns])
        parts.append(agg)
    frame = pd.concat(parts, axis=1).fillna(0.0)
    order = {g: i for i, g in enumerate(GROUPS)} if by == "group" else {}
    return frame.loc[sorted(frame.index, key=lambda g: (order.get(g, len(order)), g))]


def plot_op_comparison(results: Sequence | Mapping, stem: Path, by: str = "group") -> list[Path]:
    """Grouped bars of each op group's (``by='kind'``: each op kind's) latency and energy on
    every design: ``results`` are ``archsim.api.simulate`` RunResults (named by their chips)
    or a mapping name -> RunResult. Writes STEM.png and STEM.svg."""
    from archsim.dse.plots import _save, plt

    frame = op_frame(results, by)
    designs = list(dict.fromkeys(d for _, d in frame.columns))
    groups = list(frame.index)
    per_group = max(1.0, 0.32 * len(designs) + 0.3)
    fig, axes = plt.subplots(2, 1, figsize=(max(6.5, per_group * len(groups) + 1.5), 6.4), sharex=True,
                             layout="constrained")
    x = np.arange(len(groups))
    width = 0.8 / len(designs)
    for ax, (metric, what, scale, unit) in zip(axes, (("latency_s", "latency", 1e3, "ms"), ("energy_j", "energy", 1e3, "mJ"))):
        values = frame[metric][designs].to_numpy(dtype=float) * scale
        for i, design in enumerate(designs):
            ax.bar(x + (i - (len(designs) - 1) / 2) * width, values[:, i], width, color=f"C{i % 10}", label=design)
        positive = values[values > 0]
        log = positive.size > 0 and positive.max() / positive.min() > 1e3  # small groups stay visible
        if log:
            ax.set_yscale("log")
        bottom = ax.get_ylim()[0]
        for (g, i) in zip(*np.nonzero(values == 0)):  # a design without ops of the group: said, not a gap
            ax.text(x[g] + (i - (len(designs) - 1) / 2) * width, bottom, "0", ha="center", va="bottom", fontsize=6)
        ax.set_ylabel(f"{what} ({unit}){', log scale' if log else ''}")
        ax.set_title(f"{what} of each {'op group' if by == 'group' else 'op kind'}, all its executions")
        ax.grid(axis="y", alpha=0.3)
    axes[1].set_xticks(x, [g.replace(" (", "\n(") for g in groups])
    fig.legend(handles=axes[0].get_legend_handles_labels()[0], labels=designs, loc="outside upper center",
               ncol=min(len(designs), 5), fontsize=8, frameon=False)
    return _save(fig, stem)
