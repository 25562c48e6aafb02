"""``spendgate tokens create|list|revoke``: named, scoped, expiring admin API tokens, on the database
(like ``spendgate keys``). Each change is audited with the operating-system user who ran it.

Imports beyond click happen inside the commands (every ``spendgate`` call imports this module).
"""

from __future__ import annotations

import click

from spendgate.core.clitools import CliError, Ctx, cli_actor, format_option, nonempty, pass_ctx, run

ROLES = ("admin", "finops", "manager", "developer")


@click.group("tokens")
def tokens() -> None:
    """Create, list and revoke named admin API tokens (they replace the shared admin token)."""


@tokens.command("create")
@click.argument("name")
@click.option("--role", type=click.Choice(ROLES), required=True)
@click.option("--team", "teams", multiple=True, callback=lambda c, p, v: tuple(nonempty(c, p, t) for t in v),
              help="A team a manager token may read (repeat for several).")
@click.option("--developer", default=None, callback=nonempty, help="A developer token's developer id.")
@click.option("--days", type=click.IntRange(1, 3650), default=90, show_default=True, help="Lifetime in days.")
@pass_ctx
def tokens_create(ctx: Ctx, name: str, role: str, teams: tuple[str, ...], developer: str | None, days: int) -> None:
    """Create a token; the secret is printed once and never stored."""
    import re
    from datetime import UTC, datetime, timedelta

    from spendgate.admin.api_tokens import NAME_PATTERN, scope_problem
    from spendgate.store.access import store as access

    if re.fullmatch(NAME_PATTERN, name) is None:
        raise CliError(f"bad token name {name[:80]!r}: letters, digits and . _ @ + -, at most 64 characters", 2)
    problem = scope_problem(role, list(teams), developer)
    if problem is not None:
        raise CliError(problem.replace("teams (", "--team (").replace("needs developer", "needs --developer"), 2)
    limit = ctx.settings.console.api_token_max_days
    if days > limit:
        raise CliError(f"--days must be at most {limit} (console.api_token_max_days)", 2)

    async def main() -> tuple[access.ApiToken, str]:
        async with ctx.database() as pool:
            try:
                made = await access.create_token(
                    pool, name=name, role=role, teams=tuple(sorted(set(teams))), developer=developer,
                    expires_at=datetime.now(UTC) + timedelta(days=days), created_by=cli_actor())
            except access.TokenNameTaken:
                raise CliError(f"a live token is already named {name!r}: revoke it or choose another name") from None
            await access.record(pool, actor=cli_actor(), action="token.create", target=name,
                                detail={"role": role, "teams": sorted(set(teams)), "developer": developer,
                                        "days": days})
            return made

    token, secret = run(main())
    click.echo(secret)
    click.echo(f"token {token.name} ({token.principal.role}) expires {token.expires_at:%Y-%m-%d %H:%M} UTC; "
               "store it now, it is not shown again", err=True)


@tokens.command("list")
@click.option("--all", "include_revoked", is_flag=True, help="Include revoked tokens.")
@format_option()
@pass_ctx
def tokens_list(ctx: Ctx, include_revoked: bool, fmt: str) -> None:
    """List tokens (names and prefixes only, never a secret)."""
    from spendgate.admin import render
    from spendgate.admin.api_tokens import TokenList, token_out
    from spendgate.store.access import store as access

    async def main() -> TokenList:
        async with ctx.database() as pool:
            return TokenList(tokens=[token_out(t) for t in await access.list_tokens(pool,
                                                                                   include_revoked=include_revoked)])

    click.echo(render.tokens(run(main()), fmt))


@tokens.command("revoke")
@click.argument("name")
@pass_ctx
def tokens_revoke(ctx: Ctx, name: str) -> None:
    """Revoke a token by name (or id); the admin API refuses it at once."""
    from datetime import UTC, datetime

    from spendgate.store.access import store as access

    async def main() -> access.ApiToken | None:
        async with ctx.database() as pool:
            revoked = await access.revoke_token(pool, name, datetime.now(UTC))
            if revoked is not None:
                await access.record(pool, actor=cli_actor(), action="token.revoke", target=revoked.name,
                                    detail={"token_id": revoked.token_id})
            return revoked

    revoked = run(main())
    if revoked is None:
        raise CliError(f"no live token {name[:80]!r} (see spendgate tokens list --all)")
    click.echo(f"revoked {revoked.name}")


COMMANDS: list[click.Command] = [tokens]
