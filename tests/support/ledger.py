"""Helpers for ledger tests: publish events, run the ledger in-process or as a real process."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path

import asyncpg

from spendgate.core.bus import Bus
from spendgate.domain.constants import TOPIC_USAGE
from spendgate.domain.events import UsageRecorded, encode
from spendgate.ledger.consumer import LedgerConsumer
from tests.support.tansu import FAST_GROUP_ENV


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


def spawn_ledger(db_url: str, bus_url: str, data_dir: Path,
                 extra_env: Mapping[str, str] | None = None) -> subprocess.Popen[bytes]:
    """``spendgate ledger`` as a real OS process (so it can be SIGKILLed); ``extra_env`` adds settings."""
    env = {**os.environ, **FAST_GROUP_ENV, "SPENDGATE_DATABASE_URL": db_url, "SPENDGATE_BUS": bus_url,
           "SPENDGATE_DATA_DIR": str(data_dir), "SPENDGATE_LOG_LEVEL": "warning", **(extra_env or {})}
    return subprocess.Popen([sys.executable, "-m", "spendgate", "ledger"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


async def folded_count(pool: asyncpg.Pool) -> int:
    return int(await pool.fetchval("SELECT count(*) FROM usage_events"))


async def consumed(pool: asyncpg.Pool, consumer: str = "spendgate-ledger") -> int:
    return int(await pool.fetchval(
        "SELECT COALESCE(sum(next_offset), 0) FROM consumer_positions WHERE consumer = $1", consumer))
