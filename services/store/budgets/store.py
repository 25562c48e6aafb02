"""Budgets in PostgreSQL: set, raise, delete (each with an audit row and a NOTIFY), list and show.

Every change runs in one transaction that writes the budget row, a ``budget_audit`` row (the outbox
of ``BudgetChanged`` events, see :func:`publish_budget_changes`) and ``pg_notify`` on
``PG_NOTIFY_CONFIG``, so every proxy's :class:`~.view.BalanceView` reloads as soon as it commits.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Collection, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import asyncpg

from spendgate.core.db import Conn, Queryable
from spendgate.domain.constants import PG_NOTIFY_CONFIG, TOPIC_BUDGET
from spendgate.domain.enforcement.policy import Budget, BudgetRaise, Thresholds, budget_of
from spendgate.domain.enforcement.scopes import parse_scope
from spendgate.domain.errors import StoreError
from spendgate.domain.events import BudgetChanged, encode, new_id

if TYPE_CHECKING:
    from spendgate.core.bus import Bus

NOTIFY_BUDGETS = "budgets"
_BUDGET_COLUMNS = ("scope, daily_micros, monthly_micros, timezone, thresholds_pct, at_pause, retry_cap, version, "
                   "weekly_micros, cascades")
_RAISE_COLUMNS = "raise_id, scope, amount_micros, until, reason, created_at"


def budget_from_row(row: asyncpg.Record) -> Budget:
    cascades = row["cascades"]
    return Budget(row["scope"], row["daily_micros"], row["monthly_micros"], row["timezone"],
                  Thresholds.of(row["thresholds_pct"]), row["at_pause"], row["retry_cap"], row["weekly_micros"],
                  None if cascades is None else tuple((m, tuple(c)) for m, c in sorted(json.loads(cascades).items())))


def raise_from_row(row: asyncpg.Record) -> BudgetRaise:
    return BudgetRaise(row["scope"], row["amount_micros"], row["until"], row["reason"], str(row["raise_id"]),
                       row["created_at"])


def _budget_detail(b: Budget) -> dict[str, Any]:
    return {"daily_micros": b.daily_micros, "weekly_micros": b.weekly_micros, "monthly_micros": b.monthly_micros,
            "timezone": b.timezone, "thresholds_pct": b.thresholds.as_list(), "at_pause": b.at_pause,
            "retry_cap": b.retry_cap, "model": b.model, "cascades": b.cascade_dict()}


async def _audit(conn: Conn, scope: str, action: str, detail: dict[str, Any], actor: str) -> str:
    change_id = new_id()
    await conn.execute(
        "INSERT INTO budget_audit (change_id, scope, action, detail, actor) VALUES ($1, $2, $3, $4::jsonb, $5)",
        change_id, scope, action, json.dumps(detail), actor,
    )
    await conn.execute("SELECT pg_notify($1, $2)", PG_NOTIFY_CONFIG, NOTIFY_BUDGETS)
    return change_id


async def get_budget(pool: asyncpg.Pool, scope: str) -> Budget | None:
    row = await pool.fetchrow(f"SELECT {_BUDGET_COLUMNS} FROM budgets WHERE scope = $1", parse_scope(scope))
    return budget_from_row(row) if row else None


async def set_budget(pool: asyncpg.Pool, budget: Budget, *, actor: str) -> str:
    """Create or replace a scope's budget; returns the audit change id."""
    b = budget_of(budget.scope, daily_micros=budget.daily_micros, monthly_micros=budget.monthly_micros,
                  timezone=budget.timezone, thresholds=budget.thresholds.as_list(), at_pause=budget.at_pause,
                  retry_cap=budget.retry_cap, weekly_micros=budget.weekly_micros, cascades=budget.cascade_dict())
    cascades = b.cascade_dict()
    async with pool.acquire() as conn, conn.transaction():
        old = await conn.fetchrow(f"SELECT {_BUDGET_COLUMNS} FROM budgets WHERE scope = $1 FOR UPDATE", b.scope)
        await conn.execute(
            """INSERT INTO budgets (scope, daily_micros, monthly_micros, timezone, thresholds_pct, at_pause, retry_cap,
                                    weekly_micros, model, cascades)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::jsonb)
               ON CONFLICT (scope) DO UPDATE SET daily_micros = excluded.daily_micros,
                 monthly_micros = excluded.monthly_micros, timezone = excluded.timezone,
                 thresholds_pct = excluded.thresholds_pct, at_pause = excluded.at_pause,
                 retry_cap = excluded.retry_cap, weekly_micros = excluded.weekly_micros, model = excluded.model,
                 cascades = excluded.cascades, updated_at = now(), version = nextval('config_version')""",
            b.scope, b.daily_micros, b.monthly_micros, b.timezone, b.thresholds.as_list(), b.at_pause, b.retry_cap,
            b.weekly_micros, b.model, None if cascades is None else json.dumps(cascades),
        )
        detail = _budget_detail(b)
        if old is not None:
            detail["previous"] = _budget_detail(budget_from_row(old))
        return await _audit(conn, b.scope, "set", detail, actor)


async def raise_budget(pool: asyncpg.Pool, raise_: BudgetRaise, *, actor: str) -> str:
    """Add a temporary raise to a budgeted scope; it stops counting at ``until`` by itself."""
    scope = parse_scope(raise_.scope)
    if raise_.amount_micros <= 0:
        raise StoreError("a raise must be a positive amount", retriable=False)
    if raise_.until.tzinfo is None:
        raise StoreError("a raise's until must be timezone-aware", retriable=False)
    raise_id = new_id()
    async with pool.acquire() as conn, conn.transaction():
        if await conn.fetchval("SELECT 1 FROM budgets WHERE scope = $1", scope) is None:
            raise StoreError(f"no budget for {scope}: set one before raising it", retriable=False)
        await conn.execute(
            "INSERT INTO budget_raises (raise_id, scope, amount_micros, until, reason) VALUES ($1, $2, $3, $4, $5)",
            raise_id, scope, raise_.amount_micros, raise_.until, raise_.reason,
        )
        detail = {"raise_id": raise_id, "raise_micros": raise_.amount_micros,
                  "until": raise_.until.isoformat(), "reason": raise_.reason}
        await _audit(conn, scope, "raise", detail, actor)
    return raise_id


async def delete_budget(pool: asyncpg.Pool, scope: str, *, actor: str) -> bool:
    """Remove a scope's budget and its raises; False when it had none."""
    scope = parse_scope(scope)
    async with pool.acquire() as conn, conn.transaction():
        old = await conn.fetchrow(f"DELETE FROM budgets WHERE scope = $1 RETURNING {_BUDGET_COLUMNS}", scope)
        if old is None:
            return False
        await conn.execute("DELETE FROM budget_raises WHERE scope = $1", scope)
        await _audit(conn, scope, "delete", {"previous": _budget_detail(budget_from_row(old))}, actor)
    return True


async def budgets_of(db: Queryable, scopes: Collection[str] | None = None) -> list[Budget]:
    """Every budget (or those of ``scopes``, exactly as written), by scope."""
    if scopes is None:
        rows = await db.fetch(f"SELECT {_BUDGET_COLUMNS} FROM budgets ORDER BY scope")
    else:
        rows = await db.fetch(f"SELECT {_BUDGET_COLUMNS} FROM budgets WHERE scope = ANY($1::text[]) ORDER BY scope",
                              list(scopes))
    return [budget_from_row(r) for r in rows]


async def active_raises(db: Queryable, at: datetime, scopes: Collection[str] | None = None) -> list[BudgetRaise]:
    """Every raise (or those of ``scopes``) that has not ended at ``at``, soonest end first.

    What they add to a budget is :func:`~spendgate.domain.enforcement.policy.effective_budget_micros`'s to say.
    """
    rows = await db.fetch(
        f"""SELECT {_RAISE_COLUMNS} FROM budget_raises
            WHERE until > $1 AND ($2::text[] IS NULL OR scope = ANY($2::text[])) ORDER BY until""",
        at, None if scopes is None else list(scopes),
    )
    return [raise_from_row(r) for r in rows]


async def load_budgets(db: Queryable, now: datetime) -> tuple[list[Budget], list[BudgetRaise]]:
    """Every budget and every raise still active at ``now``."""
    return await budgets_of(db), await active_raises(db, now)


async def config_mark(db: Queryable) -> tuple[int, int, int, int]:
    """A fingerprint of budgets and raises (row counts and version sums): any insert, update or delete
    changes it, so a reader can skip reloading an unchanged configuration."""
    row = await db.fetchrow(
        """SELECT (SELECT count(*) FROM budgets), (SELECT COALESCE(sum(version), 0) FROM budgets),
                  (SELECT count(*) FROM budget_raises),
                  (SELECT COALESCE(sum(version), 0) FROM budget_raises)""")
    assert row is not None
    return int(row[0]), int(row[1]), int(row[2]), int(row[3])


OnChanges = Callable[[Conn, Sequence[BudgetChanged]], Awaitable[object]]
"""Called with the claimed changes inside the publishing transaction (the ledger evaluates crossings)."""


async def publish_budget_changes(pool: asyncpg.Pool, bus: Bus, *, source: str, limit: int = 500,
                                 on_changes: OnChanges | None = None) -> int:
    """Publish unpublished audit rows as ``BudgetChanged`` events on the budget topic (the outbox).

    ``on_changes`` runs first, in the same transaction that marks the rows published: what it writes
    commits exactly when the changes count as published, so it runs once per change.
    """
    async with pool.acquire() as conn, conn.transaction():
        rows = await conn.fetch(
            """SELECT change_id, scope, action, detail, actor, changed_at FROM budget_audit
               WHERE published_at IS NULL ORDER BY changed_at LIMIT $1 FOR UPDATE SKIP LOCKED""", limit,
        )
        if not rows:
            return 0
        changes = [_changed(r) for r in rows]
        if on_changes is not None:
            await on_changes(conn, changes)
        items = [(c.scope, encode(c, source=source)) for c in changes]
        await bus.publish_many(TOPIC_BUDGET, items)
        await conn.execute("UPDATE budget_audit SET published_at = now() WHERE change_id = ANY($1::uuid[])",
                           [r["change_id"] for r in rows])
    return len(rows)


def _changed(r: asyncpg.Record) -> BudgetChanged:
    d = json.loads(r["detail"])
    until = d.get("until")
    return BudgetChanged(
        change_id=str(r["change_id"]), scope=r["scope"], action=r["action"],
        daily_micros=d.get("daily_micros"), monthly_micros=d.get("monthly_micros"),
        weekly_micros=d.get("weekly_micros"),
        raise_micros=d.get("raise_micros"), until=datetime.fromisoformat(until) if until else None,
        reason=d.get("reason"), actor=r["actor"], changed_at=r["changed_at"],
    )


async def recent_changes(db: Queryable, *, limit: int = 100) -> list[BudgetChanged]:
    """The newest ``limit`` audited budget changes (set, raise, delete), newest first, with their actor."""
    rows = await db.fetch(
        """SELECT change_id, scope, action, detail, actor, changed_at FROM budget_audit
           ORDER BY changed_at DESC, change_id DESC LIMIT $1""", limit,
    )
    return [_changed(r) for r in rows]
