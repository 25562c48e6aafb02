"""Usage events (the facts) and the sessions and turns folded from them, and every read of them.

The ledger inserts events idempotently on ``event_id`` and adds session totals inside its batch
transaction (the writes take the caller's connection). The reads are the reports' (chargeback, cache,
session drill-down, policy dry-run), the alerter's and the forecaster's.
"""

from __future__ import annotations

import operator
from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Literal, NamedTuple, Protocol

import asyncpg

from spendgate.core.db import Conn, Queryable
from spendgate.domain.alerts import SessionLine, scope_name
from spendgate.domain.enforcement.scopes import split_scope
from spendgate.domain.events import UnitPrices, UsageRecorded
from spendgate.domain.usage import StoredUsage
from spendgate.store.usage.filters import UsageFilter, group_by, group_owner

# -- writes: the ledger ---------------------------------------------------------------------------------

_EVENT_COLUMNS: tuple[tuple[str, str], ...] = (
    ("event_id", "uuid"), ("occurred_at", "timestamptz"), ("proxy_instance", "text"), ("key_id", "text"),
    ("developer", "text"), ("team", "text"), ("cost_center", "text"), ("session_id", "text"),
    ("turn_id", "text"), ("repo", "text"), ("client", "text"), ("endpoint", "text"),
    ("model_requested", "text"), ("model_used", "text"), ("route_reason", "text"), ("stage", "text"),
    ("status", "text"), ("http_status", "int4"), ("input_tokens", "int8"), ("cached_tokens", "int8"),
    ("output_tokens", "int8"), ("reasoning_tokens", "int8"), ("usage_source", "text"),
    ("input_price_micros", "int8"), ("cached_price_micros", "int8"), ("output_price_micros", "int8"),
    ("price_fallback", "bool"), ("cost_micros", "int8"), ("retry", "bool"), ("latency_ms", "int4"),
    ("ttfb_ms", "int4"), ("upstream_request_id", "text"), ("refusal_reason", "text"),
    ("stream", "bool"), ("intent_estimate", "bool"), ("cache_write_5m_tokens", "int8"),
    ("cache_write_1h_tokens", "int8"), ("cache_write_5m_price_micros", "int8"), ("cache_write_1h_price_micros", "int8"),
    ("upstream", "text"), ("tool_outputs", "int4"), ("tool_failures", "int4"), ("final_message", "bool"),
    ("policy_version", "text"), ("routing_rule", "text"), ("experiment_arm", "text"),
)
_PRICE_FIELDS = {
    "input_price_micros": "input_micros", "cached_price_micros": "cached_input_micros",
    "output_price_micros": "output_micros", "price_fallback": "fallback",
    "cache_write_5m_price_micros": "cache_write_5m_micros", "cache_write_1h_price_micros": "cache_write_1h_micros",
}
_INSERT_EVENTS = (
    f"INSERT INTO usage_events ({', '.join(c for c, _ in _EVENT_COLUMNS)}) "
    f"SELECT * FROM unnest({', '.join(f'${i}::{t}[]' for i, (_, t) in enumerate(_EVENT_COLUMNS, 1))}) "
    "ON CONFLICT (event_id) DO NOTHING RETURNING event_id"
)


class SessionIncrement(Protocol):
    """What a batch of events adds to one session (the ledger fold's ``SessionDelta`` is one). A session is
    keyed by (developer, session id): the id is a client-sent label, the developer comes from the key."""

    @property
    def developer(self) -> str: ...

    @property
    def session_id(self) -> str: ...

    @property
    def first(self) -> UsageRecorded: ...

    @property
    def first_at(self) -> datetime: ...

    @property
    def last_at(self) -> datetime: ...

    @property
    def repo(self) -> str | None: ...

    @property
    def requests(self) -> int: ...

    @property
    def input_tokens(self) -> int: ...

    @property
    def cached_tokens(self) -> int: ...

    @property
    def output_tokens(self) -> int: ...

    @property
    def reasoning_tokens(self) -> int: ...

    @property
    def cost_micros(self) -> int: ...

    @property
    def retries(self) -> int: ...

    @property
    def retry_cost_micros(self) -> int: ...

    @property
    def downgraded(self) -> int: ...

    @property
    def turn_ids(self) -> Collection[str]: ...


_event_row = operator.attrgetter(*(f"prices.{_PRICE_FIELDS[c]}" if c in _PRICE_FIELDS else c
                                   for c, _ in _EVENT_COLUMNS))
"""An event's row in :data:`_EVENT_COLUMNS` order, read in one C call (the fold stores every event)."""


async def insert_events(conn: Queryable, events: Sequence[UsageRecorded]) -> list[UsageRecorded]:
    """Insert events idempotently; returns only those not stored before (in input order).

    The ids already stored are looked up first and the rest are written with COPY, about half the cost of
    an ``INSERT … ON CONFLICT`` per event. Another ledger may store one of them in between (a consumer
    group rebalancing, ``ledger rebuild``): the COPY then fails on the primary key inside a savepoint, and
    the batch is written again with ``ON CONFLICT DO NOTHING``, which the key keeps exact either way.
    """
    if not events:
        return []
    if isinstance(conn, asyncpg.Pool):
        async with conn.acquire() as c:
            return await insert_events(c, events)
    unique: dict[str, UsageRecorded] = {}
    for e in events:
        unique.setdefault(e.event_id, e)
    stored = {str(r[0]) for r in await conn.fetch(
        "SELECT event_id FROM usage_events WHERE event_id = ANY($1::uuid[])", list(unique))}
    batch = [e for e in unique.values() if e.event_id not in stored]
    if not batch:
        return []
    records = [_event_row(e) for e in batch]
    try:
        async with conn.transaction():
            await conn.copy_records_to_table("usage_events", records=records,
                                             columns=[c for c, _ in _EVENT_COLUMNS])
        return batch
    except asyncpg.UniqueViolationError:
        rows = await conn.fetch(_INSERT_EVENTS, *(list(column) for column in zip(*records, strict=True)))
    inserted = {str(r["event_id"]) for r in rows}
    return [e for e in batch if e.event_id in inserted]


async def _insert_turns(conn: Queryable,
                        sessions: Mapping[tuple[str, str], SessionIncrement]) -> dict[tuple[str, str], int]:
    """Record (developer, session, turn) triples; returns per (developer, session) how many turns are new."""
    triples = sorted((s.developer, s.session_id, t) for s in sessions.values() for t in s.turn_ids)
    if not triples:
        return {}
    rows = await conn.fetch(
        """INSERT INTO session_turns (developer, session_id, turn_id)
           SELECT * FROM unnest($1::text[], $2::text[], $3::text[])
           ON CONFLICT DO NOTHING RETURNING developer, session_id""",
        [t[0] for t in triples], [t[1] for t in triples], [t[2] for t in triples],
    )
    new: dict[tuple[str, str], int] = {}
    for r in rows:
        key = (r["developer"], r["session_id"])
        new[key] = new.get(key, 0) + 1
    return new


async def apply_sessions(conn: Queryable, sessions: Mapping[tuple[str, str], SessionIncrement]) -> None:
    """Add the increments to their sessions, keyed by (developer, session id); a turn counts once however
    often its events arrive."""
    if not sessions:
        return
    new_turns = await _insert_turns(conn, sessions)
    # Binary COPY into a per-connection staging table, then one set-based upsert: nineteen array
    # parameters cost the driver a Python-level type check per element (a third of the fold's
    # database calls in benchmarks/ledger_fold.py); COPY encodes the same rows in C.
    records = [
        (s.developer, s.session_id, s.first.key_id, s.first.team, s.first.cost_center, s.repo, s.first.client,
         s.first_at, s.last_at, new_turns.get((s.developer, s.session_id), 0), s.requests, s.input_tokens,
         s.cached_tokens, s.output_tokens, s.reasoning_tokens, s.cost_micros, s.retries, s.retry_cost_micros,
         s.downgraded)
        for s in sessions.values()]
    if isinstance(conn, asyncpg.Pool):
        async with conn.acquire() as c:
            await _upsert_sessions(c, records)
    else:
        await _upsert_sessions(conn, records)


async def _upsert_sessions(conn: Conn, records: Sequence[tuple[object, ...]]) -> None:
    # In a transaction of its own when the caller has none: the staging rows go at each commit.
    async with conn.transaction():
        await conn.execute(_SESSIONS_STAGING)
        await conn.copy_records_to_table("fold_sessions", columns=_SESSION_COLUMNS, records=records)
        await conn.execute(_SESSIONS_FROM_STAGING)


_SESSION_COLUMNS = ["developer", "session_id", "key_id", "team", "cost_center", "repo", "client", "first_at",
                    "last_at", "turns", "requests", "input_tokens", "cached_tokens", "output_tokens",
                    "reasoning_tokens", "cost_micros", "retries", "retry_cost_micros", "downgraded"]
_SESSIONS_STAGING = """CREATE TEMP TABLE IF NOT EXISTS fold_sessions (LIKE sessions INCLUDING DEFAULTS)
                       ON COMMIT DELETE ROWS"""
"""Where a batch's session increments are copied (one per connection, emptied after each use and at commit;
created again in a transaction that rolled its creation back)."""
_SESSIONS_FROM_STAGING = f"""
    INSERT INTO sessions AS s ({", ".join(_SESSION_COLUMNS)})
    SELECT {", ".join(_SESSION_COLUMNS)} FROM fold_sessions ORDER BY developer, session_id
    ON CONFLICT (developer, session_id) DO UPDATE SET
        repo = COALESCE(s.repo, excluded.repo),
        first_at = LEAST(s.first_at, excluded.first_at),
        last_at = GREATEST(s.last_at, excluded.last_at),
        turns = s.turns + excluded.turns, requests = s.requests + excluded.requests,
        input_tokens = s.input_tokens + excluded.input_tokens,
        cached_tokens = s.cached_tokens + excluded.cached_tokens,
        output_tokens = s.output_tokens + excluded.output_tokens,
        reasoning_tokens = s.reasoning_tokens + excluded.reasoning_tokens,
        cost_micros = s.cost_micros + excluded.cost_micros, retries = s.retries + excluded.retries,
        retry_cost_micros = s.retry_cost_micros + excluded.retry_cost_micros,
        downgraded = s.downgraded + excluded.downgraded;
    DELETE FROM fold_sessions"""
"""One round trip: the upsert in (developer, session) order, the same lock order across ledgers, then the
staging rows go (a bisected batch uses the table again in the same transaction)."""


# -- rebuild: every stored event again ------------------------------------------------------------------


async def lock_events(conn: Conn) -> None:
    """Hold off new events until the caller's transaction ends (``ledger rebuild``)."""
    await conn.execute("LOCK TABLE usage_events IN SHARE MODE")


async def clear_sessions(conn: Queryable) -> None:
    """Empty sessions and their turns (``ledger rebuild``, before folding every event again)."""
    await conn.execute("TRUNCATE sessions, session_turns")


def _event(r: asyncpg.Record) -> UsageRecorded:
    d = dict(r)
    prices = UnitPrices(input_micros=d.pop("input_price_micros"), cached_input_micros=d.pop("cached_price_micros"),
                        output_micros=d.pop("output_price_micros"), fallback=d.pop("price_fallback"),
                        cache_write_5m_micros=d.pop("cache_write_5m_price_micros"),
                        cache_write_1h_micros=d.pop("cache_write_1h_price_micros"))
    d.pop("folded_at", None)
    d["event_id"] = str(d["event_id"])
    return UsageRecorded(prices=prices, **d)


async def events_in_order(conn: Conn, *, prefetch: int) -> AsyncIterator[UsageRecorded]:
    """Every stored event in time order (a cursor: call inside a transaction)."""
    cursor = conn.cursor("SELECT * FROM usage_events ORDER BY occurred_at, event_id", prefetch=prefetch)
    async for row in cursor:
        yield _event(row)


async def stored_event_ids(db: Queryable, event_ids: Sequence[str]) -> list[str]:
    """Which of ``event_ids`` are stored (folded: an event is stored in the transaction that folds it)."""
    rows = await db.fetch("SELECT event_id::text AS id FROM usage_events WHERE event_id = ANY($1::uuid[])",
                          list(event_ids))
    return [r["id"] for r in rows]


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


# -- policy dry-run: the window's events, and the spend before it ----------------------------------------


class QuarterHourSpend(NamedTuple):
    key_id: str
    developer: str
    team: str
    at: datetime
    spent_micros: int
    cost_center: str = ""
    model_used: str = ""


async def quarter_hour_spend(db: Queryable, start: datetime, end: datetime,
                             team: str | None = None) -> list[QuarterHourSpend]:
    """Spend in ``[start, end)`` (of ``team`` if given) per key, developer, team, cost center, model used and
    quarter hour (binned from the epoch)."""
    rows = await db.fetch(
        """SELECT key_id, developer, team, date_bin('15 minutes', occurred_at, 'epoch') AS at,
                  sum(cost_micros)::bigint AS spent, cost_center, model_used
           FROM usage_events WHERE occurred_at >= $1 AND occurred_at < $2 AND ($3::text IS NULL OR team = $3)
           GROUP BY 1, 2, 3, 4, 6, 7""",
        start, end, team)
    return [QuarterHourSpend(*r) for r in rows]


_REPLAY_COLUMNS = ("event_id::text, occurred_at, key_id, developer, team, session_id, turn_id, model_requested, "
                   "model_used, route_reason, stage, status, input_tokens, cached_tokens, output_tokens, "
                   "cost_micros, retry, cache_write_5m_tokens, cache_write_1h_tokens, cost_center")


async def replay_batches(conn: Conn, start: datetime, end: datetime, *, batch_rows: int,
                         team: str | None = None) -> AsyncIterator[list[StoredUsage]]:
    """The events of ``[start, end)`` (of ``team`` if given) in time order, ``batch_rows`` at a time (a cursor:
    inside a transaction)."""
    if team is None:
        cursor = await conn.cursor(
            f"SELECT {_REPLAY_COLUMNS} FROM usage_events WHERE occurred_at >= $1 AND occurred_at < $2 "
            "ORDER BY occurred_at, event_id", start, end)
    else:
        cursor = await conn.cursor(
            f"SELECT {_REPLAY_COLUMNS} FROM usage_events WHERE team = $3 AND occurred_at >= $1 AND occurred_at < $2 "
            "ORDER BY occurred_at, event_id", start, end, team)
    while batch := await cursor.fetch(batch_rows):
        yield [StoredUsage(*r) for r in batch]


# -- the alerter and the forecaster -----------------------------------------------------------------------

_SCOPE_COLUMN = {"key": "key_id", "developer": "developer", "team": "team", "cost_center": "cost_center"}


async def top_sessions(db: Queryable, scope: str, start: datetime, end: datetime, limit: int) -> list[SessionLine]:
    """The costliest sessions of ``scope`` (every session for ``org`` or another kind) in ``[start, end)``,
    each one developer's (two developers' keys that sent the same session id are two lines)."""
    kind, name = scope_name(scope)
    column = _SCOPE_COLUMN.get(kind)
    where = f"AND {column} = $4" if column else "AND $4::text IS NULL"
    rows = await db.fetch(
        f"""SELECT session_id, developer, max(repo) AS repo, sum(cost_micros)::bigint AS cost, count(*) AS n
            FROM usage_events
            WHERE occurred_at >= $1 AND occurred_at < $2 AND session_id IS NOT NULL {where}
            GROUP BY developer, session_id ORDER BY cost DESC, session_id, developer LIMIT $3""",
        start, end, limit, name if column else None,
    )
    return [SessionLine(session_id=r["session_id"], developer=r["developer"], repo=r["repo"],
                        cost_micros=r["cost"], requests=r["n"]) for r in rows]


def _scope_condition(scope: str, param: int) -> tuple[str, list[str]]:
    """SQL condition selecting a scope's events (of a per-model scope: those its model served), and its
    parameters; ValueError for a scope of no known kind."""
    base, model = split_scope(scope)
    if model is not None:
        condition, params = _scope_condition(base, param)
        return f"{condition} AND model_used = ${param + len(params)}", [*params, model]
    kind, _, name = scope.partition(":")
    column = _SCOPE_COLUMN.get(kind)
    if scope == "org":
        return "TRUE", []
    if column is None or not name:
        raise ValueError(f"unknown scope {scope!r}: use key:<id>, developer:<name>, team:<name>, "
                         "cost_center:<name> or org")
    return f"{column} = ${param}", [name]


async def scope_spend(db: Queryable, scope: str, starts_at: datetime, ends_at: datetime) -> tuple[int, int]:
    """What ``scope`` (a per-model scope: its model) spent over events in ``[starts_at, ends_at)``, and its
    requests (refused ones are not requests): a balance counted afresh from the events."""
    condition, params = _scope_condition(scope, 3)
    row = await db.fetchrow(
        f"""SELECT COALESCE(sum(cost_micros), 0)::bigint AS spent, count(*) FILTER (WHERE status <> 'refused') AS n
            FROM usage_events WHERE occurred_at >= $1 AND occurred_at < $2 AND {condition}""",
        starts_at, ends_at, *params,
    )
    assert row is not None
    return int(row["spent"]), int(row["n"])


async def daily_spend(db: Queryable, scope: str, timezone: str, starts_at: datetime,
                      ends_at: datetime) -> list[tuple[date, int]]:
    """Spend of ``scope`` per local day of ``timezone``, over events in ``[starts_at, ends_at)``."""
    condition, params = _scope_condition(scope, 4)
    rows = await db.fetch(
        f"""SELECT (occurred_at AT TIME ZONE $1)::date AS day, sum(cost_micros)::bigint AS spent
            FROM usage_events
            WHERE occurred_at >= $2 AND occurred_at < $3 AND {condition}
            GROUP BY 1""",
        timezone, starts_at, ends_at, *params,
    )
    return [(r["day"], int(r["spent"])) for r in rows]


class DeveloperTrend(NamedTuple):
    developer: str
    recent_micros: int
    before_micros: int


async def developer_trends(db: Queryable, team: str, *, begin: datetime, split: datetime, end: datetime,
                           limit: int) -> list[DeveloperTrend]:
    """The team's developers by how much more they spent in ``[split, end)`` than in ``[begin, split)``."""
    rows = await db.fetch(
        """SELECT developer, recent, before FROM (
               SELECT developer,
                      COALESCE(sum(cost_micros) FILTER (WHERE occurred_at >= $2), 0)::bigint AS recent,
                      COALESCE(sum(cost_micros) FILTER (WHERE occurred_at < $2), 0)::bigint AS before
               FROM usage_events WHERE team = $1 AND occurred_at >= $3 AND occurred_at < $4
               GROUP BY developer) AS d
           ORDER BY recent - before DESC, developer LIMIT $5""",
        team, split, begin, end, limit,
    )
    return [DeveloperTrend(r["developer"], int(r["recent"]), int(r["before"])) for r in rows]


class SessionSpend(NamedTuple):
    session_id: str
    developer: str
    repo: str | None
    cost_micros: int
    requests: int


async def team_sessions(db: Queryable, team: str, *, start: datetime, end: datetime,
                        limit: int) -> list[SessionSpend]:
    """The team's costliest sessions in ``[start, end)``, each one developer's."""
    rows = await db.fetch(
        """SELECT session_id, developer, min(repo) AS repo, sum(cost_micros)::bigint AS cost, count(*) AS requests
           FROM usage_events
           WHERE team = $1 AND session_id IS NOT NULL AND occurred_at >= $2 AND occurred_at < $3
           GROUP BY developer, session_id ORDER BY cost DESC, session_id, developer LIMIT $4""",
        team, start, end, limit,
    )
    return [SessionSpend(r["session_id"], r["developer"], r["repo"], int(r["cost"]), int(r["requests"]))
            for r in rows]


# -- reads: reconciliation with the provider's bill -----------------------------------------------------

class DailyModelUsage(NamedTuple):
    """What the ledger counted for one UTC day, model and endpoint (reconciliation's side of the bill)."""

    day: date
    model: str
    endpoint: str
    upstream: str | None
    """The upstream that served them (the pool's name, ``usage_events.upstream``); None for events that
    name none (recorded before the pool, the Anthropic routes, no upstream reached)."""
    requests: int
    input_tokens: int
    output_tokens: int
    cost_micros: int


async def daily_model_usage(db: Queryable, start: date, end: date) -> list[DailyModelUsage]:
    """Requests (refusals left out), tokens and cost per UTC day, model used, endpoint and upstream,
    ``start`` to ``end`` inclusive."""
    rows = await db.fetch(
        """SELECT (occurred_at AT TIME ZONE 'UTC')::date AS day, model_used, endpoint, upstream,
                  count(*) FILTER (WHERE status <> 'refused'), sum(input_tokens)::bigint,
                  sum(output_tokens)::bigint, sum(cost_micros)::bigint
           FROM usage_events
           WHERE occurred_at >= ($1::date)::timestamp AT TIME ZONE 'UTC'
             AND occurred_at < ($2::date + 1)::timestamp AT TIME ZONE 'UTC'
           GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4""", start, end)
    return [DailyModelUsage(*r) for r in rows]


async def retry_spend(db: Queryable, start: datetime, end: datetime, team: str | None) -> dict[str, tuple[int, int]]:
    """team → (retry requests, their cost) from ``start`` to ``end`` (``policy suggest``'s retry caps)."""
    rows = await db.fetch(
        """SELECT team, count(*) AS n, coalesce(sum(cost_micros), 0)::bigint AS cost FROM usage_events
           WHERE retry AND occurred_at >= $1 AND occurred_at < $2 AND ($3::text IS NULL OR team = $3)
             AND team IS NOT NULL GROUP BY team""", start, end, team)
    return {r["team"]: (r["n"], r["cost"]) for r in rows}
