"""Pending spend shared between proxies: each publishes its reserved + unsettled sums per balance to
``enforcement_pending`` and adds its peers' sums to the ledger's balances.

Without this a proxy sees another proxy's spend only once the ledger has folded it, so every peer's
in-flight requests (Codex streams last seconds to minutes) would be invisible to it. With it, a peer's
admissions are invisible for at most one poll interval of each side. A proxy that stops heart-beating
for ``STALE_AFTER_S`` is ignored (its reservations would have expired; its events are folded from the
spool by the ledger) and its rows are swept.
"""

from __future__ import annotations

import time

import asyncpg

from spendgate.domain.constants import PG_NOTIFY_PENDING
from spendgate.domain.enforcement.balances import BalanceKey
from spendgate.store.balances import store as balances

"""NOTIFY channel: a proxy published changed pending sums (payload: its instance id)."""
STALE_AFTER_S = 30.0
HEARTBEAT_S = 5.0
Conn = asyncpg.Connection | asyncpg.pool.PoolConnectionProxy


class PeerPending:
    def __init__(self, instance: str) -> None:
        self.instance = instance
        self.others: dict[BalanceKey, int] = {}
        self._last_heartbeat = 0.0

    def heartbeat_due(self) -> bool:
        return time.monotonic() - self._last_heartbeat >= HEARTBEAT_S

    def of(self, key: BalanceKey) -> int:
        return self.others.get(key, 0)

    async def read(self, conn: Conn) -> None:
        """Load every live peer's pending sums (call inside the view's snapshot)."""
        rows = await balances.peer_pending(conn, self.instance, stale_after_s=STALE_AFTER_S)
        self.others = {key: pending for key, pending in rows if pending}

    async def publish(self, conn: Conn, changed: dict[BalanceKey, int]) -> None:
        """Write this proxy's changed sums (deleting zeros) and, every few seconds, a heartbeat."""
        now = time.monotonic()
        async with conn.transaction():
            live = [(k, v) for k, v in changed.items() if v]
            gone = [k for k, v in changed.items() if not v]
            if live:
                await balances.put_pending(conn, self.instance, live)
            if gone:
                await balances.drop_pending(conn, self.instance, gone)
            if changed:
                await conn.execute("SELECT pg_notify($1, $2)", PG_NOTIFY_PENDING, self.instance)
            if now - self._last_heartbeat >= HEARTBEAT_S:
                await balances.touch_pending(conn, self.instance)
                await balances.sweep_pending(conn, older_than_s=STALE_AFTER_S * 10)
                self._last_heartbeat = now

    async def withdraw(self, conn: Conn | asyncpg.Pool) -> None:
        """Remove this proxy's rows (on a clean stop)."""
        await balances.withdraw_pending(conn, self.instance)
