"""The rate-limits store's contract (rate_limits, rate_limit_counts), run against every implementation."""

from __future__ import annotations

import abc

import asyncpg
import pytest

from spendgate.domain.errors import ConfigError
from spendgate.domain.ratelimits import Counts, RateLimit
from spendgate.store.ratelimits.port import POSTGRES, RateLimitStore


class RateLimitStoreContract(abc.ABC):
    """Limits are set, replaced, listed and deleted; each proxy's counts are read by the others only."""

    @abc.abstractmethod
    def create_store(self) -> RateLimitStore: ...

    async def test_limits_are_set_replaced_listed_and_deleted(self, pool: asyncpg.Pool) -> None:
        """A second set replaces the first; delete says whether there was one."""
        store = self.create_store()
        await store.set_rate_limit(pool, RateLimit(" developer:alice ", rpm=60), actor="t")
        await store.set_rate_limit(pool, RateLimit("team:platform", tpm=90_000), actor="t")
        await store.set_rate_limit(pool, RateLimit("developer:alice", rpm=30, tpm=10_000), actor="t")
        assert await store.list_rate_limits(pool) == [RateLimit("developer:alice", 30, 10_000),
                                                        RateLimit("team:platform", None, 90_000)]
        assert await store.delete_rate_limit(pool, "team:platform")
        assert not await store.delete_rate_limit(pool, "team:platform")
        assert await store.list_rate_limits(pool) == [RateLimit("developer:alice", 30, 10_000)]

    async def test_a_hostile_limit_never_reaches_the_table(self, pool: asyncpg.Pool) -> None:
        """The store validates too: a negative limit is a ConfigError, nothing written."""
        store = self.create_store()
        with pytest.raises(ConfigError, match="between 1 and"):
            await store.set_rate_limit(pool, RateLimit("developer:alice", rpm=-5), actor="t")
        assert await store.list_rate_limits(pool) == []

    async def test_counts_are_shared_with_the_peers_and_swept(self, pool: asyncpg.Pool) -> None:
        """An instance writes its own counts and reads the others' from a minute on, never its own; a
        republish replaces; old minutes are swept."""
        store = self.create_store()
        alice = "developer:alice"
        assert await store.exchange_counts(pool, "a", [(alice, 100, Counts(1, 10)), (alice, 101, Counts(2, 20))],
                                           100) == []
        assert await store.exchange_counts(pool, "a", [(alice, 101, Counts(5, 50))], 100) == []
        assert await store.exchange_counts(pool, "b", [(alice, 101, Counts(7, 70))], 101, write_first=True) == [
            ("a", alice, 101, 5, 50)]
        assert sorted(await store.exchange_counts(pool, "c", [], 100)) == [
            ("a", alice, 100, 1, 10), ("a", alice, 101, 5, 50), ("b", alice, 101, 7, 70)]
        await store.sweep_counts(pool, 101)
        assert len(await store.exchange_counts(pool, "c", [], 0)) == 2


class TestPostgresRateLimitStore(RateLimitStoreContract):
    def create_store(self) -> RateLimitStore:
        return POSTGRES
