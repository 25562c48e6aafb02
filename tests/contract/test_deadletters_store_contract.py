"""The dead-letter store's contract (dead_letters), run against every implementation."""

from __future__ import annotations

import abc

import asyncpg

from spendgate.core.bus import Record
from spendgate.store.deadletters.port import POSTGRES, DeadLetterStore


class DeadLetterStoreContract(abc.ABC):
    """A poison record is kept once per consumer, with its payload, whoever redelivers it."""

    @abc.abstractmethod
    def create_store(self) -> DeadLetterStore: ...

    async def test_a_record_is_kept_once_per_consumer(self, pool: asyncpg.Pool) -> None:
        """A redelivery adds nothing; another consumer's copy of the same record is its own dead letter."""
        store = self.create_store()
        poison = Record("spendgate.usage.v1", 2, 41, "k", b"\x00not json")
        assert await store.add_dead_letter(pool, "ledger", poison, "undecodable") is True
        async with pool.acquire() as conn, conn.transaction():
            assert await store.add_dead_letter(conn, "ledger", poison, "undecodable again") is False
        assert await store.add_dead_letter(pool, "alerter", poison, "undecodable") is True
        [kept] = await store.dead_letters(pool, consumer="ledger")
        assert (kept.topic, kept.partition, kept.offset, kept.reason, kept.payload) == (
            "spendgate.usage.v1", 2, 41, "undecodable", b"\x00not json")
        assert [d.consumer for d in await store.dead_letters(pool)] == ["ledger", "alerter"]

    async def test_a_dead_letter_written_in_a_rolled_back_transaction_is_not_kept(self, pool: asyncpg.Pool) -> None:
        """Set aside in the consumer's transaction, it goes with the batch that failed."""
        store = self.create_store()
        conn = await pool.acquire()
        try:
            tx = conn.transaction()
            await tx.start()
            await store.add_dead_letter(conn, "ledger", Record("t", 0, 1, None, b"x"), "bad")
            await tx.rollback()
        finally:
            await pool.release(conn)
        assert await store.dead_letters(pool) == []


class TestPostgresDeadLetterStore(DeadLetterStoreContract):
    def create_store(self) -> DeadLetterStore:
        return POSTGRES
