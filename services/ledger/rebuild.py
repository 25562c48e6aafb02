"""``spendgate ledger rebuild``: recompute every balance and session from the stored events.

Runs the same fold as the consumer over ``usage_events`` in time order, in one transaction, so
readers see either the old or the rebuilt state. Crossings already written are history and are
kept (they are not sent again).
"""

from __future__ import annotations

import asyncpg

from spendgate.domain.events import UnitPrices, UsageRecorded
from spendgate.ledger.consumer import fold_events

CHUNK = 5000


def _event(r: asyncpg.Record) -> UsageRecorded:
    d = dict(r)
    prices = UnitPrices(input_micros=d.pop("input_price_micros"), cached_input_micros=d.pop("cached_price_micros"),
                        output_micros=d.pop("output_price_micros"), fallback=d.pop("price_fallback"))
    d.pop("folded_at", None)
    d["event_id"] = str(d["event_id"])
    return UsageRecorded(prices=prices, **d)


async def rebuild(pool: asyncpg.Pool, *, default_timezone: str = "UTC") -> int:
    """Rebuild balances, sessions and session turns; returns the number of events folded."""
    total = 0
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("LOCK TABLE usage_events IN SHARE MODE")
        await conn.execute("TRUNCATE balances, sessions, session_turns")
        cursor = conn.cursor("SELECT * FROM usage_events ORDER BY occurred_at, event_id", prefetch=CHUNK)
        chunk: list[UsageRecorded] = []
        async for row in cursor:
            chunk.append(_event(row))
            if len(chunk) >= CHUNK:
                await fold_events(conn, chunk, default_timezone=default_timezone)
                total += len(chunk)
                chunk = []
        if chunk:
            await fold_events(conn, chunk, default_timezone=default_timezone)
            total += len(chunk)
    return total
