"""``spendgate report …``, ``spendgate sessions list|show``, ``spendgate policy …``, ``spendgate alerts list``
(added to the alerter's ``alerts`` group by the composition root) and ``spendgate admin``.

Every read here takes ``--api URL`` (or ``SPENDGATE_ADMIN_URL``) to read through a running admin API
instead of the database; both go through the same functions (:mod:`spendgate.admin.client`), so they
print the same thing. Imports beyond click happen inside the commands: this module is imported by
every ``spendgate`` call.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
from typing import TYPE_CHECKING, Any, TypeVar

import click

from spendgate.admin.alert_query import KINDS, MAX_ALERTS
from spendgate.admin.policy_cli import policy
from spendgate.core.clitools import (
    DOCUMENT_FORMATS,
    CliError,
    Ctx,
    api_option,
    check_port_free,
    did_you_mean,
    format_option,
    nonempty,
    pass_ctx,
    run,
    timezone_option,
    valid_scope,
    warn,
)

if TYPE_CHECKING:
    from spendgate.admin.client import Source
    from spendgate.admin.window import Filters

F = TypeVar("F", bound=Callable[..., Any])

BY = ("session", "developer", "team", "cost-center", "repo")
"""``--by`` values, spelt as the filter options are (``--cost-center``); the API's names use ``_``."""
NAMED = ("developer", "team", "cost_center")
"""Filters whose unknown values are warned about, with a "did you mean"."""


def _dates(from_: str | None, to: str | None) -> tuple[date | None, date | None]:
    from spendgate.admin.window import WindowError, parse_date

    days = []
    for flag, value in (("--from", from_), ("--to", to)):
        try:
            days.append(parse_date(value, what=flag))
        except WindowError as exc:
            raise click.BadParameter(str(exc).removeprefix(f"{flag} "), param_hint=f"'{flag}'") from None
    start, end = days
    if start and end and start > end:
        raise click.BadParameter(f"{start} is after --to {end}", param_hint="'--from'")
    return start, end


def window_options(f: F) -> F:
    """``--from``, ``--to``, the four filters and ``--timezone``, shared by every report."""
    f = timezone_option(f)
    for name in ("repo", "cost-center", "team", "developer"):
        f = click.option(f"--{name}", default=None, callback=nonempty,
                         help=f"Only usage of this {name.replace('-', ' ')}.")(f)
    f = click.option("--to", help="Last day, inclusive (default: end of this month).")(f)
    return click.option("--from", "from_", help="First day, e.g. 2026-11-01 (default: 1st of this month).")(f)


def _filters(options: dict[str, Any]) -> Filters:
    from spendgate.admin.window import Filters

    return Filters(developer=options["developer"], team=options["team"], cost_center=options["cost_center"],
                   repo=options["repo"])


async def warn_unknown(source: Source, filters: Filters, *, found: bool) -> None:
    """When a filtered report came back empty, warn about a developer, team or cost center that has
    no key and no usage this month: a typo would otherwise read as "no spend"."""
    asked = {k: getattr(filters, k) for k in NAMED if getattr(filters, k) is not None}
    if found or not asked:
        return
    teams = (await source.teams()).teams
    known: dict[str, set[str]] = {
        "developer": {d for t in teams for d in t.developers}, "team": {t.team for t in teams},
        "cost_center": {c for t in teams for c in t.cost_centers}}
    for kind, value in asked.items():
        if value not in known[kind]:
            warn(f"no {kind.replace('_', ' ')} {value!r} has a key or usage this month"
                 f"{did_you_mean(value, known[kind])}")


@click.group()
def report() -> None:
    """Chargeback and prompt-cache reports."""


@report.command("chargeback")
@click.option("--by", type=click.Choice(BY), default="team", show_default=True, help="One line per …")
@window_options
@format_option()
@api_option
@pass_ctx
def chargeback_cmd(ctx: Ctx, /, by: str, from_: str | None, to: str | None, tz: str | None, fmt: str,
                   api_url: str | None, **filter_values: str | None) -> None:
    """Spend per session, developer, team, cost center or repo, with a total that matches the ledger."""
    from spendgate.admin import render
    from spendgate.admin.client import open_source

    start, end = _dates(from_, to)
    filters = _filters(filter_values)

    async def go() -> str:
        async with open_source(ctx, api_url) as source:
            found = await source.chargeback(by.replace("-", "_"), start, end, filters, tz)
            await warn_unknown(source, filters, found=bool(found.lines))
            return render.chargeback(found, fmt)

    click.echo(run(go()))


@report.command("cache")
@click.option("--by", type=click.Choice(BY), default="developer", show_default=True, help="One line per …")
@click.option("--flag-below", type=click.IntRange(0, 100), default=None,
              help="Flag sessions under this hit rate in percent (default: settings, 30).")
@click.option("--min-requests", type=click.IntRange(1), default=None,
              help="Only judge sessions with at least this many requests (default: settings, 5).")
@window_options
@format_option()
@api_option
@pass_ctx
def cache_cmd(ctx: Ctx, /, by: str, flag_below: int | None, min_requests: int | None, from_: str | None,
              to: str | None, tz: str | None, fmt: str, api_url: str | None, **filter_values: str | None) -> None:
    """Prompt-cache hit rate, money saved and money lost to misses; low-hit sessions flagged."""
    from spendgate.admin import render
    from spendgate.admin.client import open_source

    start, end = _dates(from_, to)
    filters = _filters(filter_values)
    settings = ctx.settings
    below = settings.cache_flag_below_pct if flag_below is None else flag_below
    least = settings.cache_flag_min_requests if min_requests is None else min_requests

    async def go() -> str:
        async with open_source(ctx, api_url) as source:
            found = await source.cache(by.replace("-", "_"), start, end, filters, below, least, tz)
            await warn_unknown(source, filters, found=bool(found.lines))
            return render.cache(found, fmt)

    click.echo(run(go()))


@click.group()
def sessions() -> None:
    """Codex sessions: list them, then drill down from one to its turns and requests."""


@sessions.command("list")
@window_options
@format_option()
@api_option
@pass_ctx
def list_cmd(ctx: Ctx, /, from_: str | None, to: str | None, tz: str | None, fmt: str, api_url: str | None,
             **filter_values: str | None) -> None:
    """Every session in the window (default: this month) with its spend, costliest first."""
    from spendgate.admin import render
    from spendgate.admin.client import open_source

    start, end = _dates(from_, to)
    filters = _filters(filter_values)

    async def go() -> str:
        async with open_source(ctx, api_url) as source:
            found = await source.sessions(start, end, filters, tz)
            await warn_unknown(source, filters, found=bool(found.lines))
            return render.sessions(found, fmt)

    click.echo(run(go()))


@sessions.command("show")
@click.argument("session_id")
@click.option("--developer", default=None,
              help="The developer whose session it is (needed when several developers' keys used the id).")
@format_option(*DOCUMENT_FORMATS)
@api_option
@pass_ctx
def show_cmd(ctx: Ctx, session_id: str, developer: str | None, fmt: str, api_url: str | None) -> None:
    """One session as a chargeback line, its turns, and every request of each turn (endpoint, stream).
    Session ids are chosen by the client, so a session is one developer's: when several developers' keys
    sent the same id, name one with --developer."""
    from spendgate.admin import render
    from spendgate.admin.client import open_source

    async def go() -> str:
        async with open_source(ctx, api_url) as source:
            return render.session(await source.session(session_id, developer), fmt)

    click.echo(run(go()))


def _since(_ctx: click.Context, _param: click.Parameter, value: str | None) -> datetime | None:
    from spendgate.admin.alerts import parse_since
    from spendgate.admin.window import WindowError

    try:
        return parse_since(value, what="--since")
    except WindowError as exc:
        raise click.BadParameter(str(exc).removeprefix("--since ")) from None


@click.command("list")
@click.option("--scope", default=None, callback=valid_scope,
              help="This scope's alerts: key:<id or prefix>, developer:<name>, team:<name> or org.")
@click.option("--kind", type=click.Choice(KINDS), default=None, help="This kind of alert.")
@click.option("--since", default=None, callback=_since,
              help="Alerts recorded at or after this day or time (2026-12-01, 2026-12-01T08:00Z).")
@click.option("--limit", type=click.IntRange(1, MAX_ALERTS), default=50, show_default=True,
              help="At most this many alerts, newest first.")
@format_option()
@api_option
@pass_ctx
def alerts_list(ctx: Ctx, scope: str | None, kind: str | None, since: datetime | None, limit: int, fmt: str,
                api_url: str | None) -> None:
    """What fired, newest first, and whether each delivery got through (delivered, pending, dead)."""
    from spendgate.admin import render
    from spendgate.admin.budgets_cli import resolve_scope
    from spendgate.admin.client import open_source

    async def go() -> str:
        async with open_source(ctx, api_url) as source:
            chosen = await resolve_scope(source, scope, warn_unknown=False) if scope else None
            found = await source.alerts(scope=chosen, kind=kind, since=since, limit=limit)
            return render.alerts(found, fmt)

    click.echo(run(go()))


@click.command("dead")
@click.option("--all", "include_replayed", is_flag=True, help="Include dead letters already replayed.")
@format_option()
@api_option
@pass_ctx
def alerts_dead(ctx: Ctx, include_replayed: bool, fmt: str, api_url: str | None) -> None:
    """List alert deliveries that failed their last attempt (re-send them with spendgate alerts replay)."""
    from spendgate.admin import render
    from spendgate.admin.client import open_source

    async def go() -> tuple[str, int]:
        async with open_source(ctx, api_url) as source:
            found = await source.dead_letters(include_replayed=include_replayed)
            return render.dead_letters(found, fmt), len(found.dead_letters)

    text, count = run(go())
    click.echo(text)
    click.echo(f"{count} dead letters", err=True)


ALERTS_LIST, ALERTS_DEAD = alerts_list, alerts_dead
"""``spendgate alerts list`` and ``alerts dead``: the composition root adds them to the alerter's
``alerts`` group (the history is a report: it reads the database or the admin API like the other
reports; sending and replaying stay with the alerter)."""


async def _any_named_token(ctx: Ctx) -> bool:
    from datetime import UTC, datetime

    from spendgate.store.access import store as access

    async with ctx.database() as pool:
        return await access.any_usable_token(pool, datetime.now(UTC))


@click.command("admin")
@pass_ctx
def admin(ctx: Ctx) -> None:
    """Run the admin API alone (it also runs inside spendgate up)."""
    from spendgate.admin.service import serve
    from spendgate.runtime import run_services

    settings = ctx.settings
    if settings.admin_token is None and settings.console.oidc is None and not run(_any_named_token(ctx)):
        raise CliError("nobody could use the admin API: set SPENDGATE_ADMIN_TOKEN, configure console.oidc "
                       "(docs/console.md) or create a named token (spendgate tokens create) first")
    check_port_free(settings.host, settings.admin_port, "SPENDGATE_ADMIN_PORT")
    run(run_services(settings, {"admin": serve}), serving=True)


@click.command("guard")
@pass_ctx
def guard(ctx: Ctx) -> None:
    """Run the policy guard alone (it also runs inside spendgate up): every guard.interval_s it judges the
    active policy version, rolls back a harmful one, and rations when guard.auto_ration is on."""
    from spendgate.admin.guard import serve
    from spendgate.runtime import run_services

    if not ctx.settings.guard.enabled and not ctx.settings.guard.auto_ration:
        raise CliError("the guard is off (guard.enabled: false) and guard.auto_ration is off: nothing to run")
    run(run_services(ctx.settings, {"guard": serve}), serving=True)


@click.command("turns")
@click.option("--session", default=None, callback=nonempty, help="Only this session's turns.")
@click.option("--team", default=None, callback=nonempty, help="Only this team's turns.")
@click.option("--since", default=None, callback=_since,
              help="Turns with a request at or after this day or time (default: 7 days ago).")
@click.option("--limit", type=click.IntRange(1, 5_000), default=200, show_default=True,
              help="At most this many turns, newest first.")
@format_option()
@api_option
@pass_ctx
def turns(ctx: Ctx, session: str | None, team: str | None, since: datetime | None, limit: int, fmt: str,
          api_url: str | None) -> None:
    """Turn outcomes, newest first: requests, tool calls and failures, retries, whether the turn ended
    with an answer, cost, and the quality score (external where an eval system sent one, else derived:
    docs/policy.md, "Turn outcomes and the quality score")."""
    from spendgate.admin import render
    from spendgate.admin.client import open_source

    async def go() -> str:
        async with open_source(ctx, api_url) as source:
            return render.turns(await source.turns(session=session, team=team, since=since, limit=limit), fmt)

    click.echo(run(go()))


COMMANDS: list[click.Command] = [report, sessions, policy, admin, turns, guard]
