"""Usage-event emission that never blocks a response: spool now, publish from a supervised writer.

``emit`` (called by request handlers) encodes the event and appends it to the spool's active
segment: synchronous, microseconds, no awaiting. The writer task wakes on new events, seals the
active segment (fsync in a thread, one per batch), publishes each sealed segment's records to the
bus keyed by virtual key id, and deletes the segment once the bus acknowledged it. It publishes at
most once per ``publish_interval_s`` unless a full batch waits (:data:`LINGER_MAX_RECORDS`): at one
request every 50 ms, a batch per request cost twice the requests' own CPU (seal, fsync, bus
transaction, delete, and the ledger fold each publication sets off), and it was felt in their
latency. If the bus is down it keeps the segments and raises; the supervisor restarts the writer with
backoff, and the restarted writer publishes at once, while requests go on being served. On start-up,
segments a previous process left are replayed.

``intend`` spools a request's intent before it is forwarded (``intents.py``): intent lines are never
published; the writer drops the settled ones and carries the open ones forward.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from pathlib import Path

from spendgate.core.bus import Bus
from spendgate.core.logs import get_logger
from spendgate.core.supervisor import Beat, no_beat
from spendgate.domain.constants import TOPIC_USAGE
from spendgate.domain.errors import BusError
from spendgate.domain.events import UsageRecorded, encode
from spendgate.proxy.intents import OpenIntents, intent_key, parse_intent_key
from spendgate.proxy.spool import Spool

log = get_logger(__name__)

PUBLISH_CHUNK = 500
PUBLISH_TIMEOUT_S = 15.0
LINGER_S = 0.025
"""After a wake-up the writer waits at least this long, to stay off the tail of the response that woke
it (the events are already on disk; only publishing waits)."""
PUBLISH_INTERVAL_S = 0.25
LINGER_MAX_RECORDS = 256
"""A wake-up that finds this many records waiting publishes them at once."""


class Emitter:
    def __init__(self, spool: Spool, bus: Bus, *, source: str, topic: str = TOPIC_USAGE,
                 publish_timeout_s: float = PUBLISH_TIMEOUT_S, publish_interval_s: float = PUBLISH_INTERVAL_S) -> None:
        self.spool, self.bus, self.source, self.topic = spool, bus, source, topic
        self.publish_timeout_s, self.publish_interval_s = publish_timeout_s, publish_interval_s
        self.published = 0
        self.failures = 0
        self._wake = asyncio.Event()
        self._failing = False
        """The last flush failed: say so in the log once the bus takes a batch again."""
        self.intents = OpenIntents()
        self._waiting_since: float | None = None
        """Monotonic time of the oldest event emitted since the last flush began (None: none)."""
        self._flushing_since: float | None = None
        """... and of the oldest event in the segments a flush is publishing (kept until one succeeds)."""

    def intend(self, estimate: UsageRecorded) -> None:
        """Spool the intent of a request about to be forwarded: ``estimate`` is the event it gets if
        the proxy dies first; the request's real event must carry the same ``event_id``."""
        self.intents.add(estimate.event_id)
        self.spool.append(intent_key(estimate.event_id, estimate.key_id),
                          encode(estimate, source=self.source, subject=estimate.key_id))

    def emit(self, event: UsageRecorded) -> None:
        """Put the event on disk and wake the writer; never waits for the bus."""
        self.intents.settle(event.event_id)
        self.spool.append(event.key_id, encode(event, source=self.source, subject=event.key_id))
        if self._waiting_since is None:
            self._waiting_since = time.monotonic()
        self._wake.set()

    def publish_lag_s(self) -> float:
        """How long the oldest event this process spooled has waited for the bus (0: none waits)."""
        oldest = min((t for t in (self._waiting_since, self._flushing_since) if t is not None), default=None)
        return 0.0 if oldest is None else time.monotonic() - oldest

    @property
    def backlog_segments(self) -> int:
        return len(self.spool.sealed_segments()) + (1 if self.spool.pending_in_active else 0)

    async def run(self, stop: asyncio.Event, beat: Beat = no_beat) -> None:
        """The writer loop, run by the supervisor; returns once ``stop`` is set (``drain`` then flushes).
        Each (re)start publishes at once: what a previous process, or a failed flush, left behind."""
        self._wake.set()
        stopping = asyncio.create_task(stop.wait())
        last = -self.publish_interval_s
        try:
            while not stop.is_set():
                waker = asyncio.create_task(self._wake.wait())
                await asyncio.wait({waker, stopping}, return_when=asyncio.FIRST_COMPLETED)
                waker.cancel()
                if stop.is_set():
                    break
                if self.spool.pending_in_active < LINGER_MAX_RECORDS:
                    wait = max(LINGER_S, last + self.publish_interval_s - time.monotonic())
                    await asyncio.wait({stopping}, timeout=wait)
                self._wake.clear()
                last = time.monotonic()
                await self.flush()
                beat()
        finally:
            stopping.cancel()

    async def drain(self, timeout_s: float) -> bool:
        """Publish everything spooled, within ``timeout_s``; what is left stays on disk for next start."""
        try:
            await asyncio.wait_for(self.flush(), timeout_s)
        except (TimeoutError, BusError, OSError) as exc:
            log.warning("usage events left in the spool at shutdown", error=str(exc),
                        segments=len(self.spool.segments()))
            return False
        return not self.spool.segments()

    async def flush(self) -> None:
        """Seal the active segment, then publish and delete every sealed segment, oldest first.

        If the bus fails, the segments not yet acknowledged stay on disk and the error is raised."""
        if self._flushing_since is None:
            self._flushing_since = self._waiting_since
        self._waiting_since = None
        detached = self.spool.detach()
        self.spool.prepare_next()  # the next request appends to a file that already exists
        if detached is not None:
            await asyncio.to_thread(self.spool.finish, *detached)
        segments = self.spool.sealed_segments()
        try:
            for segment in segments:
                records, intents = self._split(segment)
                for i in range(0, len(records), PUBLISH_CHUNK):
                    await self._publish(records[i : i + PUBLISH_CHUNK])
                self._carry(intents)  # no await between carrying the open intents and deleting
                self.spool.remove(segment)
                self.published += len(records)
        except (BusError, TimeoutError, OSError):
            self.failures += 1
            self._failing = True
            raise
        if self._failing:
            log.info("bus available again; spool flushed")
        self._failing = False
        self._flushing_since = None

    def _split(self, segment: Path) -> tuple[list[tuple[str | None, bytes]], list[tuple[str, str, bytes]]]:
        """A sealed segment's event records (to publish) and its intents (event id, key, value)."""
        events: list[tuple[str | None, bytes]] = []
        intents: list[tuple[str, str, bytes]] = []
        for record in self.spool.read(segment):
            intent = parse_intent_key(record.key)
            if intent is None:
                events.append((record.key, record.value))
            else:
                intents.append((intent[0], record.key or "", record.value))
        return events, intents

    def _carry(self, intents: list[tuple[str, str, bytes]]) -> None:
        """Append the intents of requests still in flight to the active segment; drop settled ones. Only
        when their segment is about to be deleted, so each intent is on disk in exactly one segment
        (carrying from a segment a failed flush keeps would copy it again on every retry)."""
        for event_id, key, value in intents:
            if event_id in self.intents:
                self.spool.append(key, value)

    async def _publish(self, items: Sequence[tuple[str | None, bytes]]) -> None:
        await asyncio.wait_for(self.bus.publish_many(self.topic, items), self.publish_timeout_s)
