"""Ledger fold throughput: N synthetic usage events through each bus into PostgreSQL.

    python -m benchmarks.ledger_fold [--events 50000] [--batch 1000]

Arms (same events, fresh database each): decode only (CPU floor); fold straight into PostgreSQL with
no bus (the database floor); end to end through the embedded Postgres bus; end to end through Kafka
(a real Apache Kafka broker started here, tests/support/kafka.py: KRaft, idempotent producer, acks=all),
with the rate a consumer reads the topic at folding nothing (what the bus alone allows).
Prints events/s per arm and the ratio to the database floor, so the figures mean something on a noisy
shared machine, and the CPU per folded event of this process, of PostgreSQL and (through Kafka) of the
broker. Targets: folding through either bus keeps at least 0.6x the database floor's rate in the same run
(the bus may cost at most 40 %), and folding through Kafka reaches 20,000 events/s (issue 15).
Exits non-zero when one is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg

if __package__ in (None, ""):  # run as a file (python benchmarks/x.py): make the repo importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.support import Verdict, cpu_s, drop_db, fresh_db, postgres_server, server_cpu_s
from spendgate.core.bus.kafka import KafkaBus
from spendgate.core.bus.postgres import PostgresBus
from spendgate.core.logs import configure_logging
from spendgate.domain.constants import TOPIC_USAGE
from spendgate.domain.events import UsageRecorded, decode, encode
from spendgate.ledger.consumer import LedgerConsumer, fold_events
from spendgate.store.usage.store import insert_events
from tests.support.factories import usage_event
from tests.support.kafka import KafkaBroker

KAFKA_FOLD_TARGET = 20_000
"""Events/s folded through Kafka with the ledger's batching (issue 15; 8,400 on Tansu)."""


def synthetic(n: int) -> list[UsageRecorded]:
    rng = random.Random(1)
    t0 = datetime(2026, 11, 1, tzinfo=UTC)
    return [usage_event(key_id=f"k{i % 200}", developer=f"dev{i % 200}", team=f"team{i % 12}",
                        session_id=f"s{i % 3000}", turn_id=f"t{i % 9000}", occurred_at=t0 + timedelta(seconds=i * 20),
                        input_tokens=rng.randint(1000, 80_000), cached_tokens=rng.randint(0, 900),
                        output_tokens=rng.randint(10, 3000)) for i in range(n)]


async def run_consumer_until(
    pool: asyncpg.Pool, bus: PostgresBus | KafkaBus, n: int, batch: int
) -> tuple[float, float]:
    """Seconds until the first batch is folded (start-up, group join) and events/s from then on."""
    stop = asyncio.Event()
    consumer = LedgerConsumer(pool, bus, batch_size=batch)
    started = time.perf_counter()
    task = asyncio.create_task(consumer.run(stop))
    first_at, first_count = 0.0, 0
    # The consumer's own count of events folded (committed): asking the database instead, with a
    # count(*) every 10 ms, took a good share of the server's CPU from the fold it measured.
    while (count := consumer.folded) < n:
        if count and not first_at:
            first_at, first_count = time.perf_counter(), count
        await asyncio.sleep(0.01)
    done = time.perf_counter()
    stop.set()
    await task
    return first_at - started, (n - first_count) / (done - first_at)


class CpuMeter:
    """CPU this process and the PostgreSQL server use during an arm: what an event costs whatever the
    machine's load, and so how fast the fold could go on this many cores with nothing else running."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self.own = 0.0
        self.server: float | None = None

    async def start(self) -> None:
        self.own, self.server = time.process_time(), await server_cpu_s(self.pool)

    async def per_event(self, n: int) -> tuple[float, float | None]:
        own = (time.process_time() - self.own) * 1e6 / n
        server = await server_cpu_s(self.pool)
        if server is None or self.server is None:
            return own, None
        return own, (server - self.server) * 1e6 / n


async def consume_rate(bus: KafkaBus, n: int, batch: int) -> float:
    """Events/s a consumer group reads the topic at, folding nothing: how much of the fold the bus costs."""
    consumer = bus.consumer("bench-consume-only", [TOPIC_USAGE])
    await consumer.start()
    try:
        got = len(await consumer.poll(max_records=batch, timeout_s=30))  # joined and fetching from here
        started = time.perf_counter()
        while got < n:
            got += len(await consumer.poll(max_records=batch, timeout_s=1))
        return n / (time.perf_counter() - started)
    finally:
        await consumer.stop()


async def main(n: int, batch: int) -> int:
    async with postgres_server() as server:
        return await run_arms(server, n, batch)


async def run_arms(server: str, n: int, batch: int) -> int:
    configure_logging("warning")
    events = synthetic(n)
    raw = [encode(e, source="bench") for e in events]
    rows: list[tuple[str, float]] = []
    cpu_rows: list[tuple[str, float, float | None]] = []
    broker_us: float | None = None

    t = time.perf_counter()
    for r in raw:
        decode(r)
    rows.append(("decode only (CPU floor)", n / (time.perf_counter() - t)))

    url = await fresh_db(server)
    pool = await asyncpg.create_pool(url, min_size=2, max_size=8)
    cpu = CpuMeter(pool)
    await cpu.start()
    t = time.perf_counter()
    for i in range(0, n, batch):
        async with pool.acquire() as conn, conn.transaction():
            new = await insert_events(conn, events[i:i + batch])
            await fold_events(conn, new, default_timezone="UTC")
    db_floor = n / (time.perf_counter() - t)
    rows.append(("fold into PostgreSQL, no bus (DB floor)", db_floor))
    cpu_rows.append(("fold into PostgreSQL, no bus", *await cpu.per_event(n)))
    await pool.close()
    await drop_db(server, url)

    url = await fresh_db(server)
    pool = await asyncpg.create_pool(url, min_size=2, max_size=8)
    pg_bus = PostgresBus(pool, url)
    t = time.perf_counter()
    for i in range(0, n, batch):
        await pg_bus.publish_many(TOPIC_USAGE, [(e.key_id, r) for e, r in zip(events[i:i + batch], raw[i:i + batch],
                                                                             strict=True)])
    rows.append(("publish to Postgres bus", n / (time.perf_counter() - t)))
    startup, rate = await run_consumer_until(pool, pg_bus, n, batch)
    rows.append((f"fold through Postgres bus (start-up {startup:.1f}s)", rate))
    pg_rate = rate
    await pool.close()
    await drop_db(server, url)

    broker = KafkaBroker()
    broker.start()
    try:
        url = await fresh_db(server)
        pool = await asyncpg.create_pool(url, min_size=2, max_size=8)
        kafka = KafkaBus(broker.bootstrap, topics=[TOPIC_USAGE])
        await kafka.start()
        t = time.perf_counter()
        for i in range(0, n, batch):
            await kafka.publish_many(TOPIC_USAGE, [(e.key_id, r) for e, r in zip(events[i:i + batch],
                                                                                raw[i:i + batch], strict=True)])
        rows.append(("publish to Kafka (acks=all, idempotent)", n / (time.perf_counter() - t)))
        rows.append(("consume from Kafka, no fold (bus ceiling)", await consume_rate(kafka, n, batch)))
        cpu = CpuMeter(pool)
        await cpu.start()
        broker_pid = broker.proc.pid if broker.proc is not None else None
        broker_started = cpu_s(broker_pid) if broker_pid is not None else 0.0
        startup, rate = await run_consumer_until(pool, kafka, n, batch)
        if broker_pid is not None:  # the broker serving the fetches runs on the same cores
            broker_us = (cpu_s(broker_pid) - broker_started) * 1e6 / n
        rows.append((f"fold through Kafka (group join {startup:.1f}s)", rate))
        cpu_rows.append(("fold through Kafka", *await cpu.per_event(n)))
        kafka_rate = rate
        await kafka.stop()
        await pool.close()
        await drop_db(server, url)
    finally:
        broker.cleanup()

    print(f"ledger fold benchmark: {n} events, batch {batch}")
    print(f"{'arm':48} {'events/s':>10} {'x DB floor':>10}")
    for name, rate in rows:
        print(f"{name:48} {rate:10.0f} {rate / db_floor:10.2f}")
    print(f"\nCPU per folded event (µs)       {'ledger':>8} {'PostgreSQL':>11} {'ceiling':>11}")
    for name, own, pg in cpu_rows:
        if pg is None:
            print(f"{name:32} {own:8.1f} {'n/a':>11}  (the server is not on this machine)")
            continue
        ceiling = (os.cpu_count() or 1) * 1e6 / (own + pg)
        print(f"{name:32} {own:8.1f} {pg:11.1f} {ceiling:8,.0f} ev/s with all {os.cpu_count()} cores on the fold")
    if broker_us is not None:
        print(f"{'Kafka broker (JVM) while folding':32} {broker_us:8.1f} µs per event, beside the two above")
    verdict = Verdict("ledger fold")
    verdict.at_least("fold through the Postgres bus", pg_rate, db_floor, 0.6, unit=" ev/s", baseline_name="DB floor")
    verdict.at_least("fold through Kafka", kafka_rate, db_floor, 0.6, unit=" ev/s", baseline_name="DB floor")
    verdict.check("fold through Kafka, absolute", f"{kafka_rate:,.0f} ev/s", f">= {KAFKA_FOLD_TARGET:,}",
                  kafka_rate >= KAFKA_FOLD_TARGET)
    return verdict.finish()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--batch", type=int, default=1000)
    args = parser.parse_args()
    sys.exit(asyncio.run(main(args.events, args.batch)))
