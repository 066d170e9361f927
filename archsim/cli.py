"""The ``archsim`` command line: a thin layer over the Python API.

Exit codes: 0 success; 1 the design point is infeasible (the reason is printed); 2 bad input
(config, workload or usage), reported as one line per problem naming the file and key;
3 an internal error (a bug: rerun with ARCHSIM_DEBUG=1 for the traceback).
"""

from __future__ import annotations

import gc
import os
import signal
import sys
from pathlib import Path


def _quit_interrupted(signum=None, frame=None) -> None:
    """Ctrl-C where nothing is left to save: one line, exit code 130, never a traceback."""
    sys.stderr.write("interrupted\n")
    raise SystemExit(130)


def _leave_interrupted(signum=None, frame=None, message: bytes = b"interrupted\n") -> None:
    """Ctrl-C where nothing is left to save, ending the process at once: an exception raised
    here could land in any library's code (one that swallows it, or prints it)."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, RuntimeError, ValueError):  # closed, or interrupted mid-write
            pass
    os.write(2, message)
    os._exit(130)


def _guard_sigint():
    """Ctrl-C while the imports below load (click and archsim's option modules) ends the
    start-up in one line instead of an import traceback; restored at the end of this module,
    after which ``main()`` handles it. Left alone where Python's own handler is not in place
    (a host program with its own) or cannot be changed (not the main thread)."""
    try:
        if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            return signal.signal(signal.SIGINT, _leave_interrupted)
    except ValueError:  # not the main thread
        pass
    return None


_entry_point = False  # main() runs this process (and ends it): not a test's CliRunner, nor a host program


class _importing:
    """``with _importing():`` around a command's own imports (the API, numpy, pydantic, pandas:
    most of its start-up, loaded when it runs): Ctrl-C while they load ends the process in one
    line, as during this module's imports; Python's handler is back for the command's work.

    The cyclic garbage collector is off while they load: the modules, classes and functions
    they create live as long as the process, and the collections their allocations set off
    (a fifth of ``archsim run``'s start-up, issue 22) free none of them. Run from ``main()``,
    what is loaded is then frozen (``gc.freeze``), so that the command's own collections do
    not traverse it again; nothing else changes (no result depends on when garbage is freed)."""

    def __enter__(self) -> None:
        self._previous = _guard_sigint()
        self._collecting = gc.isenabled()
        gc.disable()

    def __exit__(self, *exc) -> None:
        if self._collecting:
            if _entry_point:
                gc.freeze()
            gc.enable()
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


def _one_blas_thread() -> None:
    """Run from ``main()``, before a command that evaluates one design point loads numpy: one
    OpenBLAS thread, unless the user chose otherwise. Such a command multiplies no matrices
    with BLAS (numpy's elementwise functions only), and the thread pool OpenBLAS starts when
    numpy loads spins on the other cores: a tenth of a second of CPU per ``archsim run``
    (issue 22). Sweeps, explorations and calibrations keep OpenBLAS's default."""
    if _entry_point:
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


_startup_sigint = _guard_sigint()
# The imports below come after the guard on purpose:
# ruff: noqa: E402

import click

# Only what the command line itself needs (its options, errors and warnings): each command
# imports the modules it runs (the API, numpy, pydantic, pandas, ...) when it runs, so that
# archsim --help starts at once; Ctrl-C while they load is one line too (_importing).
from archsim.cli_options import emit_json, json_option, set_option
from archsim.dtypes import DType
from archsim.errors import ArchsimError, ArchsimWarning

EXIT_INFEASIBLE = 1
EXIT_INTERNAL = 3
MAX_DIM = 2**31  # a documented limit on GEMM dimensions

_set_option = set_option
_json_option = json_option


_schedule_option = click.option(
    "--schedule", default=None, metavar="NAME[:key=value,...]",
    help="A feature-caching schedule for a diffusion transformer (kind: dit or diffusion_transformer), e.g. "
         "icc:period=2,rank=128 or reuse:period=3.",
)


def _with_schedule(overrides: list, schedule: str | None) -> list:
    from archsim.config.loader import Override, option_label

    return overrides + ([Override(("schedule",), schedule, f"schedule={schedule}", option_label(schedule, "--schedule"))]
                        if schedule else [])


def _check_order(files, command: str, workload_option: str = "") -> None:
    """After an error: when the files are a workload and hardware configs in the wrong order,
    say that in place of the lines it made (a workload read as a chip lacks every chip key)."""
    from archsim import api
    from archsim.errors import ConfigError

    kinds = [api.file_kind(f) for f in files]
    if kinds[-1] == "workload" or kinds.count("workload") != 1 or None in kinds:
        return
    workload = files[kinds.index("workload")]
    chips = " ".join(str(f) for f, kind in zip(files, kinds) if kind == "hardware")
    raise ConfigError(f"the arguments are swapped: {workload} is a workload and {chips} a hardware config\n"
                      f"expected archsim {command} HW.yaml [HW2.yaml ...] {workload_option}WORKLOAD.yaml, "
                      f"here: archsim {command} {chips} {workload_option}{workload}")


_emit_json = emit_json


class _Commands(click.Group):
    """The command group; the commands defined in their own modules (``calibrate``,
    ``sensitivity``) are imported when named or listed (``--help``), not to ``run``."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *_LAZY_COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in _LAZY_COMMANDS:
            self.add_command(_LAZY_COMMANDS[cmd_name](), cmd_name)
        return super().get_command(ctx, cmd_name)

    def resolve_command(self, ctx: click.Context, args: list[str]):
        try:
            return super().resolve_command(ctx, args)
        except click.exceptions.NoSuchCommand as exc:  # "Did you mean ...?" among every command
            raise click.exceptions.NoSuchCommand(exc.command_name, possibilities=self.list_commands(ctx),
                                                 ctx=ctx) from None


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="archsim")
def cli() -> None:
    """archsim: cycle-approximate simulation of generative-AI inference on accelerators."""


@cli.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path, dir_okay=False))
@_set_option
@_json_option
def validate(files: tuple[Path, ...], overrides: tuple[str, ...], as_json: bool) -> None:
    """Check hardware configs (a sweep: section as archsim sweep does) and print each
    normalised (all values in SI units)."""
    _one_blas_thread()
    with _importing():
        import yaml

        from archsim import api, report
        from archsim.config.loader import parse_overrides
        from archsim.dse.plan import plan_sweep

    parsed = parse_overrides(overrides)
    configs = {str(f): api.load_hardware(f, parsed) for f in files}
    for file, hw in configs.items():
        if hw.sweep is not None:  # what the sweep would refuse (axis values, workloads, baseline, constraints)
            plan_sweep([file], parsed)
    if as_json:
        _emit_json({f: hw.model_dump(mode="json") for f, hw in configs.items()})
        return
    for file, hw in configs.items():
        click.echo(f"# {file}: valid")
        click.echo(yaml.safe_dump(hw.model_dump(mode="json"), sort_keys=False).rstrip())
        click.echo("# derived: " + "; ".join(f"{k} {v}" for k, v in report.hardware_summary(hw)[1:]))


@cli.command()
@click.argument("hw_file", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--m", "m", type=click.IntRange(1, MAX_DIM), required=True, help="Rows of A and of the output.")
@click.option("--k", "k", type=click.IntRange(1, MAX_DIM), required=True, help="The reduction dimension.")
@click.option("--n", "n", type=click.IntRange(1, MAX_DIM), required=True, help="Columns of B and of the output.")
@click.option("--dtype", type=click.Choice([d.value for d in DType]), default="int8", show_default=True)
@_set_option
@_json_option
def gemm(hw_file: Path, m: int, k: int, n: int, dtype: str, overrides: tuple[str, ...], as_json: bool) -> None:
    """Time one GEMM: A[M,K] (activations) x B[K,N] (weights)."""
    _one_blas_thread()
    with _importing():
        from archsim import api, report
        from archsim.config.loader import parse_overrides

    hw = api.load_hardware(hw_file, parse_overrides(overrides))
    result = api.run_gemm(hw, m, k, n, DType(dtype))
    if not result.feasible:
        _fail_infeasible(result, as_json)
    cost = result.ops[-1]
    data = {
        "hardware": hw.name, "m": m, "k": k, "n": n, "dtype": dtype,
        "cycles": result.cycles, "compute_cycles": cost.compute_cycles, "latency_s": result.latency_s,
        "utilization": result.utilization,
        "compute_utilization": cost.macs / (cost.compute_s * cost.peak_macs_per_s),
        "bound": cost.bound, "bottleneck": cost.bottleneck, "tiling": cost.tiling,
        "traffic_bytes": result.traffic.as_dict(),
        "energy_j": result.energy.total, "energy_breakdown": result.energy.as_dict(),
        "area_mm2": result.area.total * 1e6, "power_w": result.power_w, "tdp_w": result.tdp_w,
        "over_tdp": result.over_tdp, "tops_per_w": result.tops_per_w,
    }
    if as_json:
        _emit_json(data)
        return
    rows = [("hardware", hw.name), ("gemm", f"M={m} K={k} N={n} {dtype}"),
            ("cycles", f"{data['cycles']:,.0f}"), ("compute_cycles", f"{cost.compute_cycles:,.0f}"),
            ("latency", report.fmt_time(result.latency_s)), ("utilization", f"{data['utilization']:.1%}"),
            ("compute utilization", f"{data['compute_utilization']:.1%}"),
            ("bound by", cost.bottleneck), ("tiling", cost.tiling)]
    click.echo(report.key_values(rows + report.traffic_rows(result) + report.energy_rows(result)))


@cli.command()
@click.argument("workload_file", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--set", "overrides", multiple=True, metavar="KEY.PATH=VALUE",
              help="Override a workload field, e.g. --set resolution=512 --set steps=50. Repeatable.")
@_schedule_option
@_json_option
def workload(workload_file: Path, overrides: tuple[str, ...], schedule: str | None, as_json: bool) -> None:
    """Describe a workload without hardware: parameters, MACs, FLOPs, bytes, intensity."""
    _one_blas_thread()
    with _importing():
        from archsim import api, report
        from archsim.config.loader import parse_overrides
        from archsim.ir.summary import summarize

    summary = summarize(api.load_workload(workload_file, _with_schedule(parse_overrides(overrides), schedule)))
    if as_json:
        _emit_json(summary.as_dict())
    else:
        click.echo(report.workload_summary(summary))


@cli.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path, dir_okay=False))
@_set_option
@click.option("--wset", "workload_overrides", multiple=True, metavar="KEY.PATH=VALUE",
              help="Override a workload field, e.g. --wset batch=16. Repeatable.")
@_schedule_option
@click.option("--ops", "show_ops", is_flag=True, help="Also print the per-op breakdown.")
@click.option("--trace", "trace_path", type=click.Path(path_type=Path, dir_okay=False),
              help="Write a Chrome/Perfetto trace (JSON) to this file.")
@click.option("--dispatch", type=click.Choice(["program", "call"]), default="program", show_default=True,
              help="How ops are launched, for the config's dispatch costs: 'program', one compiled program; "
                   "'call', every op launched on its own from the host (as per-op benchmarks time them: the "
                   "compiler fuses and overlaps nothing). The compiler itself: --set compiler.profile=none|xla|...")
@_json_option
def run(files: tuple[Path, ...], overrides, workload_overrides, schedule, show_ops: bool,
        trace_path: Path | None, dispatch: str, as_json: bool) -> None:
    """Simulate a workload on a chip or a system of chips: latency, utilisation, traffic, energy, area.

    FILES are HW.yaml [HW2.yaml ...] WORKLOAD.yaml; with several chips the results are printed
    side by side, each compared with the first.
    """
    _one_blas_thread()
    with _importing():
        from archsim import api, report
        from archsim.config.loader import parse_overrides

    if len(files) < 2:
        raise click.UsageError("expected HW.yaml [HW2.yaml ...] WORKLOAD.yaml")
    *hw_files, workload_file = files
    parsed = parse_overrides(overrides)
    workload_sets = _with_schedule(parse_overrides(workload_overrides, "--wset"), schedule)
    try:
        chips = [api.load_hardware(f, parsed) for f in hw_files]
        workloads = [api.load_workload(workload_file, workload_sets, hw) for hw in chips]  # lowered per chip
    except ArchsimError:
        _check_order(files, "run")
        raise
    if len(chips) > 1:
        results = [api.simulate(hw, workload, dispatch) for hw, workload in zip(chips, workloads)]
        if as_json:
            _emit_json([r.summary() for r in results])
        else:
            click.echo(report.side_by_side(results))
        if not all(r.feasible for r in results):
            sys.exit(EXIT_INFEASIBLE)
        return
    hw = chips[0]
    result = api.simulate(hw, workloads[0], dispatch)
    if not result.feasible:
        from archsim.system.fit import find_fit

        fit = find_fit(hw_files[0], parsed, workload_file, workload_sets, dispatch)
        _fail_infeasible(result, as_json, True, fit)
    if trace_path is not None:
        from archsim.system.trace import write_trace

        write_trace(result, trace_path)
    if as_json:
        data = result.summary()
        if show_ops:
            data["ops"] = result.table().to_dict(orient="records")
        _emit_json(data)
        return
    click.echo(report.run_summary(result))
    if show_ops:
        click.echo()
        click.echo(report.ops_table(result))
    if trace_path is not None:
        click.echo(f"\ntrace written to {trace_path} (open in https://ui.perfetto.dev)")


def _calibrate_command() -> click.Command:
    from archsim.calibrate.command import calibrate_command

    return calibrate_command


def _sensitivity_command() -> click.Command:
    from archsim.dse.sensitivity_command import sensitivity_command

    return sensitivity_command


def _design_space_command(name: str) -> click.Command:
    from archsim.cli_dse import COMMANDS

    return COMMANDS[name]


# The commands defined in their own modules, by name: imported when named or listed (_Commands).
_LAZY_COMMANDS = {"calibrate": _calibrate_command, "sensitivity": _sensitivity_command,
                  **{name: (lambda name=name: _design_space_command(name))
                     for name in ("sweep", "explore", "pareto", "plot", "report", "roofline", "compare-schedules",
                                  "schema")}}


def _fail_infeasible(result, as_json: bool, searched: bool = False, fit=None) -> None:
    """The infeasible result; ``searched``: with what would make it fit (``archsim.system.fit``),
    or that no mapping tried does."""
    from archsim import report
    from archsim.system.fit import MAX_FACTOR

    if as_json:
        _emit_json(result.summary() | ({"fits_with": list(fit.sets) if fit else None} if searched else {}))
    else:
        click.echo(report.run_summary(result))
        if searched and fit is not None:
            click.echo(f"fits      with {fit.flags()} (checked: latency {report.fmt_time(fit.latency_s)})")
        elif searched:
            click.echo(f"fits      on no mapping up to {MAX_FACTOR} times its chips (more tensor or pipeline parallelism)")
    sys.exit(EXIT_INFEASIBLE)


def main() -> None:
    """The console entry point; it ends the process. Ctrl-C anywhere (click turns it into
    Abort within a command; one may also come while an error is reported) ends it with one
    line and exit code 130, never a traceback."""
    global _entry_point
    _entry_point = True
    try:
        _main()
    except KeyboardInterrupt:
        _quiet_sigint()
        _quit_interrupted()
    except SystemExit as exc:  # a command's own exit, e.g. a sweep saying where its points are saved
        if exc.code == 130:
            _quiet_sigint()
        raise


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    click.echo(f"warning: {message}", err=True)


def _main() -> None:
    import warnings

    warnings.showwarning = _show_warning
    # archsim's own warnings are part of its output (each message once), whatever PYTHONWARNINGS says
    warnings.filterwarnings("default", category=ArchsimWarning)
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        raise KeyboardInterrupt from None
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except ArchsimError as exc:
        for line in str(exc).splitlines():
            click.echo(f"error: {line}", err=True)
        sys.exit(exc.exit_code)
    except OSError as exc:  # e.g. the trace file cannot be written
        where = f"{exc.filename}: " if exc.filename else ""
        click.echo(f"error: {where}{exc.strerror or exc}", err=True)
        sys.exit(2)
    except Exception as exc:  # a bug in archsim: say so, in one line, with its own exit code
        if os.environ.get("ARCHSIM_DEBUG"):
            raise
        click.echo(f"internal error: {type(exc).__name__}: {exc} (rerun with ARCHSIM_DEBUG=1 for the "
                   "traceback, and please report it)", err=True)
        sys.exit(EXIT_INTERNAL)


def _quiet_sigint() -> None:
    """Once the process is ending on Ctrl-C, another one (while pools and clusters shut down)
    ends it at once, without the traceback Python prints for an interrupted exit."""
    try:
        signal.signal(signal.SIGINT, lambda signum, frame: _leave_interrupted(message=b""))  # said once already
    except ValueError:  # not the main thread
        pass


if _startup_sigint is not None:  # imports done: Ctrl-C is a KeyboardInterrupt again, which main() reports
    signal.signal(signal.SIGINT, _startup_sigint)

if __name__ == "__main__":
    main()
