"""The forecaster worker: hourly and at each local midnight, forecast every scope with a monthly
budget, record the pass, publish the updates and first overruns; once a day, the nightly report.
The schedule runs under the supervisor: a failed pass (or report) raises and is retried after the
supervisor's backoff, and a report that failed after a good pass does not run the pass again.

``serve(runtime, stop)`` is what ``spendgate up`` and ``spendgate forecaster`` run. Tests drive
:class:`Forecaster` with an injected clock (``run_pass(at)``) against real PostgreSQL and a real bus.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg

from spendgate.core.bus import Bus
from spendgate.core.config import Settings
from spendgate.core.logs import get_logger
from spendgate.core.mail import MailError, send_mail
from spendgate.core.metrics import Metrics
from spendgate.core.supervisor import Beat, no_beat, wait_or_stop
from spendgate.domain.periods import PeriodKind, local_date, period_of
from spendgate.forecaster.engine import forecast_all
from spendgate.forecaster.report import FOR_MAIL, build_report, report_message
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
    def __init__(self, pool: asyncpg.Pool, bus: Bus, settings: Settings, clock: Clock = utc_now, *,
                 metrics: Metrics | None = None) -> None:
        self.pool, self.bus, self.settings, self.clock = pool, bus, settings, clock
        self._run_s = metrics.histogram("spendgate_forecaster_run_seconds",
                                        "One forecast pass over every scope") if metrics else None
        self._scopes = metrics.gauge("spendgate_forecaster_scopes",
                                     "Scopes the last forecast pass forecast") if metrics else None
        self.timezones: set[str] = {"UTC"}
        self._next_pass_at: datetime | None = None
        """When the schedule runs the next pass (None: at once)."""

    async def run_pass(self, at: datetime | None = None) -> PassResult:
        """Forecast every scope as of ``at`` (default: the clock), store, then publish."""
        at = at or self.clock()
        started = time.perf_counter()
        async with self.pool.acquire() as lock_conn:
            if not await lock_conn.fetchval("SELECT pg_try_advisory_lock($1)", PASS_LOCK):
                return PassResult(0, [], ran=False)
            try:
                results = await forecast_all(lock_conn, self.settings.forecast, at,
                                             default_timezone=self.settings.default_timezone)
                overruns = await save_pass(lock_conn, [(r.scope.scope, r.forecast) for r in results], at)
            finally:
                await lock_conn.execute("SELECT pg_advisory_unlock($1)", PASS_LOCK)
        self.timezones = {r.scope.timezone for r in results} | {"UTC"}
        await publish_pending(self.pool, self.bus)
        if self._run_s is not None and self._scopes is not None:
            self._run_s.observe(time.perf_counter() - started)
            self._scopes.set(len(results))
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
                report = await build_report(conn, self.settings, now, formats=FOR_MAIL)
                await send_mail(self.settings.smtp, report_message(report, cfg.report_recipients,
                                                                   self.settings.smtp.sender))
            except MailError:
                await release_report(conn, today)
                raise
            await mark_report_sent(conn, today)
        return True

    async def run(self, stop: asyncio.Event, beat: Beat = no_beat) -> None:
        """The schedule: a pass when one is due, then the report if due, until ``stop`` is set."""
        await publish_pending(self.pool, self.bus)  # whatever a crash left in the outbox
        while not stop.is_set():
            if self._next_pass_at is None or self.clock() >= self._next_pass_at:
                await self.run_pass()
                self._next_pass_at = self.next_wake(self.clock())
            await self.maybe_send_report()
            beat()
            delay_s = max((self._next_pass_at - self.clock()).total_seconds(), 1.0)
            await wait_or_stop(delay_s, stop)


async def serve(runtime: Runtime, stop: asyncio.Event) -> None:
    """Run the forecaster's schedule under the supervisor until ``stop`` is set."""
    forecaster = Forecaster(runtime.pool, runtime.bus, runtime.settings, metrics=runtime.metrics)
    await runtime.supervisor.run("forecaster.schedule", forecaster.run, stop)
