"""Teams and developers: ``/teams``, ``/teams/{team}``, ``/developers``, ``/developers/{developer}``.

Spend figures are the chargeback report's (:func:`spendgate.admin.reports.chargeback`) over the page's
period, so a page and ``/v1/reports/chargeback`` with the same query agree to the micro-dollar. Budgets and
stages are the budget status the API gives (:func:`spendgate.admin.views.budget_status`); sessions are the
ledger's folded session totals.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import quote

from aiohttp import web

from spendgate.admin.cache import hit_rate_pct
from spendgate.admin.console.auth_chain import identity_of
from spendgate.admin.console.identity import Identity, Role, may_read_developer, may_read_team
from spendgate.admin.console.pages import (
    deps_of,
    forbidden,
    forecast_view,
    page,
    path_name,
    report_conn,
    require_team,
    session_href,
    window_of,
)
from spendgate.admin.console.tables import Cell, Column, Table, budget_table, csv_of
from spendgate.admin.console.web import query_with, render
from spendgate.admin.deps import Deps
from spendgate.admin.reports import Chargeback, ChargebackLine, chargeback
from spendgate.admin.views import BudgetStatus, budget_status
from spendgate.admin.window import Filters, Window
from spendgate.store.balances.store import day_totals
from spendgate.store.budgets.store import budgets_of
from spendgate.store.keys.store import newest_key_of
from spendgate.store.usage.reports import FoldedSession, folded_sessions

TOP_SESSIONS = 25
DEVELOPER_SESSIONS = 100


def hit_rate(line: ChargebackLine | None) -> float | None:
    """Cached ÷ input tokens as a ratio (the cache report's rule, :func:`spendgate.admin.cache.hit_rate_pct`)."""
    if line is None:
        return None
    pct = hit_rate_pct(line.cached_tokens, line.input_tokens)
    return None if pct is None else float(pct) / 100


def _href(base: str, name: str, keep: str) -> str:
    return f"{base}/{quote(name, safe='')}{keep}"


def spend_table(name: str, caption: str, label: str, lines: Sequence[ChargebackLine], keep: str,
                link: str | None) -> Table:
    """Chargeback lines as a table: the group (linked to its page), sessions, requests, cost, retry spend,
    downgrade savings and cache hit rate."""
    return Table(name, caption, [
        Column(label), Column("Sessions", "int"), Column("Requests", "int"), Column("Cost", "usd"),
        Column("Retry spend", "usd"), Column("Downgrades", "int"), Column("Downgrade savings", "usd"),
        Column("Cache hit rate", "pct"),
    ], [[Cell(ln.group or "(none)", _href(link, ln.group, keep) if link and ln.group else None), Cell(ln.sessions),
         Cell(ln.requests), Cell(ln.cost_micros), Cell(ln.retry_cost_micros), Cell(ln.downgraded),
         Cell(ln.downgrade_saved_micros), Cell(hit_rate(ln))] for ln in lines])


def session_table(sessions: list[FoldedSession], matching: int, keep: str, *, caption: str) -> Table:
    more = f"Showing the {len(sessions)} costliest of {matching}." if matching > len(sessions) else None
    return Table("sessions", caption, [
        Column("Session"), Column("Developer"), Column("Repo"), Column("Last request (UTC)"), Column("Turns", "int"),
        Column("Requests", "int"), Column("Cost", "usd"), Column("Retry spend", "usd"), Column("Downgrades", "int"),
        Column("Cache hit rate", "pct"),
    ], [[Cell(s.session_id, session_href(s.session_id, s.developer)),
         Cell(s.developer, _href("/developers", s.developer, keep)), Cell(s.repo),
         Cell(s.last_at.strftime("%Y-%m-%d %H:%M")), Cell(s.turns), Cell(s.requests), Cell(s.cost_micros),
         Cell(s.retry_cost_micros), Cell(s.downgraded),
         Cell(None if not s.input_tokens else s.cached_tokens / s.input_tokens)] for s in sessions],
        note=((more + " " if more else "") + "Session figures are whole sessions, as the ledger folded them."))


async def _chargeback(deps: Deps, by: str, window: Window, filters: Filters) -> Chargeback:
    """One chargeback of a page, on a connection of its own (a page runs its reports side by side)."""
    async with report_conn(deps) as conn:
        return await chargeback(conn, deps.prices, by=by, window=window, filters=filters)


def _keep(request: web.Request) -> str:
    return query_with(request.rel_url.query, format=None, table=None, q=None)


# -- teams ------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SpendLine:
    name: str
    requests: int
    cost_micros: int


async def spend_lines(deps: Deps, kind: str, window: Window, filters: Filters) -> list[SpendLine]:
    """Each team's or developer's (``kind``) requests and cost in the window, costliest first.

    From the ledger's day balances when they are kept in the window's timezone (every scope of the kind
    without a budget in another zone): the same figures as the chargeback report, without reading the
    period's events. Otherwise from the chargeback report itself."""
    budgets = await budgets_of(deps.pool)
    other_zone = any(b.scope.startswith(f"{kind}:") and b.timezone != window.tz for b in budgets)
    if window.tz == deps.settings.default_timezone and not other_zone:
        wanted = filters.team if kind == "team" else filters.developer
        return [SpendLine(scope.removeprefix(f"{kind}:"), n, spent)
                for scope, spent, n in await day_totals(deps.pool, f"{kind}:", window.from_date, window.to_date)
                if wanted is None or scope == f"{kind}:{wanted}"]
    report = await chargeback(deps.pool, deps.prices, by=kind, window=window, filters=filters)
    return [SpendLine(ln.group, ln.requests, ln.cost_micros) for ln in report.lines if ln.group is not None]


def list_table(name: str, caption: str, label: str, lines: Sequence[SpendLine], keep: str, link: str) -> Table:
    total = sum(ln.cost_micros for ln in lines)
    return Table(name, caption, [
        Column(label), Column("Requests", "int"), Column("Cost", "usd"), Column("Share of cost", "pct"),
    ], [[Cell(ln.name, _href(link, ln.name, keep)), Cell(ln.requests), Cell(ln.cost_micros),
         Cell(ln.cost_micros / total if total else None)] for ln in lines],
        note="Open one for its budgets, forecast, developers, repos, sessions, retries, downgrades and cache.")


@page
async def teams(request: web.Request) -> web.StreamResponse:
    who = identity_of(request)
    if who.role is Role.DEVELOPER:
        raise forbidden("teams' spend")
    deps, window = deps_of(request), window_of(request)
    only = sorted(who.teams)[0] if who.role is Role.MANAGER and len(who.teams) == 1 else None
    lines = [ln for ln in await spend_lines(deps, "team", window, Filters(team=only)) if may_read_team(who, ln.name)]
    tables = [list_table("teams", "Teams", "Team", lines, _keep(request), "/teams")]
    if (csv := csv_of(request, tables, "teams")) is not None:
        return csv
    return render(request, "spend_list.html", title="Teams", window=window, tables=tables,
                  total=sum(ln.cost_micros for ln in lines))


@page
async def team(request: web.Request) -> web.StreamResponse:
    name = path_name(request, "team")
    require_team(request, name)
    deps, window = deps_of(request), window_of(request)
    keep = _keep(request)
    by_developer, by_repo, (sessions, matching), status = await asyncio.gather(
        _chargeback(deps, "developer", window, Filters(team=name)),
        _chargeback(deps, "repo", window, Filters(team=name)),
        folded_sessions(deps.pool, window.starts_at, window.ends_at, teams=[name], limit=TOP_SESSIONS),
        budget_status(deps.pool, f"team:{name}", deps.now()))
    tables = [
        spend_table("developers", "Top developers", "Developer", by_developer.lines, keep, "/developers"),
        spend_table("repos", "Repos", "Repo", by_repo.lines, keep, None),
        session_table(sessions, matching, keep, caption="Top sessions"),
    ]
    budgets = budget_table(status, f"team:{name}")
    if (csv := csv_of(request, [*tables, budgets], f"team-{name}")) is not None:
        return csv
    return await _scope_page(request, deps, window, f"team:{name}", f"Team {name}", by_developer.total, tables,
                             status, budgets)


async def _scope_page(request: web.Request, deps: Deps, window: Window, scope: str, title: str,
                      total: ChargebackLine | None, tables: list[Table], status: BudgetStatus | None,
                      budgets: Table) -> web.StreamResponse:
    month = next((p for p in status.periods if p.period == "month"), None) if status else None
    forecast = await forecast_view(deps, scope, month.budget_micros if month else None,
                                   status.budget.timezone if status else deps.settings.default_timezone)
    return render(request, "scope.html", title=title, window=window, scope=scope, total=total,
                  hit_rate=hit_rate(total), budgets=budgets, forecast=forecast, tables=tables)


# -- developers -------------------------------------------------------------------------------------------


def _developer_filters(who: Identity) -> Filters:
    """A developer's own rows (``developers`` refuses a developer identity without a developer first)."""
    return Filters(developer=who.developer) if who.role is Role.DEVELOPER else Filters()


@page
async def developers(request: web.Request) -> web.StreamResponse:
    who = identity_of(request)
    deps, window = deps_of(request), window_of(request)
    if who.role is Role.DEVELOPER and not who.developer:
        raise forbidden("anyone's spend")
    if who.role is Role.MANAGER:
        # A manager's people: the developers of their teams in the period (from the chargeback by developer
        # of each team, which names each developer's team).
        found = [ln for t in sorted(who.teams) for ln in (await chargeback(
            deps.pool, deps.prices, by="developer", window=window, filters=Filters(team=t))).lines]
        lines = [SpendLine(ln.group, ln.requests, ln.cost_micros) for ln in found
                 if ln.group is not None and may_read_developer(who, ln.group, ln.team)]
        lines.sort(key=lambda ln: (-ln.cost_micros, ln.name))
    else:
        lines = [ln for ln in await spend_lines(deps, "developer", window, _developer_filters(who))
                 if may_read_developer(who, ln.name, None)]
    tables = [list_table("developers", "Developers", "Developer", lines, _keep(request), "/developers")]
    if (csv := csv_of(request, tables, "developers")) is not None:
        return csv
    return render(request, "spend_list.html", title="Developers", window=window, tables=tables,
                  total=sum(ln.cost_micros for ln in lines))


async def developer_team(deps: Deps, developer: str, window: Window) -> str | None:
    """The developer's team as their newest key states it; without a key, their one team in the period."""
    key = await newest_key_of(deps.pool, f"developer:{developer}")
    if key is not None:
        return key.team
    report = await chargeback(deps.pool, deps.prices, by="team", window=window, filters=Filters(developer=developer))
    found = {ln.group for ln in report.lines}
    return found.pop() if len(found) == 1 else None


@page
async def developer(request: web.Request) -> web.StreamResponse:
    name = path_name(request, "developer")
    who = identity_of(request)
    deps, window = deps_of(request), window_of(request)
    team_name = None if who.role is Role.DEVELOPER else await developer_team(deps, name, window)
    if not may_read_developer(who, name, team_name):
        raise forbidden(f"developer {name}'s spend")
    keep = _keep(request)
    by_repo, (sessions, matching), status = await asyncio.gather(
        _chargeback(deps, "repo", window, Filters(developer=name)),
        folded_sessions(deps.pool, window.starts_at, window.ends_at, developers=[name], limit=DEVELOPER_SESSIONS),
        budget_status(deps.pool, f"developer:{name}", deps.now()))
    tables = [
        session_table(sessions, matching, keep, caption="Sessions"),
        spend_table("repos", "Repos", "Repo", by_repo.lines, keep, None),
    ]
    budgets = budget_table(status, f"developer:{name}")
    if (csv := csv_of(request, [*tables, budgets], f"developer-{name}")) is not None:
        return csv
    title = f"Developer {name}" + (f" ({team_name})" if team_name else "")
    return await _scope_page(request, deps, window, f"developer:{name}", title, by_repo.total, tables, status,
                             budgets)
