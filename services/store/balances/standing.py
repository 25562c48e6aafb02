"""Where a budget stands now: for each period it has an amount for, the spend folded so far, the budget
with the raises active now, the stage and when the period resets.

One function for every reader (the admin API's budget status, the proxy's ``/v1/spendgate/me``), so the
"budget plus raises" and stage rules are applied the same way everywhere. Reads the balances through
their store; the rules come from :mod:`spendgate.domain.enforcement`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime

from spendgate.core.db import Queryable
from spendgate.domain.enforcement.policy import Budget, BudgetRaise, Policy
from spendgate.domain.enforcement.stages import stage_for
from spendgate.domain.periods import PeriodKind, period_containing
from spendgate.store.balances.store import balances_of


@dataclass(frozen=True, slots=True)
class Standing:
    period: PeriodKind
    start: date
    """The period's local start date in the budget's time zone."""
    spent_micros: int
    budget_micros: int
    """The period's budget plus the raises active now."""
    stage: str
    resets_at: datetime


async def standings(db: Queryable, budget: Budget, raises: Sequence[BudgetRaise], now: datetime) -> list[Standing]:
    """``budget``'s standing in each period it has an amount for (day, week, month), at ``now``; ``raises``
    may hold other scopes' raises (only the budget's own count)."""
    periods = {k: period_containing(k, now, budget.timezone) for k in PeriodKind}
    rows = await balances_of(db, budget.scope, day_start=periods[PeriodKind.DAY].start,
                             month_start=periods[PeriodKind.MONTH].start, week_start=periods[PeriodKind.WEEK].start)
    spent = {r.period: r.spent_micros for r in rows}
    policy = Policy(budgets={budget.scope: budget}, raises=tuple(r for r in raises if r.scope == budget.scope))
    out = []
    for kind, period in periods.items():
        limit = policy.effective_micros(budget, kind, now)
        if limit is not None:
            s = spent.get(kind.value, 0)
            out.append(Standing(kind, period.start, s, limit, stage_for(s, limit, budget.thresholds).label,
                                period.ends_at))
    return out
