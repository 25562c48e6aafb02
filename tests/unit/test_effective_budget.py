"""The one "budget plus raises" rule: live (raises running at the time) and as of a time (raises known by then)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from spendgate.domain.enforcement.policy import Budget, BudgetRaise, Policy, effective_budget_micros
from spendgate.domain.periods import PeriodKind

AT = datetime(2026, 11, 15, 12, tzinfo=UTC)
HOUR = timedelta(hours=1)
RAISES = (
    BudgetRaise("team:a", 5, AT + HOUR, "running", created_at=AT - HOUR),
    BudgetRaise("team:a", 7, AT, "ends exactly now", created_at=AT - HOUR),
    BudgetRaise("team:a", 11, AT + HOUR, "made later", created_at=AT + HOUR / 2),
    BudgetRaise("team:a", 13, AT + HOUR, "a proposal's: no creation time"),
    BudgetRaise("team:b", 17, AT + HOUR, "another scope", created_at=AT - HOUR),
)


def test_live_counts_every_raise_of_the_scope_running_at_the_time() -> None:
    """A raise counts while at < until, whenever it was made; one ending exactly now or of another scope does not."""
    assert effective_budget_micros(100, RAISES, "team:a", AT) == 100 + 5 + 11 + 13


def test_as_of_ignores_raises_made_after_the_time() -> None:
    """As of a time, a raise stored later does not count; one without a creation time still does."""
    assert effective_budget_micros(100, RAISES, "team:a", AT, as_of=True) == 100 + 5 + 13


def test_no_base_budget_means_no_budget() -> None:
    """A raise alone is not a budget: without a base amount the result is None."""
    assert effective_budget_micros(None, RAISES, "team:a", AT) is None


def test_the_policy_counts_a_raise_from_its_start() -> None:
    """Policy.effective_micros is the rule as of the time asked, per period kind: a raise made later is out."""
    policy = Policy(budgets={}, raises=RAISES)
    budget = Budget("team:a", daily_micros=100, monthly_micros=None)
    assert policy.effective_micros(budget, PeriodKind.DAY, AT) == 100 + 5 + 13
    assert policy.effective_micros(budget, PeriodKind.DAY, AT + HOUR / 2) == 100 + 5 + 11 + 13
    assert policy.effective_micros(budget, PeriodKind.MONTH, AT) is None


def test_creation_time_is_not_part_of_a_raises_identity() -> None:
    """A stored raise equals the same raise from a proposal: creation time is bookkeeping, not identity."""
    assert RAISES[0] == BudgetRaise("team:a", 5, AT + HOUR, "running")
