"""The design-space commands of the ``archsim`` command line (sweep, explore, pareto, plot,
report, roofline, compare-schedules, schema): imported when one of them is named, or listed by
``archsim --help``, not for ``archsim run`` (start-up, issue 22). Their shared options, errors and
exit codes are archsim.cli's."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from archsim.cli import (EXIT_INFEASIBLE, _check_order, _emit_json, _fail_infeasible, _importing, _json_option,
                         _set_option)
from archsim.errors import ArchsimError


@click.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path, dir_okay=False))
@click.option("--out", "out_dir", type=click.Path(path_type=Path, file_okay=False), default=Path("sweep-results"),
              show_default=True, help="Results folder; a re-run resumes what it holds.")
@click.option("--executor", type=click.Choice(["pool", "serial", "dask"]), default="pool", show_default=True)
@click.option("--jobs", type=click.IntRange(1, 4096), default=None, help="Workers (default: every core).")
@click.option("--scheduler", metavar="ADDRESS", help="A Dask scheduler, e.g. tcp://host:8786 (implies --executor dask).")
@click.option("--chunk-size", type=click.IntRange(1, 100_000), default=None, help="Points per task.")
@click.option("--workload", "workloads", multiple=True, type=click.Path(path_type=Path, dir_okay=False),
              help="Evaluate these workloads instead of the configs' sweep.workloads. Repeatable.")
@_set_option
@click.option("--csv", "as_csv", is_flag=True, help="Also write results.csv.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
def sweep(files, out_dir, executor, jobs, scheduler, chunk_size, workloads, overrides, as_csv, no_progress) -> None:
    """Sweep the design spaces of hardware configs (their sweep: sections) over workloads.

    Several files are one sweep. Writes OUT/results.parquet, OUT/summary.txt and the Pareto and
    breakdown plots; prints the summary. Interrupted or killed, a re-run finishes the rest.
    """
    with _importing():
        import pandas

        from archsim.config.loader import parse_overrides
        from archsim.dse import plan as dse_plan
        from archsim.dse.runner import run_points
        from archsim.dse.store import ResultStore, StoreError
        from archsim.fileio import atomic_write_text

    plan = dse_plan.plan_sweep(files, parse_overrides(overrides), [str(w) for w in workloads])
    store = ResultStore(out_dir)
    n_workloads = len({p.workload_id for p in plan.points})
    click.echo(f"{len(plan.points)} points: {plan.configs} designs x {n_workloads} workloads"
               + (f"; {plan.excluded} designs excluded by constraints" if plan.excluded else ""), err=True)
    executor = "dask" if scheduler else executor
    try:
        stats = run_points(plan.points, store, executor, jobs, chunk_size, scheduler, progress=not no_progress)
    except KeyboardInterrupt:
        click.echo(f"interrupted: finished points are saved in {out_dir}; run again to resume", err=True)
        sys.exit(130)
    click.echo(f"{stats.evaluated} evaluated ({stats.skipped} already done) in {stats.seconds:.2f} s: "
               f"{stats.points_per_second:.1f} points/s with {stats.workers} {stats.executor} worker(s)", err=True)
    keys = plan.points.key_set()
    results = store.consolidate(keys, plan.objectives)  # the typed table, which the reports show too
    meta = {"objectives": list(plan.objectives), "fields": list(plan.fields), "files": [str(f) for f in files]}
    frame = pandas.read_parquet(results)
    try:
        atomic_write_text(out_dir / "sweep.json", json.dumps(meta, indent=2))
        _report_sweep(frame, out_dir, list(plan.objectives), as_csv)
    except OSError as exc:  # a full disk: the results are whole, only the reports are missing
        raise StoreError(f"{exc.filename or out_dir}: cannot write: {exc.strerror or exc}; every point is "
                         f"saved in {results}: free space and run the sweep again to write the reports") from None
    click.echo(f"\nresults: {results}")
    if not (frame["status"] == "ok").any():
        click.echo("no design point could run: see the reasons above", err=True)
        sys.exit(EXIT_INFEASIBLE)



@click.command("explore")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--out", "out_dir", type=click.Path(path_type=Path, file_okay=False), default=Path("explore-results"),
              show_default=True, help="Results folder (a sweep's may be shared); a re-run resumes the search.")
@click.option("--executor", type=click.Choice(["pool", "serial", "dask"]), default="pool", show_default=True)
@click.option("--jobs", type=click.IntRange(1, 4096), default=None, help="Workers (default: every core).")
@click.option("--scheduler", metavar="ADDRESS", help="A Dask scheduler, e.g. tcp://host:8786 (implies --executor dask).")
@click.option("--chunk-size", type=click.IntRange(1, 100_000), default=None,
              help="Points per task (default: a generation's points split evenly over the workers).")
@click.option("--evaluations", type=click.IntRange(1, 10**9), default=None,
              help="Designs to evaluate, in place of the spec's budget.")
@click.option("--seconds", type=click.FloatRange(0, min_open=True), default=None,
              help="Wall time of this run, in place of the spec's budget.")
@click.option("--seed", type=click.IntRange(0, 2**32 - 1), default=None, help="In place of the spec's seed.")
@_set_option
@click.option("--csv", "as_csv", is_flag=True, help="Also write results.csv.")
def explore_command(file, out_dir, executor, jobs, scheduler, chunk_size, evaluations, seconds, seed, overrides,
                    as_csv) -> None:
    """Search a design space too big for a grid (the file's explore: section) with a
    multi-objective optimiser (pymoo's NSGA-II), hardware x workload axes such as a cache schedule.

    Prints a line per generation (evaluations, hypervolume of the front); writes what a sweep
    writes (OUT/results.parquet, summary.txt, plots, report.html) and OUT/explore.json. The same
    seed asks the same designs: a re-run evaluates nothing twice and continues a larger budget.
    """
    with _importing():
        from archsim.config.loader import parse_overrides
        from archsim.dse import explore as dse_explore, explore_output

    executor = "dask" if scheduler else executor
    try:
        outcome = dse_explore.explore(file, out_dir, parse_overrides(overrides), executor, jobs, chunk_size,
                                      scheduler, evaluations, seconds, seed, echo=lambda line: click.echo(line, err=True))
    except KeyboardInterrupt:
        click.echo(f"interrupted: finished points are saved in {out_dir}; run again to resume the search", err=True)
        sys.exit(130)
    click.echo(f"{len(outcome.evaluated):,} designs evaluated ({outcome.simulated:,} points simulated by this run) in "
               f"{outcome.seconds:.1f} s; stopped: {outcome.stopped}", err=True)
    frame = explore_output.write_outputs(outcome, out_dir)
    _report_sweep(frame, out_dir, list(outcome.space.spec.objectives), as_csv)
    click.echo(f"\nresults: {out_dir / 'results.parquet'}; search: {out_dir / 'explore.json'}")
    if not len(frame) or not (frame["status"] == "ok").any():
        click.echo("no design could run: see the reasons above", err=True)
        sys.exit(EXIT_INFEASIBLE)

def _report_sweep(frame, out_dir: Path, objectives: list[str], as_csv: bool, color: str | None = None,
                  x: str | None = None, y: str | None = None, source: Path | None = None) -> None:
    from archsim.dse import html_report, plots, report as dse_report, summary as dse_summary
    from archsim.fileio import atomic_write, atomic_write_text

    frame = dse_report.results_table(frame, objectives)  # one table: results.parquet's columns, typed
    if color is not None:  # a swept quantity by its key alone too: set.hbm.bandwidth
        color = dse_report.find_column(frame, color) or color
    if color is not None and color not in frame.columns:  # before anything is written
        shown = [c for c in frame.columns if c != "traceback"]
        raise click.BadParameter(f"{color!r} is not a column of the results in {source or out_dir}; available: "
                                 f"{', '.join(shown)}", param_hint="'--color'")
    table = dse_summary.summary_table(frame, objectives)
    atomic_write_text(out_dir / "summary.txt", table + "\n")
    click.echo(table)
    if as_csv:
        atomic_write(out_dir / "results.csv", lambda tmp: frame.to_csv(tmp, index=False))
    if (frame.get("status") == "ok").any():
        x, y = x or objectives[0], y or (objectives[1] if len(objectives) > 1 else "energy")
        paths = plots.plot_pareto(frame, x, y, out_dir / f"pareto_{x}_{y}", color, objectives=objectives)
        paths += plots.plot_breakdowns(frame, out_dir / "breakdown", objectives=objectives)
        paths.append(html_report.write_html_report(frame, objectives, out_dir / "report.html"))
        names = dict.fromkeys(p.name if p.parent == out_dir else str(p) for p in paths)  # one line of ~120
        click.echo(f"\nplots in {out_dir}: " + ", ".join(names))


def _check_objectives(names) -> None:
    from archsim.config.sweep import OBJECTIVES

    for name in names:
        if name not in OBJECTIVES:
            raise click.BadParameter(f"{name!r}; expected one of: {', '.join(OBJECTIVES)}", param_hint="objective")


def _objectives(out_dir: Path) -> list[str]:
    """The sweep's objectives, from the ``sweep.json`` beside its results (the default without
    one); a damaged one is an error naming it, not a guess."""
    from archsim.dse.results_file import read_objectives

    return read_objectives(out_dir)


@click.command()
@click.argument("results", type=click.Path(path_type=Path))
@click.option("--x", "x", default="latency", show_default=True, help="First objective.")
@click.option("--y", "y", default="energy", show_default=True, help="Second objective.")
@click.option("--z", "z", default=None, help="An optional third objective.")
@click.option("--workload", default=None, help="Only this workload (by name).")
@_json_option
def pareto(results: Path, x: str, y: str, z: str | None, workload: str | None, as_json: bool) -> None:
    """The non-dominated designs of a sweep over 2 or 3 objectives
    (latency, energy, area, power, edp: minimised; throughput, tops_per_w, utilization: maximised)."""
    with _importing():
        from archsim.config.sweep import OBJECTIVES
        from archsim.dse.results_file import load_results

    objectives = [o for o in (x, y, z) if o]
    _check_objectives(objectives)
    frame = load_results(results, [OBJECTIVES[o][0] for o in objectives], objectives)  # pareto over these
    if not (frame.get("status") == "ok").any():
        click.echo("no feasible design point in these results", err=True)
        sys.exit(EXIT_INFEASIBLE)
    front = frame[frame["pareto"]]
    if workload:
        front = front[front["workload"] == workload]
    columns = ["workload", "design_id", "design"] + [OBJECTIVES[o][0] for o in objectives]
    if as_json:
        _emit_json(front[columns + ["key"]].to_dict(orient="records"))
    else:
        click.echo(front.sort_values(["workload", OBJECTIVES[x][0]])[columns].to_string(index=False))


@click.command()
@click.argument("results", type=click.Path(path_type=Path))
@click.option("--x", "x", default=None, help="X objective (default: the sweep's first).")
@click.option("--y", "y", default=None, help="Y objective (default: the sweep's second).")
@click.option("--color", default=None, help="Colour points by this results column, e.g. set.mxu.count.")
@click.option("--out", "out_dir", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Where to write the plots (default: the results folder).")
def plot(results: Path, x, y, color, out_dir) -> None:
    """Redraw a sweep's plots from its results."""
    with _importing():
        from archsim.config.sweep import OBJECTIVES
        from archsim.dse.results_file import load_results

    _check_objectives([o for o in (x, y) if o])
    objectives = _objectives(results)
    needed = dict.fromkeys([*objectives, *(o for o in (x, y) if o)])
    frame = load_results(results, [OBJECTIVES[o][0] for o in needed])
    out_dir = out_dir or (results if results.is_dir() else results.parent)
    out_dir.mkdir(parents=True, exist_ok=True)
    _report_sweep(frame, out_dir, objectives, False, color, x, y, results)


@click.command("report")
@click.argument("results", type=click.Path(path_type=Path))
@click.option("--out", "out_file", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="The HTML file to write (default: report.html in the results folder).")
def report_command(results: Path, out_file: Path | None) -> None:
    """Rebuild a sweep's interactive report.html (Pareto fronts, breakdowns, tables) from its results."""
    with _importing():
        from archsim.config.sweep import OBJECTIVES
        from archsim.dse import report as dse_report
        from archsim.dse.html_report import write_html_report
        from archsim.dse.results_file import load_results

    objectives = _objectives(results)
    frame = dse_report.enrich(load_results(results, [OBJECTIVES[o][0] for o in objectives]), objectives)
    out_file = out_file or (results if results.is_dir() else results.parent) / "report.html"
    click.echo(f"report: {write_html_report(frame, objectives, out_file)}")


@click.command()
@click.argument("hw_file", type=click.Path(path_type=Path, dir_okay=False))
@click.argument("workload_file", type=click.Path(path_type=Path, dir_okay=False))
@_set_option
@click.option("--out", "out_stem", type=click.Path(path_type=Path), default=Path("roofline"), show_default=True,
              help="Output path without suffix; .png and .svg are written.")
def roofline(hw_file: Path, workload_file: Path, overrides, out_stem: Path) -> None:
    """Plot a workload's phases on a chip's roofline (one chip: a system section is ignored)."""
    with _importing():
        from archsim import api
        from archsim.config.loader import parse_overrides
        from archsim.config.system import SystemConfig
        from archsim.dse import plots
        from archsim.ir.summary import summarize

    hw = api.load_hardware(hw_file, parse_overrides(overrides))
    hw = hw.model_copy(update={"system": SystemConfig()})
    workload = api.load_workload(workload_file)
    result = api.simulate(hw, workload)
    if not result.feasible:
        _fail_infeasible(result, False)
    paths = plots.plot_roofline(result, summarize(workload), out_stem)
    click.echo("plots: " + ", ".join(str(p) for p in paths))


@click.command("compare-schedules")
@click.argument("hw_files", nargs=-1, required=True, type=click.Path(path_type=Path, dir_okay=False))
@click.option("--workload", "workload_file", required=True, type=click.Path(path_type=Path, dir_okay=False),
              help="A diffusion-transformer workload file (kind: dit or diffusion_transformer: cache schedules) or "
              "a language model's (kind: llm: decode schedules, speculative decoding).")
@click.option("--schedule", "schedules", multiple=True, metavar="NAME[:key=value,...]",
              help="A cache or decode schedule; repeatable. Default: every built-in the model runs, with its "
              "defaults (a language model: its own schedule, medusa, eagle, self_spec, firp).")
@_set_option
@click.option("--wset", "workload_overrides", multiple=True, metavar="KEY.PATH=VALUE", help="Override a workload field.")
@click.option("--out", "out_dir", type=click.Path(path_type=Path, file_okay=False), default=Path("schedule-results"),
              show_default=True)
@_json_option
def compare_schedules(hw_files, workload_file, schedules, overrides, workload_overrides, out_dir, as_json) -> None:
    """Compare schedules' hardware cost, schedule x hardware: a DiT's feature-caching schedules, or a
    language model's decode schedules (tokens/s, TPOT, energy per token, speed-up over vanilla, and
    the speed-up against the acceptance rate per chip)."""
    with _importing():
        from archsim import api
        from archsim.config.loader import parse_overrides
        from archsim.dse import compare
        from archsim.fileio import atomic_write

    try:
        chips = [api.load_hardware(f, parse_overrides(overrides)) for f in hw_files]
    except ArchsimError:
        _check_order([*hw_files, workload_file], "compare-schedules", "--workload ")
        raise
    wsets = parse_overrides(workload_overrides, "--wset")
    frame, runs = compare.compare(chips, workload_file, list(schedules) or compare.default_schedules(workload_file, wsets),
                                  wsets)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(out_dir / "schedules.csv", lambda tmp: frame.to_csv(tmp, index=False))
    atomic_write(out_dir / "schedules.parquet", lambda tmp: frame.to_parquet(tmp, index=False))
    paths = compare.plot(frame, runs, out_dir / "schedules")
    if as_json:
        _emit_json(frame.to_dict(orient="records"))
        return
    click.echo(compare.table(frame))
    click.echo(f"\nrows: {out_dir / 'schedules.csv'}, {out_dir / 'schedules.parquet'}")
    click.echo("plots: " + ", ".join(str(p) for p in paths))


@click.command()
@click.argument("name", required=False, type=click.Choice(["chip", "system", "sweep", "explore", "workload"]))
@click.option("--out", "out_dir", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Write NAME.schema.json (without NAME: all five) into this folder instead of printing.")
@click.option("--markdown", is_flag=True, help="Print the config reference page (docs/config_reference.md) instead.")
def schema(name: str | None, out_dir: Path | None, markdown: bool) -> None:
    """JSON Schema of hardware configs (chip), their system:, sweep: and explore: sections, or
    workload files: for editors' completion and checks (docs/config_reference.md says how)."""
    with _importing():
        from archsim.config.json_schema import SCHEMA_NAMES, schema_text
        from archsim.config.reference import page
        from archsim.fileio import atomic_write_text

    if markdown:
        if name or out_dir:
            raise click.UsageError("--markdown prints the reference page; it takes no NAME or --out")
        click.echo(page(), nl=False)
    elif out_dir is None:
        if name is None:
            raise click.UsageError(f"name a schema ({', '.join(SCHEMA_NAMES)}), or give --out DIR to write them all")
        click.echo(schema_text(name), nl=False)
    else:
        out_dir.mkdir(parents=True, exist_ok=True)
        for each in [name] if name else SCHEMA_NAMES:
            click.echo(atomic_write_text(out_dir / f"{each}.schema.json", schema_text(each)))


# name -> command, for archsim.cli's command group
COMMANDS = {"sweep": sweep, "explore": explore_command, "pareto": pareto, "plot": plot, "report": report_command,
            "roofline": roofline, "compare-schedules": compare_schedules, "schema": schema}
