"""The usage store's PostgreSQL adapter: usage events (the facts) and the sessions and turns folded from
them, and every read of them (:class:`~spendgate.store.usage.port.UsageStore` takes this module whole).

Here: the writes. The ledger inserts events idempotently on ``event_id`` and adds session totals inside
its batch transaction (the writes take the caller's connection); ``ledger rebuild`` reads every event
again. The reads live beside this module and are part of the adapter: :mod:`.reports` (chargeback,
cache, session drill-down: the reports and the console) and :mod:`.reads` (the policy dry-run, the
alerter, the forecaster, the reconciliation).
"""

from __future__ import annotations

import operator
from collections.abc import AsyncIterator, Collection, Container, Mapping, Sequence
from datetime import datetime
from typing import Protocol

import asyncpg

from spendgate.core.db import Conn, Queryable
from spendgate.domain.events import UnitPrices, UsageRecorded
from spendgate.store.usage.reads import (
    DailyModelUsage,
    DeveloperTrend,
    QuarterHourSpend,
    SessionSpend,
    daily_model_usage,
    daily_spend,
    developer_trends,
    quarter_hour_spend,
    replay_batches,
    retry_spend,
    scope_spend,
    team_sessions,
    top_sessions,
)
from spendgate.store.usage.reports import (
    CacheRow,
    ChargebackRow,
    DowngradedRequest,
    FoldedSession,
    SessionCacheRow,
    SessionRequest,
    SessionTotals,
    cache_rows,
    chargeback_rows,
    downgraded_requests,
    folded_sessions,
    session_bounds,
    session_cache_totals,
    session_developers,
    session_miss_costs,
    session_requests,
    session_totals,
    sessions_under,
)

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


TurnKey = tuple[str, str, str]
"""A turn as session_turns keys it: (developer, session id, turn id)."""


async def _insert_turns(conn: Queryable, sessions: Mapping[tuple[str, str], SessionIncrement],
                        stored: Container[TurnKey]) -> dict[tuple[str, str], int]:
    """Record (developer, session, turn) triples; returns per (developer, session) how many turns are new.
    Triples in ``stored`` are known to be recorded already and are not sent."""
    triples = sorted(k for s in sessions.values() for t in s.turn_ids
                     if (k := (s.developer, s.session_id, t)) not in stored)
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


async def apply_sessions(conn: Queryable, sessions: Mapping[tuple[str, str], SessionIncrement], *,
                         stored_turns: Container[TurnKey] = ()) -> None:
    """Add the increments to their sessions, keyed by (developer, session id); a turn counts once however
    often its events arrive. ``stored_turns``: turns the caller knows are recorded in a committed
    transaction (a turn's requests come in several batches): they count as not new without asking the
    database."""
    if not sessions:
        return
    new_turns = await _insert_turns(conn, sessions, stored_turns)
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


__all__ = [
    "CacheRow",
    "ChargebackRow",
    "DailyModelUsage",
    "DeveloperTrend",
    "DowngradedRequest",
    "FoldedSession",
    "QuarterHourSpend",
    "SessionCacheRow",
    "SessionIncrement",
    "SessionRequest",
    "SessionSpend",
    "SessionTotals",
    "TurnKey",
    "apply_sessions",
    "cache_rows",
    "chargeback_rows",
    "clear_sessions",
    "daily_model_usage",
    "daily_spend",
    "developer_trends",
    "downgraded_requests",
    "events_in_order",
    "folded_sessions",
    "insert_events",
    "lock_events",
    "quarter_hour_spend",
    "replay_batches",
    "retry_spend",
    "scope_spend",
    "session_bounds",
    "session_cache_totals",
    "session_developers",
    "session_miss_costs",
    "session_requests",
    "session_totals",
    "sessions_under",
    "stored_event_ids",
    "team_sessions",
    "top_sessions",
]
