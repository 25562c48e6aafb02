"""Ledger commands: ``spendgate ledger`` (run it), ``spendgate ledger rebuild``.

Imports beyond click happen inside the commands: this module is imported by every ``spendgate`` call.
"""

from __future__ import annotations

import click

from spendgate.core.clitools import Ctx, pass_ctx, run


@click.group(invoke_without_command=True)
@click.pass_context
def ledger(click_ctx: click.Context) -> None:
    """Run the ledger consumer (folds usage events into balances and sessions)."""
    if click_ctx.invoked_subcommand is None:
        from spendgate.ledger.service import serve
        from spendgate.runtime import run_services

        ctx = click_ctx.find_object(Ctx)
        assert ctx is not None
        run(run_services(ctx.settings, {"ledger": serve}), serving=True)


@ledger.command()
@pass_ctx
def rebuild(ctx: Ctx) -> None:
    """Recompute every balance and session from the stored usage events (sends no alerts: writes no crossings)."""
    from spendgate.ledger.rebuild import rebuild as do_rebuild

    async def go() -> int:
        async with ctx.database() as pool:
            return await do_rebuild(pool, default_timezone=ctx.settings.default_timezone)

    n = run(go())
    click.echo(f"rebuilt balances and sessions from {n} events")


COMMANDS: list[click.Command] = [ledger]
