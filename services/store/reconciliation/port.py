"""The reconciliation store's port: a run's compared lines, its gaps and their outbox, the stored lines
the admin API shows, and the nightly run's once-a-day claim."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from typing import Protocol

import asyncpg

from spendgate.core.bus import Bus
from spendgate.core.db import Conn, Queryable
from spendgate.domain.reconcile import DayGap, Line
from spendgate.store.reconciliation import store
from spendgate.store.reconciliation.store import StoredLine


class ReconciliationStore(Protocol):
    async def save_lines(self, conn: Conn, provider: str, start: date, end: date, lines: Sequence[Line],
                         at: datetime) -> None: ...

    async def record_gaps(self, db: Queryable, gaps: Sequence[DayGap], at: datetime) -> list[DayGap]: ...

    async def publish_pending(self, pool: asyncpg.Pool, bus: Bus) -> int: ...

    async def stored_lines(self, db: Queryable, start: date, end: date,
                           provider: str | None = None) -> list[StoredLine]: ...

    async def gap_days(self, db: Queryable, start: date, end: date) -> list[tuple[str, date, bool]]: ...

    async def claim_run(self, db: Queryable, run_date: date, claimed_at: datetime) -> bool: ...

    async def release_run(self, db: Queryable, run_date: date) -> None: ...

    async def finish_run(self, db: Queryable, run_date: date, at: datetime) -> None: ...


POSTGRES: ReconciliationStore = store
"""The PostgreSQL implementation: the :mod:`.store` module's functions (mypy checks they match the port)."""
