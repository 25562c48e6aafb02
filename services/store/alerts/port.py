"""The alerts store's port: alerts recorded once per dedupe key with their jobs, leased delivery, attempts and
dead letters, PagerDuty incidents, digest periods, and the latest forecast per scope."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

import asyncpg

from spendgate.core.db import Conn, Queryable
from spendgate.domain.alerts import Action, Alert, Message
from spendgate.domain.events import AlertDelivery, ForecastUpdated
from spendgate.store.alerts import store
from spendgate.store.alerts.store import AlertEntry, DeadDelivery, Job, Planned


class AlertStore(Protocol):
    async def alert_exists(self, conn: Conn, dedup_key: str) -> bool: ...

    async def insert_alert(self, conn: Conn, alert_id: str, dedup_key: str, message: Message) -> bool: ...

    async def insert_jobs(self, conn: Conn, alert_id: str, planned: Sequence[Planned], message: Message,
                          action: Action = "trigger") -> list[Job]: ...

    async def record_alert(self, conn: Conn, alert: Alert, message: Message, planned: Sequence[Planned],
                           digest_routes: Sequence[str]) -> list[Job] | None: ...

    async def claim(self, pool: asyncpg.Pool, job_id: str, owner: str, lease_s: float) -> bool: ...

    async def claim_orphans(self, pool: asyncpg.Pool, owner: str, lease_s: float, *, mine_too: bool) -> list[Job]: ...

    async def record_attempt(self, pool: asyncpg.Pool, job: Job, delivery: AlertDelivery) -> None: ...

    async def dead_letters(self, pool: asyncpg.Pool, *, include_replayed: bool = False) -> list[DeadDelivery]: ...

    async def claim_dead(self, pool: asyncpg.Pool, owner: str, lease_s: float,
                         ids: Sequence[int] = ()) -> list[Job]: ...

    async def alert_history(self, db: Queryable, *, scope: str | None = None, kind: str | None = None,
                            since: datetime | None = None, limit: int = 100) -> list[AlertEntry]: ...

    async def resolve_due_incidents(self, pool: asyncpg.Pool, now: datetime) -> list[Job]: ...

    async def lock_digest(self, conn: Conn, route: str) -> datetime | None: ...

    async def start_digest(self, conn: Conn, route: str, due_at: datetime) -> None: ...

    async def digest_items(self, conn: Conn, route: str) -> list[Message]: ...

    async def close_digest(self, conn: Conn, route: str, digest_alert_id: str, due_at: datetime) -> None: ...

    async def remember_forecast(self, db: Queryable, forecast: ForecastUpdated) -> None: ...

    async def remembered_forecast(self, db: Queryable, scope: str) -> ForecastUpdated | None: ...


POSTGRES: AlertStore = store
"""The PostgreSQL implementation: the :mod:`.store` module's functions (mypy checks they match the port)."""
