"""Sessions and the prompt cache: ``/sessions`` (searchable), ``/sessions/{session_id}`` (the drill-down)
and ``/cache`` (hit rates, and the sessions under the flag line with the money they lost, worst first).

The drill-down is :func:`spendgate.admin.sessions.session_detail` and the cache page
:func:`spendgate.admin.cache.cache_report`, the functions behind ``/v1/sessions/{id}`` and
``/v1/reports/cache``.
"""

from __future__ import annotations

import asyncio
from urllib.parse import quote

from aiohttp import web

from spendgate.admin.cache import CacheLine, CacheReport, cache_report
from spendgate.admin.console.auth_chain import identity_of
from spendgate.admin.console.identity import Identity, Role, may_read_developer
from spendgate.admin.console.pages import (
    PageError,
    deps_of,
    developer_filter,
    forbidden,
    page,
    path_name,
    report_conn,
    session_href,
    team_filter,
    text_param,
    window_of,
)
from spendgate.admin.console.spend_pages import hit_rate, session_table
from spendgate.admin.console.tables import Cell, Column, Table, csv_of
from spendgate.admin.console.web import query_with, render
from spendgate.admin.sessions import SessionAmbiguous, SessionNotFound, session_detail
from spendgate.admin.window import Filters, Window
from spendgate.store.usage.store import folded_sessions

LIST_LIMIT = 200
CACHE_ROWS = 200
"""The most rows a cache table shows (the worst first); its CSV holds the same rows."""


@page
async def sessions(request: web.Request) -> web.StreamResponse:
    who = identity_of(request)
    deps, window = deps_of(request), window_of(request)
    search = text_param(request, "q")
    found, matching = await folded_sessions(deps.pool, window.starts_at, window.ends_at,
                                            developers=developer_filter(who), teams=team_filter(who),
                                            search=search, limit=LIST_LIMIT)
    keep = query_with(request.rel_url.query, format=None, table=None, q=None)
    tables = [session_table(found, matching, keep, caption="Sessions")]
    if (csv := csv_of(request, tables, "sessions")) is not None:
        return csv
    return render(request, "sessions.html", title="Sessions", window=window, tables=tables, search=search,
                  matching=matching)


@page
async def session(request: web.Request) -> web.StreamResponse:
    session_id = path_name(request, "session_id")
    who = identity_of(request)
    deps = deps_of(request)
    asked = text_param(request, "developer")
    if who.role is Role.DEVELOPER:
        if who.developer is None or (asked is not None and asked != who.developer):
            raise forbidden(f"developer {asked or 'anyone'}'s sessions")
        asked = who.developer
    try:
        detail = await session_detail(deps.pool, deps.prices, session_id, asked)
    except SessionNotFound:
        raise PageError(404, f"No usage is recorded for session {session_id}"
                             + (f" of developer {asked}." if asked and who.role is not Role.DEVELOPER else ".")) \
            from None
    except SessionAmbiguous as exc:
        links = ", ".join(exc.developers)
        raise PageError(400, f"Several developers used session id {session_id} ({links}): add ?developer= "
                             "to the address to choose one.") from None
    line = detail.line
    if line.developer is None or not may_read_developer(who, line.developer, line.team):
        raise forbidden(f"session {session_id}")
    requests = [r for t in detail.turns for r in t.request_lines]
    tables = [
        Table("turns", "Turns", [
            Column("Turn"), Column("First request (UTC)"), Column("Requests", "int"), Column("Cost", "usd"),
            Column("Retries", "int"), Column("Downgrades", "int"),
        ], [[Cell(t.turn_id or "(none)"), Cell(t.first_at.strftime("%Y-%m-%d %H:%M:%S")), Cell(t.requests),
             Cell(t.cost_micros), Cell(t.retries), Cell(t.downgraded)] for t in detail.turns]),
        Table("requests", "Requests", [
            Column("Time (UTC)"), Column("Turn"), Column("Model requested"), Column("Model used"), Column("Route"),
            Column("Stage"), Column("Status"), Column("Input tokens", "int"), Column("Cached tokens", "int"),
            Column("Output tokens", "int"), Column("Cost", "usd"), Column("Retry"),
        ], [[Cell(r.occurred_at.strftime("%Y-%m-%d %H:%M:%S")), Cell(t.turn_id), Cell(r.model_requested),
             Cell(r.model_used), Cell(r.route_reason), Cell(r.stage), Cell(r.status), Cell(r.input_tokens),
             Cell(r.cached_tokens), Cell(r.output_tokens), Cell(r.cost_micros), Cell("retry" if r.retry else "")]
            for t in detail.turns for r in t.request_lines]),
    ]
    if (csv := csv_of(request, tables, f"session-{session_id[:40]}")) is not None:
        return csv
    return render(request, "session.html", title=f"Session {session_id}", line=line, hit_rate=hit_rate(line),
                  requested=sorted({r.model_requested for r in requests}),
                  used=sorted({r.model_used for r in requests}), tables=tables,
                  developer_href=f"/developers/{quote(line.developer, safe='')}")


# -- the prompt cache -------------------------------------------------------------------------------------

CACHE_BY = ("developer", "repo", "session")


def _worst_first(line: CacheLine) -> tuple[bool, float, int, str]:
    """Lowest hit rate first (lines without input tokens last), then the costliest misses."""
    ratio = _ratio(line)
    return (ratio is None, ratio or 0.0, -line.miss_cost_micros, line.group or "")


def _shown(count: int) -> str | None:
    return f"Showing the worst {CACHE_ROWS} of {count:,}." if count > CACHE_ROWS else None


def _ratio(line: CacheLine) -> float | None:
    return None if line.hit_rate_pct is None else float(line.hit_rate_pct) / 100


async def _cache_reports(request: web.Request, who: Identity, by: str, window: Window) -> list[CacheReport]:
    """The cache report(s) the identity may read: everyone's, their own, or one per team they manage."""
    deps = deps_of(request)
    s = deps.settings
    filters: list[Filters]
    if who.role is Role.DEVELOPER:
        if not who.developer:
            raise forbidden("anyone's cache figures")
        filters = [Filters(developer=who.developer)]
    elif who.role is Role.MANAGER:
        filters = [Filters(team=t) for t in sorted(who.teams)]
    else:
        filters = [Filters()]
    async def one(f: Filters) -> CacheReport:
        async with report_conn(deps) as conn:
            return await cache_report(conn, by=by, window=window, filters=f, flag_below_pct=s.cache_flag_below_pct,
                                      min_requests=s.cache_flag_min_requests)

    return list(await asyncio.gather(*(one(f) for f in filters)))


@page
async def cache(request: web.Request) -> web.StreamResponse:
    who = identity_of(request)
    window = window_of(request)
    by = request.rel_url.query.get("by", "developer")
    if by not in CACHE_BY:
        raise PageError(400, f"by must be one of {', '.join(CACHE_BY)}")
    reports = await _cache_reports(request, who, by, window)
    lines = sorted((ln for r in reports for ln in r.lines), key=_worst_first)
    flagged = sorted((ln for r in reports for ln in r.flagged_sessions), key=_worst_first)
    keep = query_with(request.rel_url.query, format=None, table=None)
    settings = deps_of(request).settings
    label = {"developer": "Developer", "repo": "Repo", "session": "Session"}[by]

    def link(ln: CacheLine) -> str | None:
        if ln.group is None or by == "repo":
            return None
        if by == "developer":
            return f"/developers/{quote(ln.group, safe='')}{keep}"
        return session_href(ln.group, ln.developer)

    tables = [
        Table("flagged", f"Sessions under {settings.cache_flag_below_pct} % (at least "
                         f"{settings.cache_flag_min_requests} requests), worst first", [
            Column("Session"), Column("Developer"), Column("Repo"), Column("Requests", "int"),
            Column("Hit rate", "pct"), Column("Money lost to misses", "usd"),
        ], [[Cell(ln.group, session_href(ln.group or "", ln.developer)),
             Cell(ln.developer), Cell(ln.repo), Cell(ln.requests), Cell(_ratio(ln)), Cell(ln.miss_cost_micros)]
            for ln in flagged[:CACHE_ROWS]], empty="No session is under the line in this period.",
            note=_shown(len(flagged))),
        Table("hit-rates", f"Hit rate per {by}", [
            Column(label), Column("Requests", "int"), Column("Input tokens", "int"), Column("Cached tokens", "int"),
            Column("Hit rate", "pct"), Column("Saved by the cache", "usd"), Column("Money lost to misses", "usd"),
        ], [[Cell(ln.group or "(none)", link(ln)), Cell(ln.requests), Cell(ln.input_tokens), Cell(ln.cached_tokens),
             Cell(_ratio(ln)), Cell(ln.saved_micros), Cell(ln.miss_cost_micros)] for ln in lines[:CACHE_ROWS]],
            note=_shown(len(lines))),
    ]
    if (csv := csv_of(request, tables, "cache")) is not None:
        return csv
    totals = [r.total for r in reports if r.total is not None]
    input_tokens = sum(t.input_tokens for t in totals)
    return render(request, "cache.html", title="Prompt cache", window=window, tables=tables, by=by, by_options=CACHE_BY,
                  hit_rate=(sum(t.cached_tokens for t in totals) / input_tokens) if input_tokens else None,
                  saved=sum(t.saved_micros for t in totals), lost=sum(t.miss_cost_micros for t in totals))
