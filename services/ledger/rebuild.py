"""``spendgate ledger rebuild``: recompute every balance and session from the stored events.

Runs the same fold as the consumer over ``usage_events`` in time order, in one transaction, so
readers see either the old or the rebuilt state. Crossings already written are history and are
kept (they are not sent again).
"""

from __future__ import annotations

import asyncpg

from spendgate.domain.events import UsageRecorded
from spendgate.ledger.consumer import fold_events
from spendgate.store.balances import store as balances
from spendgate.store.usage import store as usage

CHUNK = 5000


async def rebuild(pool: asyncpg.Pool, *, default_timezone: str = "UTC") -> int:
    """Rebuild balances, sessions and session turns; returns the number of events folded."""
    total = 0
    async with pool.acquire() as conn, conn.transaction():
        await usage.lock_events(conn)
        await balances.clear_balances(conn)
        await usage.clear_sessions(conn)
        chunk: list[UsageRecorded] = []
        async for event in usage.events_in_order(conn, prefetch=CHUNK):
            chunk.append(event)
            if len(chunk) >= CHUNK:
                await fold_events(conn, chunk, default_timezone=default_timezone)
                total += len(chunk)
                chunk = []
        if chunk:
            await fold_events(conn, chunk, default_timezone=default_timezone)
            total += len(chunk)
    return total
