"""``spendgate ledger rebuild``: recompute every balance and session from the stored events.

Runs the same fold as the consumer over ``usage_events`` in time order, in one transaction, so
readers see either the old or the rebuilt state. A rebuild recomputes state and notifies nobody: it
writes no threshold crossings. Those already written are history and are kept as they are (not sent
again); a replay finding new ones would judge old spend against today's budgets (a budget that did not
exist then) and alert minutes after the fact. Crossings stay the live paths' to record: the fold, as
new events carry a balance across, and the budget-change evaluation (:mod:`spendgate.ledger.changes`).
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
                await fold_events(conn, chunk, default_timezone=default_timezone, record_crossings=False)
                total += len(chunk)
                chunk = []
        if chunk:
            await fold_events(conn, chunk, default_timezone=default_timezone, record_crossings=False)
            total += len(chunk)
    return total
