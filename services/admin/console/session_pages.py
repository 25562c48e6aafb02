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

from spendgate.admin.console.auth_chain import identity_of
from spendgate.admin.console.identity import Role, may_read_developer
from spendgate.admin.console.pages import (
    PageError,
    deps_of,
    developer_filter,
    forbidden,
    page,
    path_name,
    session_href,
    team_filter,
    text_param,
    window_of,
)
from spendgate.admin.console.spend_pages import hit_rate, session_table
from spendgate.admin.console.tables import Cell, Column, Table, csv_of
from spendgate.admin.console.web import query_with, render
from spendgate.admin.sessions import SessionAmbiguous, SessionNotFound, session_detail
from spendgate.store.usage.reports import (
    SessionCacheRow,
    folded_sessions,
    session_cache_totals,
    session_miss_costs,
    sessions_under,
)

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
        ], [[Cell(r.occurred_at.strftime("%Y-%m-%d %H:%M:%S")), Cell(_short_turn(t.turn_id, session_id)),
             Cell(r.model_requested),
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


def _short_turn(turn_id: str | None, session_id: str) -> str | None:
    """A turn id as the requests table shows it: without the session id it repeats (Codex names turns
    ``<session>-t3``), so the table fits the page; the turns table above has the whole id."""
    if turn_id is not None and turn_id.startswith(session_id + "-") and len(turn_id) > len(session_id) + 1:
        return "…" + turn_id[len(session_id):]
    return turn_id


# -- the prompt cache -------------------------------------------------------------------------------------

CACHE_BY = ("developer", "repo", "session")
CACHE_ROWS = 200
"""The most rows a cache table shows (the worst first); its CSV holds the same rows."""


def _ratio(input_tokens: int, cached_tokens: int) -> float | None:
    return cached_tokens / input_tokens if input_tokens > 0 else None


def _shown(shown: int, count: int) -> str | None:
    return f"Showing the worst {shown} of {count:,}." if count > shown else None


@page
async def cache(request: web.Request) -> web.StreamResponse:
    """Hit rates of the sessions active in the period (whole sessions, as the ledger folded them: a month of a
    large organisation's events is too many to read per page view), and the sessions under the flag line with
    what their misses cost, read from their events."""
    who = identity_of(request)
    deps, window = deps_of(request), window_of(request)
    by = request.rel_url.query.get("by", "developer")
    if by not in CACHE_BY:
        raise PageError(400, f"by must be one of {', '.join(CACHE_BY)}")
    if who.role is Role.DEVELOPER and not who.developer:
        raise forbidden("anyone's cache figures")
    reach = {"developers": developer_filter(who), "teams": team_filter(who)}
    s = deps.settings
    totals, (flagged, matching) = await asyncio.gather(
        session_cache_totals(deps.pool, window.starts_at, window.ends_at, by=by, **reach),
        sessions_under(deps.pool, window.starts_at, window.ends_at, below_pct=s.cache_flag_below_pct,
                       min_requests=s.cache_flag_min_requests, limit=CACHE_ROWS, **reach))
    lost = await session_miss_costs(deps.pool, [(f.developer or "", f.group or "") for f in flagged])
    keep = query_with(request.rel_url.query, format=None, table=None)
    label = {"developer": "Developer", "repo": "Repo", "session": "Session"}[by]

    def link(row: SessionCacheRow) -> str | None:
        if row.group is None or by == "repo":
            return None
        if by == "developer":
            return f"/developers/{quote(row.group, safe='')}{keep}"
        return session_href(row.group, row.developer)

    lines = sorted(totals, key=lambda r: (r.input_tokens <= 0, _ratio(r.input_tokens, r.cached_tokens) or 0.0,
                                          -r.input_tokens, r.group or ""))
    tables = [
        Table("flagged", f"Sessions under {s.cache_flag_below_pct} % (at least {s.cache_flag_min_requests} "
                         "requests), worst first", [
            Column("Session"), Column("Developer"), Column("Repo"), Column("Requests", "int"),
            Column("Hit rate", "pct"), Column("Money lost to misses", "usd"),
        ], [[Cell(f.group, session_href(f.group or "", f.developer)), Cell(f.developer), Cell(f.repo),
             Cell(f.requests), Cell(_ratio(f.input_tokens, f.cached_tokens)),
             Cell(lost.get((f.developer or "", f.group or ""), 0))] for f in flagged],
            empty="No session is under the line in this period.", note=_shown(len(flagged), matching)),
        Table("hit-rates", f"Hit rate per {by}", [
            Column(label), Column("Sessions", "int"), Column("Requests", "int"), Column("Input tokens", "int"),
            Column("Cached tokens", "int"), Column("Hit rate", "pct"),
        ], [[Cell(r.group or "(none)", link(r)), Cell(r.sessions), Cell(r.requests), Cell(r.input_tokens),
             Cell(r.cached_tokens), Cell(_ratio(r.input_tokens, r.cached_tokens))] for r in lines[:CACHE_ROWS]],
            note=_shown(CACHE_ROWS, len(lines))),
    ]
    if (csv := csv_of(request, tables, "cache")) is not None:
        return csv
    input_tokens = sum(r.input_tokens for r in totals)
    return render(request, "cache.html", title="Prompt cache", window=window, tables=tables, by=by, by_options=CACHE_BY,
                  hit_rate=_ratio(input_tokens, sum(r.cached_tokens for r in totals)), flagged=matching,
                  lost=sum(lost.values()))
