"""The usage store's port: the ledger's idempotent inserts and session totals, and every read of usage."""

from __future__ import annotations

from collections.abc import AsyncIterator, Container, Mapping, Sequence
from datetime import date, datetime
from typing import Protocol

from spendgate.core.db import Conn, Queryable
from spendgate.domain.alerts import SessionLine
from spendgate.domain.events import UsageRecorded
from spendgate.domain.usage import StoredUsage
from spendgate.store.usage import store
from spendgate.store.usage.filters import UsageFilter
from spendgate.store.usage.store import (
    CacheRow,
    ChargebackRow,
    DailyModelUsage,
    DeveloperTrend,
    DowngradedRequest,
    FoldedSession,
    QuarterHourSpend,
    SessionCacheRow,
    SessionIncrement,
    SessionRequest,
    SessionSpend,
    SessionTotals,
    TurnKey,
)


class UsageStore(Protocol):
    async def insert_events(self, conn: Queryable, events: Sequence[UsageRecorded]) -> list[UsageRecorded]: ...

    async def apply_sessions(self, conn: Queryable, sessions: Mapping[tuple[str, str], SessionIncrement], *,
                             stored_turns: Container[TurnKey] = ()) -> None: ...

    async def lock_events(self, conn: Conn) -> None: ...

    async def clear_sessions(self, conn: Queryable) -> None: ...

    def events_in_order(self, conn: Conn, *, prefetch: int) -> AsyncIterator[UsageRecorded]: ...

    async def stored_event_ids(self, db: Queryable, event_ids: Sequence[str]) -> list[str]: ...

    async def chargeback_rows(self, db: Queryable, column: str,
                              usage: UsageFilter) -> tuple[list[ChargebackRow], ChargebackRow | None]: ...

    async def downgraded_requests(self, db: Queryable, column: str,
                                  usage: UsageFilter) -> list[DowngradedRequest]: ...

    async def cache_rows(self, db: Queryable, column: str, usage: UsageFilter) -> list[CacheRow]: ...

    async def session_bounds(self, db: Queryable, session_id: str) -> tuple[datetime, datetime] | None: ...

    async def session_requests(self, db: Queryable, session_id: str) -> list[SessionRequest]: ...

    async def session_totals(self, db: Queryable, developer: str, session_id: str) -> SessionTotals | None: ...

    async def quarter_hour_spend(self, db: Queryable, start: datetime, end: datetime) -> list[QuarterHourSpend]: ...

    def replay_batches(self, conn: Conn, start: datetime, end: datetime, *,
                       batch_rows: int) -> AsyncIterator[list[StoredUsage]]: ...

    async def top_sessions(self, db: Queryable, scope: str, start: datetime, end: datetime,
                           limit: int) -> list[SessionLine]: ...

    async def daily_spend(self, db: Queryable, scope: str, timezone: str, starts_at: datetime,
                          ends_at: datetime) -> list[tuple[date, int]]: ...

    async def scope_spend(self, db: Queryable, scope: str, starts_at: datetime,
                          ends_at: datetime) -> tuple[int, int]: ...

    async def developer_trends(self, db: Queryable, team: str, *, begin: datetime, split: datetime,
                               end: datetime, limit: int) -> list[DeveloperTrend]: ...

    async def team_sessions(self, db: Queryable, team: str, *, start: datetime, end: datetime,
                            limit: int) -> list[SessionSpend]: ...

    async def daily_model_usage(self, db: Queryable, start: date, end: date) -> list[DailyModelUsage]: ...

    async def folded_sessions(self, db: Queryable, start: datetime, end: datetime, *,
                              developers: Sequence[str] | None = None, teams: Sequence[str] | None = None,
                              search: str | None = None, limit: int) -> tuple[list[FoldedSession], int]: ...

    async def session_cache_totals(self, db: Queryable, start: datetime, end: datetime, *, by: str,
                                   developers: Sequence[str] | None = None,
                                   teams: Sequence[str] | None = None) -> list[SessionCacheRow]: ...

    async def sessions_under(self, db: Queryable, start: datetime, end: datetime, *, below_pct: int,
                             min_requests: int, limit: int, developers: Sequence[str] | None = None,
                             teams: Sequence[str] | None = None) -> tuple[list[SessionCacheRow], int]: ...

    async def session_miss_costs(self, db: Queryable,
                                 sessions: Sequence[tuple[str, str]]) -> dict[tuple[str, str], int]: ...


POSTGRES: UsageStore = store
"""The PostgreSQL implementation: the :mod:`.store` module's functions (mypy checks they match the port)."""
