"""``spendgate keys create|list|revoke``: virtual keys, through the keys store."""

from __future__ import annotations

import click

from spendgate.core.clitools import Ctx, pass_ctx, run
from spendgate.runtime import open_database
from spendgate.store.keys import store as vkeys


@click.group("keys")
def keys() -> None:
    """Create, list and revoke virtual keys."""


@keys.command("create")
@click.option("--developer", required=True)
@click.option("--team", required=True)
@click.option("--cost-center", default=None, help="Defaults to the team.")
@pass_ctx
def keys_create(ctx: Ctx, developer: str, team: str, cost_center: str | None) -> None:
    """Create a key; the secret is printed once and never stored."""

    async def main() -> vkeys.CreatedKey:
        async with open_database(ctx.settings) as (_url, pool):
            return await vkeys.create_key(pool, developer=developer, team=team, cost_center=cost_center)

    created = run(main())
    click.echo(created.secret)
    click.echo(f"key id {created.key.key_id} for {created.key.developer} ({created.key.team}, "
               f"cost center {created.key.cost_center}); store the key now, it is not shown again", err=True)


@keys.command("list")
@click.option("--all", "include_revoked", is_flag=True, help="Include revoked keys.")
@pass_ctx
def keys_list(ctx: Ctx, include_revoked: bool) -> None:
    """List keys (ids and prefixes only)."""

    async def main() -> list[vkeys.VirtualKey]:
        async with open_database(ctx.settings) as (_url, pool):
            return await vkeys.list_keys(pool, include_revoked=include_revoked)

    rows = run(main())
    click.echo(f"{'KEY ID':<38} {'PREFIX':<14} {'DEVELOPER':<16} {'TEAM':<14} {'COST CENTER':<14} STATUS")
    for k in rows:
        status = "active" if k.active else f"revoked {k.revoked_at:%Y-%m-%d %H:%M}"
        click.echo(f"{k.key_id:<38} {k.key_prefix:<14} {k.developer:<16} {k.team:<14} {k.cost_center:<14} {status}")


@keys.command("revoke")
@click.argument("key_id")
@pass_ctx
def keys_revoke(ctx: Ctx, key_id: str) -> None:
    """Revoke a key by id (or unambiguous prefix); every proxy refuses it within a second."""

    async def main() -> vkeys.VirtualKey | None:
        async with open_database(ctx.settings) as (_url, pool):
            return await vkeys.revoke_key(pool, key_id)

    revoked = run(main())
    if revoked is None:
        raise click.ClickException(f"no key {key_id!r}")
    click.echo(f"revoked {revoked.key_id} ({revoked.developer})")


COMMANDS: list[click.Command] = [keys]
