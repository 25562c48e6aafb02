"""The ledger against real PostgreSQL and real buses: idempotent under crashes, rebuildable,
dead-lettering poison, writing each threshold crossing once."""

from __future__ import annotations

import asyncio
import json
import signal
from datetime import timedelta
from pathlib import Path

import asyncpg
import pytest

from spendgate.core.bus.kafka import KafkaBus
from spendgate.core.bus.postgres import PostgresBus
from spendgate.domain.constants import TOPIC_BUDGET, TOPIC_USAGE
from spendgate.domain.events import ThresholdCrossed, decode, encode
from spendgate.ledger.consumer import LedgerConsumer
from spendgate.ledger.outbox import publish_pending
from spendgate.ledger.rebuild import rebuild
from tests.support.factories import T0, usage_event
from tests.support.kafka import KafkaForTest
from tests.support.ledger import (
    assert_balances_match,
    consumed,
    folded_count,
    publish,
    running_ledger,
    spawn_ledger,
    synthetic,
)
from tests.support.waiting import eventually


@pytest.mark.parametrize("bus_kind", ["postgres", pytest.param("kafka", marks=pytest.mark.kafka)])
async def test_sigkill_mid_batch_with_every_event_published_twice(
    bus_kind: str, db_url: str, pool: asyncpg.Pool, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """10,000 events published twice, ledger SIGKILLed mid-fold and restarted: balances exact to the micro."""
    events = synthetic(10_000)
    if bus_kind == "postgres":
        bus: PostgresBus | KafkaBus = PostgresBus(pool, db_url)
        env = {"SPENDGATE_BUS": "postgres"}
    else:
        kafka: KafkaForTest = request.getfixturevalue("kafka")
        bus = kafka.bus(topics=[TOPIC_USAGE])
        env = kafka.env()
    await bus.start()
    try:
        await publish(bus, events)
        await publish(bus, events)
    finally:
        await bus.stop()

    first = spawn_ledger(db_url, env, tmp_path)
    try:
        await eventually(lambda: folded_count(pool), until=lambda n: n > 0, timeout_s=60, what="folding to start")
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    finally:
        if first.poll() is None:
            first.kill()
    partial = await folded_count(pool)
    assert partial < 10_000, "the ledger finished before it could be killed; kill earlier"

    second = spawn_ledger(db_url, env, tmp_path)
    try:
        await eventually(lambda: consumed(pool), until=lambda n: n == 20_000, timeout_s=90,
                         what="every published record to be consumed")
    finally:
        second.terminate()
        second.wait(20)
    assert await folded_count(pool) == 10_000
    await assert_balances_match(pool, events)
    total = await pool.fetchval("SELECT sum(spent_micros) FROM balances WHERE scope = 'org' AND period = 'month'")
    assert total == sum(e.cost_micros for e in events)


async def test_a_stop_while_a_batch_is_written_finishes_it_and_starts_no_other(
    db_url: str, pool: asyncpg.Pool
) -> None:
    """The ledger polls the next batch while the last one is written. Stopped while a write waits on the
    database, it finishes that batch, writes none of the one it polled ahead, and the next start folds
    the rest exactly."""
    events = synthetic(300, seed=5)
    bus = PostgresBus(pool, db_url)
    await bus.start()
    try:
        await publish(bus, events)
        stop = asyncio.Event()
        consumer = LedgerConsumer(pool, bus, batch_size=100)
        async with pool.acquire() as blocker:
            held = blocker.transaction()
            await held.start()
            await blocker.execute("LOCK TABLE balances IN EXCLUSIVE MODE")
            task = asyncio.create_task(consumer.run(stop))
            await eventually(lambda: pool.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%balances%'"),
                what="the first batch's write to wait on the lock")
            stop.set()
            await held.rollback()
        await asyncio.wait_for(task, 30)
        assert await consumed(pool) == 100
        assert await folded_count(pool) == 100
        async with running_ledger(pool, bus, batch_size=100):
            await eventually(lambda: consumed(pool), until=lambda n: n == 300, what="the rest to be folded")
    finally:
        await bus.stop()
    await assert_balances_match(pool, events)


async def test_rebuild_reproduces_the_incremental_fold(db_url: str, pool: asyncpg.Pool) -> None:
    """`ledger rebuild` recomputes balances and sessions identical to what the consumer folded."""
    events = synthetic(3000, seed=11)
    await pool.execute("INSERT INTO budgets (scope, daily_micros, timezone) VALUES ('team:payments', 5000000, "
                       "'Asia/Tokyo')")
    bus = PostgresBus(pool, db_url)
    async with running_ledger(pool, bus, batch_size=250):
        await publish(bus, events)
        await eventually(lambda: folded_count(pool), until=lambda n: n == 3000, what="all events folded")
    snapshot_sql = ["SELECT scope, period, period_start, spent_micros, requests FROM balances ORDER BY 1, 2, 3",
                    "SELECT * FROM sessions ORDER BY session_id", "SELECT * FROM session_turns ORDER BY 1, 2"]
    before = [[tuple(r) for r in await pool.fetch(q)] for q in snapshot_sql]
    assert await rebuild(pool) == 3000
    after = [[tuple(r) for r in await pool.fetch(q)] for q in snapshot_sql]
    assert before == after
    tokyo = await pool.fetch("SELECT DISTINCT period_start FROM balances WHERE scope = 'team:payments'")
    assert tokyo, "the Tokyo-budgeted team has balances"


async def test_poison_goes_to_dead_letters_and_folding_continues(db_url: str, pool: asyncpg.Pool) -> None:
    """Malformed and unknown-version events are dead-lettered with a reason; good ones still fold."""
    good = [usage_event(occurred_at=T0 + timedelta(seconds=i)) for i in range(5)]
    doc = json.loads(encode(good[0], source="t"))
    future = json.dumps({**doc, "data": {**doc["data"], "schema_version": 9, "event_id": "x"}}).encode()
    bus = PostgresBus(pool, db_url, partitions=1)
    await bus.publish_many(TOPIC_USAGE, [("k_alice", encode(good[0], source="t")), ("k_alice", b"{not json"),
                                         ("k_alice", future)])
    await bus.publish_many(TOPIC_USAGE, [("k_alice", encode(e, source="t")) for e in good[1:]])
    async with running_ledger(pool, bus):
        await eventually(lambda: folded_count(pool), until=lambda n: n == 5, what="good events folded")
        await eventually(lambda: consumed(pool), until=lambda n: n == 7, what="poison consumed")
    rows = await pool.fetch('SELECT "offset", reason FROM dead_letters ORDER BY "offset"')
    assert [r["offset"] for r in rows] == [1, 2]
    assert "not a CloudEvents" in rows[0]["reason"] and "invalid" in rows[1]["reason"]


async def test_crossings_written_once_and_published(db_url: str, pool: asyncpg.Pool) -> None:
    """Crossing 80/95/110 % of a daily team budget writes three crossings once, even when replayed."""
    await pool.execute("INSERT INTO budgets (scope, daily_micros) VALUES ('team:platform', 1000000)")
    events = [usage_event(cost_micros=100_000, occurred_at=T0 + timedelta(seconds=i)) for i in range(12)]
    bus = PostgresBus(pool, db_url)
    async with running_ledger(pool, bus):
        await publish(bus, events)
        await publish(bus, events)  # redelivered duplicates change nothing
        await eventually(lambda: consumed(pool), until=lambda n: n == 24, what="all consumed")
    rows = await pool.fetch("SELECT threshold_pct, stage, spent_micros, trigger_event_id FROM threshold_crossings "
                            "WHERE scope = 'team:platform' AND period = 'day' ORDER BY threshold_pct")
    assert [(r["threshold_pct"], r["stage"], r["spent_micros"]) for r in rows] == [
        (80, "alert", 800_000), (95, "downgrade", 1_000_000), (110, "pause", 1_100_000)]
    assert str(rows[0]["trigger_event_id"]) == events[7].event_id
    assert await publish_pending(pool, bus, source="test") == 3
    assert await publish_pending(pool, bus, source="test") == 0
    c = bus.consumer("reader", [TOPIC_BUDGET])
    await c.start()
    got = await c.poll(timeout_s=2)
    await c.stop()
    crossed = [decode(r.value).data for r in got]
    assert sorted(x.threshold_pct for x in crossed if isinstance(x, ThresholdCrossed)) == [80, 95, 110]
