"""The proxy area's commands: ``proxy``, ``fake-upstream``, ``keys …`` (and ``up``, re-exported)."""

from __future__ import annotations

import asyncio
import contextlib
import signal

import click

from ..core import keys as vkeys
from ..core.clitools import Ctx, pass_ctx, run
from ..core.config import Settings
from ..core.runtime import open_database
from ..up import run_services, up
from .fake_upstream import FakeConfig, run_fake_upstream


def _with_listen(settings: Settings, host: str | None, port: int | None) -> Settings:
    update: dict[str, object] = {}
    if host:
        update["host"] = host
    if port is not None:
        update["proxy_port"] = port
    return settings.model_copy(update=update) if update else settings


@click.command("proxy")
@click.option("--host", default=None, help="Listen address (default: settings.host).")
@click.option("--port", type=int, default=None, help="Listen port (default: settings.proxy_port, 8080).")
@pass_ctx
def proxy(ctx: Ctx, host: str | None, port: int | None) -> None:
    """Run the metered proxy alone (scale-out: SPENDGATE_DATABASE_URL and SPENDGATE_BUS=kafka://…)."""
    run(run_services(_with_listen(ctx.settings, host, port), ("proxy",)))


@click.command("fake-upstream")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=9090, show_default=True)
@click.option("--latency-ms", type=float, default=0.0, show_default=True, help="Delay before the headers.")
@click.option("--chunks", type=int, default=8, show_default=True, help="Text deltas per answer.")
@click.option("--chunk-interval-ms", type=float, default=0.0, show_default=True, help="Pause between deltas.")
@click.option("--record/--no-record", default=True, show_default=True,
              help="Keep what was served for GET /_fake/served (off for long benchmarks).")
def fake_upstream(host: str, port: int, latency_ms: float, chunks: int, chunk_interval_ms: float,
                  record: bool) -> None:
    """Serve a fake OpenAI API (Responses, Chat Completions) for tests, benchmarks and demos."""
    config = FakeConfig(latency_ms=latency_ms, chunks=chunks, chunk_interval_ms=chunk_interval_ms, record=record)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
        click.echo(f"fake upstream on http://{host}:{port}/v1", err=True)
        await run_fake_upstream(host, port, config, stop)

    run(main())


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


COMMANDS: list[click.Command] = [proxy, fake_upstream, keys, up]
