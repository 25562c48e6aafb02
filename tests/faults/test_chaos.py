"""Chaos: 300 mixed requests through `spendgate up` while the whole process, then only PostgreSQL, then the
broker are SIGKILLed and restarted. Afterwards every request the upstream served is in the ledger exactly
once (those the proxy died holding are there as intent estimates, flagged), and no client saw a 5xx that
was not the upstream's own (issue 11, "Done when").

Everything is real and separate: `spendgate up` is its own OS process (proxy, ledger, forecaster, alerter,
admin) on a PostgreSQL server of the test's own (killable) and a real Apache Kafka broker (KRaft, data on
disk, killable); the fake upstream runs in the test's loop and records what it served and billed.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from spendgate.proxy.fake_upstream import FakeConfig
from spendgate.store.keys import store as vkeys
from tests.support.kafka import KafkaBroker
from tests.support.killable_postgres import KillablePostgres
from tests.support.ports import free_port
from tests.support.proxy_harness import fake_upstream
from tests.support.proxy_process import up_process
from tests.support.waiting import eventually

pytestmark = pytest.mark.kafka

REQUESTS = 300
CONCURRENCY = 8
SHAPES = [("/responses", True), ("/responses", False), ("/chat/completions", True), ("/chat/completions", False)]


@dataclass
class Seen:
    """What the clients saw."""

    statuses: Counter[int] = field(default_factory=Counter)
    unreachable: int = 0
    """Attempts that found no proxy listening (the process was down): nothing was forwarded; retried."""
    broken: int = 0
    """Requests whose connection broke mid-answer (the process was killed under them)."""
    bad_5xx: list[str] = field(default_factory=list)
    """5xx answers that were not the upstream's own."""


def body_for(path: str, stream: bool, n: int) -> dict[str, object]:
    if path == "/responses":
        return {"model": "gpt-5.1", "input": f"chaos request {n} " + "x" * (n % 7) * 300, "stream": stream}
    return {"model": "gpt-5.1", "messages": [{"role": "user", "content": f"chaos request {n}"}], "stream": stream}


async def one(http: aiohttp.ClientSession, base: str, secret: str, n: int, seen: Seen) -> None:
    """Send request ``n``; while nothing listens (the process is down) try again, as a client would."""
    path, stream = SHAPES[n % len(SHAPES)]
    headers = {"Authorization": f"Bearer {secret}", "session_id": f"chaos-{n % 10}"}
    for _ in range(1_200):
        try:
            async with http.post(base + path, json=body_for(path, stream, n), headers=headers) as resp:
                data = await resp.read()
                seen.statuses[resp.status] += 1
                if resp.status >= 500 and not resp.headers.get("x-request-id", "").startswith("req_fake"):
                    seen.bad_5xx.append(f"{resp.status} {path} {data[:200]!r}")  # the gateway's own 5xx
                return
        except aiohttp.ClientConnectorError:
            seen.unreachable += 1  # nothing was forwarded: no listener
            await asyncio.sleep(0.1)  # a client's retry pacing, not synchronisation
        except (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError, aiohttp.ClientOSError):
            seen.broken += 1  # the process died under the request
            return
    raise AssertionError(f"request {n} found no proxy for two minutes")


@pytest.mark.timeout(900)
async def test_chaos_every_served_request_is_metered_once(tmp_path: Path, fresh_kafka_broker: KafkaBroker) -> None:
    """300 mixed requests while up, then PostgreSQL, then the broker are SIGKILLed and restarted: every
    request the upstream served is in the ledger once, and no client saw a 5xx of the gateway's own."""
    pg = KillablePostgres()
    db_url = await pg.start()
    broker = fresh_kafka_broker
    fake_cfg = FakeConfig(latency_ms=20, latency_jitter_ms=60, chunks=8, chunk_interval_ms=5, seed=7)
    async with fake_upstream(fake_cfg) as upstream, aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=60)) as http:
        pool = await asyncpg.create_pool(db_url, min_size=1, max_size=2)
        created = await vkeys.create_key(pool, developer="chaos", team="sre")
        await pool.close()
        env = {"SPENDGATE_DATABASE_URL": db_url, "SPENDGATE_BUS": f"kafka://{broker.bootstrap}",
               "SPENDGATE_UPSTREAM_URL": upstream.url, "SPENDGATE_UPSTREAM_KEY": "sk-chaos-upstream",
               "SPENDGATE_ADMIN_TOKEN": "chaos-admin", "SPENDGATE_ADMIN_PORT": str(free_port())}
        up = up_process(tmp_path / "up", env)
        await up.start(timeout_s=120)
        seen = Seen()
        rng = random.Random(11)
        queue: asyncio.Queue[int] = asyncio.Queue()
        for n in range(REQUESTS):
            queue.put_nowait(n)

        async def worker() -> None:
            while not queue.empty():
                n = queue.get_nowait()
                await one(http, up.base_url, created.secret, n, seen)
                await asyncio.sleep(rng.uniform(0, 0.01))  # pacing the load, not synchronisation

        async def chaos() -> None:
            async def sent() -> int:
                return REQUESTS - queue.qsize()

            async def after(done: int) -> None:
                await eventually(sent, until=lambda k: k >= done, timeout_s=120, interval_s=0.02,
                                 what=f"{done} requests sent")

            await after(REQUESTS // 4)
            await up.kill()  # the whole process: proxy, ledger and the rest, mid-request
            print(f"\nchaos: up killed after {await sent()} requests", flush=True)
            await up.start(timeout_s=120)
            print(f"chaos: up back after {await sent()} requests", flush=True)
            await after(REQUESTS // 2)
            await pg.kill()  # only PostgreSQL
            print(f"chaos: PostgreSQL killed after {await sent()} requests", flush=True)
            await asyncio.sleep(1.0)  # the outage lasts a moment (workload, not synchronisation)
            await pg.restart()
            await after(3 * REQUESTS // 4)
            await broker.akill()  # only the broker
            print(f"chaos: broker killed after {await sent()} requests", flush=True)
            await asyncio.sleep(1.0)
            await broker.arestart()

        await asyncio.gather(chaos(), *(worker() for _ in range(CONCURRENCY)))
        served = list(upstream.fake.served)
        served_ids = {f"req_fake_{i:08d}" for i in range(len(served))}

        async def ledger() -> list[asyncpg.Record]:
            conn = await asyncpg.connect(db_url)
            try:
                return await conn.fetch(
                    "SELECT event_id, upstream_request_id, status, intent_estimate AS intent FROM usage_events")
            finally:
                await conn.close()

        def settled(rows: list[asyncpg.Record]) -> bool:
            ids = {r["upstream_request_id"] for r in rows if r["upstream_request_id"]}
            estimated = sum(r["intent"] for r in rows)
            return len(served_ids - ids) <= estimated

        rows = await eventually(ledger, until=settled, timeout_s=120, interval_s=0.5,
                                what="every served request folded by the ledger")
        await up.terminate()
    pg.stop()
    ids = [r["upstream_request_id"] for r in rows if r["upstream_request_id"]]
    intents = [r for r in rows if r["intent"]]
    missing = served_ids - set(ids)
    print(f"\nchaos: {len(served)} served, {len(rows)} events ({len(intents)} intent estimates), "
          f"statuses {dict(seen.statuses)}, unreachable {seen.unreachable}, broken {seen.broken}")
    assert len(ids) == len(set(ids)), "a served request is in the ledger twice"
    assert set(ids) <= served_ids
    assert len(missing) <= len(intents), f"{len(missing)} served requests are not in the ledger: {sorted(missing)[:5]}"
    assert len(intents) <= 2 * CONCURRENCY, "more intent estimates than requests could have been in flight"
    assert seen.bad_5xx == []
