"""The budget rules every area calls: effective budget, scopes, stages and threshold crossings."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from spendgate.domain.enforcement import (
    Budget,
    BudgetRaise,
    Policy,
    Principal,
    StageLevel,
    Thresholds,
    crossed,
    effective_budget_micros,
    stage_for,
)
from spendgate.domain.periods import PeriodKind
from spendgate.ledger.fold import scopes_of
from tests.support.factories import usage_event

NOW = datetime(2026, 11, 26, 15, 0, tzinfo=UTC)
USD = 1_000_000


def test_thresholds_map_to_stages_by_position() -> None:
    """80/95/110 % are alert, downgrade and pause, by position, whatever their values."""
    assert crossed(StageLevel.OK, StageLevel.PAUSE, Thresholds()) == [
        (80, StageLevel.ALERT), (95, StageLevel.DOWNGRADE), (110, StageLevel.PAUSE)]
    assert crossed(StageLevel.ALERT, StageLevel.DOWNGRADE, Thresholds(50, 60, 70)) == [(60, StageLevel.DOWNGRADE)]
    assert crossed(StageLevel.DOWNGRADE, StageLevel.DOWNGRADE, Thresholds()) == []


def test_equal_thresholds_cross_once_at_the_most_severe_stage() -> None:
    """A hard cap (100, 100, 100) is one crossing at 100 %, stage pause: the stage the decision reports there."""
    cap = Thresholds(100, 100, 100)
    level = stage_for(USD, USD, cap)
    assert level is StageLevel.PAUSE
    assert crossed(StageLevel.OK, level, cap) == [(100, StageLevel.PAUSE)]
    assert crossed(StageLevel.ALERT, StageLevel.PAUSE, Thresholds(80, 95, 95)) == [(95, StageLevel.PAUSE)]


def test_each_crossing_is_the_stage_of_a_balance_exactly_at_its_threshold() -> None:
    """For any thresholds, the stage a crossing names is stage_for at exactly that percentage."""
    for t in (Thresholds(), Thresholds(100, 100, 100), Thresholds(80, 80, 110), Thresholds(1, 2, 3)):
        for pct, stage in crossed(StageLevel.OK, StageLevel.PAUSE, t):
            assert stage_for(pct * USD // 100, USD, t) is stage


def test_effective_budget_adds_raises_active_at_the_instant() -> None:
    """Base plus the scope's raises with at < until; other scopes' raises and expired ones do not count."""
    raises = [BudgetRaise("team:a", 5 * USD, NOW + timedelta(hours=1), "x"),
              BudgetRaise("team:a", 7 * USD, NOW, "expires now"),
              BudgetRaise("team:b", 9 * USD, NOW + timedelta(days=1), "other scope")]
    assert effective_budget_micros(10 * USD, raises, "team:a", NOW) == 15 * USD
    assert effective_budget_micros(10 * USD, raises, "team:a", NOW - timedelta(seconds=1)) == 22 * USD
    assert effective_budget_micros(None, raises, "team:a", NOW) is None
    policy = Policy(budgets={"team:a": Budget("team:a", daily_micros=10 * USD)}, raises=tuple(raises))
    assert policy.effective_micros(policy.budgets["team:a"], PeriodKind.DAY, NOW) == 15 * USD
    assert policy.effective_micros(policy.budgets["team:a"], PeriodKind.MONTH, NOW) is None


def test_an_audit_as_of_an_instant_ignores_raises_granted_later() -> None:
    """as_of=True leaves out raises created after the instant (a raise of unknown creation counts)."""
    later = BudgetRaise("org", 5 * USD, NOW + timedelta(days=2), "later", created_at=NOW + timedelta(hours=1))
    known = BudgetRaise("org", 3 * USD, NOW + timedelta(days=2), "known", created_at=NOW - timedelta(hours=1))
    unknown = BudgetRaise("org", 1 * USD, NOW + timedelta(days=2), "unknown")
    assert effective_budget_micros(10 * USD, [later, known, unknown], "org", NOW) == 19 * USD
    assert effective_budget_micros(10 * USD, [later, known, unknown], "org", NOW, as_of=True) == 14 * USD


def test_the_ledger_and_the_proxy_put_a_request_in_the_same_scopes() -> None:
    """The fold's scopes of an event are the proxy's scopes of the request's principal."""
    ev = usage_event(key_id="k9", developer="bob", team="data")
    assert scopes_of(ev) == Principal("k9", "bob", "data", ev.cost_center).scopes() == (
        "key:k9", "developer:bob", "team:data", f"cost_center:{ev.cost_center}", "org")
