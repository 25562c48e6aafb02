"""What the reading pages share: the period in the URL, the error pages, who may read what, budget standings
and the month-end forecast chart.

The period is ``?from=YYYY-MM-DD&to=YYYY-MM-DD&tz=Zone`` (local days, ``to`` inclusive), this month by default,
exactly as the chargeback API reads it, so a page and ``/v1/reports/chargeback`` with the same query agree.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from urllib.parse import quote

from aiohttp import web

from spendgate.admin.console.auth_chain import identity_of
from spendgate.admin.console.identity import Identity, Role, may_read_developer, may_read_team, reads_everything
from spendgate.admin.console.web import chart_data, render
from spendgate.admin.deps import DEPS, Deps
from spendgate.admin.window import Window, WindowError, parse_date
from spendgate.core.db import Conn
from spendgate.domain.enforcement.policy import Budget, BudgetRaise, Policy
from spendgate.domain.enforcement.scopes import split_scope
from spendgate.domain.enforcement.stages import stage_for
from spendgate.domain.errors import ConfigError
from spendgate.domain.periods import PeriodKind, period_containing, zone
from spendgate.store.balances.store import day_spend
from spendgate.store.forecasts.store import latest_band

MAX_TEXT = 256
"""The longest name (team, developer, session id, search) a page accepts in its URL."""


class PageError(Exception):
    """A page that cannot be shown, with the status and a sentence for the person."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def forbidden(what: str) -> PageError:
    return PageError(403, f"You may not read {what}. Ask an admin or FinOps if you need to.")


Page = Callable[[web.Request], Awaitable[web.StreamResponse]]


def page(handler: Page) -> Page:
    """A console page: a bad query or a forbidden scope answers an HTML error page, never a traceback."""

    @functools.wraps(handler)
    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except PageError as exc:
            return render(request, "error.html", title=_TITLES.get(exc.status, "Error"), status=exc.status,
                          message=exc.message)
        except (WindowError, ConfigError) as exc:
            message = exc.message if isinstance(exc, ConfigError) else str(exc)
            return render(request, "error.html", title="Bad request", status=400, message=message)

    return wrapped


_TITLES = {400: "Bad request", 403: "Not yours to read", 404: "Not found"}


def deps_of(request: web.Request) -> Deps:
    return request.app[DEPS]


REPORT_SETTINGS = {"work_mem": "64MB", "random_page_cost": "1.1", "max_parallel_workers_per_gather": "0"}
"""How a page's report query is planned, measured in benchmarks/console_pages.py (a month of 300,000
events): with the default random_page_cost of 4 a team's chargeback scanned every team's events of the month
rather than the team index (442 -> 130 ms with 1.1, the usual figure when the pages are in memory or on SSD);
parallel plans for these aggregates were slower on this 2-core machine (the cache report 1,169 -> 632 ms
without); the default 4MB of work_mem spilled the cache report's sort to disk. Set per transaction, for
these reads only."""


@asynccontextmanager
async def report_conn(deps: Deps) -> AsyncIterator[Conn]:
    """A connection for one report query of a page, in a read-only transaction with more working memory."""
    async with deps.pool.acquire() as conn, conn.transaction(readonly=True):
        for name, value in REPORT_SETTINGS.items():
            await conn.execute(f"SET LOCAL {name} = '{value}'")
        yield conn


def text_param(request: web.Request, name: str) -> str | None:
    value = request.rel_url.query.get(name)
    if value is None or value == "":
        return None
    if len(value) > MAX_TEXT or "\x00" in value:
        raise PageError(400, f"{name} must be at most {MAX_TEXT} characters")
    return value


def path_name(request: web.Request, name: str) -> str:
    value = request.match_info[name]
    if not 1 <= len(value) <= MAX_TEXT or "\x00" in value:
        raise PageError(400, f"the {name} in the address must be 1 to {MAX_TEXT} characters")
    return value


def window_of(request: web.Request) -> Window:
    """The page's period from the query (this month in the default timezone when absent)."""
    deps = deps_of(request)
    tz = text_param(request, "tz") or deps.settings.default_timezone
    zone(tz)
    return Window.of(parse_date(request.rel_url.query.get("from"), what="from"),
                     parse_date(request.rel_url.query.get("to"), what="to"), tz=tz, now=deps.now())


# -- who may read what ------------------------------------------------------------------------------------


def team_filter(who: Identity) -> list[str] | None:
    """The teams whose rows a manager may read; None: not limited by team (readers of everything, and a
    developer, whom :func:`developer_filter` limits)."""
    return sorted(who.teams) if who.role is Role.MANAGER else None


def developer_filter(who: Identity) -> list[str] | None:
    """The developers a developer identity may read (themself); None: not limited by developer."""
    if not reads_everything(who) and who.role is not Role.MANAGER:
        return [who.developer] if who.developer else []
    return None


def require_team(request: web.Request, team: str) -> Identity:
    who = identity_of(request)
    if not may_read_team(who, team):
        raise forbidden(f"team {team}")
    return who


# -- budgets: each period's standing ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Standing:
    scope: str
    period: str
    spent_micros: int
    budget_micros: int
    stage: str


def standing(policy: Policy, budget: Budget, kind: PeriodKind, spent_micros: int, now: datetime) -> Standing | None:
    """Where ``spent_micros`` stands against the budget of ``kind`` (raises included); None without one."""
    limit = policy.effective_micros(budget, kind, now)
    if limit is None:
        return None
    stage = stage_for(spent_micros, limit, budget.thresholds).label
    return Standing(budget.scope, kind.value, spent_micros, limit, stage)


def policy_of(budgets: list[Budget], raises: list[BudgetRaise]) -> Policy:
    return Policy(budgets={b.scope: b for b in budgets}, raises=tuple(raises))


# -- the month-end forecast as a burndown chart -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ForecastView:
    """A scope's forecast for the page: the figures and the chart's JSON (None: no forecast yet)."""

    scope: str
    p10_micros: int
    p50_micros: int
    p90_micros: int
    budget_micros: int | None
    as_of: date
    p50_crosses_on: date | None
    chart: str


def _epoch(day: date) -> int:
    return int(datetime.combine(day, time(12), UTC).timestamp())


async def forecast_view(deps: Deps, scope: str, budget_micros: int | None, tz: str) -> ForecastView | None:
    """The month's spend so far (day by day, cumulative), the latest forecast's P10-P90 band and P50 to
    month-end, the monthly budget and today, for uPlot (values in micro-dollars; x in seconds at local noon
    of each day)."""
    found = await latest_band(deps.pool, scope)
    now = deps.now()
    month = period_containing(PeriodKind.MONTH, now, tz)
    if found is None or found.forecast.month != month.start:
        return None
    today = now.astimezone(zone(tz)).date()
    last = (month.ends_at - timedelta(microseconds=1)).astimezone(zone(tz)).date()
    days = [month.start + timedelta(days=i) for i in range((last - month.start).days + 1)]
    spent = {d.day: d.spent_micros for d in await day_spend(deps.pool, [scope], month.start, today)}
    actual: list[int | None] = []
    running = 0
    for d in days:
        running += spent.get(d, 0)
        actual.append(running if d <= today else None)
    band = {d: (p10, p50, p90) for d, p10, p50, p90 in zip(found.days, found.p10_micros, found.p50_micros,
                                                             found.p90_micros, strict=True)}
    as_of = found.forecast.as_of
    band[as_of] = (found.forecast.actual_micros,) * 3
    quantiles = [band.get(d) for d in days]
    budget = budget_micros if budget_micros is not None else found.forecast.budget_micros
    data = {
        "title": f"{scope}: month-end forecast",
        "x": [_epoch(d) for d in days],
        "series": {
            "Spent": actual,
            "P10": [q[0] if q else None for q in quantiles],
            "P50": [q[1] if q else None for q in quantiles],
            "P90": [q[2] if q else None for q in quantiles],
            "Budget": [budget] * len(days) if budget is not None else [None] * len(days),
        },
        "today": _epoch(today),
    }
    f = found.forecast
    return ForecastView(scope=scope, p10_micros=f.p10_micros, p50_micros=f.p50_micros, p90_micros=f.p90_micros,
                        budget_micros=budget, as_of=f.as_of, p50_crosses_on=f.p50_crosses_on, chart=chart_data(data))


def may_read_scope(who: Identity, scope: str, *, developer: str | None, team: str | None) -> bool:
    """Whether a budget scope's news (a stage change) is the identity's to read: a team's by its readers, a
    developer's or key's by whoever may read that developer, the org's and cost centers' by readers of all."""
    base, _ = split_scope(scope)
    kind, _, name = base.partition(":")
    if kind == "team":
        return may_read_team(who, name)
    if kind == "developer":
        return may_read_developer(who, name, team)
    if kind == "key" and developer is not None:
        return may_read_developer(who, developer, team)
    return reads_everything(who)


def scope_href(scope: str, developer: str | None, query: str) -> str | None:
    """The console page of a budget scope, keeping the period in ``query``."""
    kind, _, name = split_scope(scope)[0].partition(":")
    if kind == "team":
        return f"/teams/{quote(name, safe='')}{query}"
    if kind == "developer" or (kind == "key" and developer):
        return f"/developers/{quote(name if kind == 'developer' else developer or '', safe='')}{query}"
    if scope == "org":
        return f"/{query}"
    return None


def session_href(session_id: str, developer: str | None) -> str:
    """The drill-down of one developer's session (session ids are client-chosen: the developer names it)."""
    return f"/sessions/{quote(session_id, safe='')}?developer={quote(developer or '', safe='')}"

