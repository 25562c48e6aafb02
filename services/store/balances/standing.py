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
from spendgate.store.balances.store import balances_since


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
    return (await standings_of(db, [budget], raises, now))[budget.scope]


async def standings_of(db: Queryable, budgets: Sequence[Budget], raises: Sequence[BudgetRaise],
                       now: datetime) -> dict[str, list[Standing]]:
    """:func:`standings` of many budgets by scope, their balances read in one query (the console's budgets
    page reads thousands)."""
    periods = {tz: {k: period_containing(k, now, tz) for k in PeriodKind} for tz in {b.timezone for b in budgets}}
    since = min((p.start for ps in periods.values() for p in ps.values()), default=now.date())
    spent = {(r.scope, r.period, r.period_start): r.spent_micros
             for r in await balances_since(db, [b.scope for b in budgets], since)}
    scopes = {b.scope for b in budgets}
    policy = Policy(budgets={b.scope: b for b in budgets}, raises=tuple(r for r in raises if r.scope in scopes))
    out: dict[str, list[Standing]] = {}
    for b in budgets:
        out[b.scope] = []
        for kind, period in periods[b.timezone].items():
            limit = policy.effective_micros(b, kind, now)
            if limit is not None:
                s = spent.get((b.scope, kind.value, period.start), 0)
                out[b.scope].append(Standing(kind, period.start, s, limit, stage_for(s, limit, b.thresholds).label,
                                             period.ends_at))
    return out
