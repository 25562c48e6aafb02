"""Reservation book and per-session token estimates."""

from __future__ import annotations

from datetime import date

from spendgate.domain.enforcement import BalanceKey, ReservationBook, SessionEstimator, estimated_cost_micros
from spendgate.domain.periods import PeriodKind
from spendgate.domain.pricing import SHIPPED_PRICES

K = BalanceKey("key:k1", PeriodKind.DAY, date(2026, 11, 26))
M = BalanceKey("key:k1", PeriodKind.MONTH, date(2026, 11, 1))


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_reserve_then_settle_replaces_estimate_by_real_cost_until_folded() -> None:
    """A reservation counts in flight; settling swaps it for the real cost, which leaves once folded."""
    book = ReservationBook(60, Clock())
    res = book.reserve((K, M), 500)
    assert book.pending_micros(K) == book.pending_micros(M) == 500
    book.settle(res, event_id="e1", cost_micros=320)
    assert (book.reserved_micros(K), book.unsettled_micros(K), book.unsettled_event_ids()) == (0, 320, ["e1"])
    book.folded(["e1", "unknown"])
    assert book.pending_micros(K) == 0 and book.pending_micros(M) == 0


def test_recent_counts_what_was_reserved_since_the_last_take() -> None:
    """What a proxy reserved since it last read its peers: every reservation, released or settled ones too;
    taken on every balance (a refresh) or on some (a confirmation), and put back when the read failed."""
    book = ReservationBook(60, Clock())
    book.settle(book.reserve((K, M), 500), event_id="e1", cost_micros=100)
    book.release(book.reserve((K,), 200))
    assert (book.recent_micros(K), book.recent_micros(M)) == (700, 500)
    taken = book.take_recent([K])
    assert taken == {K: 700} and (book.recent_micros(K), book.recent_micros(M)) == (0, 500)
    book.reserve((K,), 30)
    book.restore_recent(taken)
    assert book.recent_micros(K) == 730
    assert book.take_recent() == {K: 730, M: 500}
    assert book.recent_micros(K) == book.recent_micros(M) == 0


def test_unsettled_of_sums_the_named_events_on_one_balance() -> None:
    """What a confirmation subtracts from a fresh balance: the named events' unsettled cost on that balance
    only, and nothing for events no longer in the book."""
    book = ReservationBook(60, Clock())
    other = BalanceKey("team:t", PeriodKind.DAY, date(2026, 11, 26))
    book.settle(book.reserve((K, M), 10), event_id="e1", cost_micros=300)
    book.settle(book.reserve((K, other), 10), event_id="e2", cost_micros=50)
    assert book.unsettled_of({"e1", "e2", "gone"}, K) == 350
    assert book.unsettled_of({"e1", "e2"}, M) == 300 and book.unsettled_of({"e2"}, other) == 50
    book.folded(["e1"])
    assert book.unsettled_of({"e1", "e2"}, K) == 50


def test_settle_is_idempotent_per_event() -> None:
    """Settling the same event twice counts its cost once."""
    book = ReservationBook(60, Clock())
    res = book.reserve((K,), 100)
    book.settle(res, event_id="e1", cost_micros=80)
    book.settle(res, event_id="e1", cost_micros=80)
    assert book.pending_micros(K) == 80


def test_unfinished_reservations_expire_after_the_timeout() -> None:
    """A request that never completes stops holding budget after timeout_s; a late settle still counts."""
    clock = Clock()
    book = ReservationBook(60, clock)
    res = book.reserve((K,), 700)
    clock.t += 59.9
    assert book.expire() == 0 and book.pending_micros(K) == 700
    clock.t += 0.1
    assert book.expire() == 1 and book.pending_micros(K) == 0 and book.open_count == 0
    book.settle(res, event_id="late", cost_micros=650)
    assert book.pending_micros(K) == 650


def test_release_drops_a_reservation_without_cost() -> None:
    """A refused or failed-before-upstream request releases its reservation and leaves nothing behind."""
    book = ReservationBook(60, Clock())
    book.release(book.reserve((K,), 100))
    assert book.pending_micros(K) == 0 and book.unsettled_event_ids() == []


def test_prune_forgets_unsettled_spend_of_finished_periods() -> None:
    """Unsettled events whose periods are all over are forgotten; current ones stay."""
    book = ReservationBook(60, Clock())
    book.settle(book.reserve((K,), 1), event_id="old", cost_micros=5)
    book.settle(book.reserve((K, M), 1), event_id="mixed", cost_micros=7)
    book.prune(lambda k: k.period is PeriodKind.DAY)
    assert book.unsettled_event_ids() == ["mixed"] and book.pending_micros(M) == 7


def test_first_request_is_estimated_from_body_size() -> None:
    """Without history a 46,000-byte body is estimated at 10,000 input tokens (4.6 bytes per token)."""
    est = SessionEstimator(output_cap_tokens=8192).estimate("s1", 46_000)
    assert (est.input_tokens, est.output_tokens) == (10_000, 1_024)


def test_session_estimates_follow_reported_usage() -> None:
    """After a request reported 12,000 tokens for 40 KB, 50 KB is estimated at 15,000; output averages, capped."""
    e = SessionEstimator(output_cap_tokens=500)
    e.observe("s1", body_bytes=40_000, input_tokens=12_000, output_tokens=300)
    e.observe("s1", body_bytes=40_000, input_tokens=12_000, output_tokens=900)
    est = e.estimate("s1", 50_000)
    assert (est.input_tokens, est.output_tokens) == (15_000, 500)
    assert e.estimate("other", 4_600).input_tokens == 1_000


def test_estimated_cost_counts_no_cache_discount() -> None:
    """10,000 input + 1,000 output tokens on gpt-5.1 reserve $0.0225 (no cached discount assumed)."""
    from spendgate.domain.enforcement import TokenEstimate

    assert estimated_cost_micros(SHIPPED_PRICES["gpt-5.1"], TokenEstimate(10_000, 1_000)) == 22_500


def test_changed_balances_are_reported_once_for_peers() -> None:
    """take_changed gives each touched balance's current pending sum once; zeros mean nothing pending."""
    book = ReservationBook(60, Clock())
    res = book.reserve((K, M), 100)
    assert book.take_changed() == {K: 100, M: 100}
    assert book.take_changed() == {}
    book.release(res)
    assert book.take_changed() == {K: 0, M: 0}
    book.mark_changed([K])
    assert book.take_changed() == {K: 0}
