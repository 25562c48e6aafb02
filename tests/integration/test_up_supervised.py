"""``spendgate up`` under its one supervisor: a ledger whose bus connection keeps failing leaves the proxy
serving, ``/healthz`` says the ledger is degraded (with a 200), and once the fault clears the ledger
catches up, folding every event exactly once.

Every service of ``spendgate.up.services()`` runs in this process through ``run_services`` on the Postgres
bus; the fault is injected where the composition root hands the ledger its runtime: the ledger's bus
is wrapped so that its consumers fail every poll and commit while the fault is on.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from spendgate.core.bus import Bus, Consumer, Record, TopicPartition
from spendgate.core.bus.base import OnAssign
from spendgate.core.config import load_settings
from spendgate.domain.errors import BusUnavailableError, ConfigError
from spendgate.ledger import service as ledger_service
from spendgate.runtime import Runtime, Serve, run_services
from spendgate.store.keys import store as vkeys
from spendgate.up import services
from tests.support.ledger import folded_count
from tests.support.ports import free_port
from tests.support.proxy_harness import UPSTREAM_KEY, fake_upstream, published_usage
from tests.support.waiting import eventually

DURING_FAULT = 5


@dataclass
class Fault:
    """A switch for the poisoned connection, and how often it bit."""

    on: bool = False
    failures: int = 0

    def check(self) -> None:
        if self.on:
            self.failures += 1
            raise BusUnavailableError("poisoned bus connection (test fault)")


class PoisonableConsumer:
    def __init__(self, inner: Consumer, fault: Fault) -> None:
        self.inner, self.fault = inner, fault

    async def start(self) -> None:
        await self.inner.start()

    async def stop(self) -> None:
        await self.inner.stop()

    async def poll(self, *, max_records: int = 500, timeout_s: float = 1.0) -> list[Record]:
        self.fault.check()
        return await self.inner.poll(max_records=max_records, timeout_s=timeout_s)

    async def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        self.fault.check()
        await self.inner.commit(offsets)

    async def lag(self) -> dict[TopicPartition, int]:
        return await self.inner.lag()


class PoisonableBus:
    """The runtime's bus, whose consumers fail while ``fault.on``; publishing is untouched."""

    def __init__(self, inner: Bus, fault: Fault) -> None:
        self.inner, self.fault = inner, fault

    async def start(self) -> None:
        await self.inner.start()

    async def stop(self) -> None:
        await self.inner.stop()

    async def publish(self, topic: str, key: str | None, value: bytes) -> None:
        await self.inner.publish(topic, key, value)

    async def publish_many(self, topic: str, items: Sequence[tuple[str | None, bytes]]) -> None:
        await self.inner.publish_many(topic, items)

    def consumer(self, group: str, topics: Sequence[str], *, on_assign: OnAssign | None = None) -> Consumer:
        return PoisonableConsumer(self.inner.consumer(group, topics, on_assign=on_assign), self.fault)


def services_with_poisonable_ledger(fault: Fault) -> dict[str, Serve]:
    """``spendgate up``'s services, the ledger given a bus whose consumer connection can be poisoned."""

    async def ledger(runtime: Runtime, stop: asyncio.Event) -> None:
        await ledger_service.serve(replace(runtime, bus=PoisonableBus(runtime.bus, fault)), stop)

    return {**services(), "ledger": ledger}


async def healthz(http: aiohttp.ClientSession, base: str) -> tuple[int, dict[str, Any]]:
    try:
        async with http.get(f"{base}/healthz") as resp:
            return resp.status, await resp.json()
    except aiohttp.ClientError:
        return 0, {}


def ledger_is(state: str) -> Any:
    return lambda got: got[0] == 200 and got[1].get("components", {}).get("ledger") == state


def fold_is(state: str) -> Any:
    """The fold loop itself (``ledger.consumer``), not just some loop of the ledger: the eval consumer fails
    on the same poisoned bus, and may mark the ledger degraded while the fold's last poll, begun before the
    fault, is still under way and would fold the requests sent next."""
    return lambda got: got[0] == 200 and got[1].get("tasks", {}).get("ledger.consumer") == state


async def request(http: aiohttp.ClientSession, base: str, secret: str, i: int) -> None:
    body = {"model": "gpt-5.1", "input": f"question {i}", "stream": True}
    async with http.post(f"{base}/v1/responses", json=body, headers={"Authorization": f"Bearer {secret}"}) as resp:
        assert resp.status == 200
        assert b"response.completed" in await resp.read()


async def test_ledger_failing_repeatedly_leaves_the_proxy_serving_and_catches_up_exactly_once(
    db_url: str, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    """Poisoned ledger connection: requests succeed, /healthz is 200 with ledger degraded; cleared: folded once."""
    created = await vkeys.create_key(pool, developer="alice", team="platform")
    fault = Fault()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    async with fake_upstream() as upstream:
        settings = load_settings(
            database_url=db_url, data_dir=tmp_path, bus="postgres", upstream_url=upstream.url,
            upstream_key=UPSTREAM_KEY, proxy_port=port, instance="up-test", drain_timeout_s=5.0,
            supervisor={"backoff_base_s": 0.05, "backoff_cap_s": 0.5},
        )
        stop = asyncio.Event()
        up = asyncio.create_task(run_services(settings, services_with_poisonable_ledger(fault), stop=stop))
        try:
            async with aiohttp.ClientSession() as http:
                await eventually(lambda: healthz(http, base), until=ledger_is("ok"), timeout_s=60, what="up serving")
                await request(http, base, created.secret, 0)
                await eventually(lambda: folded_count(pool), until=lambda n: n == 1, what="first event folded")

                fault.on = True
                await eventually(lambda: healthz(http, base), until=fold_is("degraded"), what="the fold degraded")
                for i in range(1, DURING_FAULT + 1):
                    await request(http, base, created.secret, i)  # the proxy answers while the ledger fails
                await eventually(lambda: published_usage(pool), until=lambda e: len(e) == DURING_FAULT + 1,
                                 what="the proxy published every event")
                bitten = fault.failures
                await eventually(lambda: _value(fault.failures), until=lambda n: n >= bitten + 3,
                                 what="the ledger retrying, again and again")
                status, health = await healthz(http, base)
                assert status == 200 and health["status"] == "degraded"
                assert health["components"]["proxy"] == "ok" and health["components"]["ledger"] == "degraded"
                assert health["tasks"]["ledger.consumer"] == "degraded"
                assert health["tasks"]["ledger.crossings-outbox"] == "ok"
                assert await folded_count(pool) == 1  # nothing folded while the connection is poisoned

                fault.on = False
                await eventually(lambda: folded_count(pool), until=lambda n: n == DURING_FAULT + 1, timeout_s=20,
                                 what="the ledger caught up")
                await eventually(lambda: healthz(http, base), until=ledger_is("ok"), what="ledger ok again")
        finally:
            stop.set()
            await asyncio.wait_for(up, 60)

    events = await published_usage(pool)
    assert len({e.event_id for e in events}) == len(events) == len(upstream.fake.served) == DURING_FAULT + 1
    org = await pool.fetchrow("SELECT sum(spent_micros) AS spent, sum(requests) AS requests FROM balances "
                              "WHERE scope = 'org' AND period = 'day'")
    assert org is not None
    assert org["spent"] == sum(e.cost_micros for e in events) > 0
    assert org["requests"] == DURING_FAULT + 1
    assert await pool.fetchval("SELECT count(DISTINCT event_id) FROM usage_events") == DURING_FAULT + 1


async def test_a_crashing_service_is_restarted_while_the_others_run(db_url: str, tmp_path: Path) -> None:
    """A service that raises is restarted with backoff (the run goes on); a ConfigError ends the run and is raised."""
    settings = load_settings(database_url=db_url, data_dir=tmp_path, bus="postgres",
                             supervisor={"backoff_base_s": 0.01, "backoff_cap_s": 0.05})
    runs = 0
    steady_stopped = asyncio.Event()

    async def crashy(runtime: Runtime, stop: asyncio.Event) -> None:
        nonlocal runs
        runs += 1
        if runs <= 3:
            raise BusUnavailableError(f"crash {runs}")
        await stop.wait()

    async def steady(runtime: Runtime, stop: asyncio.Event) -> None:
        await stop.wait()
        steady_stopped.set()

    runtimes: list[Runtime] = []
    stop = asyncio.Event()
    up = asyncio.create_task(run_services(settings, {"crashy": crashy, "steady": steady},
                                          on_ready=runtimes.append, stop=stop))
    try:
        await eventually(lambda: _value(runs), until=lambda n: n == 4, what="three restarts")
        await eventually(lambda: _value(runtimes[0].health.tasks() if runtimes else {}),
                         until=lambda t: t == {"crashy": "ok", "steady": "ok"}, what="both ok")
        assert not up.done() and not steady_stopped.is_set()
    finally:
        stop.set()
        await asyncio.wait_for(up, 30)

    async def misconfigured(runtime: Runtime, stop: asyncio.Event) -> None:
        raise ConfigError("pricing has no price for gpt-7-mini")

    steady_stopped.clear()
    with pytest.raises(ConfigError, match="gpt-7-mini"):
        await asyncio.wait_for(run_services(settings, {"bad": misconfigured, "steady": steady}), 30)
    assert steady_stopped.is_set()


async def _value(v: Any) -> Any:
    return v
