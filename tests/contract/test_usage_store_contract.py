"""The usage store's contract (usage_events, sessions, session_turns), run against every implementation."""

from __future__ import annotations

import abc
import asyncio
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

import asyncpg
import pytest

from spendgate.domain.events import UnitPrices, UsageRecorded
from spendgate.store.usage.filters import UsageFilter
from spendgate.store.usage.port import POSTGRES, UsageStore
from tests.support.factories import T0, usage_event
from tests.support.waiting import eventually

DAY = timedelta(days=1)
EVERYTHING = UsageFilter(T0 - 30 * DAY, T0 + 30 * DAY)


@dataclass(frozen=True)
class Increment:
    session_id: str
    first: UsageRecorded
    first_at: datetime
    last_at: datetime
    repo: str | None = None
    requests: int = 1
    input_tokens: int = 10
    cached_tokens: int = 5
    output_tokens: int = 3
    reasoning_tokens: int = 1
    cost_micros: int = 100
    retries: int = 0
    retry_cost_micros: int = 0
    downgraded: int = 0
    turn_ids: Collection[str] = field(default_factory=frozenset)

    @property
    def developer(self) -> str:
        return self.first.developer

    @property
    def key(self) -> tuple[str, str]:
        return self.developer, self.session_id


def ev(**overrides: object) -> UsageRecorded:
    return usage_event(**overrides)


def keyed(*increments: Increment) -> dict[tuple[str, str], Increment]:
    """Increments keyed as the fold keys them: by (developer, session id)."""
    return {i.key: i for i in increments}


class UsageStoreContract(abc.ABC):
    """Idempotent inserts, session arithmetic, and the reads every report makes of the facts."""

    @abc.abstractmethod
    def create_store(self) -> UsageStore: ...

    async def test_a_scope_spend_counts_its_events_and_a_per_model_scope_its_model(self, pool: asyncpg.Pool) -> None:
        """scope_spend sums the events of a cost center (or org) in the window; a per-model scope only the events its
        model served; refused requests add no request."""
        store = self.create_store()
        await store.insert_events(pool, [
            ev(cost_center="cc-a", cost_micros=10), ev(cost_center="cc-a", cost_micros=5, status="refused"),
            ev(cost_center="cc-a", cost_micros=7, model_requested="gpt-5.1-mini", model_used="gpt-5.1-mini"),
            ev(cost_center="cc-b", cost_micros=100), ev(cost_center="cc-a", cost_micros=1000,
                                                        occurred_at=T0 + timedelta(days=8))])
        end = T0 + timedelta(days=7)
        assert await store.scope_spend(pool, "cost_center:cc-a", T0, end) == (22, 2)
        assert await store.scope_spend(pool, "cost_center:cc-a|model:gpt-5.1", T0, end) == (15, 1)
        assert await store.scope_spend(pool, "org|model:gpt-5.1-mini", T0, end) == (7, 1)
        assert await store.scope_spend(pool, "org", T0, end) == (122, 3)

    async def test_events_are_inserted_once_per_event_id(self, pool: asyncpg.Pool) -> None:
        """Only events never stored before come back, in input order; a duplicate within a batch counts once."""
        store = self.create_store()
        a, b, c = ev(), ev(), ev()
        assert await store.insert_events(pool, [a, b, a]) == [a, b]
        assert await store.insert_events(pool, [b, c]) == [c]
        assert await store.insert_events(pool, []) == []
        unknown = "019a0000-0000-7000-8000-00000000ffff"
        assert sorted(await store.stored_event_ids(pool, [a.event_id, c.event_id, unknown])) == sorted(
            [a.event_id, c.event_id])

    async def test_an_event_another_ledger_stores_meanwhile_is_not_stored_twice(self, pool: asyncpg.Pool) -> None:
        """A second writer stores one of the batch's events after the batch looked up what is stored: the
        batch still inserts the others once and does not return the one the other writer has."""
        store = self.create_store()
        theirs, ours = ev(), ev()
        async with pool.acquire() as other, pool.acquire() as conn:
            tx = other.transaction()
            await tx.start()
            await store.insert_events(other, [theirs])  # not committed yet: invisible to the lookup
            ours_task = asyncio.create_task(store.insert_events(conn, [theirs, ours]))
            pid = conn.get_server_pid()
            await eventually(lambda: pool.fetchval(
                "SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = $1", pid),
                what="the batch's COPY waiting on the other writer's row")
            await tx.commit()
            assert await asyncio.wait_for(ours_task, 30) == [ours]
        assert sorted(await store.stored_event_ids(pool, [theirs.event_id, ours.event_id])) == sorted(
            [theirs.event_id, ours.event_id])

    async def test_stored_events_come_back_whole_in_time_order(self, pool: asyncpg.Pool) -> None:
        """Every field survives the round trip (prices, refusal reason, optional parts); order is (time, id)."""
        store = self.create_store()
        events = [
            ev(occurred_at=T0 + timedelta(minutes=2)),
            ev(occurred_at=T0, session_id=None, turn_id=None, repo=None, client=None, ttfb_ms=None,
               upstream_request_id=None, status="refused", http_status=429, refusal_reason="budget_pause",
               input_tokens=0, cached_tokens=0, output_tokens=0, reasoning_tokens=0, usage_source="none",
               cost_micros=0),
            ev(occurred_at=T0 + timedelta(minutes=1), retry=True, route_reason="downgrade", stage="downgrade",
               prices=UnitPrices(input_micros=1, cached_input_micros=0, output_micros=2, fallback=True)),
        ]
        await store.insert_events(pool, events)
        async with pool.acquire() as conn, conn.transaction():
            back = [e async for e in store.events_in_order(conn, prefetch=2)]
        assert back == sorted(events, key=lambda e: (e.occurred_at, e.event_id))

    async def test_sessions_add_up_and_count_each_turn_once(self, pool: asyncpg.Pool) -> None:
        """Totals add; first/last widen; the first repo stays; a turn seen again does not count again."""
        store = self.create_store()
        first = ev()
        async with pool.acquire() as conn, conn.transaction():
            await store.apply_sessions(conn, keyed(Increment("s1", first, T0, T0 + DAY, repo=None,
                                                             turn_ids={"t1", "t2"})))
        await store.apply_sessions(pool, keyed(Increment("s1", first, T0 - DAY, T0, repo="/src/api",
                                                         cost_micros=250, requests=2, turn_ids={"t2", "t3"})))
        await store.apply_sessions(pool, keyed(Increment("s1", first, T0, T0, repo="/src/other",
                                                         turn_ids={"t3"})))
        totals = await store.session_totals(pool, first.developer, "s1")
        assert totals is not None
        assert (totals.repo, totals.cost_micros, totals.requests, totals.turns) == ("/src/api", 450, 4, 3)
        assert (totals.first_at, totals.last_at) == (T0 - DAY, T0 + DAY)
        assert await store.session_totals(pool, first.developer, "nope") is None

    async def test_a_session_is_one_developers(self, pool: asyncpg.Pool) -> None:
        """The same session id and turn id from two developers' keys are two sessions, each with its turn:
        the id is a label the client sends, the developer comes from the key."""
        store = self.create_store()
        alice, bob = ev(developer="alice"), ev(developer="bob", key_id="k_bob")
        await store.apply_sessions(pool, keyed(Increment("s1", alice, T0, T0, turn_ids={"t1"}),
                                               Increment("s1", bob, T0, T0, cost_micros=7, turn_ids={"t1"})))
        await store.apply_sessions(pool, keyed(Increment("s1", bob, T0, T0, cost_micros=8, turn_ids={"t1"})))
        mine, theirs = (await store.session_totals(pool, "alice", "s1"), await store.session_totals(pool, "bob", "s1"))
        assert mine is not None and (mine.cost_micros, mine.requests, mine.turns) == (100, 1, 1)
        assert theirs is not None and (theirs.cost_micros, theirs.requests, theirs.turns) == (15, 2, 1)

    async def test_clearing_sessions_leaves_the_events(self, pool: asyncpg.Pool) -> None:
        """Rebuild starts from no sessions and no turns, while the facts stay."""
        store = self.create_store()
        e = ev()
        await store.insert_events(pool, [e])
        await store.apply_sessions(pool, keyed(Increment("s1", e, T0, T0, turn_ids={"t1"})))
        async with pool.acquire() as conn, conn.transaction():
            await store.lock_events(conn)
            await store.clear_sessions(conn)
        assert await store.session_totals(pool, e.developer, "s1") is None
        await store.apply_sessions(pool, keyed(Increment("s1", e, T0, T0, turn_ids={"t1"})))
        totals = await store.session_totals(pool, e.developer, "s1")
        assert totals is not None and totals.turns == 1
        assert await store.stored_event_ids(pool, [e.event_id]) == [e.event_id]

    async def test_chargeback_groups_filters_and_totals(self, pool: asyncpg.Pool) -> None:
        """Lines per group costliest first, a total over them, downgrades apart; filters and the window apply."""
        store = self.create_store()
        await store.insert_events(pool, [
            ev(developer="alice", cost_micros=300, session_id="s1", turn_id="t1"),
            ev(developer="alice", cost_micros=200, session_id="s1", turn_id="t2", retry=True),
            ev(developer="bob", cost_micros=900, session_id="s2", turn_id="t1", route_reason="downgrade",
               model_used="gpt-5.1-mini"),
            ev(developer="bob", cost_micros=50, status="refused", session_id="s2", turn_id="t1"),
            ev(developer="carol", cost_micros=7, team="other", occurred_at=T0 + 60 * DAY),
        ])
        lines, total = await store.chargeback_rows(pool, "developer", UsageFilter(T0 - DAY, T0 + DAY))
        assert [(r.group, r.cost_micros, r.requests, r.refused, r.turns) for r in lines] == [
            ("bob", 950, 1, 1, 1), ("alice", 500, 2, 0, 2)]
        assert lines[1].retries == 1 and lines[1].retry_cost_micros == 200 and lines[0].downgraded == 1
        assert total is not None and (total.cost_micros, total.sessions, total.turns) == (1450, 2, 3)
        downgraded = await store.downgraded_requests(pool, "developer", UsageFilter(T0 - DAY, T0 + DAY))
        assert [(d.group, d.model_requested, d.cost_micros) for d in downgraded] == [("bob", "gpt-5.1", 900)]
        only_alice, _ = await store.chargeback_rows(pool, "session_id", UsageFilter(T0 - DAY, T0 + DAY,
                                                                                    developer="alice"))
        assert [(r.group, r.developer) for r in only_alice] == [("s1", "alice")]
        assert await store.chargeback_rows(pool, "team", UsageFilter(T0 + 90 * DAY, T0 + 91 * DAY)) == ([], None)
        with pytest.raises(ValueError, match="cannot be grouped"):
            await store.chargeback_rows(pool, "cost_micros; DROP TABLE x", EVERYTHING)

    async def test_cache_rows_per_group_session_and_total(self, pool: asyncpg.Pool) -> None:
        """Cached tokens never exceed input; a total row only when events match."""
        store = self.create_store()
        await store.insert_events(pool, [
            ev(developer="alice", session_id="s1", input_tokens=1000, cached_tokens=800),
            ev(developer="alice", session_id="s2", input_tokens=1000, cached_tokens=5000),
            ev(developer="bob", session_id="s3", input_tokens=400, cached_tokens=0),
        ])
        rows = await store.cache_rows(pool, "developer", EVERYTHING)
        lines = {r.group: (r.input_tokens, r.cached_tokens) for r in rows if r.level == "line"}
        assert lines == {"alice": (2000, 1800), "bob": (400, 0)}
        assert {r.group for r in rows if r.level == "session"} == {"s1", "s2", "s3"}
        [total] = [r for r in rows if r.level == "total"]
        assert (total.input_tokens, total.cached_tokens, total.requests) == (2400, 1800, 3)
        assert await store.cache_rows(pool, "developer", UsageFilter(T0 + 90 * DAY, T0 + 91 * DAY)) == []

    async def test_reports_keep_one_session_id_of_two_developers_apart(self, pool: asyncpg.Pool) -> None:
        """Grouped by session, chargeback, downgrades, cache and top sessions give a line per developer and
        session id; any line over both counts them as two sessions and two turns."""
        store = self.create_store()
        await store.insert_events(pool, [
            ev(developer="alice", session_id="s1", turn_id="t1", cost_micros=300, input_tokens=1000,
               cached_tokens=800),
            ev(developer="bob", key_id="k_bob", session_id="s1", turn_id="t1", cost_micros=50, input_tokens=400,
               cached_tokens=0, route_reason="downgrade", model_used="gpt-5.1-mini"),
        ])
        lines, total = await store.chargeback_rows(pool, "session_id", EVERYTHING)
        assert [(r.owner, r.group, r.developer, r.cost_micros) for r in lines] == [
            ("alice", "s1", "alice", 300), ("bob", "s1", "bob", 50)]
        assert total is not None and (total.sessions, total.turns) == (2, 2)
        [team] = (await store.chargeback_rows(pool, "team", EVERYTHING))[0]
        assert (team.owner, team.sessions, team.turns) == (None, 2, 2)
        downgraded = await store.downgraded_requests(pool, "session_id", EVERYTHING)
        assert [(d.owner, d.group) for d in downgraded] == [("bob", "s1")]
        cache = await store.cache_rows(pool, "session_id", EVERYTHING)
        assert sorted((r.level, r.group, r.developer) for r in cache if r.level != "total") == [
            ("line", "s1", "alice"), ("line", "s1", "bob"), ("session", "s1", "alice"), ("session", "s1", "bob")]
        top = await store.top_sessions(pool, "org", T0 - DAY, T0 + DAY, 5)
        assert [(t.session_id, t.developer, t.cost_micros) for t in top] == [("s1", "alice", 300), ("s1", "bob", 50)]

    async def test_a_session_is_read_back_request_by_request(self, pool: asyncpg.Pool) -> None:
        """Its bounds and every request in time order; None for a session without usage."""
        store = self.create_store()
        a = ev(session_id="s1", turn_id="t1", occurred_at=T0 + timedelta(minutes=5))
        b = ev(session_id="s1", turn_id="t2", occurred_at=T0)
        await store.insert_events(pool, [a, b, ev(session_id="s2")])
        assert await store.session_bounds(pool, "s1") == (T0, T0 + timedelta(minutes=5))
        assert [(r.event_id, r.turn_id) for r in await store.session_requests(pool, "s1")] == [
            (b.event_id, "t2"), (a.event_id, "t1")]
        assert await store.session_bounds(pool, "nope") is None

    async def test_replay_reads_the_window_in_batches_and_bins_the_spend_before_it(self, pool: asyncpg.Pool) -> None:
        """The half-open window in time order, batch by batch; earlier spend per quarter hour and principal."""
        store = self.create_store()
        inside = [ev(occurred_at=T0 + timedelta(minutes=i), cost_micros=10) for i in range(5)]
        await store.insert_events(pool, [*inside, ev(occurred_at=T0 + timedelta(minutes=5)),
                                         ev(occurred_at=T0 - timedelta(minutes=20), cost_micros=7),
                                         ev(occurred_at=T0 - timedelta(minutes=19), cost_micros=8)])
        async with pool.acquire() as conn, conn.transaction(readonly=True, isolation="repeatable_read"):
            batches = [b async for b in store.replay_batches(conn, T0, T0 + timedelta(minutes=5), batch_rows=2)]
        assert [len(b) for b in batches] == [2, 2, 1]
        assert [r.event_id for b in batches for r in b] == [e.event_id for e in inside]
        spend = await store.quarter_hour_spend(pool, T0 - DAY, T0)
        assert [(s.key_id, s.at, s.spent_micros) for s in spend] == [
            ("k_alice", datetime(2026, 11, 2, 9, 0, tzinfo=UTC), 15)]

    async def test_top_sessions_of_a_scope(self, pool: asyncpg.Pool) -> None:
        """Costliest first, limited, of the scope's key, developer or team; the org (or another kind) sees all."""
        store = self.create_store()
        await store.insert_events(pool, [
            ev(session_id="s1", cost_micros=100), ev(session_id="s1", cost_micros=100),
            ev(session_id="s2", cost_micros=150, developer="bob", key_id="k_bob"),
            ev(session_id="s3", cost_micros=50, team="other", developer="carol", key_id="k_carol"),
            ev(session_id=None, cost_micros=999),
        ])
        window = (T0 - DAY, T0 + DAY)

        async def top(scope: str, limit: int = 5) -> list[tuple[str, int, int]]:
            return [(s.session_id, s.cost_micros, s.requests)
                    for s in await store.top_sessions(pool, scope, *window, limit)]

        assert await top("org") == [("s1", 200, 2), ("s2", 150, 1), ("s3", 50, 1)]
        assert await top("org", 1) == [("s1", 200, 2)]
        assert await top("team:platform") == [("s1", 200, 2), ("s2", 150, 1)]
        assert await top("developer:bob") == [("s2", 150, 1)]
        assert await top("key:k_carol") == [("s3", 50, 1)]

    async def test_daily_spend_per_local_day(self, pool: asyncpg.Pool) -> None:
        """Days are the timezone's; the window is half-open; a scope of no known kind is refused."""
        store = self.create_store()
        late = datetime(2026, 11, 2, 23, 30, tzinfo=UTC)  # 3 November in Berlin
        await store.insert_events(pool, [ev(occurred_at=T0, cost_micros=5), ev(occurred_at=late, cost_micros=7),
                                         ev(occurred_at=late, cost_micros=11, team="other")])
        since, until = T0 - DAY, T0 + 2 * DAY
        assert sorted(await store.daily_spend(pool, "team:platform", "Europe/Berlin", since, until)) == [
            (date(2026, 11, 2), 5), (date(2026, 11, 3), 7)]
        assert sorted(await store.daily_spend(pool, "org", "UTC", since, until)) == [(date(2026, 11, 2), 23)]
        assert await store.daily_spend(pool, "org", "UTC", since, T0) == []
        with pytest.raises(ValueError, match="unknown scope"):
            await store.daily_spend(pool, "project:x", "UTC", since, until)

    async def test_a_teams_drivers(self, pool: asyncpg.Pool) -> None:
        """Developers by growth between two windows; sessions by cost in the recent one; other teams apart."""
        store = self.create_store()
        split = T0
        await store.insert_events(pool, [
            ev(developer="alice", occurred_at=split - DAY, cost_micros=500, session_id="a1"),
            ev(developer="alice", occurred_at=split + DAY, cost_micros=100, session_id="a2"),
            ev(developer="bob", occurred_at=split + DAY, cost_micros=300, session_id="b1"),
            ev(developer="carol", team="other", occurred_at=split + DAY, cost_micros=900, session_id="c1"),
        ])
        trends = await store.developer_trends(pool, "platform", begin=split - 7 * DAY, split=split,
                                              end=split + 7 * DAY, limit=5)
        assert [tuple(t) for t in trends] == [("bob", 300, 0), ("alice", 100, 500)]
        sessions = await store.team_sessions(pool, "platform", start=split, end=split + 7 * DAY, limit=1)
        assert [(s.session_id, s.developer, s.cost_micros) for s in sessions] == [("b1", "bob", 300)]

    async def test_daily_model_usage_per_utc_day_model_and_endpoint(self, pool: asyncpg.Pool) -> None:
        """Reconciliation's side of the bill: UTC days, inclusive range, refusals not counted as requests."""
        store = self.create_store()
        late = datetime(2026, 11, 2, 23, 30, tzinfo=UTC)
        await store.insert_events(pool, [
            ev(occurred_at=T0, input_tokens=10, output_tokens=2, cost_micros=5),
            ev(occurred_at=late, input_tokens=20, output_tokens=3, cost_micros=7),
            ev(occurred_at=late, status="refused", input_tokens=0, cached_tokens=0, output_tokens=0, cost_micros=0),
            ev(occurred_at=T0 + DAY, endpoint="/v1/messages", model_used="claude-sonnet-4-5", cost_micros=9),
            ev(occurred_at=T0 + 3 * DAY, cost_micros=100)])
        rows = await store.daily_model_usage(pool, T0.date(), T0.date() + DAY)
        first = rows[0]
        assert (first.day, first.model, first.endpoint, first.requests, first.input_tokens, first.output_tokens,
                first.cost_micros) == (T0.date(), "gpt-5.1", "/v1/responses", 2, 30, 5, 12)
        assert [(r.day, r.model, r.endpoint) for r in rows[1:]] == [
            (T0.date() + DAY, "claude-sonnet-4-5", "/v1/messages")]


    async def test_the_consoles_reads_of_folded_sessions(self, pool: asyncpg.Pool) -> None:
        """Sessions active in a window, costliest first, limited by developer, team or a literal search (a %
        is a character); their cache tokens per developer; those under a hit rate, lowest first; and what
        one session's misses cost, from its events at their own prices."""
        store = self.create_store()
        low = ev(developer="alice", team="t1", session_id="s1", input_tokens=1000, cached_tokens=100)
        high = ev(developer="bob", team="t2", session_id="s2")
        odd = ev(developer="alice", team="t1", session_id="50%_off")
        late = ev(developer="carol", team="t1", session_id="s4")
        await store.insert_events(pool, [low])
        await store.apply_sessions(pool, keyed(
            Increment("s1", low, T0, T0 + timedelta(hours=1), repo="r1", requests=6, input_tokens=1000,
                      cached_tokens=100, cost_micros=500),
            Increment("s2", high, T0, T0, repo="r2", requests=6, input_tokens=1000, cached_tokens=900,
                      cost_micros=900),
            Increment("50%_off", odd, T0, T0, repo="r1", requests=2, input_tokens=100, cached_tokens=10,
                      cost_micros=50),
            Increment("s4", late, T0 + 10 * DAY, T0 + 10 * DAY, cost_micros=5000)))
        start, end = T0 - DAY, T0 + DAY
        found, matching = await store.folded_sessions(pool, start, end, limit=10)
        assert [f.session_id for f in found] == ["s2", "s1", "50%_off"] and matching == 3
        assert [f.session_id for f in (await store.folded_sessions(pool, start, end, teams=["t1"], limit=10))[0]] \
            == ["s1", "50%_off"]
        assert [f.session_id for f in (await store.folded_sessions(pool, start, end, developers=["bob"],
                                                                   limit=10))[0]] == ["s2"]
        assert [f.session_id for f in (await store.folded_sessions(pool, start, end, search="%", limit=10))[0]] \
            == ["50%_off"]
        assert (await store.folded_sessions(pool, start, end, limit=1))[1] == 3
        per_dev = {r.group: (r.sessions, r.input_tokens, r.cached_tokens)
                   for r in await store.session_cache_totals(pool, start, end, by="developer")}
        assert per_dev == {"alice": (2, 1100, 110), "bob": (1, 1000, 900)}
        under, count = await store.sessions_under(pool, start, end, below_pct=30, min_requests=5, limit=10)
        assert [(u.group, u.developer) for u in under] == [("s1", "alice")] and count == 1
        spread = low.prices.input_micros - low.prices.cached_input_micros
        assert await store.session_miss_costs(pool, [("alice", "s1"), ("bob", "none")]) == \
            {("alice", "s1"): (900 * spread + 500_000) // 1_000_000}  # half up, as the cache report rounds


class TestPostgresUsageStore(UsageStoreContract):
    def create_store(self) -> UsageStore:
        return POSTGRES
