"""The enforcer facade: admit / complete, and the overshoot bound under concurrency (simulated)."""

from __future__ import annotations

import json
import random
from datetime import UTC, date, datetime

from spendgate.domain.enforcement import (
    Admission,
    BalanceKey,
    Budget,
    Decision,
    Enforcer,
    Policy,
    Principal,
    RequestFacts,
    ReservationBook,
    RetryDetector,
    SessionEstimator,
    TokenEstimate,
    decide,
)
from spendgate.domain.enforcement.settings import EnforcementSettings
from spendgate.domain.periods import PeriodKind
from spendgate.domain.pricing import SHIPPED_PRICES, PriceTable, cost_micros

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
KEY = BalanceKey("key:k1", PeriodKind.DAY, date(2026, 11, 26))
ALICE = Principal("k1", "alice", "platform")
USD = 1_000_000


class FakeView:
    """The in-memory part of BalanceView: settled balances set by the test, the real decision and book."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.book = ReservationBook(900, clock=lambda: 0.0)
        self.settled: dict[BalanceKey, int] = {}

    def spent_micros(self, key: BalanceKey) -> int:
        return self.settled.get(key, 0) + self.book.pending_micros(key)

    def decide(self, facts: RequestFacts) -> Decision:
        return decide(facts, self.policy, self.spent_micros, NOW)

    def retry_cap(self, principal: Principal) -> int:
        return self.policy.retry_cap_for(principal.scopes())


def enforcer(*budgets: Budget) -> tuple[Enforcer, FakeView]:
    view = FakeView(Policy.from_settings(EnforcementSettings(), budgets))
    return Enforcer(view, prices=PriceTable(), detector=RetryDetector(), clock=lambda: NOW), view


def estimate(raw: bytes) -> TokenEstimate:
    """The proxy's estimate of a body (a session's first request: from its size)."""
    return SessionEstimator(output_cap_tokens=8192).estimate(None, len(raw))


def body(text: str = "hello") -> bytes:
    return json.dumps({"model": "gpt-5.1", "input": [{"type": "message", "role": "user", "content": text}]}).encode()


def test_admit_reserves_the_estimate_and_complete_settles_the_real_cost() -> None:
    """A passing request reserves its estimated cost; completion swaps in the real cost as unsettled."""
    enf, view = enforcer(Budget("key:k1", daily_micros=USD))
    raw = body("x" * 4_550)
    adm = enf.admit(ALICE, "gpt-5.1", session_id="s1", raw=raw, estimate=estimate(raw))
    assert adm.refusal is None and adm.model == "gpt-5.1" and adm.reservation is not None
    assert view.book.reserved_micros(KEY) == adm.reservation.amount_micros > 0
    enf.complete(adm, event_id="e1", cost_micros=1234)
    assert (view.book.reserved_micros(KEY), view.book.unsettled_micros(KEY)) == (0, 1234)


def test_paused_budget_is_refused_without_a_reservation() -> None:
    """Over 110 % the admission carries the pause refusal and holds nothing."""
    enf, view = enforcer(Budget("key:k1", daily_micros=USD))
    view.settled[KEY] = 1_100_000
    raw = body()
    adm = enf.admit(ALICE, "gpt-5.1", session_id="s1", raw=raw, estimate=estimate(raw))
    assert adm.refusal is not None and adm.refusal.json()["error"]["code"] == "usage_limit_reached"
    assert adm.reservation is None and view.book.open_count == 0
    assert adm.refusal_reason == "budget_pause"


def test_retry_loop_is_refused_even_with_budget_left() -> None:
    """A session past its retry cap (identical re-sends after failures) is refused with
    retry_budget_exhausted regardless of budget."""
    enf, _ = enforcer()
    raw = body()
    adms = []
    for _ in range(4):
        adms.append(adm := enf.admit(ALICE, "gpt-5.1", session_id="s1", raw=raw, estimate=estimate(raw)))
        if adm.refusal is None:
            enf.complete(adm, event_id="e", cost_micros=1, failed=True)
    assert [a.refusal is not None for a in adms] == [False, False, False, True]
    assert adms[3].refusal is not None and adms[3].refusal.json()["error"]["code"] == "retry_budget_exhausted"
    assert adms[1].retry.retry and adms[3].refusal_reason == "retry_budget" and adms[0].refusal_reason is None


def test_concurrent_requests_stay_within_the_documented_bound_without_false_blocks() -> None:
    """64 in flight on a $1.00 budget: no refusal below 95 % real spend; final spend ≤ 110 % + bound."""
    rng = random.Random(7)
    enf, view = enforcer(Budget("key:k1", daily_micros=USD))
    price = SHIPPED_PRICES["gpt-5.1"]
    raw = body()
    in_flight: list[tuple[Admission, int]] = []
    unfolded: list[tuple[str, int]] = []
    settled_real = 0
    worst_bound = 0
    refusals = 0
    for i in range(2_000):
        if len(in_flight) < 64 and rng.random() < 0.6:
            adm = enf.admit(ALICE, "gpt-5.1", session_id=f"s{i % 16}", raw=raw + str(i).encode(),
                            estimate=TokenEstimate(10_000, 1_024))
            real = cost_micros(price, input_tokens=10_000, cached_tokens=0, output_tokens=rng.randint(200, 1_800))
            in_flight_real = sum(c for _, c in in_flight)
            if adm.refusal is not None:
                refusals += 1
                assert settled_real + in_flight_real >= USD * 95 // 100, "false block"
                continue
            assert adm.reservation is not None
            # documented bound: this request's cost + every in-flight under-estimate
            under = sum(max(0, c - a.reservation.amount_micros) for a, c in in_flight if a.reservation)
            worst_bound = max(worst_bound, real + under)
            in_flight.append((adm, real))
        elif in_flight:
            adm, real = in_flight.pop(rng.randrange(len(in_flight)))
            enf.complete(adm, event_id=f"e{i}", cost_micros=real)
            settled_real += real
            unfolded.append((f"e{i}", real))
        if unfolded and rng.random() < 0.3:  # the ledger folds with a lag
            event_id, real = unfolded.pop(0)
            view.settled[KEY] = view.settled.get(KEY, 0) + real
            view.book.folded([event_id])
    settled_real += sum(c for _, c in in_flight)
    assert refusals > 0
    assert settled_real <= USD * 110 // 100 + worst_bound
    print(f"\nfinal spend ${settled_real / USD:.4f} of $1.00; pause at $1.10; bound ${worst_bound / USD:.4f}")


def test_retry_loop_event_is_built_once_with_the_retry_spend() -> None:
    """The first refusal of a loop yields one RetryLoopDetected carrying the loop's retry spend."""
    enf, _ = enforcer()
    raw = body()
    events = []
    for i in range(6):
        adm = enf.admit(ALICE, "gpt-5.1", session_id="s1", raw=raw, estimate=estimate(raw))
        if adm.refusal is None:
            enf.complete(adm, event_id=f"e{i}", cost_micros=100, failed=True)
        events.append(enf.retry_loop_event(adm, ALICE, cost_center="cc1"))
    found = [e for e in events if e is not None]
    assert len(found) == 1 and events[3] is found[0]
    e = found[0]
    assert (e.session_id, e.key_id, e.cost_center, e.retries, e.retry_cost_micros) == ("s1", "k1", "cc1", 3, 200)
    assert e.command == "(identical request re-sent)"
