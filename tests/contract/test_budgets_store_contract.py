"""The budgets store's contract (budgets, budget_raises, budget_audit), run against every implementation."""

from __future__ import annotations

import abc
import itertools
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from spendgate.core.bus import MemoryBus
from spendgate.domain.constants import TOPIC_BUDGET
from spendgate.domain.enforcement.policy import BudgetRaise, budget_of, effective_budget_micros
from spendgate.domain.errors import StoreError
from spendgate.domain.events import BudgetChanged, decode
from spendgate.store.budgets.port import POSTGRES, BudgetStore

NOW = datetime.now(UTC)
USD = 1_000_000


class BudgetStoreContract(abc.ABC):
    """Changes are audited and published once; budgets and raises come back as domain types."""

    @abc.abstractmethod
    def create_store(self) -> BudgetStore: ...

    async def test_a_budget_round_trips_and_is_replaced_whole(self, pool: asyncpg.Pool) -> None:
        """What is set comes back equal (scope normalised); setting again replaces every field."""
        store = self.create_store()
        first = budget_of("team:a", daily_micros=5 * USD, monthly_micros=None, timezone="Europe/Berlin",
                          thresholds=[70, 90, 100], at_pause="cheapest", retry_cap=2)
        await store.set_budget(pool, first, actor="t")
        assert await store.get_budget(pool, " team:a ") == first
        second = budget_of("team:a", daily_micros=None, monthly_micros=9 * USD)
        await store.set_budget(pool, second, actor="t")
        assert await store.get_budget(pool, "team:a") == second
        assert await store.get_budget(pool, "team:b") is None

    async def test_raises_need_a_budget_and_come_back_with_their_creation_time(self, pool: asyncpg.Pool) -> None:
        """Only a budgeted scope can be raised, by a positive amount; active raises end after the time asked."""
        store = self.create_store()
        until = NOW + timedelta(days=2)
        with pytest.raises(StoreError, match="set one before"):
            await store.raise_budget(pool, BudgetRaise("team:a", USD, until, "early"), actor="t")
        await store.set_budget(pool, budget_of("team:a", daily_micros=5 * USD, monthly_micros=None), actor="t")
        with pytest.raises(StoreError, match="positive"):
            await store.raise_budget(pool, BudgetRaise("team:a", 0, until, "nothing"), actor="t")
        raise_id = await store.raise_budget(pool, BudgetRaise("team:a", USD, until, "release week"), actor="t")
        [r] = await store.active_raises(pool, NOW)
        assert (r.raise_id, r.scope, r.amount_micros, r.until, r.reason) == (raise_id, "team:a", USD, until,
                                                                              "release week")
        assert r.created_at is not None and r.created_at <= datetime.now(UTC)
        assert await store.active_raises(pool, until) == []
        assert await store.active_raises(pool, NOW, ["team:b"]) == []
        assert effective_budget_micros(5 * USD, [r], "team:a", NOW) == 6 * USD

    async def test_deleting_a_budget_takes_its_raises(self, pool: asyncpg.Pool) -> None:
        """After a delete neither the budget nor its raises remain; deleting again reports nothing to delete."""
        store = self.create_store()
        await store.set_budget(pool, budget_of("org", daily_micros=USD, monthly_micros=None), actor="t")
        await store.raise_budget(pool, BudgetRaise("org", USD, NOW + timedelta(days=1), "x"), actor="t")
        assert await store.delete_budget(pool, "org", actor="t") is True
        assert await store.delete_budget(pool, "org", actor="t") is False
        assert await store.load_budgets(pool, NOW) == ([], [])

    async def test_budgets_are_read_by_exact_scope_in_scope_order(self, pool: asyncpg.Pool) -> None:
        """All of them, or exactly the scopes asked for, sorted by scope."""
        store = self.create_store()
        for scope in ("team:b", "org", "team:a"):
            await store.set_budget(pool, budget_of(scope, daily_micros=USD, monthly_micros=None), actor="t")
        assert [b.scope for b in await store.budgets_of(pool)] == ["org", "team:a", "team:b"]
        assert [b.scope for b in await store.budgets_of(pool, ["team:b", "team:a", "team:c"])] == ["team:a", "team:b"]
        assert await store.budgets_of(pool, []) == []

    async def test_the_config_mark_changes_with_every_change_and_only_then(self, pool: asyncpg.Pool) -> None:
        """Insert, update, raise and delete each move the fingerprint from the one before; reading twice agrees."""
        store = self.create_store()
        marks = [await store.config_mark(pool)]
        await store.set_budget(pool, budget_of("org", daily_micros=USD, monthly_micros=None), actor="t")
        marks.append(await store.config_mark(pool))
        await store.set_budget(pool, budget_of("org", daily_micros=2 * USD, monthly_micros=None), actor="t")
        marks.append(await store.config_mark(pool))
        await store.raise_budget(pool, BudgetRaise("org", USD, NOW + timedelta(days=1), "x"), actor="t")
        marks.append(await store.config_mark(pool))
        await store.delete_budget(pool, "org", actor="t")
        marks.append(await store.config_mark(pool))
        assert all(before != after for before, after in itertools.pairwise(marks))
        assert await store.config_mark(pool) == marks[-1]

    async def test_each_change_is_published_once_as_budget_changed(self, pool: asyncpg.Pool) -> None:
        """The audit outbox publishes set, raise and delete in order, then has nothing left."""
        store = self.create_store()
        bus = MemoryBus(partitions=1)
        await store.set_budget(pool, budget_of("org", daily_micros=USD, monthly_micros=None), actor="ops")
        await store.raise_budget(pool, BudgetRaise("org", USD, NOW + timedelta(days=1), "x"), actor="ops")
        await store.delete_budget(pool, "org", actor="ops")
        assert await store.publish_budget_changes(pool, bus, source="test") == 3
        assert await store.publish_budget_changes(pool, bus, source="test") == 0
        consumer = bus.consumer("g", [TOPIC_BUDGET])
        await consumer.start()
        changes = [decode(r.value).data for r in await consumer.poll(timeout_s=0.1)]
        assert all(isinstance(c, BudgetChanged) for c in changes)
        assert [(c.action, c.actor) for c in changes if isinstance(c, BudgetChanged)] == [
            ("set", "ops"), ("raise", "ops"), ("delete", "ops")]

    async def test_recent_changes_are_newest_first_with_their_actor_and_limited(self, pool: asyncpg.Pool) -> None:
        """The change history the console shows: each change once, newest first, published or not."""
        store = self.create_store()
        await store.set_budget(pool, budget_of("team:a", daily_micros=USD, monthly_micros=None), actor="oidc:ann")
        await store.raise_budget(pool, BudgetRaise("team:a", 2 * USD, NOW + timedelta(days=1), "launch"),
                                 actor="oidc:bob")
        await store.delete_budget(pool, "team:a", actor="token:ci")
        changes = await store.recent_changes(pool)
        assert [(c.action, c.actor, c.scope) for c in changes] == [
            ("delete", "token:ci", "team:a"), ("raise", "oidc:bob", "team:a"), ("set", "oidc:ann", "team:a")]
        assert changes[1].raise_micros == 2 * USD and changes[1].reason == "launch"
        assert [c.action for c in await store.recent_changes(pool, limit=1)] == ["delete"]


class TestPostgresBudgetStore(BudgetStoreContract):
    def create_store(self) -> BudgetStore:
        return POSTGRES
