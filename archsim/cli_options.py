"""Options and output helpers shared by the command modules (``archsim.cli`` and the commands
it registers from elsewhere, such as ``archsim.calibrate.command``)."""

from __future__ import annotations

import json

import click

set_option = click.option(
    "--set", "overrides", multiple=True, metavar="KEY.PATH=VALUE",
    help='Override a config field, e.g. --set mxu.count=8 --set hbm.bandwidth="1.2 TB/s". Repeatable.',
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print a stable machine-readable JSON result.")


def emit_json(data) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=False))
