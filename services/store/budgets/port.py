"""The budgets store's port: audited changes (each one NOTIFYs the proxies), reads as domain types, the
``BudgetChanged`` outbox. What a budget amounts to with its raises is the domain's rule, not the store's."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Protocol

import asyncpg

from spendgate.core.bus import Bus
from spendgate.core.db import Queryable
from spendgate.domain.enforcement.policy import Budget, BudgetRaise
from spendgate.domain.events import BudgetChanged
from spendgate.store.budgets import store
from spendgate.store.budgets.store import OnChanges


class BudgetStore(Protocol):
    async def get_budget(self, pool: asyncpg.Pool, scope: str) -> Budget | None: ...

    async def set_budget(self, pool: asyncpg.Pool, budget: Budget, *, actor: str) -> str: ...

    async def raise_budget(self, pool: asyncpg.Pool, raise_: BudgetRaise, *, actor: str) -> str: ...

    async def delete_budget(self, pool: asyncpg.Pool, scope: str, *, actor: str) -> bool: ...

    async def budgets_of(self, db: Queryable, scopes: Collection[str] | None = None) -> list[Budget]: ...

    async def active_raises(self, db: Queryable, at: datetime,
                            scopes: Collection[str] | None = None) -> list[BudgetRaise]: ...

    async def load_budgets(self, db: Queryable, now: datetime) -> tuple[list[Budget], list[BudgetRaise]]: ...

    async def config_mark(self, db: Queryable) -> tuple[int, int, int, int]: ...

    async def recent_changes(self, db: Queryable, *, limit: int = 100) -> list[BudgetChanged]: ...

    async def publish_budget_changes(self, pool: asyncpg.Pool, bus: Bus, *, source: str, limit: int = 500,
                                     on_changes: OnChanges | None = None) -> int: ...


POSTGRES: BudgetStore = store
"""The PostgreSQL implementation: the :mod:`.store` module's functions (mypy checks they match the port)."""
