"""The pure enforcement decision: stages, downgrade, pause, period resets and timezones."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from spendgate.domain.enforcement import (
    BalanceKey,
    Budget,
    BudgetRaise,
    Decision,
    Policy,
    Principal,
    RequestFacts,
    StageLevel,
    Thresholds,
    decide,
    stage_for,
)
from spendgate.domain.enforcement.settings import EnforcementSettings
from spendgate.domain.periods import PeriodKind

NOW = datetime(2026, 11, 26, 15, 0, tzinfo=UTC)
ALICE = Principal("k1", "alice", "platform")
USD = 1_000_000


def policy(*budgets: Budget, raises: tuple[BudgetRaise, ...] = ()) -> Policy:
    return Policy.from_settings(EnforcementSettings(), budgets, raises)


def day(scope: str, d: date = NOW.date()) -> BalanceKey:
    return BalanceKey(scope, PeriodKind.DAY, d)


def facts(model: str = "gpt-5.1", tokens: int = 5_000) -> RequestFacts:
    return RequestFacts(ALICE, model, tokens)


def run(p: Policy, spent: dict[BalanceKey, int], f: RequestFacts | None = None, now: datetime = NOW) -> Decision:
    return decide(f or facts(), p, lambda k: spent.get(k, 0), now)


@pytest.mark.parametrize(
    ("spent_usd_x100", "stage"),
    [(0, StageLevel.OK), (7999, StageLevel.OK), (8000, StageLevel.ALERT), (9499, StageLevel.ALERT),
     (9500, StageLevel.DOWNGRADE), (10999, StageLevel.DOWNGRADE), (11000, StageLevel.PAUSE)],
)
def test_stage_thresholds_are_exact_integer_percentages(spent_usd_x100: int, stage: StageLevel) -> None:
    """80, 95 and 110 % of a $100 budget switch stage at exactly $80.00, $95.00 and $110.00."""
    assert stage_for(spent_usd_x100 * USD // 100, 100 * USD, Thresholds()) is stage


def test_no_budget_passes_with_nothing_to_reserve() -> None:
    """A request in no budgeted scope passes unchanged and has no balance keys."""
    d = run(policy(), {})
    assert (d.action, d.model_used, d.keys, d.decided_by) == ("pass", "gpt-5.1", (), None)
    assert d.remaining_micros is None


def test_remaining_is_the_tightest_budget_left_whatever_stage_decides() -> None:
    """Key $10 with $2 spent, team $50 with $45 spent: $5 left (the team's); past a budget it is negative."""
    p = policy(Budget("key:k1", daily_micros=10 * USD), Budget("team:platform", daily_micros=50 * USD))
    d = run(p, {day("key:k1"): 2 * USD, day("team:platform"): 45 * USD})
    assert (d.stage, d.remaining_micros) == (StageLevel.ALERT, 5 * USD)
    paused = run(p, {day("key:k1"): 12 * USD})
    assert (paused.action, paused.remaining_micros) == ("refuse", -2 * USD)


def test_alert_stage_passes_the_requested_model() -> None:
    """At 80 % the request passes with the requested model; the stage says alert."""
    d = run(policy(Budget("key:k1", daily_micros=100 * USD)), {day("key:k1"): 85 * USD})
    assert (d.action, d.stage, d.model_used) == ("pass", StageLevel.ALERT, "gpt-5.1")
    assert d.decided_by is not None and d.decided_by.scope == "key:k1"


def test_downgrade_moves_small_turns_one_step_down_the_cascade() -> None:
    """At 95 % a turn under 10,000 estimated input tokens goes to the cascade's next model."""
    d = run(policy(Budget("team:platform", daily_micros=100 * USD)), {day("team:platform"): 96 * USD},
            facts(tokens=9_999))
    assert (d.action, d.model_used, d.route_reason) == ("downgrade", "gpt-5.1-mini", "downgrade")


def test_downgrade_keeps_the_flagship_for_large_turns() -> None:
    """At 95 % a turn of 10,000 or more estimated input tokens keeps the requested model."""
    d = run(policy(Budget("team:platform", daily_micros=100 * USD)), {day("team:platform"): 96 * USD},
            facts(tokens=10_000))
    assert (d.action, d.stage, d.model_used) == ("pass", StageLevel.DOWNGRADE, "gpt-5.1")


def test_downgrade_of_a_cascade_member_steps_down_from_it() -> None:
    """A request for gpt-5.1-mini at 95 % steps down to gpt-4.1-mini, the next in its cascade."""
    d = run(policy(Budget("org", monthly_micros=100 * USD)),
            {BalanceKey("org", PeriodKind.MONTH, date(2026, 11, 1)): 99 * USD}, facts("gpt-5.1-mini"))
    assert d.model_used == "gpt-4.1-mini"


def test_pause_refuses_by_default_and_names_the_reset() -> None:
    """At 110 % with at_pause=refuse the request is refused; resets_at is the next local midnight."""
    d = run(policy(Budget("developer:alice", daily_micros=10 * USD)), {day("developer:alice"): 11 * USD})
    assert d.refused and d.stage is StageLevel.PAUSE
    assert d.decided_by is not None
    assert d.decided_by.resets_at == datetime(2026, 11, 27, tzinfo=UTC)
    assert (d.decided_by.spent_micros, d.decided_by.budget_micros) == (11 * USD, 10 * USD)


def test_pause_cheapest_sends_every_turn_to_the_last_model() -> None:
    """At 110 % with at_pause=cheapest even a large turn goes to the cascade's last model."""
    p = policy(Budget("key:k1", daily_micros=10 * USD, at_pause="cheapest"))
    d = run(p, {day("key:k1"): 20 * USD}, facts(tokens=90_000))
    assert (d.action, d.model_used, d.route_reason) == ("pause_cheapest", "gpt-4.1-mini", "pause_cheapest")


def test_pause_cheapest_without_a_cascade_refuses() -> None:
    """A model with no cascade cannot be made cheaper, so at_pause=cheapest refuses it."""
    p = policy(Budget("key:k1", daily_micros=10 * USD, at_pause="cheapest"))
    assert run(p, {day("key:k1"): 20 * USD}, facts("some-other-model")).refused


def test_most_severe_scope_wins_and_refuse_beats_cheapest() -> None:
    """A paused team that refuses outranks a paused key that would route cheapest and an alerting org."""
    p = policy(Budget("key:k1", daily_micros=10 * USD, at_pause="cheapest"),
               Budget("team:platform", monthly_micros=100 * USD),
               Budget("org", daily_micros=1000 * USD))
    spent = {day("key:k1"): 12 * USD, BalanceKey("team:platform", PeriodKind.MONTH, date(2026, 11, 1)): 150 * USD,
             day("org"): 850 * USD}
    d = run(p, spent)
    assert d.refused and d.decided_by is not None
    assert d.decided_by.scope == "team:platform"
    assert d.decided_by.resets_at == datetime(2026, 12, 1, tzinfo=UTC)
    assert set(d.keys) == {day("key:k1"), day("org"),
                           BalanceKey("team:platform", PeriodKind.MONTH, date(2026, 11, 1))}


def test_an_active_raise_lifts_the_budget_until_it_expires() -> None:
    """A $20 raise until 16:00 keeps $115 of $100 under pause; at 16:00 the raise lapses by itself."""
    until = NOW + timedelta(hours=1)
    p = policy(Budget("team:platform", daily_micros=100 * USD),
               raises=(BudgetRaise("team:platform", 20 * USD, until, "release week"),))
    spent = {day("team:platform"): 115 * USD}
    before = run(p, spent, now=NOW)
    assert not before.refused and before.decided_by is not None and before.decided_by.budget_micros == 120 * USD
    assert run(p, spent, now=until).refused


def test_requests_pass_again_after_the_period_resets() -> None:
    """Refused at 23:59 UTC on a spent day, the same key passes at 00:00 when a new day's balance starts."""
    p = policy(Budget("key:k1", daily_micros=10 * USD))
    spent = {day("key:k1"): 11 * USD}
    assert run(p, spent, now=datetime(2026, 11, 26, 23, 59, tzinfo=UTC)).refused
    after = run(p, spent, now=datetime(2026, 11, 27, 0, 0, tzinfo=UTC))
    assert after.action == "pass" and after.keys == (day("key:k1", date(2026, 11, 27)),)


def test_budget_days_follow_the_scope_timezone() -> None:
    """A Europe/Berlin day starts at 23:00 UTC in winter: the Berlin budget resets then, UTC's does not."""
    p = policy(Budget("key:k1", daily_micros=10 * USD, timezone="Europe/Berlin"),
               Budget("org", daily_micros=10 * USD))
    spent = {day("key:k1", date(2026, 11, 26)): 11 * USD, day("org", date(2026, 11, 26)): 11 * USD}
    late = datetime(2026, 11, 26, 23, 30, tzinfo=UTC)  # 00:30 on the 27th in Berlin
    d = run(p, spent, now=late)
    assert d.refused and d.decided_by is not None and d.decided_by.scope == "org"
    assert BalanceKey("key:k1", PeriodKind.DAY, date(2026, 11, 27)) in d.keys


def test_dst_day_resets_after_23_hours() -> None:
    """On the spring-forward day in Berlin (2026-03-29) the daily budget resets 23 hours after it opened."""
    p = policy(Budget("key:k1", daily_micros=10 * USD, timezone="Europe/Berlin"))
    spent = {day("key:k1", date(2026, 3, 29)): 11 * USD}
    d = run(p, spent, now=datetime(2026, 3, 29, 12, 0, tzinfo=UTC))
    assert d.refused and d.decided_by is not None
    assert d.decided_by.resets_at == datetime(2026, 3, 29, 22, 0, tzinfo=UTC)  # midnight CEST
    opened = datetime(2026, 3, 28, 23, 0, tzinfo=UTC)  # midnight CET
    assert d.decided_by.resets_at - opened == timedelta(hours=23)


def test_monthly_budget_in_a_timezone_uses_the_local_month() -> None:
    """At 2026-11-30 23:30 UTC it is already December in Berlin, so the Berlin monthly balance is December's."""
    p = policy(Budget("team:platform", monthly_micros=100 * USD, timezone="Europe/Berlin"))
    d = run(p, {}, now=datetime(2026, 11, 30, 23, 30, tzinfo=UTC))
    assert d.keys == (BalanceKey("team:platform", PeriodKind.MONTH, date(2026, 12, 1)),)


def test_custom_thresholds_make_a_hard_cap() -> None:
    """Thresholds 100/100/100 turn a budget into a single hard cap at exactly 100 %."""
    p = policy(Budget("key:k1", daily_micros=10 * USD, thresholds=Thresholds(100, 100, 100)))
    assert run(p, {day("key:k1"): 10 * USD - 1}).action == "pass"
    assert run(p, {day("key:k1"): 10 * USD}).refused
