"""``python -m spendgate.proxy``: the proxy area's commands on their own (``proxy``, ``up``, ``keys``,
``fake-upstream``), for images that ship only the proxy and for tests that need a proxy process."""

from __future__ import annotations

from pathlib import Path

import click

from spendgate.core.clitools import Ctx
from spendgate.proxy.cli import COMMANDS


@click.group()
@click.option("--data-dir", type=click.Path(path_type=Path), envvar="SPENDGATE_DATA_DIR",
              help="State directory (embedded database, spool). Default: the user data dir.")
@click.pass_context
def main(ctx: click.Context, data_dir: Path | None) -> None:
    """spendgate's proxy commands."""
    ctx.obj = Ctx(data_dir)


for _command in COMMANDS:
    main.add_command(_command)

if __name__ == "__main__":
    main()
