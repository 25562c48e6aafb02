"""The reconcile worker: once a UTC day after ``reconcile.hour_utc``, reconcile the last
``reconcile.lookback_days`` complete days with every configured provider; between runs, publish the gaps
any run recorded (the nightly one or ``spendgate reconcile``) to spendgate.budget.v1 for the alerter.

The day's run is claimed in PostgreSQL, so several workers run it once. A provider that cannot be
reached (or answers 429/5xx) fails the run, which gives the claim back and raises: the supervisor
retries after its backoff. A refused admin key or a report we cannot read is not retried until the
next day (retrying would not help); it is logged as an error.

``serve(runtime, stop)`` is what ``spendgate up`` runs. Tests drive :class:`Reconciler` with an
injected clock against real PostgreSQL, a real bus and the fake upstream's report endpoints.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime

import asyncpg

from spendgate.core.bus import Bus
from spendgate.core.config import Settings
from spendgate.core.logs import get_logger
from spendgate.core.supervisor import Beat, no_beat, wait_or_stop
from spendgate.domain.reconcile import default_range
from spendgate.reconcile.providers import ProviderError
from spendgate.reconcile.run import Outcome, reconcile
from spendgate.runtime import Runtime
from spendgate.store.reconciliation import store

log = get_logger(__name__)
PUBLISH_EVERY_S = 30.0

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


class Reconciler:
    def __init__(self, pool: asyncpg.Pool, bus: Bus, settings: Settings, clock: Clock = utc_now) -> None:
        self.pool, self.bus, self.settings, self.clock = pool, bus, settings, clock

    async def run_nightly(self, now: datetime | None = None) -> Outcome | None:
        """The day's run if it is due and not yet taken; None otherwise."""
        cfg = self.settings.reconcile
        now = now or self.clock()
        if not cfg.providers or now.hour < cfg.hour_utc:
            return None
        today = now.astimezone(UTC).date()
        if not await store.claim_run(self.pool, today, now):
            return None
        start, end = default_range(today, cfg.lookback_days)
        try:
            outcome = await reconcile(self.pool, self.settings, start, end, now=now)
        except ProviderError as exc:
            if exc.retriable:
                await store.release_run(self.pool, today)
                raise
            log.error("nightly reconciliation failed; next try tomorrow or with `spendgate reconcile`",
                      reason=exc.message)
            await store.finish_run(self.pool, today, now)
            return None
        except BaseException:
            await store.release_run(self.pool, today)
            raise
        await store.finish_run(self.pool, today, now)
        log.info("nightly reconciliation", start=str(start), end=str(end), lines=len(outcome.lines),
                 gaps=len(outcome.gaps), new_gaps=len(outcome.new_gaps))
        return outcome

    async def publish(self) -> int:
        return await store.publish_pending(self.pool, self.bus)

    async def run(self, stop: asyncio.Event, beat: Beat = no_beat) -> None:
        """Publish pending gaps, run the night's reconciliation when due, and again, until ``stop``."""
        while not stop.is_set():
            await self.publish()
            if await self.run_nightly() is not None:
                await self.publish()
            beat()
            await wait_or_stop(PUBLISH_EVERY_S, stop)


async def serve(runtime: Runtime, stop: asyncio.Event) -> None:
    """Run the reconcile schedule under the supervisor until ``stop`` is set."""
    if not runtime.settings.reconcile.providers:
        log.info("reconciliation off: no reconcile.providers configured (docs/reconciliation.md)")
    reconciler = Reconciler(runtime.pool, runtime.bus, runtime.settings)
    await runtime.supervisor.run("reconcile.schedule", reconciler.run, stop)
