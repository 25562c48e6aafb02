"""``spendgate migrate``: apply every table family's migrations."""

from __future__ import annotations

import click

from spendgate.core.clitools import Ctx, pass_ctx, run
from spendgate.core.db import database_url_for
from spendgate.store.migrations import migrate as apply_migrations


@click.command()
@pass_ctx
def migrate(ctx: Ctx) -> None:
    """Apply every database migration (all table families' branches)."""

    async def go() -> None:
        async with database_url_for(ctx.settings.database_url, ctx.settings.pg_dir) as url:
            await apply_migrations(url)

    run(go())
    click.echo("database is up to date")


COMMANDS: list[click.Command] = [migrate]
