"""Helpers for ledger tests: publish events, run the ledger in-process or as a real process."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import subprocess
import sys
from collections import defaultdict
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg

from spendgate.core.bus import Bus
from spendgate.core.config import load_settings
from spendgate.domain.constants import TOPIC_USAGE
from spendgate.domain.events import UsageRecorded, encode
from spendgate.ledger.consumer import LedgerConsumer
from spendgate.ledger.service import serve as serve_ledger
from spendgate.runtime import open_runtime
from tests.support.factories import T0, usage_event


async def publish(bus: Bus, events: Sequence[UsageRecorded], *, chunk: int = 1000) -> None:
    for i in range(0, len(events), chunk):
        part = events[i : i + chunk]
        await bus.publish_many(TOPIC_USAGE, [(e.key_id, encode(e, source="test")) for e in part])


@contextlib.asynccontextmanager
async def running_ledger(pool: asyncpg.Pool, bus: Bus, **kw: object) -> AsyncIterator[LedgerConsumer]:
    stop = asyncio.Event()
    consumer = LedgerConsumer(pool, bus, **kw)  # type: ignore[arg-type]
    task = asyncio.create_task(consumer.run(stop))
    try:
        yield consumer
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


@contextlib.asynccontextmanager
async def serving_ledger(db_url: str, data_dir: Path, **settings: Any) -> AsyncIterator[None]:
    """``spendgate ledger``'s service in this process (the embedded Postgres bus unless ``settings`` name
    another) until the block ends."""
    stop = asyncio.Event()
    async with open_runtime(load_settings(database_url=db_url, data_dir=data_dir, **{"bus": "postgres", **settings}),
                            run_migrations=False) as runtime:
        task = asyncio.create_task(serve_ledger(runtime, stop))
        try:
            yield
        finally:
            stop.set()
            await task


def spawn_ledger(db_url: str, bus_env: Mapping[str, str], data_dir: Path,
                 extra_env: Mapping[str, str] | None = None) -> subprocess.Popen[bytes]:
    """``spendgate ledger`` as a real OS process (so it can be SIGKILLed); ``bus_env`` names its bus
    (``{"SPENDGATE_BUS": "postgres"}``, or ``KafkaForTest.env()``), ``extra_env`` adds settings."""
    env = {**os.environ, **bus_env, "SPENDGATE_DATABASE_URL": db_url,
           "SPENDGATE_DATA_DIR": str(data_dir), "SPENDGATE_LOG_LEVEL": "warning", **(extra_env or {})}
    return subprocess.Popen([sys.executable, "-m", "spendgate", "ledger"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


async def folded_count(pool: asyncpg.Pool) -> int:
    return int(await pool.fetchval("SELECT count(*) FROM usage_events"))


async def consumed(pool: asyncpg.Pool, consumer: str = "spendgate-ledger") -> int:
    return int(await pool.fetchval(
        "SELECT COALESCE(sum(next_offset), 0) FROM consumer_positions WHERE consumer = $1", consumer))


def synthetic(n: int, seed: int = 7) -> list[UsageRecorded]:
    """``n`` usage events of four developers in three teams, seven minutes apart, random token counts."""
    rng = random.Random(seed)
    devs = [("alice", "platform"), ("bob", "platform"), ("carol", "payments"), ("dan", "search")]
    out = []
    for i in range(n):
        dev, team = devs[i % len(devs)]
        out.append(usage_event(key_id=f"k_{dev}", developer=dev, team=team, cost_center=f"cc-{team}",
                               session_id=f"s-{dev}-{i % 37}", turn_id=f"t-{i % 111}",
                               occurred_at=T0 + timedelta(minutes=7 * i),
                               input_tokens=rng.randint(1000, 60_000), cached_tokens=rng.randint(0, 900),
                               output_tokens=rng.randint(10, 4000)))
    return out


async def assert_balances_match(pool: asyncpg.Pool, events: Sequence[UsageRecorded]) -> None:
    """Every balance row is exactly the sum of ``events`` in its scope and period, and no other row exists."""
    expected: dict[tuple[str, str, object], int] = defaultdict(int)
    for e in events:
        scopes = (f"key:{e.key_id}", f"developer:{e.developer}", f"team:{e.team}", "org")
        for scope in (*scopes, f"cost_center:{e.cost_center}") if e.cost_center else scopes:
            expected[(scope, "day", e.occurred_at.date())] += e.cost_micros
            expected[(scope, "month", e.occurred_at.date().replace(day=1))] += e.cost_micros
    rows = await pool.fetch("SELECT scope, period, period_start, spent_micros FROM balances")
    actual = {(r["scope"], r["period"], r["period_start"]): r["spent_micros"] for r in rows}
    assert actual == dict(expected)
