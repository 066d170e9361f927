"""``archsim sensitivity``: which assumptions a run's figures, and its comparison against a
baseline chip, rest on (``archsim.dse.sensitivity``), as a table, a tornado chart and a verdict."""

from __future__ import annotations

from pathlib import Path

import click

from archsim.cli_options import emit_json, json_option


def _factors(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise click.BadParameter(f"{text!r}: expected positive factors separated by commas, e.g. 0.5,2") from None
    if not values or any(not v > 0 or v != v or v == float("inf") for v in values):
        raise click.BadParameter(f"{text!r}: expected positive factors separated by commas, e.g. 0.5,2")
    return values


def _kinds(text: str) -> tuple[str, ...]:
    from archsim.dse.sensitivity import KINDS

    chosen = tuple(k.strip() for k in text.split(",") if k.strip())
    if chosen == ("all",):
        return KINDS
    bad = [k for k in chosen if k not in KINDS]
    if bad or not chosen:
        raise click.BadParameter(f"{text!r}: expected some of {', '.join(KINDS)} separated by commas, or all",
                                 param_hint="--marks")
    return chosen


@click.command()
@click.argument("hw_file", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@click.argument("workload_file", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@click.option("--vs", "baseline", type=click.Path(path_type=Path, dir_okay=False, exists=True),
              help="A baseline chip: also report this chip's speedup over it, and whether it survives.")
@click.option("--fields", default="", metavar="A,B,...",
              help="Numeric config fields to vary (dotted paths); default: every field marked ASSUMPTION.")
@click.option("--marks", default="assumption", show_default=True, metavar="KIND,...",
              help="Without --fields, vary every numeric field whose config comment carries one of these "
                   "marks: assumption (ASSUMPTION), fitted (a [..FIT] tag or 'fitted'), cited (any other "
                   "[TAG]); or all.")
@click.option("--range", "factors", default="0.5,2", show_default=True, metavar="F1,F2,...",
              help="Factors each field is multiplied by, one at a time.")
@click.option("--wset", "workload_overrides", multiple=True, metavar="KEY.PATH=VALUE", help="Override a workload field.")
@click.option("--morris", "trajectories", type=click.IntRange(0, 1000), default=0, show_default=True,
              help="Also screen every field at once: Morris's elementary effects over this many random "
                   "trajectories (mu*: a field's mean absolute effect; sigma: interactions).")
@click.option("--out", "out_stem", type=click.Path(path_type=Path), default=Path("sensitivity"), show_default=True,
              help="Tornado chart path without suffix; .png and .svg are written.")
@json_option
def sensitivity_command(hw_file: Path, workload_file: Path, baseline: Path | None, fields: str, marks: str,
                        factors: str, workload_overrides, trajectories: int, out_stem: Path, as_json: bool) -> None:
    """Vary each assumption of HW_FILE one at a time and show what moves WORKLOAD_FILE's
    latency and energy (and the speedup over --vs) most."""
    from archsim.dse.sensitivity import sensitivity, verdict
    from archsim.dse.tornado import plot_tornado

    chosen = [f.strip() for f in fields.split(",") if f.strip()] or None
    try:
        base, ref, swings = sensitivity(hw_file, workload_file, _factors(factors), chosen, baseline,
                                        list(workload_overrides), _kinds(marks))
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--fields") from None
    if not base.feasible:
        raise click.ClickException(f"{hw_file}: the unchanged run is infeasible: {base.reason}")
    said = verdict(base.hw.name, base, ref, swings, ref.hw.name if ref is not None else "")
    screened = []
    if trajectories and swings:
        from archsim.dse.morris import morris

        ranged = _factors(factors)
        if min(ranged) == max(ranged):
            raise click.BadParameter("Morris screening needs a range of two factors or more", param_hint="--range")
        screened = morris(hw_file, workload_file, [s.field for s in swings if not s.baseline_only], min(ranged),
                          max(ranged), trajectories,
                          baseline=baseline, wsets=list(workload_overrides))
    paths = plot_tornado(swings, f"{base.hw.name}: {base.workload.name}", out_stem) if swings else []
    if as_json:
        emit_json({"hardware": base.hw.name, "workload": base.workload.name, "latency_s": base.latency_s,
                   "energy_j": base.energy.total, "baseline": ref.hw.name if ref is not None else None,
                   "speedup": ref.latency_s / base.latency_s if ref is not None else None,
                   "energy_gain": ref.energy.total / base.energy.total if ref is not None else None, "verdict": said,
                   "fields": [{"field": s.field, "source": s.source, "factors": list(s.factors),
                               "latency_ratio": list(s.latency), "energy_ratio": list(s.energy),
                               "speedup": list(s.versus), "energy_gain": list(s.energy_versus),
                               "mark": s.kind, "shared_with_baseline": s.shared,
                               "baseline_only": s.baseline_only} for s in swings],
                   "plots": [str(p) for p in paths],
                   "morris": [{"field": e.field, "mu_star": e.mu_star, "sigma": e.sigma,
                               "speedup_mu_star": e.speedup_mu_star} for e in screened]})
        return
    pct = lambda v: "n/a" if v is None else f"{(v - 1) * 100:+.1f}%"  # noqa: E731
    head = ["field"] + [f"latency x{f:g}" for f in swings[0].factors] + [f"energy x{f:g}" for f in swings[0].factors] \
        if swings else ["field"]
    if ref is not None and swings:
        head += [f"speedup x{f:g}" for f in swings[0].factors] + [f"energy gain x{f:g}" for f in swings[0].factors]
    rows = [head]
    for s in swings:
        tag = " (both)" if s.shared else " (baseline)" if s.baseline_only else ""
        tag += f" [{s.kind}]" if s.kind not in ("assumption", "named") else ""
        row = [s.field + tag] + [pct(v) for v in s.latency] + [pct(v) for v in s.energy]
        if ref is not None:
            row += ["n/a" if v is None else f"{v:.3g}x" for v in (*s.versus, *s.energy_versus)]
        rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    if ref is not None:
        click.echo("(both): an assumption the baseline makes too, at the same value, varied on both chips; "
                   "(baseline): the baseline's own, varied on it alone")
    click.echo(f"{base.hw.name} on {base.workload.name}: {base.latency_s * 1e3:.4g} ms, {base.energy.total:.4g} J"
               + (f"; {ref.latency_s / base.latency_s:.3g}x the speed of {ref.hw.name}, "
                  f"{ref.energy.total / base.energy.total:.3g}x less energy" if ref is not None else ""))
    for r in rows:
        click.echo("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))))
    if any(v is None for s in swings for v in (*s.latency, *s.versus)):
        click.echo("n/a: the varied value is outside the field's valid range, or the run is infeasible")
    if said:
        click.echo(said)
    if screened:
        click.echo(f"Morris screening, every field at once ({trajectories} trajectories; mu*: mean |change of the "
                   "latency ratio| per step across the range):")
        for e in screened[:10]:
            extra = f", speedup mu* {e.speedup_mu_star:.3g}" if e.speedup_mu_star is not None else ""
            click.echo(f"  {e.field}: mu* {e.mu_star:.3g}, sigma {e.sigma:.3g}{extra}")
    if paths:
        click.echo("plots: " + ", ".join(str(p) for p in paths))
