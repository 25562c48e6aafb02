"""``spendgate report …``, ``spendgate sessions show``, ``spendgate policy …`` and ``spendgate admin``.

Reports read the database directly, or a running admin API with ``--api URL`` (or
``SPENDGATE_ADMIN_URL``); both go through the same report functions, so they print the same thing.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import date

import aiohttp
import click

from spendgate.admin import render
from spendgate.admin.alerts import KINDS, MAX_ALERTS, parse_since
from spendgate.admin.client import ApiSource, DatabaseSource, ReportSource
from spendgate.admin.policy_cli import policy
from spendgate.admin.service import serve
from spendgate.admin.window import GROUPINGS, Filters, WindowError, parse_date
from spendgate.core.clitools import Ctx, pass_ctx, run
from spendgate.core.config import Settings
from spendgate.domain.enforcement.scopes import parse_scope
from spendgate.domain.errors import ConfigError
from spendgate.runtime import open_database, run_services

api_option = click.option("--api", "api_url", envvar="SPENDGATE_ADMIN_URL", default=None,
                          help="Read through a running admin API (e.g. http://127.0.0.1:8081) instead of "
                               "the database; uses SPENDGATE_ADMIN_TOKEN.")
tz_option = click.option("--tz", default=None, help="IANA timezone of the days (default: default_timezone).")
format_option = click.option("--format", "fmt", type=click.Choice(render.FORMATS), default="table",
                             show_default=True)


@contextlib.asynccontextmanager
async def open_source(settings: Settings, api_url: str | None) -> AsyncIterator[ReportSource]:
    if api_url:
        if settings.admin_token is None:
            raise ConfigError("--api needs the admin token: set SPENDGATE_ADMIN_TOKEN")
        async with aiohttp.ClientSession() as http:
            yield ApiSource(http, api_url, settings.admin_token.get_secret_value())
        return
    async with open_database(settings) as (_, pool):
        yield DatabaseSource(pool, settings)


def _dates(from_: str | None, to: str | None) -> tuple[date | None, date | None]:
    try:
        return parse_date(from_, what="--from"), parse_date(to, what="--to")
    except WindowError as exc:
        raise click.BadParameter(str(exc)) from None


def _filters(developer: str | None, team: str | None, cost_center: str | None, repo: str | None) -> Filters:
    return Filters(developer=developer, team=team, cost_center=cost_center, repo=repo)


def _filter_options(f: click.decorators.FC) -> click.decorators.FC:
    for name in ("repo", "cost-center", "team", "developer"):
        f = click.option(f"--{name}", default=None, help=f"Only usage of this {name.replace('-', ' ')}.")(f)
    return f


@click.group()
def report() -> None:
    """Chargeback and prompt-cache reports."""


@report.command("chargeback")
@click.option("--by", type=click.Choice(list(GROUPINGS)), default="team", show_default=True)
@click.option("--from", "from_", help="First day, e.g. 2026-11-01 (default: 1st of this month).")
@click.option("--to", help="Last day, inclusive (default: end of this month).")
@_filter_options
@tz_option
@format_option
@api_option
@pass_ctx
def chargeback_cmd(ctx: Ctx, by: str, from_: str | None, to: str | None, developer: str | None,
                   team: str | None, cost_center: str | None, repo: str | None, tz: str | None, fmt: str,
                   api_url: str | None) -> None:
    """Spend per session, developer, team, cost center or repo, with a total that matches the ledger."""
    start, end = _dates(from_, to)

    async def go() -> str:
        async with open_source(ctx.settings, api_url) as source:
            found = await source.chargeback(by, start, end, _filters(developer, team, cost_center, repo), tz)
            return render.chargeback(found, fmt)

    click.echo(run(go()))


@report.command("cache")
@click.option("--by", type=click.Choice(list(GROUPINGS)), default="developer", show_default=True)
@click.option("--from", "from_", help="First day (default: 1st of this month).")
@click.option("--to", help="Last day, inclusive (default: end of this month).")
@click.option("--flag-below", type=click.IntRange(0, 100), default=None,
              help="Flag sessions under this hit rate in percent (default: settings, 30).")
@click.option("--min-requests", type=click.IntRange(1), default=None,
              help="Only judge sessions with at least this many requests (default: settings, 5).")
@_filter_options
@tz_option
@format_option
@api_option
@pass_ctx
def cache_cmd(ctx: Ctx, by: str, from_: str | None, to: str | None, flag_below: int | None,
              min_requests: int | None, developer: str | None, team: str | None, cost_center: str | None,
              repo: str | None, tz: str | None, fmt: str, api_url: str | None) -> None:
    """Prompt-cache hit rate, money saved and money lost to misses; low-hit sessions flagged."""
    start, end = _dates(from_, to)
    settings = ctx.settings
    below = settings.cache_flag_below_pct if flag_below is None else flag_below
    least = settings.cache_flag_min_requests if min_requests is None else min_requests

    async def go() -> str:
        async with open_source(settings, api_url) as source:
            found = await source.cache(by, start, end, _filters(developer, team, cost_center, repo), below, least,
                                       tz)
            return render.cache(found, fmt)

    click.echo(run(go()))


@click.group()
def sessions() -> None:
    """Codex sessions: drill down from a chargeback line to its turns and requests."""


@sessions.command("show")
@click.argument("session_id")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@api_option
@pass_ctx
def show_cmd(ctx: Ctx, session_id: str, fmt: str, api_url: str | None) -> None:
    """One session as a chargeback line, its turns, and every request of each turn."""

    async def go() -> str:
        async with open_source(ctx.settings, api_url) as source:
            return render.session(await source.session(session_id), fmt)

    click.echo(run(go()))


@click.command("list")
@click.option("--scope", default=None, help="This scope's alerts, e.g. team:platform.")
@click.option("--kind", type=click.Choice(KINDS), default=None, help="This kind of alert.")
@click.option("--since", default=None,
              help="Alerts recorded at or after this day or time (2026-12-01, 2026-12-01T08:00Z).")
@click.option("--limit", type=click.IntRange(1, MAX_ALERTS), default=50, show_default=True)
@format_option
@api_option
@pass_ctx
def alerts_list(ctx: Ctx, scope: str | None, kind: str | None, since: str | None, limit: int, fmt: str,
                api_url: str | None) -> None:
    """What fired, newest first, and whether each delivery got through (delivered, pending, dead)."""
    try:
        start = parse_since(since, what="--since")
    except WindowError as exc:
        raise click.BadParameter(str(exc)) from None

    async def go() -> str:
        async with open_source(ctx.settings, api_url) as source:
            found = await source.alerts(scope=parse_scope(scope) if scope else None, kind=kind, since=start,
                                        limit=limit)
            return render.alerts(found, fmt)

    click.echo(run(go()))


ALERTS_LIST = alerts_list
"""``spendgate alerts list``: the composition root adds it to the alerter's ``alerts`` group (the history
is a report: it reads the database or the admin API like the other reports)."""


@click.command("admin")
@pass_ctx
def admin(ctx: Ctx) -> None:
    """Run the admin API alone (it also runs inside ``spendgate up``)."""

    settings = ctx.settings
    if settings.admin_token is None:
        raise click.ClickException("set SPENDGATE_ADMIN_TOKEN first: every admin API call needs it")
    run(run_services(settings, {"admin": serve}))


COMMANDS: list[click.Command] = [report, sessions, policy, admin]
