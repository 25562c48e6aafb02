"""The pure fold: balances per scope and period, session aggregates, threshold crossings."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from spendgate.domain.enforcement import BalanceKey, Budget, BudgetRaise, StageLevel, Thresholds
from spendgate.domain.periods import PeriodKind
from spendgate.ledger.fold import batch_crossings, crossings, fold, scopes_of
from tests.support.factories import T0, usage_event


def test_every_event_lands_in_five_scopes_and_two_periods() -> None:
    """key, developer, team, cost center and org each get a day and a month balance (no week: no weekly budget)."""
    ev = usage_event()
    result = fold([ev], lambda _s: "UTC")
    assert len(result.balances) == 10
    assert {k.scope for k in result.balances} == set(scopes_of(ev))
    assert all(d.spent_micros == ev.cost_micros and d.requests == 1 for d in result.balances.values())


def test_scope_timezone_decides_the_period() -> None:
    """The same instant is 1 Nov in UTC and 31 Oct in Los Angeles for a team budgeted there."""
    ev = usage_event(occurred_at=datetime(2026, 11, 1, 3, 0, tzinfo=UTC))
    result = fold([ev], lambda s: "America/Los_Angeles" if s == "team:platform" else "UTC")
    assert BalanceKey("team:platform", PeriodKind.DAY, date(2026, 10, 31)) in result.balances
    assert BalanceKey("team:platform", PeriodKind.MONTH, date(2026, 10, 1)) in result.balances
    assert BalanceKey("org", PeriodKind.DAY, date(2026, 11, 1)) in result.balances
    assert BalanceKey("org", PeriodKind.MONTH, date(2026, 11, 1)) in result.balances


def test_session_aggregate() -> None:
    """A session sums tokens and cost, counts turns, retries, downgrades; refused requests cost nothing."""
    events = [
        usage_event(turn_id="t1"),
        usage_event(turn_id="t1", retry=True, occurred_at=T0 + timedelta(seconds=5)),
        usage_event(turn_id="t2", model_used="gpt-5.1-mini", route_reason="downgrade",
                    occurred_at=T0 + timedelta(minutes=1)),
        usage_event(turn_id="t2", status="refused", http_status=429, input_tokens=0, cached_tokens=0,
                    output_tokens=0, reasoning_tokens=0, cost_micros=0, occurred_at=T0 + timedelta(minutes=2)),
    ]
    s = fold(events, lambda _s: "UTC").sessions[events[0].developer, events[0].session_id]  # type: ignore[index]
    assert s.requests == 3 and s.turn_ids == {"t1", "t2"}
    assert s.cost_micros == sum(e.cost_micros for e in events)
    assert s.retries == 1 and s.retry_cost_micros == events[1].cost_micros
    assert s.downgraded == 1
    assert s.first_at == T0 and s.last_at == T0 + timedelta(minutes=2)


def test_one_session_id_from_two_developers_is_two_sessions() -> None:
    """A session is keyed by (developer, session id): another key holder naming the same id gets a session of
    their own, and neither's totals include the other's requests."""
    alice = usage_event(session_id="shared", turn_id="t1", cost_micros=10)
    bob = usage_event(session_id="shared", turn_id="t1", developer="bob", key_id="k_bob", cost_micros=32)
    sessions = fold([alice, bob], lambda _s: "UTC").sessions
    assert {k: (s.developer, s.cost_micros, s.requests) for k, s in sessions.items()} == {
        ("alice", "shared"): ("alice", 10, 1), ("bob", "shared"): ("bob", 32, 1)}


def test_crossings_name_the_event_that_crossed() -> None:
    """Each threshold crossed by a batch is reported once, with the event that reached it."""
    events = [usage_event(cost_micros=300_000, occurred_at=T0 + timedelta(seconds=i)) for i in range(4)]
    result = fold(events, lambda _s: "UTC")
    key = BalanceKey("team:platform", PeriodKind.DAY, T0.date())
    limit = Budget("team:platform", daily_micros=1_000_000)  # thresholds 80, 95, 110
    found = crossings(key, 0, result.balances[key], limit, recorded=StageLevel.OK)
    assert [(c.threshold_pct, c.stage, c.trigger.event_id) for c in found] == [
        (80, "alert", events[2].event_id), (95, "downgrade", events[3].event_id), (110, "pause", events[3].event_id)]
    assert crossings(key, 800_000, result.balances[key], limit,
                     recorded=StageLevel.ALERT)[0].threshold_pct == 95  # 80 % was crossed before
    assert found[0].resets_at == datetime(2026, 11, 3, tzinfo=UTC)


def test_exact_threshold_counts_and_integers_only() -> None:
    """Spend exactly at 80 % crosses; one micro-dollar short does not."""
    key = BalanceKey("org", PeriodKind.MONTH, date(2026, 11, 1))
    exact = fold([usage_event(cost_micros=800_000)], lambda _s: "UTC").balances[key]
    short = fold([usage_event(cost_micros=799_999)], lambda _s: "UTC").balances[key]
    org = Budget("org", monthly_micros=1_000_000)
    assert [c.threshold_pct for c in crossings(key, 0, exact, org, recorded=StageLevel.OK)] == [80]
    assert crossings(key, 0, short, org, recorded=StageLevel.OK) == []


def test_limits_for_picks_the_period() -> None:
    """Daily and monthly budgets apply to their own periods; an unset one means no limit."""
    budgets = {"team:platform": Budget("team:platform", daily_micros=40_000_000, monthly_micros=None)}
    day = budgets["team:platform"].limit_micros(PeriodKind.DAY)
    assert day is not None and day == 40_000_000
    assert budgets["team:platform"].limit_micros(PeriodKind.MONTH) is None
    assert budgets.get("org") is None


def test_a_hard_cap_is_one_pause_crossing() -> None:
    """Thresholds 100,100,100 write one crossing at 100 %, stage pause (was three rows, the outbox kept 'alert')."""
    key = BalanceKey("org", PeriodKind.MONTH, date(2026, 11, 1))
    delta = fold([usage_event(cost_micros=1_000_000)], lambda _s: "UTC").balances[key]
    cap = Budget("org", monthly_micros=1_000_000, thresholds=Thresholds(100, 100, 100))
    found = crossings(key, 0, delta, cap, recorded=StageLevel.OK)
    assert [(c.threshold_pct, c.stage) for c in found] == [(100, "pause")]


def test_a_threshold_passed_when_a_raise_expires_is_reported_at_the_next_event() -> None:
    """$1.50 of $1 + $1 raise is 75 %; once the raise expires the next event, even a free refused one,
    reports 80/95/110 % (deciding from the spend before the batch skipped them for good)."""
    raise_ = BudgetRaise("team:platform", 1_000_000, T0 + timedelta(minutes=30), "demo day")
    budgets = {"team:platform": Budget("team:platform", daily_micros=1_000_000)}
    first = fold([usage_event(cost_micros=1_500_000)], lambda _s: "UTC")
    assert batch_crossings(first, {}, budgets, raises=[raise_]) == []
    key = BalanceKey("team:platform", PeriodKind.DAY, T0.date())
    refused = usage_event(status="refused", cost_micros=0, occurred_at=T0 + timedelta(hours=1))
    second = fold([refused], lambda _s: "UTC")
    found = batch_crossings(second, {key: 1_500_000}, budgets, raises=[raise_])
    assert [(c.threshold_pct, c.stage, c.trigger.event_id) for c in found if c.key == key] == [
        (80, "alert", refused.event_id), (95, "downgrade", refused.event_id), (110, "pause", refused.event_id)]


def test_a_lowered_budget_reports_the_thresholds_the_balance_is_already_past() -> None:
    """A budget cut from $10 to $1 under $1.50 of spend: the next batch reports 80/95/110 % (the outbox
    drops any it had already)."""
    key = BalanceKey("org", PeriodKind.DAY, T0.date())
    result = fold([usage_event(cost_micros=10, occurred_at=T0 + timedelta(hours=1))], lambda _s: "UTC")
    found = batch_crossings(result, {key: 1_500_000}, {"org": Budget("org", daily_micros=1_000_000)})
    assert [c.threshold_pct for c in found] == [80, 95, 110]


def test_only_budgeted_balances_keep_steps_and_totals_do_not_change() -> None:
    """The fold keeps each event's running total only where a crossing can be looked for (a budgeted
    scope); the sums are the same either way, and the crossings of the budgeted scope too."""
    events = [usage_event(occurred_at=T0 + timedelta(minutes=i), cost_micros=400_000) for i in range(5)]
    every = fold(events, lambda _s: "UTC")
    some = fold(events, lambda _s: "UTC", budgeted={"team:platform"})
    assert {k: (d.spent_micros, d.requests) for k, d in some.balances.items()} == {
        k: (d.spent_micros, d.requests) for k, d in every.balances.items()}
    assert {k.scope for k, d in some.balances.items() if d.steps} == {"team:platform"}
    budget = Budget(scope="team:platform", monthly_micros=1_000_000)
    budgets = {"team:platform": budget}
    assert batch_crossings(some, {}, budgets) == batch_crossings(every, {}, budgets)
    assert batch_crossings(some, {}, budgets)  # 2,000,000 spent against 1,000,000: something was crossed
