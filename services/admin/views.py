"""What the admin API and the CLI read about keys and budgets: the documents and the functions that
build them from the stores. The API's handlers and the CLI's database source call the same
functions, so ``spendgate keys list`` prints the same thing with and without ``--api``.

No aiohttp here, and the budgets store only inside the budget functions: ``spendgate keys list``
imports this module and must stay quick to start.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
from typing import TYPE_CHECKING

import asyncpg
import msgspec

from spendgate.store.keys import store as keys_store

if TYPE_CHECKING:
    from spendgate.domain.enforcement.policy import Budget, BudgetRaise


class KeyOut(msgspec.Struct, frozen=True, kw_only=True):
    key_id: str
    key_prefix: str
    developer: str
    team: str
    cost_center: str
    created_at: datetime
    revoked_at: datetime | None
    active: bool


class KeyList(msgspec.Struct, frozen=True, kw_only=True):
    keys: list[KeyOut]


def key_out(k: keys_store.VirtualKey) -> KeyOut:
    return KeyOut(key_id=k.key_id, key_prefix=k.key_prefix, developer=k.developer, team=k.team,
                  cost_center=k.cost_center, created_at=k.created_at, revoked_at=k.revoked_at, active=k.active)


async def key_list(pool: asyncpg.Pool, *, include_revoked: bool) -> KeyList:
    return KeyList(keys=[key_out(k) for k in await keys_store.list_keys(pool, include_revoked=include_revoked)])


class BudgetOut(msgspec.Struct, frozen=True, kw_only=True):
    scope: str
    daily_micros: int | None
    monthly_micros: int | None
    timezone: str
    thresholds_pct: list[int]
    at_pause: str
    retry_cap: int | None
    raised_micros: int = 0
    """The sum of the scope's raises active now (each adds to the daily, weekly and monthly budget)."""
    weekly_micros: int | None = None
    """The ISO-week budget (Monday 00:00 in ``timezone``)."""
    model: str | None = None
    """The one model a per-model budget counts (its ``scope`` ends in ``|model:<model>``); null: every model."""
    cascades: dict[str, list[str]] | None = None
    """The scope's own cascades; null: the broader scopes' or the settings'."""


class RaiseOut(msgspec.Struct, frozen=True, kw_only=True):
    raise_id: str
    scope: str
    amount_micros: int
    until: datetime
    reason: str


class Budgets(msgspec.Struct, frozen=True, kw_only=True):
    budgets: list[BudgetOut]
    raises: list[RaiseOut]
    """Raises still active now."""


def budget_out(b: Budget, raises: list[BudgetRaise] | tuple[BudgetRaise, ...] = ()) -> BudgetOut:
    return BudgetOut(scope=b.scope, daily_micros=b.daily_micros, monthly_micros=b.monthly_micros,
                     timezone=b.timezone, thresholds_pct=b.thresholds.as_list(), at_pause=b.at_pause,
                     retry_cap=b.retry_cap, raised_micros=sum(r.amount_micros for r in raises if r.scope == b.scope),
                     weekly_micros=b.weekly_micros, model=b.model, cascades=b.cascade_dict())


def raise_out(r: BudgetRaise) -> RaiseOut:
    return RaiseOut(raise_id=r.raise_id, scope=r.scope, amount_micros=r.amount_micros, until=r.until,
                    reason=r.reason)


async def budget_list(pool: asyncpg.Pool, now: datetime) -> Budgets:
    from spendgate.store.budgets import store as budgets_store

    budgets, raises = await budgets_store.load_budgets(pool, now)
    return Budgets(budgets=[budget_out(b, raises) for b in budgets], raises=[raise_out(r) for r in raises])


class PeriodStanding(msgspec.Struct, frozen=True, kw_only=True):
    period: str
    """``day``, ``week`` (ISO, from Monday) or ``month``, in the budget's time zone."""
    start: date
    spent_micros: int
    budget_micros: int
    """The period's budget plus the raises active now."""
    stage: str
    resets_at: datetime


class BudgetStatus(msgspec.Struct, frozen=True, kw_only=True):
    budget: BudgetOut
    raises: list[RaiseOut]
    periods: list[PeriodStanding]
    """Each period the scope has a budget for, with where its spend stands now."""


async def budget_status(pool: asyncpg.Pool, scope: str, now: datetime) -> BudgetStatus | None:
    """A scope's budget, its active raises and this day's and month's standing; None without a budget."""
    from spendgate.domain.enforcement.scopes import parse_scope
    from spendgate.store.budgets import store as budgets_store

    b = await budgets_store.get_budget(pool, parse_scope(scope))
    if b is None:
        return None
    _, all_raises = await budgets_store.load_budgets(pool, now)
    return (await _statuses(pool, [b], all_raises, now))[0]


async def budget_statuses(pool: asyncpg.Pool, now: datetime,
                          visible: Callable[[str], bool] = lambda scope: True) -> list[BudgetStatus]:
    """:func:`budget_status` of every budgeted scope ``visible`` accepts, in scope order, in three queries."""
    from spendgate.store.budgets import store as budgets_store

    budgets, all_raises = await budgets_store.load_budgets(pool, now)
    return await _statuses(pool, [b for b in budgets if visible(b.scope)], all_raises, now)


async def _statuses(pool: asyncpg.Pool, budgets: list[Budget], all_raises: list[BudgetRaise],
                    now: datetime) -> list[BudgetStatus]:
    from spendgate.store.balances.standing import standings_of

    found = await standings_of(pool, budgets, all_raises, now)
    raises_of: dict[str, list[BudgetRaise]] = {}
    for r in all_raises:
        raises_of.setdefault(r.scope, []).append(r)
    return [BudgetStatus(
        budget=budget_out(b, raises_of.get(b.scope, [])), raises=[raise_out(r) for r in raises_of.get(b.scope, [])],
        periods=[PeriodStanding(period=s.period.value, start=s.start, spent_micros=s.spent_micros,
                                budget_micros=s.budget_micros, stage=s.stage, resets_at=s.resets_at)
                 for s in found[b.scope]]) for b in budgets]
