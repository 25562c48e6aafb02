"""The balances store's contract (balances, threshold_crossings, enforcement_pending), run against every
implementation."""

from __future__ import annotations

import abc
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import asyncpg
import pytest

from spendgate.domain.enforcement.balances import BalanceKey
from spendgate.domain.errors import ConfigError
from spendgate.domain.events import UsageRecorded
from spendgate.domain.periods import PeriodKind
from spendgate.store.balances.port import POSTGRES, BalanceStore
from tests.support.factories import T0, usage_event

DAY1, DAY2 = date(2026, 11, 2), date(2026, 11, 3)
MONTH = date(2026, 11, 1)
HOUR = timedelta(hours=1)


@dataclass(frozen=True, order=True)
class Ref:
    scope: str
    period: PeriodKind
    period_start: date


@dataclass(frozen=True)
class Inc:
    spent_micros: int
    requests: int = 1


@dataclass(frozen=True)
class Found:
    key: Ref
    threshold_pct: int
    stage: str
    spent_micros: int
    budget_micros: int
    resets_at: datetime
    trigger: UsageRecorded


def crossing(scope: str, pct: int, *, start: date = DAY1, at: datetime = T0) -> Found:
    return Found(Ref(scope, PeriodKind.DAY, start), pct, "alert", 80, 100, T0 + timedelta(days=1),
                 usage_event(occurred_at=at))


class BalanceStoreContract(abc.ABC):
    """Increments add up, crossings are written once, and the proxies share their pending spend."""

    @abc.abstractmethod
    def create_store(self) -> BalanceStore: ...

    async def test_increments_add_up_and_return_the_totals_before(self, pool: asyncpg.Pool) -> None:
        """The first increment starts from 0; later ones report the balance before them; requests add too."""
        store = self.create_store()
        day, month = Ref("team:a", PeriodKind.DAY, DAY1), Ref("team:a", PeriodKind.MONTH, MONTH)
        async with pool.acquire() as conn, conn.transaction():
            assert await store.apply_balances(conn, {day: Inc(100), month: Inc(100)}) == {day: 0, month: 0}
        assert await store.apply_balances(pool, {day: Inc(50, 2)}) == {day: 100}
        assert await store.apply_balances(pool, {}) == {}
        rows = await store.balances_of(pool, "team:a", day_start=DAY1, month_start=MONTH)
        assert sorted((r.period, r.spent_micros, r.requests) for r in rows) == [("day", 150, 3), ("month", 100, 1)]
        assert await store.spent_micros(pool, "team:a", PeriodKind.DAY, DAY1) == 150
        assert await store.spent_micros(pool, "team:a", PeriodKind.DAY, DAY2) == 0

    async def test_balances_since_reads_many_scopes_current_periods_at_once(self, pool: asyncpg.Pool) -> None:
        """Only the given scopes, only periods starting on or after the date."""
        store = self.create_store()
        await store.apply_balances(pool, {Ref("team:a", PeriodKind.DAY, DAY1): Inc(1),
                                          Ref("team:a", PeriodKind.DAY, DAY2): Inc(2),
                                          Ref("team:b", PeriodKind.DAY, DAY2): Inc(3),
                                          Ref("team:c", PeriodKind.DAY, DAY2): Inc(4)})
        rows = await store.balances_since(pool, ["team:a", "team:b"], DAY2)
        assert sorted((r.scope, r.period_start, r.spent_micros) for r in rows) == [
            ("team:a", DAY2, 2), ("team:b", DAY2, 3)]
        assert await store.balances_since(pool, [], DAY1) == []

    async def test_every_change_takes_a_newer_version(self, pool: asyncpg.Pool) -> None:
        """A view polling by version sees each changed balance once more, and only periods from the cutoffs on."""
        store = self.create_store()
        a, b = Ref("key:k1", PeriodKind.DAY, DAY1), Ref("key:k1", PeriodKind.DAY, DAY2)
        old = Ref("key:k1", PeriodKind.MONTH, date(2026, 9, 1))
        await store.apply_balances(pool, {a: Inc(1), b: Inc(2), old: Inc(3)})
        seen = await store.changed_balances(pool, 0, day_cutoff=DAY1, month_cutoff=MONTH)
        assert {(v.key, v.spent_micros) for v in seen} == {
            (BalanceKey("key:k1", PeriodKind.DAY, DAY1), 1), (BalanceKey("key:k1", PeriodKind.DAY, DAY2), 2)}
        latest = max(v.version for v in seen)
        await store.apply_balances(pool, {a: Inc(10)})
        again = await store.changed_balances(pool, latest, day_cutoff=DAY1, month_cutoff=MONTH)
        assert [(v.key.period_start, v.spent_micros) for v in again] == [(DAY1, 11)]
        assert again[0].version > latest
        assert await store.changed_balances(pool, again[0].version, day_cutoff=DAY1, month_cutoff=MONTH) == []

    async def test_a_recount_sets_balances_and_weeks_are_polled(self, pool: asyncpg.Pool) -> None:
        """set_balances replaces a balance's totals (under the exclusive fold lock); a week balance from the week
        before the day cutoff on is polled, an older one is not."""
        store = self.create_store()
        week = Ref("org|model:gpt-5.1", PeriodKind.WEEK, DAY1)
        old_week = Ref("org", PeriodKind.WEEK, date(2026, 10, 19))
        await store.apply_balances(pool, {week: Inc(5), old_week: Inc(1)})
        async with pool.acquire() as conn, conn.transaction():
            await store.hold_fold_lock(conn, exclusive=True)
            await store.set_balances(conn, {BalanceKey(week.scope, week.period, week.period_start): (42, 3)})
        rows = await store.balances_of(pool, week.scope, day_start=DAY2, month_start=MONTH, week_start=DAY1)
        assert [(r.period, r.spent_micros, r.requests) for r in rows] == [("week", 42, 3)]
        seen = await store.changed_balances(pool, 0, day_cutoff=DAY2 + timedelta(days=2), month_cutoff=MONTH)
        assert [(v.key.scope, v.spent_micros) for v in seen] == [(week.scope, 42)]

    async def test_day_spend_and_clearing(self, pool: asyncpg.Pool) -> None:
        """Day balances of the asked scopes within the dates; clearing empties every balance."""
        store = self.create_store()
        await store.apply_balances(pool, {Ref("org", PeriodKind.DAY, DAY1): Inc(5), Ref("org", PeriodKind.DAY, DAY2):
                                          Inc(6), Ref("team:a", PeriodKind.DAY, DAY1): Inc(7),
                                          Ref("org", PeriodKind.MONTH, MONTH): Inc(11)})
        spend = await store.day_spend(pool, ["org", "team:b"], DAY1, DAY1)
        assert [(d.scope, d.day, d.spent_micros) for d in spend] == [("org", DAY1, 5)]
        await store.apply_balances(pool, {Ref("team:b|model:gpt-5.1", PeriodKind.DAY, DAY2): Inc(1),
                                          Ref("developer:d", PeriodKind.DAY, DAY1): Inc(1)})
        assert await store.scopes_with_day_spend(pool, DAY1, kinds=("team", "developer")) == ["developer:d", "team:a"]
        assert await store.scopes_with_day_spend(pool, DAY2, kinds=("team", "developer")) == []
        async with pool.acquire() as conn, conn.transaction():
            await store.clear_balances(conn)
        assert await store.day_spend(pool, ["org", "team:a"], DAY1, DAY2) == []

    async def test_a_crossing_is_written_once_per_scope_period_and_threshold(self, pool: asyncpg.Pool) -> None:
        """Crossing the same threshold again in the same period adds nothing; another threshold or day does."""
        store = self.create_store()
        assert await store.insert_crossings(pool, [crossing("team:a", 80), crossing("team:a", 95)]) == 2
        assert await store.insert_crossings(pool, [crossing("team:a", 80), crossing("team:a", 80, start=DAY2)]) == 1
        assert await store.insert_crossings(pool, []) == 0
        found = await store.unpublished_crossings(pool, 10)
        assert sorted((c.period_start, c.threshold_pct) for c in found) == [(DAY1, 80), (DAY1, 95), (DAY2, 80)]

    async def test_the_outbox_hands_out_crossings_in_order_until_published(self, pool: asyncpg.Pool) -> None:
        """Oldest first, as ThresholdCrossed events naming the trigger; the developer only on personal scopes."""
        store = self.create_store()
        late, early = crossing("team:a", 80, at=T0 + timedelta(minutes=1)), crossing("key:k_alice", 80, at=T0)
        await store.insert_crossings(pool, [late, early])
        first = await store.unpublished_crossings(pool, 1)
        assert [(c.scope, c.developer, c.trigger_event_id) for c in first] == [
            ("key:k_alice", "alice", early.trigger.event_id)]
        both = await store.unpublished_crossings(pool, 10)
        assert [(c.scope, c.developer, c.team, c.crossed_at) for c in both][1] == (
            "team:a", None, "platform", T0 + timedelta(minutes=1))
        await store.mark_crossings_published(pool, [first[0].crossing_id])
        assert [c.scope for c in await store.unpublished_crossings(pool, 10)] == ["team:a"]

    async def test_peers_see_each_others_pending_sums(self, pool: asyncpg.Pool) -> None:
        """Other live instances' sums add per balance; one's own rows, zeroed and withdrawn ones do not count."""
        store = self.create_store()
        k1, k2 = BalanceKey("team:a", PeriodKind.DAY, DAY1), BalanceKey("org", PeriodKind.MONTH, MONTH)
        await store.put_pending(pool, "p1", [(k1, 10), (k2, 20)])
        await store.put_pending(pool, "p2", [(k1, 5)])
        await store.put_pending(pool, "p2", [(k1, 7)])
        assert dict(await store.peer_pending(pool, "p3", stale_after_s=30)) == {k1: 17, k2: 20}
        assert dict(await store.peer_pending(pool, "p1", stale_after_s=30)) == {k1: 7}
        await store.drop_pending(pool, "p1", [k2])
        await store.withdraw_pending(pool, "p2")
        assert dict(await store.peer_pending(pool, "p3", stale_after_s=30)) == {k1: 10}

    async def test_one_publication_puts_drops_lists_unlists_and_notifies(self, pool: asyncpg.Pool,
                                                                         db_url: str) -> None:
        """publish_pending does in one statement what put/drop_pending and put/drop_unsettled do, and its
        NOTIFY (when asked for) reaches a listener."""
        import asyncio

        store = self.create_store()
        k1, k2 = BalanceKey("team:a", PeriodKind.DAY, DAY1), BalanceKey("org", PeriodKind.MONTH, MONTH)
        e1, e2 = "0190f3a1-0000-7000-8000-000000000001", "0190f3a1-0000-7000-8000-000000000002"
        heard: asyncio.Queue[str] = asyncio.Queue()
        listener = await asyncpg.connect(db_url)
        await listener.add_listener("contract_pending", lambda *args: heard.put_nowait(str(args[-1])))
        try:
            await store.publish_pending(pool, "p1", live=[(k1, 10), (k2, 20)], gone=[], listed=[(e1, [k1, k2], 4)],
                                        unlisted=[], notify="contract_pending")
            assert await asyncio.wait_for(heard.get(), timeout=10) == "p1"
            await store.publish_pending(pool, "p1", live=[(k1, 12)], gone=[k2], listed=[(e2, [k1], 2)],
                                        unlisted=[e1], notify=None)
            assert dict(await store.peer_pending(pool, "p2", stale_after_s=30)) == {k1: 12}
            assert await store.peer_unsettled(pool, "p2", stale_after_s=30) == [(e2, [k1], 2)]
            # Notifications arrive in commit order: had the second publication notified, this would be "p1".
            await store.publish_pending(pool, "p3", live=[], gone=[], listed=[], unlisted=[], notify="contract_pending")
            assert await asyncio.wait_for(heard.get(), timeout=10) == "p3"
        finally:
            await listener.close()

    async def test_a_confirmation_waits_for_the_one_before_it_and_sees_its_pending_sum(
            self, pool: asyncpg.Pool) -> None:
        """lock_balances blocks while another session holds a balance's lock; once it is released, a
        snapshot taken after the lock sees the balance and the pending sum the other published."""
        import asyncio

        store = self.create_store()
        k1, k2 = BalanceKey("team:a", PeriodKind.DAY, DAY1), BalanceKey("org", PeriodKind.DAY, DAY1)
        await store.apply_balances(pool, {Ref("team:a", PeriodKind.DAY, DAY1): Inc(100)})
        first = await pool.acquire()
        try:
            await store.lock_balances(first, [k2, k1])
            before = await store.balances_and_peers(first, "p1", [k2, k1], stale_after_s=30)
            assert sorted((k.scope, spent, peers) for k, spent, _, peers in before) == [("org", 0, 0),
                                                                                      ("team:a", 100, 0)]

            async def second() -> list[tuple[BalanceKey, int, int, int]]:
                async with pool.acquire() as conn:
                    await store.lock_balances(conn, [k1])
                    try:
                        async with conn.transaction(isolation="repeatable_read"):
                            return await store.balances_and_peers(conn, "p2", [k1], stale_after_s=30)
                    finally:
                        await store.unlock_balances(conn, [k1])

            waiting = asyncio.create_task(second())
            done, _ = await asyncio.wait({waiting}, timeout=0.3)
            assert not done, "the second confirmation did not wait for the first one's lock"
            await store.put_pending(first, "p1", [(k1, 40)])
            await store.unlock_balances(first, [k2, k1])
        finally:
            await pool.release(first)
        [(key, spent, _, peers)] = await asyncio.wait_for(waiting, timeout=10)
        assert (key, spent, peers) == (k1, 100, 40)

    async def test_silent_peers_are_ignored_then_swept(self, pool: asyncpg.Pool) -> None:
        """Rows older than the staleness window do not count; a heartbeat revives them; a sweep deletes old rows."""
        store = self.create_store()
        k1 = BalanceKey("team:a", PeriodKind.DAY, DAY1)
        await store.put_pending(pool, "p1", [(k1, 10)])
        async with pool.acquire() as conn, conn.transaction():  # a later transaction: its now() is later
            assert await store.peer_pending(conn, "p2", stale_after_s=0) == []
            await store.touch_pending(conn, "p1")
        await store.sweep_pending(pool, older_than_s=3600)
        assert dict(await store.peer_pending(pool, "p2", stale_after_s=30)) == {k1: 10}
        await store.sweep_pending(pool, older_than_s=0)
        assert await store.peer_pending(pool, "p2", stale_after_s=3600) == []

    async def test_a_bad_scope_is_refused_when_asked_for_by_a_person(self, pool: asyncpg.Pool) -> None:
        """balances_of takes a scope as people write it: malformed ones are a configuration error."""
        store = self.create_store()
        with pytest.raises(ConfigError):
            await store.balances_of(pool, "nonsense", day_start=DAY1, month_start=MONTH)


    async def test_the_consoles_reads_of_balances_and_crossings(self, pool: asyncpg.Pool) -> None:
        """A period's balances of one kind of scope; day balances summed over days per scope, costliest first;
        the crossings recorded in a window, newest first."""
        store = self.create_store()
        await store.apply_balances(pool, {
            Ref("team:a", PeriodKind.DAY, DAY1): Inc(5), Ref("team:a", PeriodKind.DAY, DAY2): Inc(6, 2),
            Ref("team:b", PeriodKind.DAY, DAY2): Inc(20), Ref("team:b", PeriodKind.DAY, DAY2 + timedelta(days=1)):
                Inc(100), Ref("org", PeriodKind.DAY, DAY1): Inc(25), Ref("team:a", PeriodKind.MONTH, MONTH): Inc(11),
            Ref("teams-not-a-team", PeriodKind.DAY, DAY1): Inc(1)})
        assert await store.day_totals(pool, "team:", DAY1, DAY2) == [("team:b", 20, 1), ("team:a", 11, 3)]
        assert await store.period_balances(pool, "team:", PeriodKind.MONTH, MONTH) == {"team:a": 11}
        await store.insert_crossings(pool, [crossing("team:a", 80, at=T0), crossing("team:a", 95, at=T0 + HOUR),
                                            crossing("team:b", 80, at=T0 + 3 * HOUR)])
        found = await store.crossings_between(pool, T0, T0 + 2 * HOUR, limit=10)
        assert [(c.scope, c.threshold_pct) for c in found] == [("team:a", 95), ("team:a", 80)]
        assert len(await store.crossings_between(pool, T0, T0 + 4 * HOUR, limit=1)) == 1


class TestPostgresBalanceStore(BalanceStoreContract):
    def create_store(self) -> BalanceStore:
        return POSTGRES
