"""``python -m spendgate.proxy``: the proxy area's commands on their own (``proxy`` and
``fake-upstream``), for images that ship only the proxy and for tests that need a proxy process."""

from __future__ import annotations

from pathlib import Path

import click

from spendgate.core.clitools import Ctx, Root, data_dir_option
from spendgate.proxy.cli import COMMANDS


@click.group(cls=Root)
@data_dir_option
@click.pass_context
def main(ctx: click.Context, data_dir: Path | None) -> None:
    """spendgate's proxy commands."""
    ctx.obj = Ctx(data_dir)


for _command in COMMANDS:
    main.add_command(_command)

if __name__ == "__main__":
    main()
