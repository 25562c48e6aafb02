"""``spendgate keys create|list|revoke``: virtual keys, through the keys store.

Imports beyond click happen inside the commands: this module is imported by every ``spendgate`` call,
and ``keys list`` is the command people run most.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from spendgate.core.clitools import CliError, Ctx, api_option, cli_actor, format_option, nonempty, pass_ctx, run

if TYPE_CHECKING:
    import asyncpg

    from spendgate.store.keys.store import VirtualKey


async def find_key(pool: asyncpg.Pool, id_or_prefix: str) -> VirtualKey:
    """The one key with this id or displayed prefix (as ``keys list`` shows it); refuses none and several."""
    from spendgate.store.keys import store as vkeys

    found = [k for k in await vkeys.list_keys(pool, include_revoked=True)
             if id_or_prefix in (k.key_id, k.key_prefix)]
    if not found:
        raise CliError(f"no key {id_or_prefix!r} (see spendgate keys list --all)")
    if len(found) > 1:
        raise CliError(f"{id_or_prefix!r} is ambiguous: it is the prefix of {len(found)} keys "
                       f"({', '.join(k.key_id for k in found)}); give the key id")
    return found[0]


@click.group("keys")
def keys() -> None:
    """Create, list and revoke virtual keys."""


@keys.command("create")
@click.option("--developer", required=True, callback=nonempty)
@click.option("--team", required=True, callback=nonempty)
@click.option("--cost-center", default=None, callback=nonempty, help="Defaults to the team.")
@pass_ctx
def keys_create(ctx: Ctx, developer: str, team: str, cost_center: str | None) -> None:
    """Create a key; the secret is printed once and never stored."""
    from spendgate.store.access import store as access
    from spendgate.store.keys import store as vkeys

    async def main() -> vkeys.CreatedKey:
        async with ctx.database() as pool:
            made = await vkeys.create_key(pool, developer=developer, team=team, cost_center=cost_center)
            await access.record(pool, actor=cli_actor(), action="key.create", target=made.key.key_id,
                                detail={"prefix": made.key.key_prefix, "developer": made.key.developer,
                                        "team": made.key.team, "cost_center": made.key.cost_center})
            return made

    created = run(main())
    click.echo(created.secret)
    click.echo(f"key id {created.key.key_id} (prefix {created.key.key_prefix}) for {created.key.developer} "
               f"({created.key.team}, cost center {created.key.cost_center}); store the key now, it is not "
               "shown again", err=True)


@keys.command("list")
@click.option("--all", "include_revoked", is_flag=True, help="Include revoked keys.")
@format_option()
@api_option
@pass_ctx
def keys_list(ctx: Ctx, include_revoked: bool, fmt: str, api_url: str | None) -> None:
    """List keys (ids and prefixes only, never a secret)."""
    from spendgate.admin import render
    from spendgate.admin.client import open_source

    async def main() -> str:
        async with open_source(ctx, api_url) as source:
            return render.keys(await source.keys(include_revoked=include_revoked), fmt)

    click.echo(run(main()))


@keys.command("revoke")
@click.argument("key_id")
@pass_ctx
def keys_revoke(ctx: Ctx, key_id: str) -> None:
    """Revoke a key by id or by the prefix keys list shows; every proxy refuses it within a second."""
    from spendgate.store.access import store as access
    from spendgate.store.keys import store as vkeys

    async def main() -> VirtualKey | None:
        async with ctx.database() as pool:
            key = await find_key(pool, key_id)
            if not key.active:
                raise CliError(f"key {key.key_id} ({key.developer}) was already revoked at "
                               f"{key.revoked_at:%Y-%m-%d %H:%M} UTC")
            revoked = await vkeys.revoke_key(pool, key.key_id)
            if revoked is not None:
                await access.record(pool, actor=cli_actor(), action="key.revoke", target=revoked.key_id,
                                    detail={"prefix": revoked.key_prefix, "developer": revoked.developer,
                                            "team": revoked.team})
            return revoked

    revoked = run(main())
    if revoked is None:  # removed between the lookup and the revoke
        raise CliError(f"no key {key_id!r}")
    click.echo(f"revoked {revoked.key_id} ({revoked.developer})")


COMMANDS: list[click.Command] = [keys]
