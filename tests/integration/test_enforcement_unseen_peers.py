"""Far from the pause line a proxy admits from memory, counting its peers' pending spend as last read. Under
load that read lags by 0.1-0.35 s, and a burst through two proxies used to spend most of a $1.00 budget in
each before either saw the other: both crossed the pause line from memory, by $0.25-0.50
(test_enforcement_concurrency[2]). Now a proxy that has reserved a large share of the headroom to the alert
line since it last read a live peer confirms its next admission (real PostgreSQL, real views)."""

from __future__ import annotations

import asyncio
import json

import asyncpg
import pytest

from spendgate.core.config import Settings
from spendgate.domain.enforcement import Admission, Enforcer, Principal, SessionEstimator
from spendgate.domain.enforcement.policy import budget_of
from spendgate.domain.enforcement.settings import EnforcementSettings
from spendgate.proxy import confirming
from spendgate.proxy.enforcing import admit_confirmed
from spendgate.proxy.view import BalanceView
from spendgate.proxy.wiring import enforcement
from spendgate.store.balances.store import lock_balances, unlock_balances
from spendgate.store.budgets import store
from tests.integration.test_enforcement_view import facts, key_day, ledger_add
from tests.support.waiting import eventually

USD = 1_000_000
PAUSE = USD * 110 // 100
ALICE = Principal("k1", "alice", "platform")
RAW = json.dumps({"model": "gpt-5.1", "input": "x" * 4_600}).encode()
"""A 4.6 KB turn: about 1,000 input tokens and 1,024 estimated output tokens, $0.0115 reserved."""


async def admit(enforcer: Enforcer) -> Admission:
    estimate = SessionEstimator(output_cap_tokens=8192).estimate(None, len(RAW))
    return await admit_confirmed(enforcer, ALICE, "gpt-5.1", session_id=None, raw=RAW, estimate=estimate)


async def _ready(value: bool) -> bool:
    return value


@pytest.fixture
def slow(monkeypatch: pytest.MonkeyPatch) -> EnforcementSettings:
    """A 10 s poll interval (the view counts as stale only after 60 s, so it is not an outage), and
    confirmations that wait up to 30 s (not 2 s): the tests hold a confirmation on a lock for as long as
    they need, and a loaded machine must not turn that into a timeout."""
    monkeypatch.setattr(confirming, "CONFIRM_TIMEOUT_S", 30.0)
    return EnforcementSettings(balance_poll_interval_s=10.0, outage_after_s=60.0)


async def test_a_proxy_that_spent_a_share_of_the_headroom_unseen_by_its_peer_confirms(
    pool: asyncpg.Pool, db_url: str, slow: EnforcementSettings
) -> None:
    """Proxy B holds $0.50 in flight, published; proxy A has not read it (its refresh is held). A admits
    turn after turn: from memory while what it reserved since its last read is a small share of the headroom,
    then confirmed, which reads B's $0.50. The two end within one request of the pause line. Before, A kept
    admitting from memory until its own spend alone reached the alert line ($0.80): $1.30 in all."""
    await store.set_budget(pool, budget_of("key:k1", daily_micros=USD, monthly_micros=None), actor="t")
    key = key_day()
    settings = Settings(database_url=db_url, enforcement=slow)
    async with enforcement(settings, pool, db_url) as a, enforcement(settings, pool, db_url) as b:
        view_a, view_b = a.view, b.view
        assert isinstance(view_a, BalanceView) and isinstance(view_b, BalanceView)
        await eventually(lambda: _ready(view_a.live_peers() == 1 and key in view_a.decide(
            facts()).keys), what="A knows B runs and has the budget")
        in_refresh, release = asyncio.Event(), asyncio.Event()
        refresh = view_a.refresh

        async def held() -> int:
            in_refresh.set()
            await release.wait()
            return await refresh()

        view_a.refresh = held  # type: ignore[method-assign]
        try:
            await store.set_budget(pool, budget_of("team:platform", daily_micros=100 * USD, monthly_micros=None),
                                   actor="t")  # a change: A's loop wakes, reloads, and is held in its refresh
            await eventually(lambda: _ready(in_refresh.is_set()), what="A's refresh held")
            view_b.book.reserve(view_b.decide(facts()).keys, USD // 2)
            await view_b.publish_pending()
            assert view_a.peers.of(key) == 0  # A has not seen B's $0.50
            first = await admit(a)
            assert first.refusal is None and view_a.near_line(ALICE, "gpt-5.1") == []  # far: from memory
            one = first.reservation.amount_micros if first.reservation else 0
            for _ in range(200):
                if (await admit(a)).refusal is not None:
                    break
            else:
                raise AssertionError("A was never refused")
            assert view_a.peers.of(key) == USD // 2, "A confirmed and read B's $0.50"
            total = view_a.book.reserved_micros(key) + USD // 2
            assert PAUSE <= total <= PAUSE + one, f"A and B reserved ${total / USD:.4f} in all"
            assert not release.is_set()
        finally:
            release.set()


async def test_a_proxy_alone_admits_from_memory_however_fast_it_spends(
    pool: asyncpg.Pool, db_url: str, slow: EnforcementSettings
) -> None:
    """With no peer live, what a proxy reserved since its last read is all in its own book: far from the line
    its admissions stay memory-only, whatever their pace (the hot path of one proxy is unchanged)."""
    await store.set_budget(pool, budget_of("key:k1", daily_micros=USD, monthly_micros=None), actor="t")
    async with enforcement(Settings(database_url=db_url, enforcement=slow), pool, db_url) as a:
        view = a.view
        assert isinstance(view, BalanceView) and view.live_peers() == 0
        await eventually(lambda: _ready(key_day() in view.decide(facts()).keys), what="budget loaded")
        view.book.reserve([key_day()], USD * 79 // 100)  # since the last read, far more than any share
        assert view.book.recent_micros(key_day()) >= USD * 79 // 100
        assert view.near_line(ALICE, "gpt-5.1") == []


async def test_admissions_waiting_on_a_confirmation_are_confirmed_together(
    pool: asyncpg.Pool, db_url: str, slow: EnforcementSettings
) -> None:
    """Near the line every admission is confirmed. One at a time, 32 clients in flight on a budget queued
    them past the 2 s confirmation timeout on a loaded machine, and the late ones were decided from memory.
    Here another proxy holds the balance's lock while ten requests arrive: the first confirmation waits for
    it, the nine others for the next one, which confirms them together and publishes their reservations."""
    await store.set_budget(pool, budget_of("key:k1", daily_micros=USD, monthly_micros=None), actor="t")
    key = key_day()
    await ledger_add(pool, key, USD * 85 // 100)  # past the alert line: every admission is confirmed
    async with enforcement(Settings(database_url=db_url, enforcement=slow), pool, db_url) as a:
        view = a.view
        assert isinstance(view, BalanceView)
        await eventually(lambda: _ready(view.settled_micros(key) == USD * 85 // 100), what="balance read")
        assert view.near_line(ALICE, "gpt-5.1") == [key]
        async with pool.acquire() as other:
            await lock_balances(other, [key])  # another proxy confirming on the balance
            requests = [asyncio.create_task(admit(a))]
            await eventually(lambda: _ready(view.confirming.locked()), what="the first confirmation waiting")
            requests += [asyncio.create_task(admit(a)) for _ in range(9)]
            await eventually(lambda: _ready(view.confirmations.waiting == 9), what="nine waiting on the first")
            await unlock_balances(other, [key])
            admitted = await asyncio.gather(*requests)
        assert all(adm.refusal is None for adm in admitted)
        reserved = sum(adm.reservation.amount_micros for adm in admitted if adm.reservation is not None)
        assert view.book.pending_micros(key) == reserved
        # A batch hands its decisions back at once and publishes them before it unlocks.
        await eventually(lambda: pool.fetchval("SELECT pending_micros FROM enforcement_pending WHERE scope = $1",
                                               key.scope),
                         until=lambda published: published == reserved, what="the batch's reservations published")
        assert view.confirmations.batches == 2


async def test_requests_waiting_on_a_stopped_confirmation_are_decided_from_memory(
    pool: asyncpg.Pool, db_url: str, slow: EnforcementSettings
) -> None:
    """A proxy stopping while a confirmation waits for a lock another proxy holds: its requests, in the batch
    and waiting for the next, are decided from memory (as after the confirmation timeout), none left hanging."""
    await store.set_budget(pool, budget_of("key:k1", daily_micros=USD, monthly_micros=None), actor="t")
    key = key_day()
    await ledger_add(pool, key, USD * 85 // 100)
    async with enforcement(Settings(database_url=db_url, enforcement=slow), pool, db_url) as a:
        view = a.view
        assert isinstance(view, BalanceView)
        await eventually(lambda: _ready(view.near_line(ALICE, "gpt-5.1") == [key]), what="balance read")
        async with pool.acquire() as other:
            await lock_balances(other, [key])
            requests = [asyncio.create_task(admit(a))]
            await eventually(lambda: _ready(view.confirming.locked()), what="the first confirmation waiting")
            requests += [asyncio.create_task(admit(a)) for _ in range(2)]
            await eventually(lambda: _ready(view.confirmations.waiting == 2), what="two waiting on the first")
            await view.confirmations.close()
            admitted = await asyncio.wait_for(asyncio.gather(*requests), timeout=5)
            await unlock_balances(other, [key])
        assert [adm.refusal for adm in admitted] == [None] * 3 and view.confirmations.batches == 0
