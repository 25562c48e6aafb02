"""The ledger's batching against real PostgreSQL: a batch folded ahead of its transaction and the turns a
ledger remembers as stored change how much work a batch takes, never what it folds."""

from __future__ import annotations

from datetime import timedelta

import asyncpg

from spendgate.core.bus import Record
from spendgate.domain.constants import TOPIC_USAGE
from spendgate.domain.enforcement.policy import Budget
from spendgate.domain.events import UsageRecorded, encode
from spendgate.ledger.consumer import StoredTurns, decode_batch, fold_ahead, fold_decoded
from spendgate.store.budgets.store import set_budget
from spendgate.store.usage import store as usage
from tests.support.factories import T0, usage_event


def records(events: list[UsageRecorded], first_offset: int = 0) -> list[Record]:
    return [Record(TOPIC_USAGE, 0, first_offset + i, e.key_id, encode(e, source="test")) for i, e in enumerate(events)]


async def fold(pool: asyncpg.Pool, recs: list[Record], *, ahead: bool = True,
               stored_turns: StoredTurns | None = None) -> None:
    batch = decode_batch(recs)
    if ahead:
        batch.ahead = await fold_ahead(pool, [e for _, e in batch.admitted], default_timezone="UTC")
        assert batch.ahead is not None
    known = stored_turns if stored_turns is not None else StoredTurns()
    async with pool.acquire() as conn, conn.transaction():
        outcome = await fold_decoded(conn, batch, consumer="test-ledger", default_timezone="UTC", stored_turns=known)
    known.add(outcome.turns)


async def balances(pool: asyncpg.Pool, scope: str) -> dict[tuple[str, str], int]:
    rows = await pool.fetch("SELECT period, period_start::text AS start, spent_micros FROM balances WHERE scope = $1",
                            scope)
    return {(r["period"], r["start"]): r["spent_micros"] for r in rows}


async def test_a_fold_worked_out_ahead_gives_way_to_a_budget_set_before_its_transaction(pool: asyncpg.Pool) -> None:
    """Folded ahead with no budget, then the team gets a weekly budget in Los Angeles time before the batch's
    transaction: the transaction folds again under it (a week balance, days in the budget's timezone)."""
    late = T0.replace(hour=3)  # 03:00 UTC is the evening before in Los Angeles
    events = [usage_event(occurred_at=late + timedelta(seconds=i), cost_micros=1_000 + i) for i in range(3)]
    batch = decode_batch(records(events))
    batch.ahead = await fold_ahead(pool, [e for _, e in batch.admitted], default_timezone="UTC")
    assert batch.ahead is not None and not any(k.period.value == "week" for k in batch.ahead.result.balances)
    await set_budget(pool, Budget("team:platform", monthly_micros=10**9, weekly_micros=10**8,
                                  timezone="America/Los_Angeles"), actor="test")
    async with pool.acquire() as conn, conn.transaction():
        await fold_decoded(conn, batch, consumer="test-ledger", default_timezone="UTC")
    spent = sum(e.cost_micros for e in events)
    eve = (late - timedelta(days=1)).date().isoformat()
    team = await balances(pool, "team:platform")
    assert team[("day", eve)] == spent
    assert [v for (period, _), v in team.items() if period == "week"] == [spent]
    assert await balances(pool, "developer:alice") == {("day", late.date().isoformat()): spent,
                                                       ("month", late.date().replace(day=1).isoformat()): spent}


async def test_a_fold_worked_out_ahead_gives_way_when_some_events_were_stored_already(pool: asyncpg.Pool) -> None:
    """Redelivered events in the batch (stored by an earlier batch or another ledger) are not folded again,
    although the fold worked out ahead counted them: balances hold each event once."""
    events = [usage_event(occurred_at=T0 + timedelta(seconds=i), cost_micros=500 + i) for i in range(4)]
    await fold(pool, records(events[:2]))
    await fold(pool, records(events, first_offset=2))  # two already folded, two new
    assert await balances(pool, "org") == {("day", T0.date().isoformat()): sum(e.cost_micros for e in events),
                                           ("month", T0.date().replace(day=1).isoformat()):
                                               sum(e.cost_micros for e in events)}
    assert await pool.fetchval("SELECT count(*) FROM usage_events") == 4


async def test_turns_remembered_as_stored_still_count_once_and_new_ones_count(pool: asyncpg.Pool) -> None:
    """A turn whose requests come in three batches counts once; a new turn in a later batch counts; the
    remembered turns are not sent to session_turns again."""
    known = StoredTurns()
    first = [usage_event(turn_id="turn-1", occurred_at=T0)]
    await fold(pool, records(first), stored_turns=known)
    assert ("alice", first[0].session_id, "turn-1") in known
    await pool.execute("DELETE FROM session_turns")  # a turn remembered is not asked for again
    await fold(pool, records([usage_event(turn_id="turn-1", occurred_at=T0 + timedelta(seconds=1))], 1),
               stored_turns=known)
    assert await pool.fetchval("SELECT count(*) FROM session_turns") == 0
    await fold(pool, records([usage_event(turn_id="turn-1", occurred_at=T0 + timedelta(seconds=2)),
                              usage_event(turn_id="turn-2", occurred_at=T0 + timedelta(seconds=3))], 2),
               stored_turns=known)
    totals = await usage.session_totals(pool, "alice", first[0].session_id or "")
    assert totals is not None and (totals.turns, totals.requests) == (2, 4)


def test_stored_turns_forget_the_oldest_beyond_their_capacity() -> None:
    """Bounded memory: past its capacity the oldest turn goes (it is then sent again, and the database's
    key keeps it counted once); a turn seen again becomes the newest."""
    known = StoredTurns(capacity=2)
    known.add([("d", "s", "t1"), ("d", "s", "t2")])
    known.add([("d", "s", "t1")])
    known.add([("d", "s", "t3")])
    assert len(known) == 2
    assert ("d", "s", "t1") in known and ("d", "s", "t3") in known and ("d", "s", "t2") not in known


async def test_sessions_pages_keep_room_for_the_folds_updates(pool: asyncpg.Pool) -> None:
    """The sessions table leaves 30 % of each page free, so most of the ledger's session updates are HOT."""
    options = await pool.fetchval("SELECT reloptions FROM pg_class WHERE relname = 'sessions'")
    assert options == ["fillfactor=70"]
