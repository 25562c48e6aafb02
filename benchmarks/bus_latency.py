"""Embedded Postgres bus: how fast a waiting consumer sees a new record (target: within 100 ms).

    python -m benchmarks.bus_latency [--records 200]

Publishes one record at a time while a consumer waits in ``poll`` and prints the publish→receive
latency percentiles. The consumer is woken by LISTEN/NOTIFY; its one-second poll is only a fallback.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

import asyncpg

from benchmarks.ledger_fold import drop_db, fresh_db
from spendgate.core.bus.postgres import PostgresBus


async def main(records: int) -> None:
    url = await fresh_db()
    pool = await asyncpg.create_pool(url, min_size=2, max_size=4)
    bus = PostgresBus(pool, url, partitions=4)
    consumer = bus.consumer("latency", ["t"])
    await consumer.start()
    latencies: list[float] = []
    for i in range(records):
        receive = asyncio.create_task(consumer.poll(timeout_s=2))
        await asyncio.sleep(0.005)  # let the consumer block in poll
        sent = time.perf_counter()
        await bus.publish("t", f"k{i}", b"x")
        got = await receive
        while not got:
            got = await consumer.poll(timeout_s=2)
        latencies.append((time.perf_counter() - sent) * 1000)
    await consumer.stop()
    await pool.close()
    await drop_db(url)
    q = statistics.quantiles(latencies, n=100)
    print(f"Postgres bus wake-up latency over {records} records: p50 {q[49]:.1f} ms, p99 {q[98]:.1f} ms, "
          f"max {max(latencies):.1f} ms (target: 100 ms)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=200)
    asyncio.run(main(parser.parse_args().records))
