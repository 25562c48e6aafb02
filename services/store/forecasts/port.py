"""The forecasts store's port: a pass's forecasts and first overruns, their outbox, the latest forecast per
scope, and the nightly report's once-a-day claim."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from typing import Protocol

import asyncpg

from spendgate.core.bus import Bus
from spendgate.core.db import Conn, Queryable
from spendgate.domain.forecast import Forecast
from spendgate.store.forecasts import store
from spendgate.store.forecasts.store import ForecastBand, StoredForecast


class ForecastStore(Protocol):
    async def save_pass(self, conn: Conn, results: Sequence[tuple[str, Forecast]],
                        computed_at: datetime) -> list[str]: ...

    async def publish_pending(self, pool: asyncpg.Pool, bus: Bus) -> tuple[int, int]: ...

    async def latest_forecasts(self, db: Queryable, scope: str | None = None) -> list[StoredForecast]: ...

    async def latest_band(self, db: Queryable, scope: str) -> ForecastBand | None: ...

    async def claim_report(self, db: Queryable, report_date: date, claimed_at: datetime) -> bool: ...

    async def release_report(self, db: Queryable, report_date: date) -> None: ...

    async def mark_report_sent(self, db: Queryable, report_date: date) -> None: ...


POSTGRES: ForecastStore = store
"""The PostgreSQL implementation: the :mod:`.store` module's functions (mypy checks they match the port)."""
