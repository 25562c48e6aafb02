"""The usage reads behind the reports and the console: chargeback lines, cache hit rates, and sessions
(their requests, totals, the folded session list and its cache figures). Part of the usage store's
PostgreSQL adapter (:mod:`.store`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, NamedTuple

import asyncpg

from spendgate.core.db import Queryable
from spendgate.store.usage.filters import UsageFilter, group_by, group_owner

# -- reports: chargeback, cache, sessions -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ChargebackRow:
    """One group's totals (or every group's). Names are set when the group has just one."""

    owner: str | None
    """The developer whose session the line is, when the lines are sessions; None otherwise."""
    group: str | None
    developer: str | None
    team: str | None
    cost_center: str | None
    repo: str | None
    first_at: datetime
    last_at: datetime
    sessions: int
    turns: int
    requests: int
    refused: int
    input_tokens: int
    cached_tokens: int
    output_tokens: int
    reasoning_tokens: int
    cost_micros: int
    retries: int
    retry_cost_micros: int
    downgraded: int


_TURNS = """
    SELECT {owner} AS owner, {column} AS grp, developer AS dev, session_id, turn_id,
           min(developer) AS developer_lo, max(developer) AS developer_hi, min(team) AS team_lo,
           max(team) AS team_hi, min(cost_center) AS cost_center_lo, max(cost_center) AS cost_center_hi,
           min(repo) AS repo_lo, max(repo) AS repo_hi, min(occurred_at) AS first_at, max(occurred_at) AS last_at,
           count(*) FILTER (WHERE status <> 'refused') AS requests,
           count(*) FILTER (WHERE status = 'refused') AS refused,
           sum(input_tokens) AS input_tokens, sum(cached_tokens) AS cached_tokens,
           sum(output_tokens) AS output_tokens, sum(reasoning_tokens) AS reasoning_tokens,
           sum(cost_micros) AS cost_micros, count(*) FILTER (WHERE retry) AS retries,
           sum(cost_micros) FILTER (WHERE retry) AS retry_cost_micros,
           count(*) FILTER (WHERE route_reason <> 'requested') AS downgraded
    FROM usage_events WHERE {where} GROUP BY 1, 2, 3, 4, 5
"""
"""First level: one row per (group, developer, session, turn), so the distinct counts below run over turns,
not events. A session (and so a turn) is one developer's: the same client-sent id from two developers' keys
is two sessions. ``owner`` is the developer when the groups are sessions (a line per developer and
session), null otherwise."""

_ONE = "CASE WHEN min({c}_lo) = max({c}_hi) THEN min({c}_lo) END AS {c}"

_LINES = f"""
    WITH t AS ({_TURNS})
    SELECT owner, grp, GROUPING(grp) AS is_total,
           {", ".join(_ONE.format(c=c) for c in ("developer", "team", "cost_center", "repo"))},
           min(first_at) AS first_at, max(last_at) AS last_at,
           count(DISTINCT dev || chr(31) || session_id) AS sessions,
           count(DISTINCT dev || chr(31) || session_id || chr(31) || turn_id) AS turns,
           sum(requests)::bigint AS requests, sum(refused)::bigint AS refused,
           sum(input_tokens)::bigint AS input_tokens, sum(cached_tokens)::bigint AS cached_tokens,
           sum(output_tokens)::bigint AS output_tokens, sum(reasoning_tokens)::bigint AS reasoning_tokens,
           sum(cost_micros)::bigint AS cost_micros, sum(retries)::bigint AS retries,
           coalesce(sum(retry_cost_micros), 0)::bigint AS retry_cost_micros,
           sum(downgraded)::bigint AS downgraded
    FROM t GROUP BY GROUPING SETS ((owner, grp), ())
    ORDER BY is_total, cost_micros DESC, grp NULLS LAST, owner
"""
"""Second level: a line per group plus the total (the empty grouping set), in one pass."""


async def chargeback_rows(db: Queryable, column: str,
                          usage: UsageFilter) -> tuple[list[ChargebackRow], ChargebackRow | None]:
    """A row per value of ``column`` among the filtered events (per developer and session id for
    ``session_id``), costliest first, and the total of them all (None when no event matches)."""
    where, params = usage.where()
    sql = _LINES.replace("{owner}", group_owner(column)).replace("{column}", group_by(column))
    rows = await db.fetch(sql.replace("{where}", where), *params)
    lines = [_chargeback_row(r) for r in rows if not r["is_total"]]
    total = None
    for r in rows:
        if r["is_total"] and r["first_at"] is not None:
            total = _chargeback_row(r)
    return lines, total


def _chargeback_row(r: asyncpg.Record) -> ChargebackRow:
    return ChargebackRow(
        owner=r["owner"], group=r["grp"], developer=r["developer"], team=r["team"], cost_center=r["cost_center"],
        repo=r["repo"],
        first_at=r["first_at"], last_at=r["last_at"], sessions=r["sessions"], turns=r["turns"],
        requests=r["requests"], refused=r["refused"], input_tokens=r["input_tokens"],
        cached_tokens=r["cached_tokens"], output_tokens=r["output_tokens"], reasoning_tokens=r["reasoning_tokens"],
        cost_micros=r["cost_micros"], retries=r["retries"], retry_cost_micros=r["retry_cost_micros"],
        downgraded=r["downgraded"],
    )


class DowngradedRequest(NamedTuple):
    owner: str | None
    """The developer, when the groups are sessions (as :attr:`ChargebackRow.owner`)."""
    group: str | None
    model_requested: str
    input_tokens: int
    cached_tokens: int
    output_tokens: int
    cost_micros: int
    cache_write_5m_tokens: int = 0
    cache_write_1h_tokens: int = 0


async def downgraded_requests(db: Queryable, column: str, usage: UsageFilter) -> list[DowngradedRequest]:
    """The filtered events served by another model than requested, with their group's value of ``column``
    (and, for sessions, its developer)."""
    where, params = usage.where()
    rows = await db.fetch(
        f"SELECT {group_owner(column)} AS owner, {group_by(column)} AS grp, model_requested, input_tokens, "
        "cached_tokens, output_tokens, cost_micros, cache_write_5m_tokens, cache_write_1h_tokens "
        f"FROM usage_events WHERE {where} AND route_reason <> 'requested'", *params)
    return [DowngradedRequest(*r) for r in rows]


CacheLevel = Literal["line", "session", "total"]


@dataclass(frozen=True, slots=True)
class CacheRow:
    """Prompt-cache totals of a group (``line``), of one session (``session``) or of everything (``total``)."""

    level: CacheLevel
    group: str | None
    """The group's value; for a ``session`` row its session id."""
    developer: str | None
    repo: str | None
    requests: int
    input_tokens: int
    cached_tokens: int
    saved_micros: int
    miss_cost_micros: int


_CACHE = """
    WITH e AS (
        SELECT {owner} AS owner, {column} AS grp, developer AS dev, session_id,
               input_price_micros - cached_price_micros AS spread,
               min(developer) AS developer_lo, max(developer) AS developer_hi,
               min(repo) AS repo_lo, max(repo) AS repo_hi,
               count(*) FILTER (WHERE status <> 'refused') AS requests,
               sum(input_tokens) AS input_tokens,
               sum(least(cached_tokens, input_tokens)) AS cached_tokens
        FROM usage_events WHERE {where} GROUP BY 1, 2, 3, 4, 5),
    s AS (
        SELECT owner, grp, dev, session_id, min(developer_lo) AS developer_lo, max(developer_hi) AS developer_hi,
               min(repo_lo) AS repo_lo, max(repo_hi) AS repo_hi, sum(requests) AS requests,
               sum(input_tokens) AS input_tokens, sum(cached_tokens) AS cached_tokens,
               sum(cached_tokens * spread) AS saved, sum((input_tokens - cached_tokens) * spread) AS missed
        FROM e GROUP BY 1, 2, 3, 4)
    SELECT GROUPING(grp, session_id) AS kind, CASE WHEN GROUPING(grp) = 0 THEN grp ELSE session_id END AS grp,
           CASE WHEN min(developer_lo) = max(developer_hi) THEN min(developer_lo) END AS developer,
           CASE WHEN min(repo_lo) = max(repo_hi) THEN min(repo_lo) END AS repo,
           sum(requests)::bigint AS requests, sum(input_tokens)::bigint AS input_tokens,
           sum(cached_tokens)::bigint AS cached_tokens,
           round(sum(saved) / 1000000)::bigint AS saved_micros,
           round(sum(missed) / 1000000)::bigint AS miss_cost_micros
    FROM s GROUP BY GROUPING SETS ((owner, grp), (), (dev, session_id))
"""
"""Per (group, developer, session) first, then lines (kind 1), the total (kind 3) and sessions (kind 2) in
one pass. Tokens are summed per price spread first (integers, cheap) and multiplied by the spread once per
group: the same exact sums as multiplying every event in ``numeric``, at a fraction of the cost (the
console's cache page over 300,000 events). A session is one developer's (its id is a label the client
sends), so the same id from two developers' keys is two session rows, and two lines when grouped by
session. Money is summed exactly in ``numeric`` and rounded once per line."""

_CACHE_LEVELS: dict[int, CacheLevel] = {1: "line", 2: "session", 3: "total"}


async def cache_rows(db: Queryable, column: str, usage: UsageFilter) -> list[CacheRow]:
    """Cache totals per value of ``column``, per (developer, session) and overall (the total only when events
    match)."""
    where, params = usage.where()
    sql = _CACHE.replace("{owner}", group_owner(column)).replace("{column}", group_by(column))
    rows = await db.fetch(sql.replace("{where}", where), *params)
    return [CacheRow(
        level=_CACHE_LEVELS[r["kind"]], group=r["grp"], developer=r["developer"], repo=r["repo"],
        requests=r["requests"], input_tokens=r["input_tokens"], cached_tokens=r["cached_tokens"],
        saved_micros=r["saved_micros"], miss_cost_micros=r["miss_cost_micros"],
    ) for r in rows if r["input_tokens"] is not None]


async def session_developers(db: Queryable, session_id: str) -> list[str]:
    """The developers (from their keys) whose requests named this session id (a client-chosen label)."""
    rows = await db.fetch("SELECT DISTINCT developer FROM usage_events WHERE session_id = $1 ORDER BY 1",
                          session_id)
    return [str(r["developer"]) for r in rows]


async def session_bounds(db: Queryable, session_id: str,
                         developer: str | None = None) -> tuple[datetime, datetime] | None:
    """When the session's first and last events occurred (of ``developer``'s requests, when given);
    None when it has none."""
    row = await db.fetchrow(
        "SELECT min(occurred_at) AS first_at, max(occurred_at) AS last_at FROM usage_events "
        "WHERE session_id = $1 AND ($2::text IS NULL OR developer = $2)", session_id, developer)
    if row is None or row["first_at"] is None:
        return None
    return row["first_at"], row["last_at"]


class SessionRequest(NamedTuple):
    event_id: str
    occurred_at: datetime
    turn_id: str | None
    endpoint: str
    stream: bool | None
    """Whether the client asked for a streamed answer; None for events recorded before ``usage_0002``."""
    model_requested: str
    model_used: str
    route_reason: str
    stage: str
    status: str
    input_tokens: int
    cached_tokens: int
    output_tokens: int
    reasoning_tokens: int
    cost_micros: int
    retry: bool
    intent_estimate: bool
    """Estimated from the request's spooled intent: the proxy died before the request finished."""


async def session_requests(db: Queryable, session_id: str, developer: str | None = None) -> list[SessionRequest]:
    """Every request of the session (of ``developer``, when given) in time order."""
    rows = await db.fetch(
        "SELECT event_id::text, occurred_at, turn_id, endpoint, stream, model_requested, model_used, route_reason, "
        "stage, status, input_tokens, cached_tokens, output_tokens, reasoning_tokens, cost_micros, retry, "
        "intent_estimate FROM usage_events WHERE session_id = $1 AND ($2::text IS NULL OR developer = $2) "
        "ORDER BY occurred_at, event_id", session_id, developer)
    return [SessionRequest(*r) for r in rows]


@dataclass(frozen=True, slots=True)
class SessionTotals:
    repo: str | None
    cost_micros: int
    requests: int
    turns: int
    first_at: datetime
    last_at: datetime


async def session_totals(db: Queryable, developer: str, session_id: str) -> SessionTotals | None:
    """The folded totals of ``developer``'s session; None when the ledger has not folded any of its events."""
    row = await db.fetchrow(
        "SELECT repo, cost_micros, requests, turns, first_at, last_at FROM sessions "
        "WHERE developer = $1 AND session_id = $2", developer, session_id)
    return SessionTotals(*row) if row else None


@dataclass(frozen=True, slots=True)
class FoldedSession:
    """A session's folded totals (the ``sessions`` table), for the console's list of sessions."""

    session_id: str
    developer: str
    team: str
    repo: str | None
    first_at: datetime
    last_at: datetime
    turns: int
    requests: int
    input_tokens: int
    cached_tokens: int
    cost_micros: int
    retries: int
    retry_cost_micros: int
    downgraded: int


def _like(text: str) -> str:
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


async def folded_sessions(db: Queryable, start: datetime, end: datetime, *, developers: Sequence[str] | None = None,
                          teams: Sequence[str] | None = None, search: str | None = None,
                          limit: int) -> tuple[list[FoldedSession], int]:
    """Sessions active in ``[start, end)`` (of ``developers`` / ``teams`` when given; whose id, developer or
    repo contains ``search``), costliest first, at most ``limit``; and how many match in all. Totals are the
    whole session's, as the ledger folded them."""
    rows = await db.fetch(
        """SELECT session_id, developer, team, repo, first_at, last_at, turns, requests, input_tokens,
                  cached_tokens, cost_micros, retries, retry_cost_micros, downgraded, count(*) OVER () AS matching
           FROM sessions
           WHERE last_at >= $1 AND first_at < $2
             AND ($3::text[] IS NULL OR developer = ANY($3)) AND ($4::text[] IS NULL OR team = ANY($4))
             AND ($5::text IS NULL OR session_id ILIKE $5 OR developer ILIKE $5 OR repo ILIKE $5)
           ORDER BY cost_micros DESC, session_id, developer LIMIT $6""",
        start, end, None if developers is None else list(developers), None if teams is None else list(teams),
        None if search is None else _like(search), limit)
    matching = int(rows[0]["matching"]) if rows else 0
    return [FoldedSession(*list(r.values())[:14]) for r in rows], matching


@dataclass(frozen=True, slots=True)
class SessionCacheRow:
    """Folded sessions' prompt-cache tokens, per developer, repo or session (``group``)."""

    group: str | None
    developer: str | None
    """The session's developer (per session), or the group's one developer; None when several."""
    repo: str | None
    sessions: int
    requests: int
    input_tokens: int
    cached_tokens: int


_SESSION_GROUPS = {"developer": "developer", "repo": "repo", "session": "session_id"}
_SESSION_WHERE = """last_at >= $1 AND first_at < $2
    AND ($3::text[] IS NULL OR developer = ANY($3)) AND ($4::text[] IS NULL OR team = ANY($4))"""


async def session_cache_totals(db: Queryable, start: datetime, end: datetime, *, by: str,
                               developers: Sequence[str] | None = None, teams: Sequence[str] | None = None
                               ) -> list[SessionCacheRow]:
    """Cached and input tokens of the sessions active in ``[start, end)`` (whole sessions, as folded), per
    developer, repo or session (a session is one developer's: the developer is part of its group)."""
    column = _SESSION_GROUPS[by]
    owner = "developer" if by == "session" else "NULL::text"
    rows = await db.fetch(
        f"""SELECT {column} AS grp, CASE WHEN min(developer) = max(developer) THEN min(developer) END AS dev,
                   CASE WHEN min(repo) = max(repo) THEN min(repo) END AS repo, count(*) AS sessions,
                   sum(requests)::bigint AS requests, sum(input_tokens)::bigint AS input_tokens,
                   sum(least(cached_tokens, input_tokens))::bigint AS cached_tokens
            FROM sessions WHERE {_SESSION_WHERE} GROUP BY {column}, {owner}""",
        start, end, None if developers is None else list(developers), None if teams is None else list(teams))
    return [SessionCacheRow(r["grp"], r["dev"], r["repo"], r["sessions"], r["requests"], r["input_tokens"],
                            r["cached_tokens"]) for r in rows]


async def sessions_under(db: Queryable, start: datetime, end: datetime, *, below_pct: int, min_requests: int,
                         limit: int, developers: Sequence[str] | None = None,
                         teams: Sequence[str] | None = None) -> tuple[list[SessionCacheRow], int]:
    """Sessions active in ``[start, end)`` with at least ``min_requests`` requests whose whole-session hit
    rate is under ``below_pct`` %, lowest rate first (exact), at most ``limit``; and how many there are."""
    rows = await db.fetch(
        f"""SELECT session_id, developer, repo, requests, input_tokens, least(cached_tokens, input_tokens) AS cached,
                   count(*) OVER () AS matching
            FROM sessions WHERE {_SESSION_WHERE} AND requests >= $5 AND input_tokens > 0
              AND least(cached_tokens, input_tokens) * 100 < $6::bigint * input_tokens
            ORDER BY least(cached_tokens, input_tokens)::numeric / input_tokens, input_tokens DESC, session_id,
                     developer
            LIMIT $7""",
        start, end, None if developers is None else list(developers), None if teams is None else list(teams),
        min_requests, below_pct, limit)
    matching = int(rows[0]["matching"]) if rows else 0
    return [SessionCacheRow(r["session_id"], r["developer"], r["repo"], 1, r["requests"], r["input_tokens"],
                            r["cached"]) for r in rows], matching


async def session_miss_costs(db: Queryable, sessions: Sequence[tuple[str, str]]) -> dict[tuple[str, str], int]:
    """What the cache misses of each (developer, session id) cost beyond cached-input prices, over the whole
    session, in micro-dollars (the cache report's rule: exact in ``numeric``, rounded once per session)."""
    if not sessions:
        return {}
    rows = await db.fetch(
        """SELECT developer, session_id,
                  round(sum((input_tokens - least(cached_tokens, input_tokens))::numeric
                            * (input_price_micros - cached_price_micros)) / 1000000)::bigint AS missed
           FROM usage_events
           WHERE (developer, session_id) IN (SELECT * FROM unnest($1::text[], $2::text[]))
           GROUP BY 1, 2""",
        [d for d, _ in sessions], [s for _, s in sessions])
    return {(r["developer"], r["session_id"]): int(r["missed"]) for r in rows}
