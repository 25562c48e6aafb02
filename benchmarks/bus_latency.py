"""Embedded Postgres bus: how fast a waiting consumer sees a new record.

    python -m benchmarks.bus_latency [--records 200]

Publishes one record at a time while a consumer waits in ``poll`` and prints the publish→receive
latency percentiles. The consumer is woken by LISTEN/NOTIFY; its one-second poll is only a fallback.

Baseline, same run, same database: the simplest LISTEN/NOTIFY queue one could write (insert a row
and notify in one transaction; the listener wakes and selects the rows after its last id). Targets:
the bus's p50 at most 2x the baseline's and its p99 at most 4x (the bus also assigns offsets under a
row lock, tracks group membership and commits positions; tails are noisier), and p99 within 100 ms,
the wake-up the ledger and alerter are designed around. Exits non-zero when one is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

import asyncpg

if __package__ in (None, ""):  # run as a file (python benchmarks/x.py): make the repo importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.support import Verdict, scratch_database
from spendgate.core.bus.postgres import PostgresBus


def percentiles(latencies: list[float]) -> tuple[float, float]:
    q = statistics.quantiles(latencies, n=100)
    return q[49], q[98]


async def bus_latencies(url: str, records: int) -> list[float]:
    pool = await asyncpg.create_pool(url, min_size=2, max_size=4)
    bus = PostgresBus(pool, url, partitions=4)
    consumer = bus.consumer("latency", ["t"])
    await consumer.start()
    latencies: list[float] = []
    try:
        for i in range(records):
            receive = asyncio.create_task(consumer.poll(timeout_s=2))
            await asyncio.sleep(0.005)  # let the consumer block in poll
            sent = time.perf_counter()
            await bus.publish("t", f"k{i}", b"x")
            got = await receive
            while not got:
                got = await consumer.poll(timeout_s=2)
            latencies.append((time.perf_counter() - sent) * 1000)
    finally:
        await consumer.stop()
        await pool.close()
    return latencies


async def notify_latencies(url: str, records: int) -> list[float]:
    """The same measurement on a bare LISTEN/NOTIFY queue table."""
    writer = await asyncpg.connect(url)
    listener = await asyncpg.connect(url)
    await writer.execute("CREATE TABLE bench_queue (id bigserial PRIMARY KEY, value bytea NOT NULL)")
    woken = asyncio.Event()
    await listener.add_listener("bench_queue", lambda *_: woken.set())
    last = 0
    latencies: list[float] = []
    try:
        for _ in range(records):
            woken.clear()
            await asyncio.sleep(0.005)
            sent = time.perf_counter()
            async with writer.transaction():
                await writer.execute("INSERT INTO bench_queue (value) VALUES ('x')")
                await writer.execute("NOTIFY bench_queue")
            await asyncio.wait_for(woken.wait(), timeout=2)
            rows = await listener.fetch("SELECT id FROM bench_queue WHERE id > $1 ORDER BY id", last)
            last = rows[-1]["id"]
            latencies.append((time.perf_counter() - sent) * 1000)
    finally:
        await writer.close()
        await listener.close()
    return latencies


async def main(records: int) -> int:
    async with scratch_database() as url:
        bus = await bus_latencies(url, records)
        floor = await notify_latencies(url, records)
    (b50, b99), (f50, f99) = percentiles(bus), percentiles(floor)
    print(f"over {records} records each:")
    print(f"  Postgres bus wake-up      p50 {b50:6.1f} ms  p99 {b99:6.1f} ms  max {max(bus):6.1f} ms")
    print(f"  bare LISTEN/NOTIFY queue  p50 {f50:6.1f} ms  p99 {f99:6.1f} ms  max {max(floor):6.1f} ms")
    verdict = Verdict("bus latency")
    verdict.at_most("wake-up p50 vs bare queue", b50, f50, 2, unit=" ms", baseline_name="bare")
    verdict.at_most("wake-up p99 vs bare queue", b99, f99, 4, unit=" ms", baseline_name="bare")
    verdict.check("wake-up p99 within 100 ms", f"{b99:.1f} ms", "<= 100 ms", b99 <= 100)
    return verdict.finish()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=200)
    sys.exit(asyncio.run(main(parser.parse_args().records)))
