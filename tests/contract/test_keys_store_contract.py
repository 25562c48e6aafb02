"""The keys store's contract (virtual_keys, and the team directory it reads), run against every implementation."""

from __future__ import annotations

import abc
from dataclasses import dataclass
from datetime import date, timedelta

import asyncpg
import pytest

from spendgate.domain.periods import PeriodKind
from spendgate.store.balances.port import POSTGRES as BALANCES
from spendgate.store.keys.port import POSTGRES, KeyStore
from spendgate.store.keys.store import hash_secret, looks_like_key
from spendgate.store.usage.port import POSTGRES as USAGE
from tests.support.factories import T0, usage_event


@dataclass(frozen=True)
class MonthOf:
    scope: str
    period_start: date
    period: PeriodKind = PeriodKind.MONTH


@dataclass(frozen=True)
class Spent:
    spent_micros: int
    requests: int = 1


class KeyStoreContract(abc.ABC):
    """A key is found by the hash of its secret, revoked once, and every change moves the version feed."""

    @abc.abstractmethod
    def create_store(self) -> KeyStore: ...

    async def test_a_created_key_is_found_by_the_hash_of_its_secret(self, pool: asyncpg.Pool) -> None:
        """The secret is shown once and never stored; the version feed carries its hash and record."""
        store = self.create_store()
        created = await store.create_key(pool, developer=" alice ", team="platform")
        assert looks_like_key(created.secret) and created.key.key_prefix == created.secret[:12]
        assert (created.key.developer, created.key.team, created.key.cost_center) == ("alice", "platform", "platform")
        [change] = await store.keys_changed_since(pool, -1)
        assert change.key_hash == hash_secret(created.secret) and change.key == created.key
        assert await store.get_key(pool, created.key.key_id) == created.key
        assert await store.list_keys(pool) == [created.key]
        with pytest.raises(ValueError, match="must not be empty"):
            await store.create_key(pool, developer=" ", team="platform")

    async def test_revoking_is_once_and_moves_the_version_feed(self, pool: asyncpg.Pool) -> None:
        """By id or displayed prefix; the first revocation time stays; a revoked key leaves the active list."""
        store = self.create_store()
        kept = await store.create_key(pool, developer="bob", team="t", cost_center="cc")
        gone = await store.create_key(pool, developer="alice", team="t")
        before = max(c.key.version for c in await store.keys_changed_since(pool, -1))
        revoked = await store.revoke_key(pool, gone.key.key_prefix)
        assert revoked is not None and revoked.revoked_at is not None and not revoked.active
        again = await store.revoke_key(pool, gone.key.key_id)
        assert again is not None and again.revoked_at == revoked.revoked_at
        assert [c.key.key_id for c in await store.keys_changed_since(pool, before)] == [gone.key.key_id]
        assert await store.list_keys(pool, include_revoked=False) == [kept.key]
        assert await store.revoke_key(pool, "no-such-key") is None

    async def test_the_team_directory_joins_keys_usage_and_the_months_balance(self, pool: asyncpg.Pool) -> None:
        """Teams with keys or with usage this month; their people, keys and month's spend, biggest first."""
        store = self.create_store()
        await store.create_key(pool, developer="alice", team="platform", cost_center="cc-1")
        bob = await store.create_key(pool, developer="bob", team="platform", cost_center="cc-2")
        await store.revoke_key(pool, bob.key.key_id)
        long_ago = T0 - timedelta(days=60)
        await USAGE.insert_events(pool, [usage_event(developer="carol", team="data", cost_center="cc-9"),
                                         usage_event(developer="old", team="gone", occurred_at=long_ago)])
        month = date(2026, 11, 1)
        await BALANCES.apply_balances(pool, {MonthOf("team:data", month): Spent(70)})
        rows = await store.team_directory(pool, month_starts_at=T0 - timedelta(days=1), month_start=month)
        assert [(r.team, r.cost_centers, r.developers, r.active_keys, r.revoked_keys, r.month_spent_micros)
                for r in rows] == [("data", ["cc-9"], ["carol"], 0, 0, 70),
                                   ("platform", ["cc-1", "cc-2"], ["alice", "bob"], 1, 1, 0)]

    async def test_a_teams_cost_center_is_its_newest_keys(self, pool: asyncpg.Pool) -> None:
        """When a team's keys disagree, the most recently created key names its cost center."""
        store = self.create_store()
        await store.create_key(pool, developer="alice", team="platform", cost_center="old")
        await store.create_key(pool, developer="bob", team="platform", cost_center="new")
        await store.create_key(pool, developer="carol", team="data")
        assert await store.team_cost_centers(pool) == {"platform": "new", "data": "data"}

    async def test_a_scope_belongs_to_its_key_or_the_newest_key_of_its_developer_or_team(
        self, pool: asyncpg.Pool
    ) -> None:
        """key:<id> is that key; developer:/team: the newest of theirs, revoked or not; org and strangers none."""
        store = self.create_store()
        old = await store.create_key(pool, developer="alice", team="platform", cost_center="cc-old")
        new = await store.create_key(pool, developer="alice", team="mobile", cost_center="cc-new")
        await store.revoke_key(pool, new.key.key_id)
        assert (await store.newest_key_of(pool, f"key:{old.key.key_id}")) == old.key
        found = await store.newest_key_of(pool, "developer:alice")
        assert found is not None and found.key_id == new.key.key_id
        platform = await store.newest_key_of(pool, "team:platform")
        assert platform is not None and platform.cost_center == "cc-old"
        assert await store.newest_key_of(pool, "org") is None
        assert await store.newest_key_of(pool, "team:nobody") is None


class TestPostgresKeyStore(KeyStoreContract):
    def create_store(self) -> KeyStore:
        return POSTGRES
