"""Bus outage: with the Kafka broker killed the proxy keeps serving; spooled events arrive once it is back,
beside the events it had acknowledged before the kill (kept on disk)."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest

from spendgate.domain.constants import TOPIC_USAGE
from spendgate.domain.events import decode
from spendgate.runtime import Runtime
from tests.support.kafka import KafkaForTest
from tests.support.proxy_harness import Harness, running_proxy
from tests.support.waiting import eventually

pytestmark = pytest.mark.kafka


async def _request(h: Harness, http: aiohttp.ClientSession, i: int) -> None:
    body = {"model": "gpt-5.1", "input": f"q{i}", "stream": True}
    async with http.post(f"{h.base_url}/responses", json=body, headers=h.headers()) as resp:
        assert resp.status == 200
        assert b"response.completed" in await resp.read()


async def _consume_ids(runtime: Runtime, group: str, want: int) -> set[str]:
    consumer = runtime.bus.consumer(group, [TOPIC_USAGE])
    await consumer.start()
    seen: set[str] = set()
    try:
        async def poll() -> set[str]:
            for rec in await consumer.poll(timeout_s=0.5):
                seen.add(decode(rec.value).data.event_id)
            return seen

        return await eventually(poll, until=lambda s: len(s) >= want, timeout_s=30, what=f"{want} events on Kafka")
    finally:
        await consumer.stop()


async def test_broker_down_keeps_serving_and_spool_catches_up(db_url: str, tmp_path: Path,
                                                             fresh_kafka: KafkaForTest) -> None:
    """SIGKILL the broker, keep serving 200s with events spooled, restart it on its data: the event acked
    before the kill is still there and the spooled ones are published."""
    broker = fresh_kafka.broker
    async with running_proxy(db_url, tmp_path, publish_timeout_s=3.0, **fresh_kafka.settings()) as h, \
            aiohttp.ClientSession() as http:
        await _request(h, http, 0)
        before = await _consume_ids(h.runtime, "outage-before", 1)

        await broker.akill()
        for i in range(1, 4):
            await _request(h, http, i)  # served while the bus is down
        await eventually(lambda: _failures(h), until=lambda n: n >= 1, timeout_s=30, what="writer saw the outage")
        assert h.server.emitter.backlog_segments >= 1

        await broker.astart()
        await eventually(lambda: _backlog(h), until=lambda n: n == 0, timeout_s=40, what="spool drained")
        ids = await _consume_ids(h.runtime, "outage-after", 4)
        assert len(ids) == 4 and before <= ids and h.server.emitter.published == 4


async def _failures(h: Harness) -> int:
    return h.server.emitter.failures


async def _backlog(h: Harness) -> int:
    return h.server.emitter.backlog_segments
