"""The overview (``/``): the organisation's month to date against its budget, the month-end forecast as a
burndown chart, the teams ranked by risk, and today's stage changes.

Reads only folded state (balances, budgets, forecasts, crossings), never the usage events, so it stays fast
however much traffic the month holds.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import quote

from aiohttp import web

from spendgate.admin.console.auth_chain import identity_of
from spendgate.admin.console.identity import may_read_team, reads_everything
from spendgate.admin.console.pages import (
    deps_of,
    forecast_view,
    may_read_scope,
    page,
    policy_of,
    scope_href,
    standing,
)
from spendgate.admin.console.tables import Cell, Column, Table, budget_table, csv_of
from spendgate.admin.console.web import query_with, render
from spendgate.admin.deps import Deps
from spendgate.admin.views import budget_status
from spendgate.domain.periods import PeriodKind, period_containing
from spendgate.store.balances.store import crossings_between, period_balances
from spendgate.store.budgets.store import load_budgets
from spendgate.store.forecasts.store import latest_forecasts

MAX_CHANGES = 200


@dataclass(frozen=True, slots=True)
class TeamRisk:
    team: str
    spent_micros: int
    budget_micros: int | None
    stage: str | None
    p50_micros: int | None
    risk: float | None
    """The month-end estimate over the monthly budget: the forecast's P50, or the spend so far when that is
    more (a forecast made before today's spend) or there is no forecast."""


async def teams_at_risk(deps: Deps, teams: list[str] | None) -> list[TeamRisk]:
    """Every team with a monthly balance or a budget (of ``teams`` when given), riskiest first."""
    now = deps.now()
    tz = deps.settings.default_timezone
    month = period_containing(PeriodKind.MONTH, now, tz)
    spent = await period_balances(deps.pool, "team:", PeriodKind.MONTH, month.start)
    budgets, raises = await load_budgets(deps.pool, now)
    team_budgets = {b.scope: b for b in budgets if b.scope.startswith("team:") and "|" not in b.scope}
    policy = policy_of(budgets, raises)
    forecasts = {f.scope: f for f in await latest_forecasts(deps.pool) if f.month == month.start}
    out = []
    for scope in sorted(set(spent) | set(team_budgets)):
        name = scope.removeprefix("team:")
        if teams is not None and name not in teams:
            continue
        b = team_budgets.get(scope)
        s = spent.get(scope, 0)
        at = standing(policy, b, PeriodKind.MONTH, s, now) if b is not None else None
        f = forecasts.get(scope)
        p50 = f.p50_micros if f is not None else None
        risk = max(p50 or 0, s) / at.budget_micros if at and at.budget_micros else None
        out.append(TeamRisk(name, s, at.budget_micros if at else None, at.stage if at else None, p50, risk))
    return sorted(out, key=lambda t: (t.risk is None, -(t.risk or 0), -t.spent_micros, t.team))


def team_table(rows: list[TeamRisk], query: str) -> Table:
    return Table("teams", "Teams by risk", [
        Column("Team"), Column("Spent this month", "usd"), Column("Monthly budget", "usd"), Column("Stage"),
        Column("Forecast P50", "usd"), Column("Risk (P50 / budget)", "pct"),
    ], [[Cell(t.team, f"/teams/{quote(t.team, safe='')}{query}"), Cell(t.spent_micros), Cell(t.budget_micros),
         Cell(t.stage), Cell(t.p50_micros), Cell(t.risk)] for t in rows], empty="No team has spent this month.")


@page
async def overview(request: web.Request) -> web.StreamResponse:
    deps = deps_of(request)
    who = identity_of(request)
    now = deps.now()
    tz = deps.settings.default_timezone
    everything = reads_everything(who)
    org = await budget_status(deps.pool, "org", now) if everything else None
    month = period_containing(PeriodKind.MONTH, now, tz)
    org_spent = (await period_balances(deps.pool, "org", PeriodKind.MONTH, month.start)).get("org", 0) \
        if everything else None
    org_month = next((p for p in org.periods if p.period == "month"), None) if org else None
    forecast = await forecast_view(deps, "org", org_month.budget_micros if org_month else None, tz) \
        if everything else None
    teams = await teams_at_risk(deps, None if everything else sorted(who.teams))
    teams = [t for t in teams if may_read_team(who, t.team)]
    day = period_containing(PeriodKind.DAY, now, tz)
    changes = [c for c in await crossings_between(deps.pool, day.starts_at, now + timedelta(seconds=1),
                                                  limit=MAX_CHANGES)
               if may_read_scope(who, c.scope, developer=c.developer, team=c.team)]
    keep = query_with(request.rel_url.query, format=None, table=None)
    budgets = budget_table(org, "org")
    tables = [
        team_table(teams, keep),
        Table("changes", "Today's stage changes", [
            Column("When (UTC)"), Column("Scope"), Column("Period"), Column("Stage"), Column("Threshold %", "int"),
            Column("Spent", "usd"), Column("Budget", "usd"),
        ], [[Cell(c.crossed_at.strftime("%H:%M:%S")), Cell(c.scope, scope_href(c.scope, c.developer, keep)),
             Cell(f"{c.period} from {c.period_start}"), Cell(c.stage), Cell(c.threshold_pct),
             Cell(c.spent_micros), Cell(c.budget_micros)] for c in changes],
              empty="No budget changed stage today."),
    ]
    if (csv := csv_of(request, [*tables, budgets] if everything else tables, "overview")) is not None:
        return csv
    return render(request, "overview.html", title="Overview", org=org, org_spent=org_spent, month=month.start,
                  forecast=forecast, tables=tables, everything=everything, budgets=budgets)
