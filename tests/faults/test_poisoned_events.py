"""Issue 11, item 1: a poisoned event never stops the ledger.

Each test publishes, on the real Postgres bus, records a proxy that does not normalise (or anyone who can
write to the topic) could publish, among good ones in the same batch, and runs the real ledger consumer
on real PostgreSQL: the good events fold, the bad record is sanitised or dead-lettered, the consumer's
position moves past the batch and the consumer is still running.
"""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from spendgate.core.bus.postgres import PostgresBus
from spendgate.domain.constants import TOPIC_USAGE
from spendgate.domain.events import UsageRecorded, encode
from spendgate.ledger import consumer as ledger_consumer
from spendgate.ledger.consumer import LedgerConsumer
from tests.support.factories import T0, usage_event
from tests.support.ledger import consumed, folded_count
from tests.support.proxy_harness import published_usage, running_proxy
from tests.support.waiting import eventually

BATCH = 1000


def raw(event: UsageRecorded, **data: Any) -> bytes:
    """``event`` as CloudEvents JSON with ``data`` fields replaced (values no typed event would carry)."""
    doc = json.loads(encode(event, source="test"))
    doc["data"].update(data)
    return json.dumps(doc).encode()


def good_events(n: int) -> list[UsageRecorded]:
    return [usage_event(occurred_at=T0 + timedelta(seconds=i), turn_id=f"turn-{i}") for i in range(n)]


async def org_spend(pool: asyncpg.Pool) -> int:
    return int(await pool.fetchval(
        "SELECT COALESCE(sum(spent_micros), 0) FROM balances WHERE scope = 'org' AND period = 'month'"))


async def fold_all(pool: asyncpg.Pool, db_url: str, values: list[bytes]) -> LedgerConsumer:
    """Publish ``values`` as one batch, run the ledger until every record is consumed, check it still runs."""
    bus = PostgresBus(pool, db_url, partitions=1)
    await bus.publish_many(TOPIC_USAGE, [("k_alice", v) for v in values])
    stop = asyncio.Event()
    ledger = LedgerConsumer(pool, bus, batch_size=BATCH)
    task = asyncio.create_task(ledger.run(stop))
    try:
        await eventually(lambda: consumed(pool), until=lambda n: n == len(values) or task.done(), timeout_s=20,
                         what="the whole batch consumed")
        assert not task.done(), f"the ledger stopped: {task.exception()!r}"
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(task, return_exceptions=True), 20)
    assert await consumed(pool) == len(values)
    return ledger


@pytest.mark.parametrize("fields", [
    {"turn_id": "turn\x00-1"},
    {"repo": "/home/alice/src/\x00api"},
    {"model_requested": "gpt-5.1\x00", "model_used": "gpt-5.1\x00"},
    {"endpoint": "/v1/responses\x00/x"},
    {"session_id": "s\x00\x1b[31m", "client": "codex\x00exec", "upstream_request_id": "req\x00"},
], ids=["turn_id", "workspaces-key", "model", "path", "session-client-request-id"])
async def test_nul_in_a_string_is_stripped_and_the_batch_folds(
    fields: dict[str, str], db_url: str, pool: asyncpg.Pool
) -> None:
    """A NUL (or another control character) in a client-controlled string folds, without it, with its batch."""
    good = good_events(6)
    poisoned = usage_event(occurred_at=T0 + timedelta(seconds=3))
    values = [encode(e, source="test") for e in good[:3]] + [raw(poisoned, **fields)]
    values += [encode(e, source="test") for e in good[3:]]
    await fold_all(pool, db_url, values)
    assert await folded_count(pool) == 7
    assert await org_spend(pool) == sum(e.cost_micros for e in [*good, poisoned])
    row = await pool.fetchrow("SELECT * FROM usage_events WHERE event_id = $1", poisoned.event_id)
    for name, value in fields.items():
        assert row[name] == "".join(c for c in value if c.isprintable())
    assert await pool.fetchval("SELECT count(*) FROM dead_letters") == 0


@pytest.mark.parametrize("fields", [
    {"output_tokens": 99999999999999999999999, "cost_micros": 999999999999999999999999999},
    {"output_tokens": 99999999999999999999999},
    {"cost_micros": 2**63},
    {"input_tokens": -5},
    {"latency_ms": 2**40},
    {"event_id": "not-a-uuid"},
], ids=["huge-output-and-cost", "huge-output", "cost-past-int64", "negative-tokens", "latency-past-int4",
        "event-id"])
async def test_an_impossible_number_is_dead_lettered_and_the_batch_folds(
    fields: dict[str, Any], db_url: str, pool: asyncpg.Pool
) -> None:
    """An upstream usage block of 10^23 output tokens (int64 overflow) and its kin are dead-lettered with the
    reason and the raw payload; the other events of the batch fold and the position moves past it."""
    good = good_events(6)
    bad = raw(usage_event(occurred_at=T0), **fields)
    values = [encode(e, source="test") for e in good[:2]] + [bad] + [encode(e, source="test") for e in good[2:]]
    await fold_all(pool, db_url, values)
    assert await folded_count(pool) == 6
    assert await org_spend(pool) == sum(e.cost_micros for e in good)
    rows = await pool.fetch('SELECT "offset", reason, payload FROM dead_letters')
    assert [(r["offset"], bytes(r["payload"])) for r in rows] == [(2, bad)]
    assert next(iter(fields)) in rows[0]["reason"]


async def test_a_record_that_is_not_json_is_dead_lettered(db_url: str, pool: asyncpg.Pool) -> None:
    """Bytes that are not JSON at all, between good events, are dead-lettered; the batch folds."""
    good = good_events(4)
    values = [encode(good[0], source="test"), b"\x00\xff{not json", *(encode(e, source="test") for e in good[1:])]
    await fold_all(pool, db_url, values)
    assert await folded_count(pool) == 4
    rows = await pool.fetch('SELECT "offset", reason FROM dead_letters')
    assert [r["offset"] for r in rows] == [1] and "not a CloudEvents" in rows[0]["reason"]


async def test_what_the_database_refuses_is_isolated_inside_its_batch(
    db_url: str, pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The second line of defence: with the admission check switched off, two records PostgreSQL refuses
    (a NUL in text, a token count past int64) inside a batch of 40 are found by bisection and dead-lettered
    alone; the 38 others fold, balances exact, and the position moves past the batch."""
    monkeypatch.setattr(ledger_consumer, "admit", lambda event: event, raising=False)
    good = good_events(38)
    values = [encode(e, source="test") for e in good]
    values.insert(7, raw(usage_event(occurred_at=T0), turn_id="t\x00"))
    values.insert(31, raw(usage_event(occurred_at=T0), output_tokens=99999999999999999999999))
    await fold_all(pool, db_url, values)
    assert await folded_count(pool) == 38
    assert await org_spend(pool) == sum(e.cost_micros for e in good)
    rows = await pool.fetch('SELECT "offset", reason FROM dead_letters ORDER BY "offset"')
    assert [r["offset"] for r in rows] == [7, 31]
    assert all("database refused" in r["reason"] for r in rows)
    sessions = await pool.fetchval("SELECT requests FROM sessions")
    assert sessions == 38


async def test_nul_in_codex_turn_metadata_through_the_proxy(db_url: str, pool: asyncpg.Pool, tmp_path: Path) -> None:
    """A NUL in ``x-codex-turn-metadata`` (turn_id and the workspaces key) sent through the real proxy: the
    ledger folds that request and the next one, and keeps running."""
    meta = json.dumps({"turn_id": "turn\u00001", "workspaces": {"/home/alice/\u0000src": {}}})
    async with running_proxy(db_url, tmp_path) as h, aiohttp.ClientSession() as http:
        for headers in (h.headers(**{"x-codex-turn-metadata": meta}), h.headers()):
            async with http.post(f"{h.base_url}/responses", headers=headers,
                                 json={"model": "gpt-5.1", "input": "hi"}) as resp:
                assert resp.status == 200
                await resp.read()
        await eventually(lambda: published_usage(h.runtime.pool), until=lambda e: len(e) == 2,
                         what="both usage events published")
        stop = asyncio.Event()
        task = asyncio.create_task(LedgerConsumer(h.runtime.pool, h.runtime.bus).run(stop))
        try:
            await eventually(lambda: consumed(pool), until=lambda n: n == 2 or task.done(),
                             what="both records consumed")
            assert not task.done(), f"the ledger stopped: {task.exception()!r}"
        finally:
            stop.set()
            await asyncio.wait_for(asyncio.gather(task, return_exceptions=True), 20)
    assert await folded_count(pool) == 2
    assert "\x00" not in "".join(r["turn_id"] + r["repo"] for r in await pool.fetch(
        "SELECT turn_id, repo FROM usage_events WHERE turn_id IS NOT NULL AND repo IS NOT NULL"))


async def test_an_event_at_the_end_of_time_is_dead_lettered(db_url: str, pool: asyncpg.Pool) -> None:
    """An ``occurred_at`` PostgreSQL stores but whose month has no end in Python (9999-12-31) breaks the
    fold, not the insert: bisection finds it and dead-letters it; the rest of the batch folds."""
    await pool.execute("INSERT INTO budgets (scope, monthly_micros) VALUES ('team:platform', 1000000)")
    good = good_events(5)
    bad = raw(usage_event(occurred_at=T0), occurred_at="9999-12-31T23:59:59Z")
    await fold_all(pool, db_url, [encode(e, source="test") for e in good[:2]] + [bad]
                   + [encode(e, source="test") for e in good[2:]])
    assert await folded_count(pool) == 5
    assert await org_spend(pool) == sum(e.cost_micros for e in good)
    assert [r["offset"] for r in await pool.fetch('SELECT "offset" FROM dead_letters')] == [2]
