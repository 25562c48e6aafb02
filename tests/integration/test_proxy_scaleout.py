"""Scale-out: ``spendgate proxy`` processes on Kafka, the ledger folding what both of them served."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from spendgate.store.keys import store as vkeys
from tests.support.kafka import KafkaForTest
from tests.support.ledger import serving_ledger
from tests.support.proxy_harness import UPSTREAM_KEY, fake_upstream
from tests.support.proxy_process import proxy_process
from tests.support.waiting import eventually

pytestmark = pytest.mark.kafka


async def test_two_proxies_on_kafka_feed_one_ledger(db_url: str, pool: asyncpg.Pool, tmp_path: Path,
                                                    kafka: KafkaForTest) -> None:
    """Two proxy processes behind one key publish to Kafka; the ledger's session line counts both."""
    created = await vkeys.create_key(pool, developer="gina", team="infra")
    async with fake_upstream() as upstream:
        env = {**kafka.env(), "SPENDGATE_DATABASE_URL": db_url, "SPENDGATE_UPSTREAM_URL": upstream.url,
               "SPENDGATE_UPSTREAM_KEY": UPSTREAM_KEY}
        proxies = [proxy_process(tmp_path / f"p{i}", env) for i in range(2)]
        await asyncio.gather(*(p.start() for p in proxies))
        try:
            async with aiohttp.ClientSession() as http:
                for i in range(6):
                    body = {"model": "gpt-5.1", "input": f"q{i}", "stream": i % 2 == 0}
                    headers = {"Authorization": f"Bearer {created.secret}", "session-id": "shared-session"}
                    async with http.post(f"{proxies[i % 2].base_url}/responses", json=body, headers=headers) as r:
                        assert r.status == 200
                        await r.read()
        finally:
            for p in proxies:
                assert await p.terminate() == 0, p.output()
    async with serving_ledger(db_url, tmp_path / "ledger", **kafka.settings()):
        row = await eventually(
            lambda: pool.fetchrow("SELECT requests, input_tokens FROM sessions WHERE session_id = $1",
                                  "shared-session"),
            until=lambda r: r is not None and r["requests"] >= 6, timeout_s=30, what="ledger session line")
    assert row["requests"] == 6
    assert row["input_tokens"] == sum(s.input_tokens for s in upstream.fake.served)
