"""The ledger's SQL: idempotent event inserts, balance and session upserts, the crossings outbox,
consumer positions and dead letters. Every function takes a connection inside the caller's
transaction, so one batch commits (or rolls back) as a whole."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime

import asyncpg

from spendgate.core.bus import TopicPartition
from spendgate.core.db import Conn
from spendgate.domain.enforcement.balances import BalanceKey
from spendgate.domain.events import UsageRecorded
from spendgate.domain.ids import uuid7
from spendgate.domain.periods import PeriodKind
from spendgate.ledger.fold import BalanceDelta, Crossing, SessionDelta

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
)
_PRICE_FIELDS = {
    "input_price_micros": "input_micros", "cached_price_micros": "cached_input_micros",
    "output_price_micros": "output_micros", "price_fallback": "fallback",
}
_INSERT_EVENTS = (
    f"INSERT INTO usage_events ({', '.join(c for c, _ in _EVENT_COLUMNS)}) "
    f"SELECT * FROM unnest({', '.join(f'${i}::{t}[]' for i, (_, t) in enumerate(_EVENT_COLUMNS, 1))}) "
    "ON CONFLICT (event_id) DO NOTHING RETURNING event_id"
)


def _column(events: Sequence[UsageRecorded], name: str) -> list[object]:
    if name in _PRICE_FIELDS:
        attr = _PRICE_FIELDS[name]
        return [getattr(e.prices, attr) for e in events]
    return [getattr(e, name) for e in events]


async def insert_events(conn: Conn, events: Sequence[UsageRecorded]) -> list[UsageRecorded]:
    """Insert events idempotently; returns only those not stored before (in input order)."""
    if not events:
        return []
    unique: dict[str, UsageRecorded] = {}
    for e in events:
        unique.setdefault(e.event_id, e)
    batch = list(unique.values())
    rows = await conn.fetch(_INSERT_EVENTS, *(_column(batch, c) for c, _ in _EVENT_COLUMNS))
    inserted = {str(r["event_id"]) for r in rows}
    return [e for e in batch if e.event_id in inserted]


async def load_budgets(
    conn: Conn, scopes: Iterable[str], at: datetime
) -> dict[str, tuple[str, int | None, int | None, list[int]]]:
    """scope → (timezone, daily, monthly, thresholds) with raises active at ``at`` added to both periods."""
    rows = await conn.fetch(
        """SELECT b.scope, b.timezone, b.daily_micros, b.monthly_micros, b.thresholds_pct,
                  COALESCE((SELECT sum(r.amount_micros) FROM budget_raises r
                            WHERE r.scope = b.scope AND r.until > $2), 0) AS raised
           FROM budgets b WHERE b.scope = ANY($1::text[])""",
        list(set(scopes)), at,
    )
    out: dict[str, tuple[str, int | None, int | None, list[int]]] = {}
    for r in rows:
        raised = int(r["raised"])
        daily = r["daily_micros"] + raised if r["daily_micros"] else None
        monthly = r["monthly_micros"] + raised if r["monthly_micros"] else None
        out[r["scope"]] = (r["timezone"], daily, monthly, list(r["thresholds_pct"]))
    return out


async def apply_balances(
    conn: Conn, deltas: Mapping[BalanceKey, BalanceDelta]
) -> dict[BalanceKey, int]:
    """Add the increments; returns each balance's total before this batch."""
    if not deltas:
        return {}
    keys = sorted(deltas)  # one lock order across concurrent ledgers
    rows = await conn.fetch(
        """INSERT INTO balances AS b (scope, period, period_start, spent_micros, requests)
           SELECT * FROM unnest($1::text[], $2::text[], $3::date[], $4::int8[], $5::int8[])
           ON CONFLICT (scope, period, period_start) DO UPDATE
             SET spent_micros = b.spent_micros + excluded.spent_micros,
                 requests = b.requests + excluded.requests,
                 version = nextval('balances_version'), updated_at = now()
           RETURNING scope, period, period_start, spent_micros""",
        [k.scope for k in keys], [k.period.value for k in keys], [k.period_start for k in keys],
        [deltas[k].spent_micros for k in keys], [deltas[k].requests for k in keys],
    )
    before: dict[BalanceKey, int] = {}
    for r in rows:
        key = BalanceKey(r["scope"], PeriodKind(r["period"]), r["period_start"])
        before[key] = r["spent_micros"] - deltas[key].spent_micros
    return before


async def insert_turns(conn: Conn, sessions: Mapping[str, SessionDelta]) -> dict[str, int]:
    """Record (session, turn) pairs; returns per session how many turns are new."""
    pairs = sorted((s.session_id, t) for s in sessions.values() for t in s.turn_ids)
    if not pairs:
        return {}
    rows = await conn.fetch(
        """INSERT INTO session_turns (session_id, turn_id) SELECT * FROM unnest($1::text[], $2::text[])
           ON CONFLICT DO NOTHING RETURNING session_id""",
        [p[0] for p in pairs], [p[1] for p in pairs],
    )
    new: dict[str, int] = {}
    for r in rows:
        new[r["session_id"]] = new.get(r["session_id"], 0) + 1
    return new


async def apply_sessions(conn: Conn, sessions: Mapping[str, SessionDelta]) -> None:
    if not sessions:
        return
    new_turns = await insert_turns(conn, sessions)
    items = [sessions[k] for k in sorted(sessions)]
    await conn.execute(
        """INSERT INTO sessions AS s (session_id, key_id, developer, team, cost_center, repo, client,
               first_at, last_at, turns, requests, input_tokens, cached_tokens, output_tokens,
               reasoning_tokens, cost_micros, retries, retry_cost_micros, downgraded)
           SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
               $7::text[], $8::timestamptz[], $9::timestamptz[], $10::int8[], $11::int8[], $12::int8[],
               $13::int8[], $14::int8[], $15::int8[], $16::int8[], $17::int8[], $18::int8[], $19::int8[])
           ON CONFLICT (session_id) DO UPDATE SET
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
               downgraded = s.downgraded + excluded.downgraded""",
        [s.session_id for s in items], [s.first.key_id for s in items], [s.first.developer for s in items],
        [s.first.team for s in items], [s.first.cost_center for s in items], [s.repo for s in items],
        [s.first.client for s in items], [s.first_at for s in items], [s.last_at for s in items],
        [new_turns.get(s.session_id, 0) for s in items], [s.requests for s in items],
        [s.input_tokens for s in items], [s.cached_tokens for s in items], [s.output_tokens for s in items],
        [s.reasoning_tokens for s in items], [s.cost_micros for s in items], [s.retries for s in items],
        [s.retry_cost_micros for s in items], [s.downgraded for s in items],
    )


async def insert_crossings(conn: Conn, found: Sequence[Crossing]) -> int:
    """Write crossings to the outbox, once per (scope, period, start, threshold); returns how many are new."""
    if not found:
        return 0
    rows = await conn.fetch(
        """INSERT INTO threshold_crossings (crossing_id, scope, period, period_start, threshold_pct, stage,
               spent_micros, budget_micros, resets_at, crossed_at, developer, team, cost_center,
               trigger_event_id)
           SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::date[], $5::int4[], $6::text[],
               $7::int8[], $8::int8[], $9::timestamptz[], $10::timestamptz[], $11::text[], $12::text[],
               $13::text[], $14::uuid[])
           ON CONFLICT (scope, period, period_start, threshold_pct) DO NOTHING RETURNING crossing_id""",
        [uuid7() for _ in found], [c.key.scope for c in found], [c.key.period.value for c in found],
        [c.key.period_start for c in found], [c.threshold_pct for c in found], [c.stage for c in found],
        [c.spent_micros for c in found], [c.budget_micros for c in found], [c.resets_at for c in found],
        [c.trigger.occurred_at for c in found], [_who(c, "developer") for c in found],
        [c.trigger.team for c in found], [c.trigger.cost_center for c in found],
        [c.trigger.event_id for c in found],
    )
    return len(rows)


def _who(c: Crossing, attr: str) -> str | None:
    """The developer is named only on scopes that belong to one developer."""
    if c.key.scope.startswith(("key:", "developer:")):
        return str(getattr(c.trigger, attr))
    return None


async def load_positions(
    conn: Conn | asyncpg.Pool, consumer: str, partitions: Sequence[TopicPartition]
) -> dict[TopicPartition, int]:
    rows = await conn.fetch(
        "SELECT topic, partition, next_offset FROM consumer_positions WHERE consumer = $1",
        consumer,
    )
    wanted = set(partitions)
    found = {TopicPartition(r["topic"], r["partition"]): int(r["next_offset"]) for r in rows}
    return {tp: o for tp, o in found.items() if tp in wanted}


async def save_positions(conn: Conn, consumer: str, offsets: Mapping[TopicPartition, int]) -> None:
    items = sorted(offsets.items())
    await conn.execute(
        """INSERT INTO consumer_positions (consumer, topic, partition, next_offset)
           SELECT $1, t, p, o FROM unnest($2::text[], $3::int4[], $4::int8[]) AS x(t, p, o)
           ON CONFLICT (consumer, topic, partition) DO UPDATE
             SET next_offset = GREATEST(consumer_positions.next_offset, excluded.next_offset)""",
        consumer, [tp.topic for tp, _ in items], [tp.partition for tp, _ in items], [o for _, o in items],
    )


async def dead_letter(
    conn: Conn, consumer: str, tp: TopicPartition, offset: int, reason: str, payload: bytes
) -> None:
    await conn.execute(
        """INSERT INTO dead_letters (consumer, topic, partition, "offset", reason, payload)
           VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING""",
        consumer, tp.topic, tp.partition, offset, reason, payload,
    )
