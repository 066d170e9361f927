"""Human-readable rendering of configs and results (the CLI's tables)."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from archsim import units
from archsim.hw.memory import Level
from archsim.sim.serving import serving

if TYPE_CHECKING:  # annotations only: a chip's run loads neither the system nor the summary modules
    from archsim.config.schema import HardwareConfig
    from archsim.ir.summary import WorkloadSummary
    from archsim.sim.result import RunResult


def _is_system_result(result) -> bool:
    """Whether ``result`` is a ``SystemResult``; without importing archsim.system.result: no
    result is one unless that module was loaded (issue 22, start-up)."""
    module = sys.modules.get("archsim.system.result")
    return module is not None and isinstance(result, module.SystemResult)


def fmt_bytes(value: float) -> str:
    return units.format_quantity(value, units.SIZE) if value else "0"


def fmt_time(value: float) -> str:
    return units.format_quantity(value, units.TIME)


def key_values(rows: list[tuple[str, str]]) -> str:
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def hardware_summary(hw: HardwareConfig) -> list[tuple[str, str]]:
    rows = [("chip", hw.name), ("clock", units.format_quantity(hw.clock, units.FREQUENCY))]
    for dtype in hw.matrix_dtypes:
        rows.append((f"peak {dtype}", f"{hw.peak_macs_per_second(dtype) * 2 / 1e12:.4g} TOPS"))
    for name, cfg in hw.memory_levels:
        if cfg is not None:
            rows.append((name, f"{fmt_bytes(cfg.capacity)} at {units.format_quantity(cfg.bandwidth, units.BANDWIDTH)}"))
    return rows


def traffic_rows(result: RunResult) -> list[tuple[str, str]]:
    t = result.traffic
    return [
        (f"{lv.value} traffic", f"{fmt_bytes(getattr(t, lv.value + '_read'))} read, "
                                f"{fmt_bytes(getattr(t, lv.value + '_write'))} written")
        for lv in Level
    ]


def fmt_energy(value: float) -> str:
    return units.format_quantity(value, units.ENERGY)


def component_label(name: str, results) -> str:
    """A component's name as the chips of ``results`` call it ('cmem / L2' beside a GPU)."""
    return " / ".join(dict.fromkeys(r.hw.component_labels.get(name, name) for r in results))


def energy_rows(result: RunResult) -> list[tuple[str, str]]:
    e, a = result.energy, result.area
    named = result.hw.component_labels
    parts = ", ".join(f"{named.get(k, k)} {fmt_energy(v)} ({v / e.total:.0%})" for k, v in e.as_dict().items()
                      if v) if e.total else "-"
    areas = ", ".join(f"{result.hw.area_labels.get(k, k)} {v * 1e6:.4g}" for k, v in a.as_dict().items() if v)
    return [
        ("energy", fmt_energy(e.total)),
        ("energy by component", parts),
        ("average power", power_text(result)),
        ("static power", static_text(result.hw, getattr(result, "chips", 1))),
        ("TOPS/W achieved", f"{result.tops_per_w:.4g}"),
        ("area", f"{a.total * 1e6:.4g} mm^2 ({areas})"),
    ]


def static_text(hw, chips: int = 1) -> str:
    """The chips' static power and what it rests on (die leakage by component, always-on)."""
    from archsim.hw.leakage import static_breakdown

    s = static_breakdown(hw)
    per_chip = f" per chip, x{chips}" if chips > 1 else ""
    if hw.leakage is None:
        return f"{s.total:.4g} W{per_chip} (one figure for the chip: static_power)"
    parts = ", ".join(f"{hw.area_labels.get(k, k)} {v:.3g}" for k, v in s.as_dict().items() if v and k != "always_on")
    return f"{s.total:.4g} W{per_chip} (leakage {s.total - s.always_on:.3g} W: {parts}; always on {s.always_on:.3g} W)"


def power_text(result) -> str:
    """Average power, flagged when above the TDP."""
    text = f"{result.power_w:.4g} W"
    if result.over_tdp:
        text += (f"  WARNING: {result.power_w / result.tdp_w:.3g}x the {result.tdp_w:.4g} W TDP: a real chip "
                 f"would throttle, or the config's energy figures are too high")
    return text


def side_by_side(results: list[RunResult]) -> str:
    """Chips in columns, metrics in rows; ratios against the first chip."""
    import pandas as pd  # imported on use: it doubles the CLI's start-up time

    base = results[0]
    columns = {}
    for r in results:
        col: dict[str, str] = {}
        if not r.feasible:
            col["latency"] = "INFEASIBLE: " + r.reason
            columns[r.hw.name] = col
            continue
        col["latency"] = fmt_time(r.latency_s)
        col["  vs first"] = f"{r.latency_s / base.latency_s:.3f}x" if base.feasible else ""
        col["MXU utilization"] = f"{r.utilization:.1%}"
        col["energy"] = fmt_energy(r.energy.total)
        for name, value in r.energy.as_dict().items():
            col[f"  {component_label(name, results)}"] = fmt_energy(value)
        col["MXU energy vs first"] = (f"{base.energy.mxu / r.energy.mxu:.2f}x less" if base.feasible and r.energy.mxu else "")
        col["average power"] = power_text(r)
        col["TOPS/W achieved"] = f"{r.tops_per_w:.4g}"
        if (figures := serving(r)) is not None:
            if figures.ttft_s is not None:
                col["time to first token"] = fmt_time(figures.ttft_s)
            if figures.tpot_s is not None:
                col["time per output token"] = fmt_time(figures.tpot_s)
            col["tokens/s"] = f"{figures.tokens_per_s:.4g}"
            col["tokens/J"] = f"{figures.tokens_per_j:.4g}"
        col["area"] = f"{r.area.total * 1e6:.4g} mm^2"
        col[f"  {' / '.join(dict.fromkeys(x.hw.area_labels.get('mxu', 'MXU') for x in results))} area"] = \
            f"{r.area.mxu * 1e6:.4g} mm^2"
        col["HBM traffic"] = fmt_bytes(r.traffic.hbm_read + r.traffic.hbm_write)
        col["chips"] = str(r.hw.system.chips)
        if r.hw.system.chips > 1:
            col["ICI traffic"] = fmt_bytes(r.ici_bytes)
        columns[_column_name(r, columns)] = col
    frame = pd.DataFrame(columns).fillna("")
    return f"workload: {base.workload.name}\n" + frame.to_string()


def _column_name(result, taken) -> str:
    """The chip's name, with its system's mapping when it has one; unique among ``taken``."""
    name = result.hw.name
    if result.hw.system.chips > 1:
        p = result.hw.system.parallelism
        name += f" x{result.hw.system.chips} (pp{p.pipeline} tp{p.tensor} dp{p.data} mb{p.micro_batches})"
    unique, n = name, 2
    while unique in taken:
        unique, n = f"{name} #{n}", n + 1
    return unique


def system_rows(result) -> list[tuple[str, str]]:
    """A system's mapping, its stages' chips and its links."""
    system = result.hw.system
    p = system.parallelism
    rows = [("system", f"{system.chips} chips, {system.topology.kind}; pipeline {p.pipeline} x tensor {p.tensor} "
                       f"x data {p.data}{f' (experts over {p.expert})' if p.expert > 1 else ''}, "
                       f"{p.micro_batches} micro-batch(es)")]
    if result.split is not None and result.split.layers:
        rows.append(("layers per stage", ", ".join(map(str, result.split.layers))))
    rows.append(("pipeline bubble", f"{result.bubble_fraction:.1%} of chip time idle"))
    for s, (busy, util) in enumerate(zip(result.stage_busy_s, result.stage_utilization)):
        chips = ", ".join(str(s * p.tensor + r) for r in range(p.tensor))
        rows.append((f"stage {s} (chip {chips})", f"busy {fmt_time(busy)}, MXU utilization {util:.1%}"))
    rows.append(("ICI traffic", f"{fmt_bytes(result.ici_bytes)}, energy {fmt_energy(result.energy.ici)}, "
                                f"busiest chip's links {result.link_utilization:.1%} utilized"))
    return rows


def run_summary(result: RunResult) -> str:
    head = [("hardware", result.hw.name), ("workload", result.workload.name)]
    if not result.feasible:
        return key_values(head + [("result", "INFEASIBLE"), ("reason", result.reason)])
    rows = head + [
        ("latency", fmt_time(result.latency_s)),
        ("cycles", f"{result.cycles:,.0f}"),
        ("MACs", f"{result.macs:,}"),
        ("MXU utilization", f"{result.utilization:.1%}"),
    ]
    rows += serving_rows(result)
    if _is_system_result(result):
        rows += system_rows(result)
    rows += traffic_rows(result)
    rows += energy_rows(result)
    rows.append(("compiler", compiler_text(result)))
    for column in ("phase", "unit", "bound"):
        parts = result.latency_by(column)
        label = f"latency by {column}" if column == "phase" or not result.overlapped else f"critical path by {column}"
        rows.append((label, ", ".join(f"{k} {fmt_time(v)} ({v / result.latency_s:.0%})" for k, v in parts.items())))
    rows.append(("busy per resource", ", ".join(
        f"{k} {fmt_time(v)} ({v / result.latency_s:.0%})" for k, v in sorted(result.busy.items(), key=lambda kv: -kv[1]))))
    return key_values(rows)


def serving_rows(result) -> list[tuple[str, str]]:
    """A language model's serving figures (archsim.sim.serving), none for other workloads."""
    figures = serving(result)
    if figures is None:
        return []
    rows = []
    if figures.ttft_s is not None:
        rows.append(("time to first token", fmt_time(figures.ttft_s) + " (from the start to the end of prefill)"))
    if figures.tpot_s is not None:
        rows.append(("time per output token", fmt_time(figures.tpot_s) + " (decode time over the tokens after the first)"))
    rows.append(("output tokens", f"{figures.tokens:,}: {figures.tokens_per_s:.4g} tokens/s, "
                                  f"{figures.tokens_per_j:.4g} tokens/J"))
    return rows


def compiler_text(result) -> str:
    """The compiler profile a result ran with and its pieces."""
    c = result.hw.compiler
    runs = getattr(result, "stages", None) or (result,)
    if any(getattr(r, "dispatch", "program") == "call" for r in runs):
        return "none: ops launched one by one (--dispatch call), nothing fused or overlapped"
    rules = ", ".join(c.rules) or "no fusion"
    overlap = "ops overlapped (critical path = latency)" if result.overlapped else "ops one after another"
    flash = f"flash attention {'on' if c.flash else 'off'}" + ("" if not c.flash or c.decodes else " (not decode steps)")
    return f"{c.profile or 'none'}: {rules}; {flash}; {overlap}"


def ops_table(result: RunResult) -> str:
    import pandas as pd  # imported on use: it doubles the CLI's start-up time

    frame = result.table()
    view = pd.DataFrame({
        "op": frame["op"],
        "kind": frame["kind"],
        "x": frame["count"],
        "MACs": frame["macs"].map(lambda v: f"{v:.3g}" if v else ""),
        "latency": frame["latency_s"].map(fmt_time),
        "compute": frame["compute_s"].map(fmt_time),
        "memory": frame["memory_s"].map(fmt_time),
        "dispatch": frame["dispatch_s"].map(lambda v: fmt_time(v) if v else ""),
        "util": frame["utilization"].map(lambda v: f"{v:.1%}" if v else ""),
        "bound by": frame["bottleneck"],
        "HBM": frame["hbm_bytes"].map(fmt_bytes),
        "CMEM": frame["cmem_bytes"].map(fmt_bytes),
        "energy": frame["energy_j"].map(fmt_energy),
        "tiling": frame["tiling"],
    })
    return view.to_string(index=False)


def _si(value: float, unit: str = "") -> str:
    for scale, prefix in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:.4g} {prefix}{unit}"
    return f"{value:.4g} {unit}".rstrip()


def workload_summary(summary: WorkloadSummary) -> str:
    import pandas as pd  # imported on use: it doubles the CLI's start-up time

    head = key_values([
        ("workload", summary.name),
        ("parameters", f"{summary.params:,} ({_si(summary.params)})"),
        ("MACs", f"{summary.macs:,} ({_si(summary.macs, 'MAC')})"),
        ("FLOPs", _si(summary.flops, "FLOP")),
        ("weight bytes", fmt_bytes(summary.weight_bytes)),
        ("KV/cache bytes", fmt_bytes(summary.cache_bytes)),
        ("activation bytes", f"{fmt_bytes(summary.activation_bytes)} (largest working set of one op)"),
    ])
    table = pd.DataFrame([{
        "phase": p.name, "x": p.repeat, "MACs/run": _si(p.macs), "FLOPs/run": _si(p.flops),
        "min bytes/run": fmt_bytes(p.min_bytes), "weights": fmt_bytes(p.weight_bytes_read),
        "cache read": fmt_bytes(p.cache_bytes_read), "cache written": fmt_bytes(p.cache_bytes_written),
        "MAC/B": f"{p.intensity:.3g}",
        "MACs total": _si(p.macs * p.repeat),
    } for p in summary.phases])
    return head + "\n\n" + table.to_string(index=False)
