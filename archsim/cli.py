"""The ``archsim`` command line: a thin layer over the Python API.

Exit codes: 0 success; 1 the design point is infeasible (the reason is printed); 2 bad input
(config, workload or usage), reported as one line per problem naming the file and key;
3 an internal error (a bug: rerun with ARCHSIM_DEBUG=1 for the traceback).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click
import yaml

from archsim import api, report
from archsim.config.loader import parse_overrides
from archsim.dtypes import DType
from archsim.errors import ArchsimError
from archsim.ir.summary import summarize
from archsim.sim.trace import write_trace

EXIT_INFEASIBLE = 1
EXIT_INTERNAL = 3
MAX_DIM = 2**31  # a documented limit on GEMM dimensions

_set_option = click.option(
    "--set", "overrides", multiple=True, metavar="KEY.PATH=VALUE",
    help='Override a config field, e.g. --set mxu.count=8 --set hbm.bandwidth="1.2 TB/s". Repeatable.',
)
_json_option = click.option("--json", "as_json", is_flag=True, help="Print a stable machine-readable JSON result.")


def _emit_json(data) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=False))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="archsim")
def cli() -> None:
    """archsim: cycle-approximate simulation of generative-AI inference on accelerators."""


@cli.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path, dir_okay=False))
@_set_option
@_json_option
def validate(files: tuple[Path, ...], overrides: tuple[str, ...], as_json: bool) -> None:
    """Check hardware configs and print each normalised (all values in SI units)."""
    parsed = parse_overrides(overrides)
    configs = {str(f): api.load_hardware(f, parsed) for f in files}
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
        "area_mm2": result.area.total * 1e6, "power_w": result.power_w, "tops_per_w": result.tops_per_w,
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
@_json_option
def workload(workload_file: Path, overrides: tuple[str, ...], as_json: bool) -> None:
    """Describe a workload without hardware: parameters, MACs, FLOPs, bytes, intensity."""
    summary = summarize(api.load_workload(workload_file, parse_overrides(overrides)))
    if as_json:
        _emit_json(summary.as_dict())
    else:
        click.echo(report.workload_summary(summary))


@cli.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path, dir_okay=False))
@_set_option
@click.option("--wset", "workload_overrides", multiple=True, metavar="KEY.PATH=VALUE",
              help="Override a workload field, e.g. --wset batch=16. Repeatable.")
@click.option("--ops", "show_ops", is_flag=True, help="Also print the per-op breakdown.")
@click.option("--trace", "trace_path", type=click.Path(path_type=Path, dir_okay=False),
              help="Write a Chrome/Perfetto trace (JSON) to this file.")
@_json_option
def run(files: tuple[Path, ...], overrides, workload_overrides, show_ops: bool,
        trace_path: Path | None, as_json: bool) -> None:
    """Simulate a workload on a chip: latency, utilisation, traffic, energy and area.

    FILES are HW.yaml [HW2.yaml ...] WORKLOAD.yaml; with several chips the results are printed
    side by side, each compared with the first.
    """
    if len(files) < 2:
        raise click.UsageError("expected HW.yaml [HW2.yaml ...] WORKLOAD.yaml")
    *hw_files, workload_file = files
    parsed = parse_overrides(overrides)
    chips = [api.load_hardware(f, parsed) for f in hw_files]
    workload = api.load_workload(workload_file, parse_overrides(workload_overrides))
    if len(chips) > 1:
        results = [api.simulate(hw, workload) for hw in chips]
        if as_json:
            _emit_json([r.summary() for r in results])
        else:
            click.echo(report.side_by_side(results))
        if not all(r.feasible for r in results):
            sys.exit(EXIT_INFEASIBLE)
        return
    hw = chips[0]
    result = api.simulate(hw, workload)
    if not result.feasible:
        _fail_infeasible(result, as_json)
    if trace_path is not None:
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


def _fail_infeasible(result, as_json: bool) -> None:
    if as_json:
        _emit_json(result.summary())
    else:
        click.echo(report.run_summary(result))
    sys.exit(EXIT_INFEASIBLE)


def main() -> None:
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
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


if __name__ == "__main__":
    main()
