"""The proxy's in-memory view of virtual keys, kept current by version.

Loaded whole at start; afterwards only keys whose ``version`` is near or above the highest seen are
read (with an overlap, since sequence values can commit out of order), and everything once a minute.
A LISTEN on :data:`PG_NOTIFY_CONFIG` wakes the refresh at once; a poll is the safety net (every
:data:`LISTENING_POLL_S` while the listening connection is up, every :data:`POLL_INTERVAL_S` while it is
gone), so a revoked key is refused within a second either way. A failed
refresh raises: the supervisor restarts the loop with backoff, and the cached keys stay in use.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import asyncpg

from spendgate.core.db import DATABASE_TROUBLE
from spendgate.core.logs import get_logger
from spendgate.core.supervisor import Beat, no_beat
from spendgate.domain.constants import PG_NOTIFY_CONFIG
from spendgate.store.keys.store import VirtualKey, hash_secret, keys_changed_since, looks_like_key

log = get_logger(__name__)

POLL_INTERVAL_S = 0.25
LISTENING_POLL_S = 1.0
"""While notifications arrive, polling four times a second only cost every request's neighbours CPU."""
VERSION_OVERLAP = 1_000
"""Versions come from a sequence, so a change can commit after a higher one was already read; each
refresh re-reads this many versions below the highest seen (applying a change twice is harmless)."""
FULL_RELOAD_S = 60.0


class KeyCache:
    def __init__(self, pool: asyncpg.Pool, dsn: str, *, poll_interval_s: float = POLL_INTERVAL_S) -> None:
        self.pool, self.dsn, self.poll_interval_s = pool, dsn, poll_interval_s
        self.version = -1
        self._by_hash: dict[bytes, VirtualKey] = {}
        self._wake = asyncio.Event()
        self._listener: asyncpg.Connection | None = None
        self._reloaded_at: float | None = None

    def lookup(self, secret: str) -> VirtualKey | None:
        """The active key for a presented secret, or None (unknown or revoked)."""
        if not looks_like_key(secret):
            return None
        return self._by_hash.get(hash_secret(secret))

    def __len__(self) -> int:
        return len(self._by_hash)

    async def refresh(self) -> int:
        """Apply every change newer than what is cached; returns how many keys changed."""
        changes = await keys_changed_since(self.pool, self.version - VERSION_OVERLAP)
        for change in changes:
            if change.key.active:
                self._by_hash[change.key_hash] = change.key
            else:
                self._by_hash.pop(change.key_hash, None)
            self.version = max(self.version, change.key.version)
        return len(changes)

    async def reload(self) -> None:
        """Rebuild the cache from every key (the safety net behind the version feed)."""
        changes = await keys_changed_since(self.pool, -1)
        self._by_hash = {c.key_hash: c.key for c in changes if c.key.active}
        self.version = max((c.key.version for c in changes), default=-1)

    async def run(self, stop: asyncio.Event, beat: Beat = no_beat) -> None:
        """Keep the cache current until ``stop`` is set."""
        stopping = asyncio.create_task(stop.wait())
        loop = asyncio.get_running_loop()
        if self._reloaded_at is None:
            self._reloaded_at = loop.time()
        try:
            while not stop.is_set():
                if self._listener is None or self._listener.is_closed():
                    await self._listen()
                waker = asyncio.create_task(self._wake.wait())
                listening = self._listener is not None and not self._listener.is_closed()
                await asyncio.wait({waker, stopping}, return_when=asyncio.FIRST_COMPLETED,
                                   timeout=max(self.poll_interval_s, LISTENING_POLL_S) if listening
                                   else self.poll_interval_s)
                waker.cancel()
                self._wake.clear()
                if stop.is_set():
                    break
                if loop.time() - self._reloaded_at > FULL_RELOAD_S:
                    await self.reload()
                    self._reloaded_at = loop.time()
                else:
                    await self.refresh()
                beat()
        finally:
            stopping.cancel()
            await self._unlisten()

    async def _listen(self) -> None:
        try:
            conn = await asyncio.wait_for(asyncpg.connect(self.dsn), 5)
            await conn.add_listener(PG_NOTIFY_CONFIG, self._on_notify)
        except DATABASE_TROUBLE as exc:
            log.warning("cannot LISTEN for key changes; polling only", error=str(exc))
            return
        self._listener = conn

    async def _unlisten(self) -> None:
        conn, self._listener = self._listener, None
        if conn is not None:
            with contextlib.suppress(*DATABASE_TROUBLE):
                await conn.close(timeout=2)

    def _on_notify(self, _conn: Any, _pid: int, _channel: str, _payload: object) -> None:
        self._wake.set()
