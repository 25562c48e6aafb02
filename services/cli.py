"""The ``spendgate`` command: the composition root that gathers every area's commands.

Each area owns its commands in its own ``cli`` module (``COMMANDS``, a list of click commands and
groups); this module only registers them, so no service imports another.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import click

from .core.clitools import Ctx

AREAS = ("ledger", "proxy", "core.enforcement", "forecaster", "alerter", "admin")


@click.group()
@click.option("--data-dir", type=click.Path(path_type=Path), envvar="SPENDGATE_DATA_DIR",
              help="State directory (embedded database, spool). Default: the user data dir.")
@click.pass_context
def main(ctx: click.Context, data_dir: Path | None) -> None:
    """spendgate: meter, budget and forecast what coding agents spend."""
    ctx.obj = Ctx(data_dir)


def _register() -> None:
    for area in AREAS:
        try:
            module = importlib.import_module(f"spendgate.{area}.cli")
        except ModuleNotFoundError as exc:  # an area whose commands have not landed yet
            if exc.name != f"spendgate.{area}.cli":
                raise
            continue
        for command in module.COMMANDS:
            main.add_command(command)


_register()
