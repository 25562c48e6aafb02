"""A budget change judged at once: the crossings a lowered budget leaves the current balances past."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta

from spendgate.domain.enforcement import BalanceKey
from spendgate.domain.enforcement.policy import Budget, BudgetRaise, Thresholds
from spendgate.domain.enforcement.stages import StageLevel, crossed
from spendgate.domain.events import BudgetChanged
from spendgate.domain.periods import PeriodKind
from spendgate.ledger.changes import change_crossings

NOW = datetime(2026, 12, 2, 15, 0, tzinfo=UTC)
CHANGE = BudgetChanged(change_id="019a4d6e-8f00-7c2a-9b1e-3f5a2c1d0e03", scope="team:mobile", action="set",
                       monthly_micros=12_000, actor="ops", changed_at=NOW)


def spent(amounts: dict[PeriodKind, int]) -> Callable[[BalanceKey], int]:
    def of(key: BalanceKey) -> int:
        return amounts.get(key.period, 0)

    return of


def test_a_budget_lowered_below_spend_crosses_80_and_95_at_once() -> None:
    """$0.0115 spent, monthly budget lowered to $0.012 (95.8 %): the 80 % and 95 % crossings, caused by the change."""
    budget = Budget("team:mobile", monthly_micros=12_000)
    rows = change_crossings(budget, (), spent({PeriodKind.MONTH: 11_500}), change=CHANGE, now=NOW)
    assert [(r.threshold_pct, r.stage) for r in rows] == [(80, "alert"), (95, "downgrade")]
    r = rows[0]
    assert (r.key, r.spent_micros, r.budget_micros) == (BalanceKey("team:mobile", PeriodKind.MONTH, date(2026, 12, 1)),
                                                        11_500, 12_000)
    assert (r.cause, r.trigger_id, r.crossed_at) == ("budget_change", CHANGE.change_id, NOW)
    assert r.resets_at == datetime(2027, 1, 1, tzinfo=UTC)


def test_both_periods_are_judged_against_the_budget_with_its_running_raises() -> None:
    """A running raise counts (as the proxy counts it); an ended one does not; the day and the month apart."""
    budget = Budget("team:mobile", daily_micros=1_000, monthly_micros=10_000, thresholds=Thresholds(50, 90, 100))
    running = BudgetRaise("team:mobile", 1_000, NOW + timedelta(hours=1), "release")
    ended = BudgetRaise("team:mobile", 50_000, NOW - timedelta(hours=1), "over")
    rows = change_crossings(budget, (running, ended), spent({PeriodKind.DAY: 1_900, PeriodKind.MONTH: 5_500}),
                            change=CHANGE, now=NOW)
    assert [(r.key.period, r.threshold_pct, r.budget_micros) for r in rows] == [
        (PeriodKind.DAY, 50, 2_000), (PeriodKind.DAY, 90, 2_000), (PeriodKind.MONTH, 50, 11_000)]


def test_a_budget_still_above_the_thresholds_crosses_nothing() -> None:
    """Spend under 80 % of the new budget (or no budget for a period) records nothing."""
    budget = Budget("team:mobile", monthly_micros=100_000)
    assert change_crossings(budget, (), spent({PeriodKind.DAY: 10**9, PeriodKind.MONTH: 79_999}),
                            change=CHANGE, now=NOW) == []


def test_equal_thresholds_are_one_crossing_at_the_most_severe_stage() -> None:
    """A hard cap (100,100,100) reached is one crossing, pause, as the proxy's stage says."""
    cap = Thresholds(100, 100, 100)
    assert crossed(StageLevel.OK, StageLevel.PAUSE, cap) == [(100, StageLevel.PAUSE)]
    assert crossed(StageLevel.ALERT, StageLevel.PAUSE, Thresholds()) == [(95, StageLevel.DOWNGRADE),
                                                                         (110, StageLevel.PAUSE)]
    assert crossed(StageLevel.PAUSE, StageLevel.ALERT, Thresholds()) == []
