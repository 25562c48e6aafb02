"""The alerts store's contract (alerts, jobs, deliveries, dead letters, digests, incidents, forecast copies),
run against every implementation."""

from __future__ import annotations

import abc
from datetime import UTC, date, datetime, timedelta
from typing import Literal

import asyncpg

from spendgate.domain.alerts import Alert, Message
from spendgate.domain.events import AlertDelivery, ForecastUpdated, ThresholdCrossed
from spendgate.domain.ids import uuid7
from spendgate.store.alerts.port import POSTGRES, AlertStore
from spendgate.store.alerts.store import Job, Planned

NOW = datetime.now(UTC)
HOUR = timedelta(hours=1)


def alert(dedup_key: str = "crossing:team:a:day:2026-11-02:80") -> tuple[Alert, Message]:
    alert_id = uuid7()
    event = ThresholdCrossed(crossing_id=alert_id, scope="team:a", period="day", period_start=date(2026, 11, 2),
                             resets_at=NOW + HOUR, threshold_pct=80, stage="alert", spent_micros=80,
                             budget_micros=100, crossed_at=NOW, trigger_event_id=uuid7())
    message = Message(alert_id=alert_id, kind="alert", severity="warning", title="80%", summary="team a at 80%",
                      scope="team:a", incident_key="spendgate:team:a:day", resolves_at=NOW + HOUR, created_at=NOW)
    return Alert(alert_id, dedup_key, "alert", "team:a", event), message


def attempt(job: Job, outcome: Literal["delivered", "failed", "dead_lettered"], n: int) -> AlertDelivery:
    return AlertDelivery(delivery_id=uuid7(), alert_id=job.alert_id, kind="alert", scope="team:a", route=job.route,
                         channel=job.target, attempt=n, outcome=outcome,
                         error=None if outcome == "delivered" else "HTTP 500", attempted_at=NOW)


def forecast(as_of: date, p50_micros: int) -> ForecastUpdated:
    return ForecastUpdated(forecast_id=uuid7(), scope="team:a", month=date(2026, 11, 1), as_of=as_of,
                           actual_micros=1, p10_micros=p50_micros - 1, p50_micros=p50_micros,
                           p90_micros=p50_micros + 1, budget_micros=None, model="test")


class AlertStoreContract(abc.ABC):
    """Alerts are recorded once, jobs are leased to one alerter, and every delivery ends delivered or dead."""

    @abc.abstractmethod
    def create_store(self) -> AlertStore: ...

    async def test_an_alert_is_recorded_once_per_dedupe_key(self, pool: asyncpg.Pool) -> None:
        """The first recording makes one job per target and the digest items; a redelivery makes nothing."""
        store = self.create_store()
        a, message = alert()
        async with pool.acquire() as conn:
            jobs = await store.record_alert(conn, a, message, [Planned("r", "slack:x"), Planned("r", "email:y")],
                                            ["weekly"])
            assert jobs is not None and sorted(j.target for j in jobs) == ["email:y", "slack:x"]
            assert all(j.message == message and j.attempts == 0 for j in jobs)
            assert await store.alert_exists(conn, a.dedup_key)
            again, _ = alert()
            assert await store.record_alert(conn, again, message, [Planned("r", "slack:x")], []) is None
            assert [m.alert_id for m in await store.digest_items(conn, "weekly")] == [a.alert_id]

    async def test_a_job_is_leased_to_one_alerter_at_a_time(self, pool: asyncpg.Pool) -> None:
        """The holder renews; others wait for the lease to run out, then take it over as an orphan."""
        store = self.create_store()
        a, message = alert()
        async with pool.acquire() as conn:
            [job] = await store.record_alert(conn, a, message, [Planned("r", "slack:x")], []) or []
        assert await store.claim(pool, job.job_id, "a", 60)
        assert not await store.claim(pool, job.job_id, "b", 60)
        assert await store.claim_orphans(pool, "b", 60, mine_too=False) == []  # leased and fresh: nobody's orphan
        assert await store.claim(pool, job.job_id, "a", 0)  # renewed, with a lease that is over at once
        [orphan] = await store.claim_orphans(pool, "b", 60, mine_too=False)
        assert orphan.job_id == job.job_id and not await store.claim(pool, job.job_id, "a", 60)
        [mine] = await store.claim_orphans(pool, "b", 60, mine_too=True)  # b restarted: its own jobs come back
        assert mine.job_id == job.job_id

    async def test_a_dead_job_is_listed_replayed_and_settled(self, pool: asyncpg.Pool) -> None:
        """A failed attempt keeps it pending; a dead one lists it; replay claims it; delivery settles the letter."""
        store = self.create_store()
        a, message = alert()
        async with pool.acquire() as conn:
            [job] = await store.record_alert(conn, a, message, [Planned("r", "slack:x")], []) or []
        await store.record_attempt(pool, job, attempt(job, "failed", 1))
        assert await store.dead_letters(pool) == []
        await store.record_attempt(pool, job, attempt(job, "dead_lettered", 2))
        [dead] = await store.dead_letters(pool)
        assert (dead.job_id, dead.attempts, dead.last_error, dead.kind, dead.scope, dead.target, dead.action) == (
            job.job_id, 2, "HTTP 500", "alert", "team:a", "slack:x", "trigger")
        [again] = await store.claim_dead(pool, "replayer", 60)
        assert again.job_id == job.job_id and again.attempts == 2
        assert await store.claim_dead(pool, "replayer", 60) == []
        await store.record_attempt(pool, again, attempt(again, "delivered", 3))
        assert await store.dead_letters(pool) == []
        [settled] = await store.dead_letters(pool, include_replayed=True)
        assert settled.replayed_at is not None

    async def test_the_history_lists_alerts_newest_first_with_each_delivery_and_digest(
        self, pool: asyncpg.Pool
    ) -> None:
        """Each alert with its jobs' status, attempts and last error, and its digest routes; filters narrow it."""
        store = self.create_store()
        first, first_message = alert("crossing:team:a:day:2026-11-02:80")
        second, second_message = alert("crossing:team:a:day:2026-11-02:95")
        async with pool.acquire() as conn:
            [ok, bad] = await store.record_alert(conn, first, first_message,
                                                 [Planned("r", "slack:x"), Planned("r", "email:y")], []) or []
            await store.record_alert(conn, second, second_message, [], ["daily"])
        await store.record_attempt(pool, ok, attempt(ok, "delivered", 1))
        await store.record_attempt(pool, bad, attempt(bad, "dead_lettered", 1))
        newest, oldest = await store.alert_history(pool)
        assert (newest.message.alert_id, newest.jobs, newest.digest_routes) == (second.alert_id, [], ["daily"])
        assert oldest.message == first_message
        assert [(j.target, j.status, j.attempts, j.last_error) for j in oldest.jobs] == [
            ("slack:x", "delivered", 1, None), ("email:y", "dead", 1, "HTTP 500")]
        assert [e.message.alert_id for e in await store.alert_history(pool, limit=1)] == [second.alert_id]
        assert await store.alert_history(pool, scope="team:b") == []
        assert await store.alert_history(pool, kind="pause") == []
        assert await store.alert_history(pool, since=NOW + HOUR) == []

    async def test_incidents_are_resolved_once_when_their_period_resets(self, pool: asyncpg.Pool) -> None:
        """A PagerDuty target's incident gets a resolve job at its reset time, and only one."""
        store = self.create_store()
        a, message = alert()
        async with pool.acquire() as conn:
            await store.record_alert(conn, a, message, [Planned("r", "pagerduty:x", incident=True)], [])
        assert await store.resolve_due_incidents(pool, NOW) == []
        [resolve] = await store.resolve_due_incidents(pool, NOW + 2 * HOUR)
        assert (resolve.action, resolve.target, resolve.alert_id) == ("resolve", "pagerduty:x", a.alert_id)
        assert await store.resolve_due_incidents(pool, NOW + 3 * HOUR) == []

    async def test_a_digest_period_closes_over_its_waiting_alerts(self, pool: asyncpg.Pool) -> None:
        """The first run only records the start; items wait until closed into a digest, then a new period starts."""
        store = self.create_store()
        a, message = alert()
        async with pool.acquire() as conn:
            async with conn.transaction():
                assert await store.lock_digest(conn, "weekly") is None
                await store.start_digest(conn, "weekly", NOW)
            await store.record_alert(conn, a, message, [], ["weekly"])
            async with conn.transaction():
                assert await store.lock_digest(conn, "weekly") == NOW
                [waiting] = await store.digest_items(conn, "weekly")
                digest, digest_message = alert("digest:weekly:1")
                await store.insert_alert(conn, digest.alert_id, digest.dedup_key, digest_message)
                await store.close_digest(conn, "weekly", digest.alert_id, NOW + HOUR)
            assert waiting.alert_id == a.alert_id
            assert await store.digest_items(conn, "weekly") == []
            assert await store.lock_digest(conn, "weekly") == NOW + HOUR

    async def test_the_forecast_copy_keeps_the_latest_as_of_day(self, pool: asyncpg.Pool) -> None:
        """A newer as-of day replaces the copy; a late, older one does not."""
        store = self.create_store()
        await store.remember_forecast(pool, forecast(date(2026, 11, 9), 500))
        await store.remember_forecast(pool, forecast(date(2026, 11, 10), 600))
        await store.remember_forecast(pool, forecast(date(2026, 11, 8), 400))
        kept = await store.remembered_forecast(pool, "team:a")
        assert kept is not None and (kept.as_of, kept.p50_micros) == (date(2026, 11, 10), 600)
        assert await store.remembered_forecast(pool, "team:b") is None


class TestPostgresAlertStore(AlertStoreContract):
    def create_store(self) -> AlertStore:
        return POSTGRES
