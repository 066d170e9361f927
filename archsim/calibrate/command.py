"""``archsim calibrate``: archsim's error on measured calls, and a fit of the chip's calibration
fields (README, "Calibration against measured silicon"). Registered on the ``archsim`` group by
``archsim.cli``."""

from __future__ import annotations

from pathlib import Path

import click

from archsim.cli_options import emit_json, json_option, set_option


@click.command("calibrate")
@click.argument("hw_file", type=click.Path(path_type=Path, dir_okay=False))
@click.argument("measured_file", type=click.Path(path_type=Path, dir_okay=False))
@set_option
@click.option("--out", "out_dir", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Also write DIR/rows.csv (every row) and DIR/predicted_vs_measured.png (with --fit: the fitted config's).")
@click.option("--fit", "fit_path", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Fit the chip's calibration fields to the measurements; write them to this config (extending HW_FILE).")
@click.option("--hold", "held", multiple=True, metavar="KEY.PATH",
              help="With --fit: keep this calibration field at the config's value (e.g. --hold hbm.efficiency). Repeatable.")
@json_option
def calibrate_command(hw_file: Path, measured_file: Path, overrides, out_dir, fit_path, held, as_json: bool) -> None:
    """archsim's error, and the plain roofline's, on measured single-op calls (a measurement CSV:
    op, dtype, dimensions, measured_s): per op and overall, error = (predicted - measured) / measured."""
    from archsim import api
    from archsim.calibrate import fit as fitting, report as cal_report
    from archsim.calibrate.measurements import load_measurements
    from archsim.calibrate.predict import Predictor, system_rule
    from archsim.config.loader import parse_overrides

    if held and fit_path is None:
        raise click.BadParameter("holds a field of a fit: give --fit OUT.yaml too", param_hint="'--hold'")
    if fit_path is not None and fit_path.resolve() == hw_file.resolve():
        raise click.BadParameter("the fitted config extends HW_FILE: give it another name", param_hint="'--fit'")
    if fit_path is not None and not fit_path.resolve().parent.is_dir():
        raise click.BadParameter(f"{fit_path.parent} is not a folder", param_hint="'--fit'")
    parsed = parse_overrides(overrides)
    hw = api.load_hardware(hw_file, parsed)
    rows = load_measurements(measured_file)
    name = measured_file.name
    rules = [system_rule(hw, ranks) for ranks in dict.fromkeys(r.ranks for r in rows if r.op == "all_reduce")]
    keys = None
    if held:
        from archsim.calibrate.parameters import REGISTRY, parameters_for

        known = {p.key for p in REGISTRY}
        unknown = sorted(set(held) - known)
        if unknown:
            raise click.BadParameter(f"{', '.join(unknown)} is not a calibration field; expected one of: "
                                     f"{', '.join(sorted(known))}", param_hint="'--hold'")
        keys = [p.key for p in parameters_for(hw, rows, None)[0] if p.key not in held]
    fitted = fitting.fit(hw_file, rows, keys, overrides=parsed, source=str(measured_file)) if fit_path else None
    results = fitted.before if fitted else cal_report.evaluate(rows, Predictor(hw, hw_file, parsed), measured_file)
    written = [fitting.write_fitted(fitted, fit_path, name, parsed)] if fitted else []
    if out_dir is not None:
        from archsim.calibrate.outputs import write_outputs

        title = f"{hw.name} vs {name}" + (f" (fitted: {fit_path.name})" if fitted else "")
        written += write_outputs(results, out_dir, title, fitted.after if fitted else None)
    summary = cal_report.summarize(results)
    if as_json:
        data = {"hardware": hw.name, "config": str(hw_file), "measurements": str(measured_file), "all_reduce": rules,
                "stats": cal_report.stats_json(summary),
                "rows": cal_report.row_dicts(results, fitted.after if fitted else None)}
        if fitted:
            data["fit"] = {**fitted.as_dict(), "file": str(fit_path),
                           "stats": cal_report.stats_json(fitted.after_stats)}
        emit_json(data)
        return
    click.echo(f"{hw.name} ({hw_file}) against {measured_file}: {len(rows)} rows")
    for line in rules + [f"written: {path}" for path in written]:
        click.echo(line)
    click.echo("error = (predicted - measured) / measured; roofline: max(work / peak, bytes / peak bandwidth), "
               "no dispatch cost")
    if fitted:
        click.echo("\n" + fitting.describe(fitted, name))
        click.echo("\n" + cal_report.table(summary, f"before: {hw_file}"))
        summary = fitted.after_stats
    click.echo("\n" + cal_report.table(summary, f"after: {fit_path}" if fitted else ""))
