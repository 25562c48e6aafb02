"""Durability: a proxy killed with SIGKILL right after its responses completed loses no usage event."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import asyncpg

from spendgate.domain.pricing import SHIPPED_PRICES, cost_micros
from spendgate.proxy.intents import parse_intent_key
from spendgate.proxy.spool import Spool
from spendgate.store.keys import store as vkeys
from tests.support.ledger import serving_ledger
from tests.support.proxy_harness import UPSTREAM_KEY, fake_upstream, published_usage
from tests.support.proxy_process import proxy_process
from tests.support.waiting import eventually

REQUESTS = 6


async def _stream(http: aiohttp.ClientSession, url: str, secret: str, i: int) -> None:
    body = {"model": "gpt-5.1", "input": f"request {i}", "stream": True}
    async with http.post(f"{url}/responses", json=body, headers={"Authorization": f"Bearer {secret}"}) as resp:
        assert resp.status == 200
        assert b"response.completed" in await resp.read()


async def test_sigkill_after_responses_then_restart_loses_nothing(db_url: str, pool: asyncpg.Pool,
                                                                  tmp_path: Path) -> None:
    """SIGKILL after responses completed but before publishing: the restart replays; the ledger matches upstream."""
    created = await vkeys.create_key(pool, developer="carol", team="data")
    async with fake_upstream() as upstream:
        env = {"SPENDGATE_DATABASE_URL": db_url, "SPENDGATE_BUS": "postgres",
               "SPENDGATE_UPSTREAM_URL": upstream.url, "SPENDGATE_UPSTREAM_KEY": UPSTREAM_KEY}
        proxy = proxy_process(tmp_path / "proxy", env)
        await proxy.start()
        # Hold the bus's partition table so no publish can commit: the events can only be in the spool.
        blocker = await asyncpg.connect(db_url)
        tx = blocker.transaction()
        await tx.start()
        await blocker.execute("LOCK TABLE bus_partitions IN EXCLUSIVE MODE")
        try:
            async with aiohttp.ClientSession() as http:
                await asyncio.gather(*(_stream(http, proxy.base_url, created.secret, i) for i in range(REQUESTS)))
            await proxy.kill()
        finally:
            await tx.rollback()
            await blocker.close()
        spool_dir = tmp_path / "proxy" / "spool" / f"proxy-{proxy.port}"
        spooled = [r for seg in Spool(spool_dir).segments() for r in Spool.read(seg)
                   if parse_intent_key(r.key) is None]  # the requests' intents, settled, are not events
        assert len(spooled) == REQUESTS
        assert await published_usage(pool) == []

        await proxy.start()  # the same data dir, so the same spool
        try:
            await eventually(lambda: published_usage(pool), until=lambda e: len(e) >= REQUESTS, timeout_s=15,
                             what="spooled events replayed")
            await eventually(lambda: asyncio.to_thread(lambda: list(spool_dir.glob("*.spool"))),
                             until=lambda segs: segs == [], what="spool emptied after acknowledgement")
        finally:
            assert await proxy.terminate() == 0

    async with serving_ledger(db_url, tmp_path / "ledger"):
        rows = await eventually(
            lambda: pool.fetch("SELECT input_tokens, cached_tokens, output_tokens, cost_micros FROM usage_events"),
            until=lambda r: len(r) >= REQUESTS, timeout_s=20, what="ledger folded the events")
    served = upstream.fake.served
    assert len(rows) == len(served) == REQUESTS
    expected_cost = sum(cost_micros(SHIPPED_PRICES["gpt-5.1"], input_tokens=s.input_tokens,
                                    cached_tokens=s.cached_tokens, output_tokens=s.output_tokens) for s in served)
    assert sum(r["cost_micros"] for r in rows) == expected_cost
    assert sum(r["input_tokens"] for r in rows) == sum(s.input_tokens for s in served)
    assert sum(r["output_tokens"] for r in rows) == sum(s.output_tokens for s in served)


async def test_sigterm_drains_in_flight_stream_and_flushes(db_url: str, pool: asyncpg.Pool, tmp_path: Path) -> None:
    """SIGTERM mid-stream: the stream still completes, the process exits 0, and its event is published."""
    created = await vkeys.create_key(pool, developer="erin", team="data")
    async with fake_upstream() as upstream:
        upstream.fake.config.chunks, upstream.fake.config.chunk_interval_ms = 20, 50
        env = {"SPENDGATE_DATABASE_URL": db_url, "SPENDGATE_BUS": "postgres",
               "SPENDGATE_UPSTREAM_URL": upstream.url, "SPENDGATE_UPSTREAM_KEY": UPSTREAM_KEY}
        proxy = proxy_process(tmp_path / "proxy", env)
        await proxy.start()
        body = {"model": "gpt-5.1", "input": "drain me", "stream": True}
        async with aiohttp.ClientSession() as http, http.post(
            f"{proxy.base_url}/responses", json=body, headers={"Authorization": f"Bearer {created.secret}"}
        ) as resp:
            first = await resp.content.readany()
            assert first
            exit_code = asyncio.create_task(proxy.terminate())
            rest = await resp.read()
        assert b"response.completed" in first + rest
        assert await exit_code == 0, proxy.output()
    [event] = await published_usage(pool)
    assert (event.status, event.developer) == ("ok", "erin")
    assert list((tmp_path / "proxy" / "spool").rglob("*.spool")) == []
