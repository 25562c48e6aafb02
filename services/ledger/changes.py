"""A budget change judged at once: the threshold crossings it leaves a scope's current balances past.

A budget lowered below what a scope has already spent moves the scope up the stages with no usage event
to carry the crossing: without this, ``budgets set --monthly 0.012`` on a team with $0.0115 spent put it
at the downgrade stage with no 80 % or 95 % alert, and only a later request crossing 110 % alerted.

When the ledger publishes ``set`` changes from the budgets' audit outbox, it evaluates each changed scope's
current day, week and month balances against the budget in force now (base plus running raises, the one domain
rule) and records every threshold they are at or past, stamped with the change (``cause``
``budget_change``, the change id as trigger), in the transaction that marks the change published; the
crossings outbox then publishes them like any other. The outbox's unique key keeps each (scope, period,
period start, threshold) once, whoever finds it first: a threshold already on record stays as it was.

First, the balances the fold keeps only while a budget asks for them are counted afresh from the
events (:func:`recount`): a per-model budget's (day, week, month) and a weekly amount's week. A
budget set on Wednesday thus counts the week's and the month's spend from their start, not from the
change; the recount holds the fold lock exclusively, so no event is counted twice or missed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from spendgate.core.db import Conn
from spendgate.domain.enforcement import BalanceKey
from spendgate.domain.enforcement.policy import Budget, BudgetRaise, effective_budget_micros
from spendgate.domain.enforcement.stages import StageLevel, crossed, stage_for
from spendgate.domain.events import BudgetChanged
from spendgate.domain.periods import PERIOD_KINDS, Period, PeriodKind, period_containing, period_of
from spendgate.store.balances import store as balances
from spendgate.store.balances.store import CrossingRow
from spendgate.store.budgets import store as budgets
from spendgate.store.keys import store as keys
from spendgate.store.usage import store as usage


@dataclass(frozen=True, slots=True)
class Owner:
    """Who a scope's alert names when no usage event says it (the routes match on these)."""

    developer: str | None = None
    team: str | None = None
    cost_center: str | None = None


def change_crossings(budget: Budget, raises: Sequence[BudgetRaise], spent: Callable[[BalanceKey], int], *,
                     change: BudgetChanged, now: datetime) -> list[CrossingRow]:
    """Every threshold the scope's current day, week and month balances are at or past under ``budget`` as it
    stands at ``now``, as crossings caused by ``change`` (who they name is filled in by the caller). Pure."""
    rows: list[CrossingRow] = []
    for kind in PERIOD_KINDS:
        limit = effective_budget_micros(budget.limit_micros(kind), raises, budget.scope, now)
        if limit is None:
            continue
        period = period_containing(kind, now, budget.timezone)
        key = BalanceKey(budget.scope, kind, period.start)
        used = spent(key)
        for pct, stage in crossed(StageLevel.OK, stage_for(used, limit, budget.thresholds), budget.thresholds):
            rows.append(CrossingRow(key, pct, stage.label, used, limit, period.ends_at, now, change.change_id,
                                    cause="budget_change"))
    return rows


async def owner_of(conn: Conn, scope: str) -> Owner:
    """The developer (key and developer scopes), team and cost center of a scope, from its newest key."""
    kind, _, name = scope.partition(":")
    key = await keys.newest_key_of(conn, scope)
    developer = key.developer if key and kind == "key" else name if kind == "developer" else None
    team = name if kind == "team" else key.team if key else None
    return Owner(developer, team, key.cost_center if key else None)


def recounted(budget: Budget, now: datetime) -> list[Period]:
    """The current periods of ``budget``'s balances that the fold keeps only because it exists (see
    :mod:`.fold`): a weekly amount's week; for a per-model budget also its month and every day of the month
    so far (day balances are what the forecaster reads)."""
    tz = budget.timezone
    out = [period_containing(PeriodKind.WEEK, now, tz)] if budget.weekly_micros is not None else []
    if budget.model is not None:
        month = period_containing(PeriodKind.MONTH, now, tz)
        today = period_containing(PeriodKind.DAY, now, tz).start
        out += [month, *(period_of(PeriodKind.DAY, month.start + timedelta(days=d), tz)
                         for d in range((today - month.start).days + 1))]
    return out


async def recount(conn: Conn, found: Sequence[Budget], now: datetime) -> None:
    """Count the :func:`recounted` balances of ``found`` afresh from the usage events."""
    wanted = [(b, p) for b in found for p in recounted(b, now)]
    if not wanted:
        return
    await balances.hold_fold_lock(conn, exclusive=True)
    totals = {}
    for budget, period in wanted:
        totals[BalanceKey(budget.scope, period.kind, period.start)] = await usage.scope_spend(
            conn, budget.scope, period.starts_at, period.ends_at)
    await balances.set_balances(conn, totals)


async def record_change_crossings(conn: Conn, changes: Sequence[BudgetChanged], *,
                                  now: datetime | None = None) -> int:
    """The crossings of the scopes set by ``changes`` (inside the caller's transaction); returns how many
    are new. A deleted budget has none; a raise only moves a budget up, so it cannot cross anything."""
    now = now or datetime.now(UTC)
    last_set = {c.scope: c for c in changes if c.action == "set"}  # a later change of a scope wins
    if not last_set:
        return 0
    found = await budgets.budgets_of(conn, list(last_set))
    await recount(conn, found, now)
    raises = await budgets.active_raises(conn, now, list(last_set))
    rows: list[CrossingRow] = []
    for budget in found:
        spent: dict[BalanceKey, int] = {}
        for kind in PERIOD_KINDS:
            start = period_containing(kind, now, budget.timezone).start
            spent[BalanceKey(budget.scope, kind, start)] = await balances.spent_micros(conn, budget.scope, kind, start)
        found_now = change_crossings(budget, raises, spent.__getitem__, change=last_set[budget.scope],
                                     now=now)
        if found_now:
            o = await owner_of(conn, budget.scope)
            rows += [replace(r, developer=o.developer, team=o.team, cost_center=o.cost_center) for r in found_now]
    return await balances.insert_crossing_rows(conn, rows)
