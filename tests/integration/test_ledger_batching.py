"""The ledger's batching against real PostgreSQL: the turns a ledger remembers as stored and the room left
on session pages change how much work a batch takes, never what it folds."""

from __future__ import annotations

from datetime import timedelta

import asyncpg

from spendgate.core.bus import Record
from spendgate.domain.constants import TOPIC_USAGE
from spendgate.domain.events import UsageRecorded, encode
from spendgate.ledger.consumer import StoredTurns, decode_batch, fold_decoded
from spendgate.store.usage import store as usage
from tests.support.factories import T0, usage_event


def records(events: list[UsageRecorded], first_offset: int = 0) -> list[Record]:
    return [Record(TOPIC_USAGE, 0, first_offset + i, e.key_id, encode(e, source="test")) for i, e in enumerate(events)]


async def fold(pool: asyncpg.Pool, recs: list[Record], *, stored_turns: StoredTurns | None = None) -> None:
    batch = decode_batch(recs)
    known = stored_turns if stored_turns is not None else StoredTurns()
    async with pool.acquire() as conn, conn.transaction():
        outcome = await fold_decoded(conn, batch, consumer="test-ledger", default_timezone="UTC", stored_turns=known)
    known.add(outcome.turns)


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
