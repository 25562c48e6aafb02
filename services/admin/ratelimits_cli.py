"""``spendgate ratelimits …``: set, list and delete requests- and tokens-per-minute limits per key, developer
or team. Every running proxy re-reads them within ``rate_limits.reload_s`` (2 s): no restart.

A key scope may name the key by its id or by the prefix ``keys list`` shows. Imports beyond click happen
inside the commands: this module is imported by every ``spendgate`` call.
"""

from __future__ import annotations

import getpass

import click

from spendgate.core.clitools import CliError, Ctx, cli_actor, format_option, nonempty, pass_ctx, run


def _scope(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    from spendgate.domain.errors import ConfigError
    from spendgate.domain.ratelimits import rate_limit_of

    try:
        return rate_limit_of(value, rpm=1, tpm=None).scope
    except ConfigError as exc:
        raise click.BadParameter(exc.message) from None


def _per_minute(ctx: click.Context, param: click.Parameter, value: int | None) -> int | None:
    from spendgate.domain.ratelimits import MAX_RPM, MAX_TPM

    top = MAX_RPM if param.name == "rpm" else MAX_TPM
    if value is not None and not 1 <= value <= top:
        raise click.BadParameter(f"must be between 1 and {top:,}, not {value:,}")
    return value


scope_option = click.option("--scope", "limit_scope", required=True, callback=_scope,
                            help="key:<id or prefix>, developer:<name> or team:<name>")


@click.group()
def ratelimits() -> None:
    """Requests- and tokens-per-minute limits per key, developer or team (a 429 the agents retry)."""


@ratelimits.command("set")
@scope_option
@click.option("--rpm", type=int, callback=_per_minute, help="Requests per minute, 1 to 1,000,000")
@click.option("--tpm", type=int, callback=_per_minute,
              help="Tokens per minute (input estimate at admission + output), 1 to 1,000,000,000")
@click.option("--actor", default=getpass.getuser, show_default="current user", callback=nonempty,
              help="Recorded with the limit")
@pass_ctx
def set_(ctx: Ctx, limit_scope: str, rpm: int | None, tpm: int | None, actor: str) -> None:
    """Create or replace a scope's limits (the kinds not given are removed: no limit)."""
    from spendgate.admin.budgets_cli import resolve_scope
    from spendgate.admin.client import DatabaseSource
    from spendgate.domain.ratelimits import rate_limit_of
    from spendgate.store.access import store as access
    from spendgate.store.ratelimits import store

    async def main() -> str:
        async with ctx.database() as pool:
            if rpm is None and tpm is None:  # after opening: a missing database is named first
                raise CliError("give --rpm, --tpm or both")
            target = await resolve_scope(DatabaseSource(pool, ctx.settings), limit_scope, warn_unknown=True)
            limit = rate_limit_of(target, rpm=rpm, tpm=tpm)
            await store.set_rate_limit(pool, limit, actor=actor)
            await access.record(pool, actor=f"cli:{actor}", action="ratelimit.set", target=target,
                                detail={"rpm": limit.rpm, "tpm": limit.tpm})
        return (f"rate limit for {limit.scope}: {limit.rpm or '-'} requests/min, {limit.tpm or '-'} tokens/min "
                f"(proxies apply it within {ctx.settings.rate_limits.reload_s:g} s)")

    click.echo(run(main()))


@ratelimits.command("list")
@format_option()
@pass_ctx
def list_(ctx: Ctx, fmt: str) -> None:
    """Every rate limit."""
    from spendgate.core.tables import field, render
    from spendgate.store.ratelimits import store

    async def main() -> str:
        async with ctx.database() as pool:
            limits = await store.list_rate_limits(pool)
        return render(fmt, [field("scope"), field("rpm", "int"), field("tpm", "int")], limits, document=limits)

    click.echo(run(main()))


@ratelimits.command("delete")
@scope_option
@pass_ctx
def delete(ctx: Ctx, limit_scope: str) -> None:
    """Remove a scope's rate limits; a scope without one is an error."""
    from spendgate.admin.budgets_cli import resolve_scope
    from spendgate.admin.client import DatabaseSource
    from spendgate.store.access import store as access
    from spendgate.store.ratelimits import store

    async def main() -> str:
        async with ctx.database() as pool:
            target = await resolve_scope(DatabaseSource(pool, ctx.settings), limit_scope, warn_unknown=False)
            if not await store.delete_rate_limit(pool, target):
                raise CliError(f"no rate limit for {target}")
            await access.record(pool, actor=cli_actor(), action="ratelimit.delete", target=target)
        return target

    click.echo(f"deleted the rate limit of {run(main())}")


COMMANDS: list[click.Command] = [ratelimits]
