"""The ``spendgate`` command: the composition root that gathers every area's commands.

Each area owns the commands that operate on it, in its own ``cli`` module (``COMMANDS``, a list of
click commands and groups); this module names each of those modules in code, so a missing one is an
import error that mypy sees, and no service imports another. Those modules are cheap to import (click
and :mod:`spendgate.core.clitools` at the top, everything else inside the command functions), so
``spendgate keys list`` does not pay for aiohttp, numpy or the proxy (``tests/unit/test_cli_imports.py``).
"""

from __future__ import annotations

from pathlib import Path

import click

from spendgate.admin import budgets_cli, keys_cli, ratelimits_cli, tokens_cli
from spendgate.admin import cli as admin_cli
from spendgate.alerter import cli as alerter_cli
from spendgate.core.clitools import Ctx, Root, data_dir_option
from spendgate.demo import cli as demo_cli
from spendgate.forecaster import cli as forecaster_cli
from spendgate.ledger import cli as ledger_cli
from spendgate.proxy import cli as proxy_cli
from spendgate.reconcile import cli as reconcile_cli
from spendgate.store import cli as store_cli
from spendgate.up import up

AREA_COMMANDS: tuple[list[click.Command], ...] = (
    store_cli.COMMANDS, ledger_cli.COMMANDS, proxy_cli.COMMANDS, keys_cli.COMMANDS, budgets_cli.COMMANDS,
    forecaster_cli.COMMANDS, alerter_cli.COMMANDS, admin_cli.COMMANDS, reconcile_cli.COMMANDS,
    ratelimits_cli.COMMANDS, tokens_cli.COMMANDS, demo_cli.COMMANDS,
)


@click.group(cls=Root)
@data_dir_option
@click.pass_context
def main(ctx: click.Context, data_dir: Path | None) -> None:
    """spendgate: meter, budget and forecast what coding agents spend."""
    ctx.obj = Ctx(data_dir)


main.add_command(up)
for _commands in AREA_COMMANDS:
    for _command in _commands:
        main.add_command(_command)
for _read in (admin_cli.ALERTS_LIST, admin_cli.ALERTS_DEAD):  # the alert history is a report: admin reads it
    alerter_cli.alerts.add_command(_read)
