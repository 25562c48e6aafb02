"""``spendgate migrate`` and ``spendgate init``: make the database and apply every table family's migrations.

The only commands besides ``up`` that migrate or create a data dir; alembic is imported inside them,
not with this module (every ``spendgate`` call imports it).
"""

from __future__ import annotations

import click

from spendgate.core.clitools import Ctx, pass_ctx, run


async def prepare(ctx: Ctx) -> None:
    """The database (created under the data dir when embedded and new), with every migration applied."""
    from spendgate.core.db import database_url_for
    from spendgate.store.migrations import migrate as apply_migrations

    async with database_url_for(ctx.settings.database_dsn, ctx.settings.pg_dir, create=True) as url:
        await apply_migrations(url)


@click.command()
@pass_ctx
def migrate(ctx: Ctx) -> None:
    """Apply every database migration (all table families' branches)."""
    run(prepare(ctx))
    click.echo("database is up to date")


@click.command()
@pass_ctx
def init(ctx: Ctx) -> None:
    """Create the data dir and its embedded database (or prepare SPENDGATE_DATABASE_URL), migrated."""
    run(prepare(ctx))
    where = "the configured database" if ctx.settings.database_url else f"data dir {ctx.settings.data_dir}"
    click.echo(f"spendgate is ready in {where}")


COMMANDS: list[click.Command] = [migrate, init]
