"""The consumer-position store's contract (consumer_positions, in the bus family), run against every
implementation."""

from __future__ import annotations

import abc

import asyncpg

from spendgate.core.bus import POSITIONS, PositionStore, TopicPartition

A0, A1, B0 = TopicPartition("a", 0), TopicPartition("a", 1), TopicPartition("b", 0)


class PositionStoreContract(abc.ABC):
    """Positions are per consumer, saved with the consumer's results, and never go backwards."""

    @abc.abstractmethod
    def create_store(self) -> PositionStore: ...

    async def test_saved_positions_come_back_for_the_partitions_asked(self, pool: asyncpg.Pool) -> None:
        """Only the asked partitions that have a position; another consumer's are its own."""
        store = self.create_store()
        await store.save_positions(pool, "ledger", {A0: 10, A1: 3})
        await store.save_positions(pool, "other", {A0: 99, B0: 1})
        assert await store.load_positions(pool, "ledger", [A0, B0]) == {A0: 10}
        assert await store.load_positions(pool, "ledger", [A0, A1]) == {A0: 10, A1: 3}
        assert await store.load_positions(pool, "nobody", [A0]) == {}

    async def test_a_position_never_goes_backwards(self, pool: asyncpg.Pool) -> None:
        """A late or replayed save of a lower offset keeps the higher one; a higher one moves on."""
        store = self.create_store()
        await store.save_positions(pool, "ledger", {A0: 10})
        await store.save_positions(pool, "ledger", {A0: 4})
        assert await store.load_positions(pool, "ledger", [A0]) == {A0: 10}
        await store.save_positions(pool, "ledger", {A0: 12})
        assert await store.load_positions(pool, "ledger", [A0]) == {A0: 12}

    async def test_a_position_is_kept_only_with_the_transaction_that_saved_it(self, pool: asyncpg.Pool) -> None:
        """Saved atomically with the results: rolled back with them, committed with them."""
        store = self.create_store()
        conn = await pool.acquire()
        try:
            tx = conn.transaction()
            await tx.start()
            await store.save_positions(conn, "ledger", {A0: 5})
            await tx.rollback()
            assert await store.load_positions(pool, "ledger", [A0]) == {}
            async with conn.transaction():
                await store.save_positions(conn, "ledger", {A0: 6})
        finally:
            await pool.release(conn)
        assert await store.load_positions(pool, "ledger", [A0]) == {A0: 6}


class TestPostgresPositionStore(PositionStoreContract):
    def create_store(self) -> PositionStore:
        return POSITIONS
