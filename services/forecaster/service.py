"""The forecaster worker: hourly and at each local midnight, forecast every scope with a monthly
budget, record the pass, publish the updates and first overruns; once a day, the nightly report.

``serve(runtime, stop)`` is what ``spendgate up`` and ``spendgate forecaster`` run. Tests drive
:class:`Forecaster` with an injected clock (``run_pass(at)``) against real PostgreSQL and a real bus.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg

from spendgate.core.bus import Bus
from spendgate.core.config import Settings
from spendgate.core.logs import get_logger
from spendgate.core.mail import MailError, send_mail
from spendgate.domain.periods import PeriodKind, local_date, period_of
from spendgate.forecaster.engine import forecast_all
from spendgate.forecaster.report import build_report, report_message
from spendgate.runtime import Runtime
from spendgate.store.forecasts.store import (
    claim_report,
    mark_report_sent,
    publish_pending,
    release_report,
    save_pass,
)

log = get_logger(__name__)
PASS_LOCK = 0x5F0CA57  # advisory lock: one forecasting pass at a time across workers

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class PassResult:
    scopes: int
    overruns: list[str]
    ran: bool = True


class Forecaster:
    def __init__(self, pool: asyncpg.Pool, bus: Bus, settings: Settings, clock: Clock = utc_now) -> None:
        self.pool, self.bus, self.settings, self.clock = pool, bus, settings, clock
        self.timezones: set[str] = {"UTC"}

    async def run_pass(self, at: datetime | None = None) -> PassResult:
        """Forecast every budgeted scope as of ``at`` (default: the clock), store, then publish."""
        at = at or self.clock()
        async with self.pool.acquire() as lock_conn:
            if not await lock_conn.fetchval("SELECT pg_try_advisory_lock($1)", PASS_LOCK):
                return PassResult(0, [], ran=False)
            try:
                results = await forecast_all(lock_conn, self.settings.forecast, at)
                overruns = await save_pass(lock_conn, [(r.scope.scope, r.forecast) for r in results], at)
            finally:
                await lock_conn.execute("SELECT pg_advisory_unlock($1)", PASS_LOCK)
        self.timezones = {r.scope.timezone for r in results} | {"UTC"}
        await publish_pending(self.pool, self.bus)
        log.info("forecast pass", scopes=len(results), overruns=len(overruns))
        return PassResult(len(results), overruns)

    def next_wake(self, now: datetime) -> datetime:
        """The next hourly run or the next local midnight of any budget's timezone, whichever is first."""
        wake = now + timedelta(seconds=self.settings.forecast.interval_s)
        for tz in self.timezones:
            midnight = period_of(PeriodKind.DAY, local_date(now, tz), tz).ends_at
            wake = min(wake, midnight)
        return wake

    async def maybe_send_report(self, now: datetime | None = None) -> bool:
        """Send the nightly report once per UTC day after ``report_hour_utc``; True when sent now."""
        cfg = self.settings.forecast
        now = now or self.clock()
        if not cfg.report_recipients or now.hour < cfg.report_hour_utc:
            return False
        today = now.date()
        async with self.pool.acquire() as conn:
            if not await claim_report(conn, today, now):
                return False
            try:
                report = await build_report(conn, self.settings, now)
                await send_mail(self.settings.smtp, report_message(report, cfg.report_recipients,
                                                                   self.settings.smtp.sender))
            except MailError:
                await release_report(conn, today)
                raise
            await mark_report_sent(conn, today)
        return True

    async def run(self, stop: asyncio.Event) -> None:
        await publish_pending(self.pool, self.bus)  # whatever a crash left in the outbox
        while not stop.is_set():
            try:
                await self.run_pass()
                await self.maybe_send_report()
            except Exception:  # supervisor: a failed pass is retried at the next wake
                log.exception("forecast pass failed")
            now = self.clock()
            delay_s = max((self.next_wake(now) - now).total_seconds(), 1.0)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay_s)


async def serve(runtime: Runtime, stop: asyncio.Event) -> None:
    """Run the forecaster until ``stop`` is set."""
    await Forecaster(runtime.pool, runtime.bus, runtime.settings).run(stop)
