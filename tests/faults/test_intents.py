"""Issue 11 item 6: SIGKILL with requests in flight loses no spend: each becomes an intent-estimated event."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import aiohttp
import asyncpg
import pytest
from msgspec.structs import replace

from spendgate.admin.sessions import session_detail
from spendgate.core.config_providers import PricingSettings
from spendgate.domain.errors import BusUnavailableError
from spendgate.domain.events import decode
from spendgate.proxy.emitter import Emitter
from spendgate.proxy.intents import parse_intent_key, recover
from spendgate.proxy.spool import Spool
from spendgate.store.keys import store as vkeys
from tests.integration.test_proxy_emitter import FlakyBus, _event
from tests.support.ledger import serving_ledger
from tests.support.proxy_harness import UPSTREAM_KEY, fake_upstream, published_usage
from tests.support.proxy_process import proxy_process
from tests.support.waiting import eventually

FINISHED, IN_FLIGHT = 3, 10


async def _request(http: aiohttp.ClientSession, url: str, secret: str, session: str) -> bytes:
    body = {"model": "gpt-5.1", "input": f"request of {session} " * 40, "stream": True}
    headers = {"Authorization": f"Bearer {secret}", "session-id": session}
    async with http.post(f"{url}/responses", json=body, headers=headers) as resp:
        return await resp.read()


async def test_sigkill_with_requests_in_flight_records_each_served_request_once(
        db_url: str, pool: asyncpg.Pool, tmp_path: Path) -> None:
    """Every request the upstream served before a SIGKILL is in the ledger exactly once, the cut-off
    ones estimated from their intents and flagged."""
    created = await vkeys.create_key(pool, developer="dana", team="data")
    async with fake_upstream() as upstream:
        env = {"SPENDGATE_DATABASE_URL": db_url, "SPENDGATE_BUS": "postgres",
               "SPENDGATE_UPSTREAM_URL": upstream.url, "SPENDGATE_UPSTREAM_KEY": UPSTREAM_KEY}
        proxy = proxy_process(tmp_path / "proxy", env)
        await proxy.start()
        async with aiohttp.ClientSession() as http:
            for i in range(FINISHED):
                assert b"response.completed" in await _request(http, proxy.base_url, created.secret, f"done-{i}")
            upstream.fake.config.chunks, upstream.fake.config.chunk_interval_ms = 50, 200  # ~10 s streams
            flying = [asyncio.create_task(_request(http, proxy.base_url, created.secret, f"cut-{i}"))
                      for i in range(IN_FLIGHT)]
            await eventually(lambda: asyncio.sleep(0, len(upstream.fake.served)),
                             until=lambda n: n == FINISHED + IN_FLIGHT, what="the upstream serving every request")
            await proxy.kill()
            await asyncio.gather(*flying, return_exceptions=True)

        await proxy.start()  # the same data dir, so the same spool
        try:
            events = await eventually(lambda: published_usage(pool),
                                      until=lambda e: len({x.event_id for x in e}) >= FINISHED + IN_FLIGHT,
                                      timeout_s=20, what="recovered events published")
        finally:
            assert await proxy.terminate() == 0

    async with serving_ledger(db_url, tmp_path / "ledger"):
        rows = await eventually(
            lambda: pool.fetch("SELECT session_id, status, usage_source, cost_micros, intent_estimate "
                               "FROM usage_events"),
            until=lambda r: len(r) >= FINISHED + IN_FLIGHT, timeout_s=20, what="ledger folded the events")
    served = Counter(s.session_id for s in upstream.fake.served)
    assert Counter(r["session_id"] for r in rows) == served  # each served request exactly once
    cut = {r["session_id"]: r for r in rows if r["session_id"].startswith("cut-")}
    assert all((r["status"], r["usage_source"]) == ("incomplete", "estimated") and r["cost_micros"] > 0
               for r in cut.values())
    flagged = {e.session_id for e in events if e.intent_estimate}
    assert flagged == set(cut)
    assert {r["session_id"] for r in rows if r["intent_estimate"]} == set(cut)  # stored flagged, the rest not
    shown = await session_detail(pool, PricingSettings().table(), "cut-0")
    assert [line.intent_estimate for turn in shown.turns for line in turn.request_lines] == [True]
    assert all(r["status"] == "ok" for r in rows if r["session_id"].startswith("done-"))


def _intents_on_disk(spool: Spool) -> Counter[str]:
    return Counter(parsed[0] for seg in spool.segments() for r in Spool.read(seg)
                   if (parsed := parse_intent_key(r.key)) is not None)


async def test_an_open_intent_stays_on_disk_once_through_flushes_and_bus_outages(tmp_path: Path) -> None:
    """The writer never publishes intents, keeps each open one on disk exactly once (even while failed
    flushes keep their segments), drops it once settled, and a restart estimates only the unsettled."""
    bus, spool = FlakyBus(), Spool(tmp_path / "spool")
    spool.open()
    emitter = Emitter(spool, bus, source="test")
    settled, open_ = _event(), _event()
    emitter.intend(replace(settled, intent_estimate=True))
    emitter.intend(replace(open_, intent_estimate=True))
    emitter.emit(settled)
    await emitter.flush()
    assert [decode(v).data.event_id for v in bus.acked] == [settled.event_id]
    assert _intents_on_disk(spool) == Counter({open_.event_id: 1})
    bus.down = True
    for _ in range(4):
        emitter.emit(_event())
        with pytest.raises(BusUnavailableError):
            await emitter.flush()
    assert _intents_on_disk(spool)[open_.event_id] == 1
    spool.close()  # the process dies with the request still in flight

    again = Spool(tmp_path / "spool")
    again.open()
    assert recover(again) == 1
    bus.down = False
    await Emitter(again, bus, source="test").flush()
    estimated = [decode(v).data for v in bus.acked if decode(v).data.event_id == open_.event_id]
    assert len(estimated) == 1 and estimated[0].intent_estimate
    assert recover(again) == 0  # nothing left to estimate twice
    again.close()
