"""Pending spend shared between proxies: each publishes its reserved + unsettled sums per balance to
``enforcement_pending`` and adds its peers' sums to the ledger's balances.

The unsettled events behind a sum are listed in ``enforcement_unsettled`` in the same transaction, so a
peer reading the balances subtracts, in the same snapshot, those the ledger has already folded: between
the fold and the owner's next publication they would otherwise count twice (in the balance and in the
sum), which paused developers early when two proxies shared a budget near its line.

Without this a proxy sees another proxy's spend only once the ledger has folded it, so every peer's
in-flight requests (Codex streams last seconds to minutes) would be invisible to it. With it, a peer's
admissions are invisible for at most one poll interval of each side. A proxy that stops heart-beating
for ``STALE_AFTER_S`` is ignored (its reservations would have expired; its events are folded from the
spool by the ledger) and its rows are swept. A proxy that stops cleanly withdraws its rows only when all
it served is folded; otherwise it leaves them, so its last requests keep counting until the ledger has
folded them (or the rows go stale).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import asyncpg

from spendgate.domain.constants import PG_NOTIFY_PENDING
from spendgate.domain.enforcement.balances import BalanceKey
from spendgate.store.balances import store as balances
from spendgate.store.usage.store import stored_event_ids

"""NOTIFY channel ``PG_NOTIFY_PENDING``: a proxy published changed pending sums (payload: its instance id), or
announces that it runs (payload ``hello:<instance>`` when it starts, ``present:<instance>`` in answer to a hello
and with every heartbeat): a proxy publishes at once after each request only while it knows a peer runs."""
STALE_AFTER_S = 30.0
HEARTBEAT_S = 5.0
HELLO, PRESENT = "hello:", "present:"
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
        """Load every live peer's pending sums, less their events already folded (call inside the view's
        snapshot, the one that reads the balances)."""
        rows = await balances.peer_pending(conn, self.instance, stale_after_s=STALE_AFTER_S)
        folded = await self.folded(conn) if rows else {}  # alone: no peer sum to correct, no more queries
        others = {key: pending - folded.get(key, 0) for key, pending in rows}
        self.others = {key: pending for key, pending in others.items() if pending > 0}

    async def folded(self, conn: Conn) -> dict[BalanceKey, int]:
        """Per balance, the cost of the events live peers list behind their sums that the ledger has
        folded since (in the balances already, in the peers' sums until they publish again)."""
        listed = await balances.peer_unsettled(conn, self.instance, stale_after_s=STALE_AFTER_S)
        if not listed:
            return {}
        stored = set(await stored_event_ids(conn, [event_id for event_id, _, _ in listed]))
        folded: dict[BalanceKey, int] = {}
        for event_id, keys, cost in listed:
            if event_id in stored:
                for key in keys:
                    folded[key] = folded.get(key, 0) + cost
        return folded

    async def publish(self, conn: Conn, changed: dict[BalanceKey, int], *,
                      listed: Sequence[tuple[str, Sequence[BalanceKey], int]] = (),
                      unlisted: Sequence[str] = ()) -> None:
        """Write this proxy's changed sums (deleting zeros), list the unsettled events newly in them and
        unlist those gone from them, in one statement (:func:`balances.publish_pending`), and every few
        seconds a heartbeat."""
        now = time.monotonic()
        if changed or listed or unlisted:
            ordered = sorted(changed.items(), key=lambda kv: (kv[0].scope, kv[0].period.value, kv[0].period_start))
            await balances.publish_pending(  # in one order: no deadlock with another writer
                conn, self.instance, live=[(k, v) for k, v in ordered if v], gone=[k for k, v in ordered if not v],
                listed=listed, unlisted=unlisted, notify=PG_NOTIFY_PENDING if changed else None)
        if now - self._last_heartbeat >= HEARTBEAT_S:
            async with conn.transaction():
                await self.announce(conn, PRESENT)
                await balances.touch_pending(conn, self.instance)
                await balances.sweep_pending(conn, older_than_s=STALE_AFTER_S * 10)
            self._last_heartbeat = now

    async def announce(self, db: Conn | asyncpg.Pool, kind: str) -> None:
        """Tell the other proxies this one runs (:data:`HELLO` at start, :data:`PRESENT` otherwise)."""
        await db.execute("SELECT pg_notify($1, $2)", PG_NOTIFY_PENDING, kind + self.instance)

    async def withdraw(self, conn: Conn | asyncpg.Pool) -> None:
        """Remove this proxy's rows (on a clean stop)."""
        await balances.withdraw_pending(conn, self.instance)
