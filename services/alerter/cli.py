"""``spendgate alerter`` (run the alerter alone) and ``spendgate alerts …``: check the routes, send a
test message through a route, list dead letters, replay them.

Imports beyond click happen inside the commands: this module is imported by every ``spendgate`` call.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

import click

from spendgate.core.clitools import CliError, Ctx, cli_actor, pass_ctx, run

if TYPE_CHECKING:
    from spendgate.alerter.secrets import Secrets
    from spendgate.core.alert_routes import Rules
    from spendgate.core.config import Settings
    from spendgate.domain.alerts import Message


@click.command()
@pass_ctx
def alerter(ctx: Ctx) -> None:
    """Run the alerter alone: route threshold and forecast alerts, deliver them, send digests."""
    from spendgate.alerter.service import serve
    from spendgate.runtime import run_services

    run(run_services(ctx.settings, {"alerter": serve}), serving=True)


@click.group()
def alerts() -> None:
    """Alert routes, test messages, dead letters and replays."""


@alerts.command()
@pass_ctx
def check(ctx: Ctx) -> None:
    """Validate the routes file and secrets; list the routes."""
    rules, _secrets = _checked(ctx.settings)
    for route in rules.routes:
        how = f"digest every {route.digest.every} at {route.digest.at:%H:%M} {route.digest.timezone}" \
            if route.digest else "immediately"
        match = ", ".join(f"{k}={'|'.join(v)}" for k, v in route.match.items()) or "everything"
        click.echo(f"{route.name}: {match} → {', '.join(route.notify)} ({how})")
    click.echo(f"{len(rules.routes)} routes, {len(rules.targets)} targets: ok")


def _checked(settings: Settings) -> tuple[Rules, Secrets]:
    from spendgate.alerter.app import load_checked_rules
    from spendgate.domain.errors import ConfigError

    try:
        return load_checked_rules(settings)
    except ConfigError as exc:
        raise CliError(exc.message) from None


def test_message(route: str, now: datetime) -> Message:
    from spendgate.domain.alerts import Fact, Message
    from spendgate.domain.ids import uuid7

    return Message(
        alert_id=uuid7(), kind="test", severity="info", scope="org",
        title=f"spendgate test message for route {route}",
        summary=f"If you can read this, route {route} reaches this channel. Nothing is over budget.",
        facts=[Fact("Route", route), Fact("Sent", f"{now:%Y-%m-%d %H:%M} UTC")],
        incident_key=f"spendgate:test:{route}:{now.isoformat()}", created_at=now,
    )


@alerts.command("test")
@click.option("--route", "route_name", required=True, help="Name of the route to send through.")
@pass_ctx
def send_test(ctx: Ctx, route_name: str) -> None:
    """Send a test message through every target of a route (retried like a real alert)."""
    import asyncio

    from spendgate.alerter.app import open_alerter
    from spendgate.alerter.delivery import deliver_with_retries
    from spendgate.core.alert_routes import DEVELOPER
    from spendgate.domain.ids import uuid7
    from spendgate.runtime import open_runtime
    from spendgate.store.alerts import store
    from spendgate.store.alerts.store import Planned

    async def go() -> list[tuple[str, bool]]:
        owner = f"{ctx.settings.instance}/test/{uuid7()}"
        async with open_runtime(ctx.settings, run_migrations=False) as rt, \
                open_alerter(ctx.settings, rt.pool, rt.bus, owner=owner) as a:
            route = a.rules.route(route_name)
            message = test_message(route.name, datetime.now(UTC))
            async with rt.pool.acquire() as conn, conn.transaction():
                await store.insert_alert(conn, message.alert_id, f"test:{message.alert_id}", message)
                jobs = await store.insert_jobs(conn, message.alert_id, [
                    Planned(route.name, t) for t in route.notify if t != DEVELOPER], message)
            stop = asyncio.Event()
            results = await asyncio.gather(*(deliver_with_retries(a.deliverer, j, a.policy, stop) for j in jobs))
            return [(j.target, ok) for j, ok in zip(jobs, results, strict=True)]

    results = run(go())
    for target, ok in results:
        click.echo(f"{target}: {'delivered' if ok else 'FAILED (see spendgate alerts dead)'}")
    if not all(ok for _, ok in results):
        raise SystemExit(1)


@alerts.command()
@click.option("--id", "ids", type=click.IntRange(1), multiple=True,
              help="Dead-letter id (repeatable); default all.")
@click.option("--attempts", type=click.IntRange(1, 100), default=1, show_default=True,
              help="Attempts per dead letter before giving up again.")
@pass_ctx
def replay(ctx: Ctx, ids: tuple[int, ...], attempts: int) -> None:
    """Re-send dead-lettered alerts; those that fail again stay in the dead-letter table."""
    import asyncio

    from spendgate.alerter.app import open_alerter
    from spendgate.alerter.delivery import deliver_with_retries
    from spendgate.domain.ids import uuid7
    from spendgate.runtime import open_runtime
    from spendgate.store.access import store as access
    from spendgate.store.alerts import store

    async def go() -> tuple[int, int]:
        owner = f"{ctx.settings.instance}/replay/{uuid7()}"
        async with open_runtime(ctx.settings, run_migrations=False) as rt, \
                open_alerter(ctx.settings, rt.pool, rt.bus, owner=owner) as a:
            jobs = await store.claim_dead(rt.pool, owner, a.deliverer.lease_s, ids)
            stop = asyncio.Event()
            results = await asyncio.gather(
                *(deliver_with_retries(a.deliverer, j, a.policy, stop, attempts=attempts) for j in jobs))
            if jobs:
                await access.record(rt.pool, actor=cli_actor(), action="alert.replay", target="dead letters",
                                    detail={"requested_ids": list(ids), "replayed": len(jobs),
                                            "delivered": sum(results)})
            return sum(results), len(jobs)

    delivered, total = run(go())
    click.echo(f"replayed {total} dead letters: {delivered} delivered, {total - delivered} failed again")
    if delivered < total:
        raise SystemExit(1)


COMMANDS: list[click.Command] = [alerter, alerts]
