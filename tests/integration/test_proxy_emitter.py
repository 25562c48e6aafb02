"""The spool writer: emission never waits for the bus, failures keep events on disk, restarts replay them.

The writer runs under the supervisor as the proxy runs it (a failed flush raises; the supervisor restarts it)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from spendgate.core.bus import MemoryBus
from spendgate.core.health import Health
from spendgate.core.supervisor import Backoff, Supervisor
from spendgate.domain.errors import BusUnavailableError
from spendgate.domain.events import UnitPrices, UsageRecorded, decode, new_id
from spendgate.proxy.emitter import Emitter
from spendgate.proxy.spool import Spool
from tests.support.waiting import eventually


class FlakyBus(MemoryBus):
    """A memory bus that can be switched off; records what was acknowledged."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False
        self.acked: list[bytes] = []

    async def publish_many(self, topic: str, items: Sequence[tuple[str | None, bytes]]) -> None:
        if self.down:
            raise BusUnavailableError("switched off")
        await super().publish_many(topic, items)
        self.acked += [v for _, v in items]


def _supervised(emitter: Emitter, stop: asyncio.Event) -> asyncio.Task[None]:
    supervisor = Supervisor(Health(), Backoff(base_s=0.05, cap_s=0.2))
    return supervisor.spawn("proxy.spool-writer", emitter.run, stop)


def _event(key_id: str = "k1") -> UsageRecorded:
    return UsageRecorded(
        event_id=new_id(), occurred_at=datetime.now(UTC), proxy_instance="t", key_id=key_id, developer="d",
        team="t", cost_center="c", endpoint="/v1/responses", model_requested="gpt-5.1", model_used="gpt-5.1",
        status="ok", http_status=200, usage_source="reported", input_tokens=10, output_tokens=2,
        prices=UnitPrices(input_micros=1, cached_input_micros=1, output_micros=1), cost_micros=12, latency_ms=3)


async def _published(bus: FlakyBus) -> int:
    return len(bus.acked)


async def test_outage_keeps_events_and_recovery_publishes_them(tmp_path: Path) -> None:
    """While the bus is down emit() still returns at once; when it is back every event is published once."""
    bus, spool = FlakyBus(), Spool(tmp_path / "spool")
    spool.open()
    emitter = Emitter(spool, bus, source="test")
    stop = asyncio.Event()
    writer = _supervised(emitter, stop)
    try:
        bus.down = True
        events = [_event() for _ in range(5)]
        for e in events:
            emitter.emit(e)  # synchronous: nothing to await, nothing that can block on the bus
        await eventually(lambda: _value(emitter.failures), until=lambda n: n >= 1, what="a failed publish")
        assert emitter.backlog_segments >= 1 and bus.acked == []
        bus.down = False
        await eventually(lambda: _published(bus), until=lambda n: n == 5, timeout_s=15, what="events published")
        assert [decode(v).data.event_id for v in bus.acked] == [e.event_id for e in events]
        await eventually(lambda: _value(emitter.backlog_segments), until=lambda n: n == 0, what="spool emptied")
    finally:
        stop.set()
        await writer
        spool.close()


async def test_segments_left_by_a_dead_process_are_replayed_at_start(tmp_path: Path) -> None:
    """Events spooled by a process that never published them go out when the next writer starts."""
    first = Spool(tmp_path / "spool")
    first.open()
    left = [_event("a"), _event("b")]
    dead = Emitter(first, FlakyBus(), source="dead")
    for e in left:
        dead.emit(e)
    first.close()  # no writer ever ran: the process "died" with the events on disk

    bus, spool = FlakyBus(), Spool(tmp_path / "spool")
    spool.open()
    emitter = Emitter(spool, bus, source="test")
    stop = asyncio.Event()
    writer = _supervised(emitter, stop)
    try:
        await eventually(lambda: _published(bus), until=lambda n: n == 2, what="replayed events")
        assert {decode(v).data.event_id for v in bus.acked} == {e.event_id for e in left}
        assert spool.segments() == []
    finally:
        stop.set()
        await writer
        spool.close()


async def test_drain_publishes_everything_before_shutdown(tmp_path: Path) -> None:
    """drain() at shutdown flushes the active segment to the bus and leaves the spool empty."""
    bus, spool = FlakyBus(), Spool(tmp_path / "spool")
    spool.open()
    emitter = Emitter(spool, bus, source="test")
    emitter.emit(_event())
    assert await emitter.drain(5.0) is True
    assert len(bus.acked) == 1 and spool.segments() == []
    spool.close()


async def _value(v: int) -> int:
    return v
