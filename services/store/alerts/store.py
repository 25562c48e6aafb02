"""The alerter's tables: alert history, delivery jobs and attempts, dead letters, PagerDuty incidents,
digest state and the latest forecast per scope.

Redelivered events find their alert by ``dedup_key`` and create nothing; a new alert, its jobs,
its digest items and its incidents are written in one transaction before the bus offset is committed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import asyncpg
import msgspec

from spendgate.core.db import Conn, Queryable
from spendgate.domain.alerts import Action, Alert, Message, message_decoder, message_encoder
from spendgate.domain.events import AlertDelivery, ForecastUpdated
from spendgate.domain.ids import uuid7


@dataclass(frozen=True, slots=True)
class Job:
    job_id: str
    alert_id: str
    route: str
    target: str
    action: Action
    attempts: int
    message: Message


@dataclass(frozen=True, slots=True)
class Planned:
    route: str
    target: str
    incident: bool = False
    """A PagerDuty target: remember the incident so it is resolved when the period resets."""


_JOB_SELECT = """SELECT j.job_id::text, j.alert_id::text, j.route, j.target, j.action, j.attempts,
                        a.message::text AS message
                 FROM alert_jobs j JOIN alerts a USING (alert_id)"""


def _job(row: asyncpg.Record) -> Job:
    return Job(row["job_id"], row["alert_id"], row["route"], row["target"], row["action"], row["attempts"],
               message_decoder.decode(row["message"]))


async def alert_exists(conn: Conn, dedup_key: str) -> bool:
    return bool(await conn.fetchval("SELECT 1 FROM alerts WHERE dedup_key = $1", dedup_key))


async def insert_alert(conn: Conn, alert_id: str, dedup_key: str, message: Message) -> bool:
    """Insert the alert; False when an alert with its id or dedupe key already exists."""
    inserted = await conn.fetchval(
        """INSERT INTO alerts (alert_id, dedup_key, kind, scope, developer, team, cost_center, message)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8::jsonb) ON CONFLICT DO NOTHING RETURNING 1""",
        alert_id, dedup_key, message.kind, message.scope, message.developer, message.team,
        message.cost_center, message_encoder.encode(message).decode(),
    )
    return bool(inserted)


async def insert_jobs(conn: Conn, alert_id: str, planned: Sequence[Planned], message: Message,
                      action: Action = "trigger") -> list[Job]:
    jobs: list[Job] = []
    for p in planned:
        job_id = uuid7()
        done = await conn.fetchval(
            """INSERT INTO alert_jobs (job_id, alert_id, route, target, action) VALUES ($1, $2, $3, $4, $5)
               ON CONFLICT (alert_id, target, action) DO NOTHING RETURNING 1""",
            job_id, alert_id, p.route, p.target, action,
        )
        if done:
            jobs.append(Job(job_id, alert_id, p.route, p.target, action, 0, message))
        if p.incident and message.resolves_at is not None and action == "trigger":
            await conn.execute(
                """INSERT INTO alert_incidents (target, incident_key, route, alert_id, resolves_at)
                   VALUES ($1, $2, $3, $4, $5)
                   ON CONFLICT (target, incident_key) DO UPDATE
                   SET alert_id = excluded.alert_id, resolves_at = excluded.resolves_at, resolved_at = NULL""",
                p.target, message.incident_key, p.route, alert_id, message.resolves_at,
            )
    return jobs


async def record_alert(conn: Conn, alert: Alert, message: Message, planned: Sequence[Planned],
                       digest_routes: Sequence[str]) -> list[Job] | None:
    """Write a new alert with its jobs and digest items; None when it was already recorded."""
    async with conn.transaction():
        if not await insert_alert(conn, alert.alert_id, alert.dedup_key, message):
            return None
        for route in digest_routes:
            await conn.execute("INSERT INTO alert_digest_items (route, alert_id) VALUES ($1, $2)",
                               route, alert.alert_id)
        return await insert_jobs(conn, alert.alert_id, planned, message)


async def claim(pool: asyncpg.Pool, job_id: str, owner: str, lease_s: float) -> bool:
    """Take or renew the job for ``lease_s``; False when another alerter holds it or it is finished."""
    return bool(await pool.fetchval(
        """UPDATE alert_jobs SET claimed_by = $2, claimed_until = now() + make_interval(secs => $3)
           WHERE job_id = $1 AND status = 'pending'
             AND (claimed_by IS NULL OR claimed_by = $2 OR claimed_until < now())
           RETURNING 1""",
        job_id, owner, lease_s,
    ))


async def claim_orphans(pool: asyncpg.Pool, owner: str, lease_s: float, *, mine_too: bool) -> list[Job]:
    """Pending jobs nobody is working on: leases run out, never claimed for a whole lease, or (at start-up,
    ``mine_too``) left by this alerter's previous run."""
    rows = await pool.fetch(
        f"""WITH taken AS (
                UPDATE alert_jobs SET claimed_by = $1, claimed_until = now() + make_interval(secs => $2)
                WHERE job_id IN (
                    SELECT job_id FROM alert_jobs
                    WHERE status = 'pending'
                      AND (claimed_until < now()
                           OR (claimed_until IS NULL AND created_at < now() - make_interval(secs => $2))
                           OR ($3 AND claimed_by = $1))
                    ORDER BY created_at LIMIT 1000 FOR UPDATE SKIP LOCKED)
                RETURNING job_id)
            {_JOB_SELECT} WHERE j.job_id IN (SELECT job_id FROM taken) ORDER BY j.created_at""",
        owner, lease_s, mine_too,
    )
    return [_job(r) for r in rows]


async def record_attempt(pool: asyncpg.Pool, job: Job, delivery: AlertDelivery) -> None:
    """Keep one attempt in the history and move the job on (delivered, still pending, or dead)."""
    status = {"delivered": "delivered", "failed": "pending", "dead_lettered": "dead"}[delivery.outcome]
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            """INSERT INTO alert_deliveries (delivery_id, job_id, alert_id, route, target, attempt, outcome,
                                             http_status, error, attempted_at)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)""",
            delivery.delivery_id, job.job_id, job.alert_id, job.route, job.target, delivery.attempt,
            delivery.outcome, delivery.http_status, delivery.error, delivery.attempted_at,
        )
        await conn.execute(
            "UPDATE alert_jobs SET status = $2, attempts = $3, last_error = $4, updated_at = now() WHERE job_id = $1",
            job.job_id, status, delivery.attempt, delivery.error,
        )
        if status == "dead":
            await conn.execute(
                """INSERT INTO alert_dead_letters (job_id, attempts, last_error) VALUES ($1, $2, $3)
                   ON CONFLICT (job_id) DO UPDATE SET attempts = excluded.attempts,
                       last_error = excluded.last_error, created_at = now(), replayed_at = NULL""",
                job.job_id, delivery.attempt, delivery.error,
            )
        elif status == "delivered":
            await conn.execute(
                "UPDATE alert_dead_letters SET replayed_at = now() WHERE job_id = $1 AND replayed_at IS NULL",
                job.job_id,
            )


@dataclass(frozen=True, slots=True)
class DeadDelivery:
    """A delivery job that failed its last attempt, with what it was for."""

    dead_letter_id: int
    job_id: str
    attempts: int
    last_error: str | None
    created_at: datetime
    replayed_at: datetime | None
    route: str
    target: str
    action: Action
    kind: str
    scope: str
    alert_id: str


async def dead_letters(pool: asyncpg.Pool, *, include_replayed: bool = False) -> list[DeadDelivery]:
    rows = await pool.fetch(
        """SELECT d.dead_letter_id, d.job_id::text, d.attempts, d.last_error, d.created_at, d.replayed_at,
                  j.route, j.target, j.action, a.kind, a.scope, a.alert_id::text
           FROM alert_dead_letters d JOIN alert_jobs j USING (job_id) JOIN alerts a USING (alert_id)
           WHERE $1 OR d.replayed_at IS NULL ORDER BY d.dead_letter_id""",
        include_replayed,
    )
    return [DeadDelivery(*r) for r in rows]


async def claim_dead(pool: asyncpg.Pool, owner: str, lease_s: float, ids: Sequence[int] = ()) -> list[Job]:
    """Put unreplayed dead letters (all, or the given ids) back to pending, claimed by ``owner``.

    Should the replaying process die, a running alerter picks them up when the lease runs out.
    """
    rows = await pool.fetch(
        f"""WITH taken AS (
                UPDATE alert_jobs j SET status = 'pending', claimed_by = $2,
                                        claimed_until = now() + make_interval(secs => $3)
                FROM alert_dead_letters d
                WHERE d.job_id = j.job_id AND j.status = 'dead' AND d.replayed_at IS NULL
                  AND (cardinality($1::bigint[]) = 0 OR d.dead_letter_id = ANY($1))
                RETURNING j.job_id)
            {_JOB_SELECT} WHERE j.job_id IN (SELECT job_id FROM taken) ORDER BY j.created_at""",
        list(ids), owner, lease_s,
    )
    return [_job(r) for r in rows]


async def resolve_due_incidents(pool: asyncpg.Pool, now: datetime) -> list[Job]:
    """Resolve jobs for PagerDuty incidents whose budget period has reset."""
    jobs: list[Job] = []
    async with pool.acquire() as conn, conn.transaction():
        rows = await conn.fetch(
            """SELECT i.target, i.incident_key, i.route, i.alert_id::text, a.message::text AS message
               FROM alert_incidents i JOIN alerts a USING (alert_id)
               WHERE i.resolved_at IS NULL AND i.resolves_at <= $1 FOR UPDATE OF i SKIP LOCKED""",
            now,
        )
        for r in rows:
            message = message_decoder.decode(r["message"])
            jobs += await insert_jobs(conn, r["alert_id"], [Planned(r["route"], r["target"])], message, "resolve")
            await conn.execute(
                "UPDATE alert_incidents SET resolved_at = $3 WHERE target = $1 AND incident_key = $2",
                r["target"], r["incident_key"], now,
            )
    return jobs


# -- history: what fired, and where each delivery stands ----------------------------------------------------


JobStatus = Literal["pending", "delivered", "dead"]


@dataclass(frozen=True, slots=True)
class JobState:
    """One delivery of an alert to one target: where it stands now."""

    route: str
    target: str
    action: Action
    status: JobStatus
    """``pending`` (not yet, or being retried), ``delivered`` or ``dead`` (failed its last attempt)."""
    attempts: int
    last_error: str | None
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class AlertEntry:
    """An alert as its history shows it: the message it sent, its deliveries and the digests it went to."""

    message: Message
    created_at: datetime
    jobs: list[JobState]
    digest_routes: list[str]


async def alert_history(db: Queryable, *, scope: str | None = None, kind: str | None = None,
                        since: datetime | None = None, limit: int = 100) -> list[AlertEntry]:
    """Recorded alerts, newest first (of ``scope`` / ``kind`` / from ``since`` when given), each with its jobs
    (oldest first) and the digest routes it waits for or went into."""
    rows = await db.fetch(
        """SELECT alert_id, created_at, message::text AS message FROM alerts
           WHERE ($1::text IS NULL OR scope = $1) AND ($2::text IS NULL OR kind = $2)
             AND ($3::timestamptz IS NULL OR created_at >= $3)
           ORDER BY created_at DESC, alert_id DESC LIMIT $4""",
        scope, kind, since, limit,
    )
    ids = [r["alert_id"] for r in rows]
    jobs: dict[str, list[JobState]] = {str(i): [] for i in ids}
    for j in await db.fetch(
        """SELECT alert_id::text, route, target, action, status, attempts, last_error, updated_at FROM alert_jobs
           WHERE alert_id = ANY($1::uuid[]) ORDER BY created_at, job_id""", ids,
    ):
        jobs[j["alert_id"]].append(JobState(j["route"], j["target"], j["action"], j["status"], j["attempts"],
                                            j["last_error"], j["updated_at"]))
    digests: dict[str, list[str]] = {str(i): [] for i in ids}
    for d in await db.fetch(
        "SELECT alert_id::text, route FROM alert_digest_items WHERE alert_id = ANY($1::uuid[]) ORDER BY route", ids,
    ):
        digests[d["alert_id"]].append(d["route"])
    return [AlertEntry(message_decoder.decode(r["message"]), r["created_at"], jobs[str(r["alert_id"])],
                       digests[str(r["alert_id"])]) for r in rows]


# -- digests --------------------------------------------------------------------------------------------


async def lock_digest(conn: Conn, route: str) -> datetime | None:
    """The route's last digest instant, locked until the caller's transaction ends; None before the first."""
    last: datetime | None = await conn.fetchval(
        "SELECT last_due_at FROM alert_digest_state WHERE route = $1 FOR UPDATE", route)
    return last


async def start_digest(conn: Conn, route: str, due_at: datetime) -> None:
    """Record where the route's first digest period starts (a concurrent first start keeps the other's)."""
    await conn.execute("INSERT INTO alert_digest_state (route, last_due_at) VALUES ($1, $2) "
                       "ON CONFLICT DO NOTHING", route, due_at)


async def digest_items(conn: Conn, route: str) -> list[Message]:
    """The messages of the alerts waiting for the route's next digest, oldest first."""
    rows = await conn.fetch(
        """SELECT a.message::text AS message FROM alert_digest_items i JOIN alerts a USING (alert_id)
           WHERE i.route = $1 AND i.digest_alert_id IS NULL ORDER BY a.created_at, a.alert_id""",
        route)
    return [message_decoder.decode(r["message"]) for r in rows]


async def close_digest(conn: Conn, route: str, digest_alert_id: str, due_at: datetime) -> None:
    """The waiting items went into ``digest_alert_id``; the route's next period starts at ``due_at``."""
    await conn.execute("UPDATE alert_digest_items SET digest_alert_id = $2 "
                       "WHERE route = $1 AND digest_alert_id IS NULL", route, digest_alert_id)
    await conn.execute("UPDATE alert_digest_state SET last_due_at = $2 WHERE route = $1", route, due_at)


# -- the latest forecast per scope (our copy of spendgate.forecast.v1) ----------------------------------

_forecast_decoder = msgspec.json.Decoder(ForecastUpdated)


async def remember_forecast(db: Queryable, forecast: ForecastUpdated) -> None:
    """Keep ``forecast`` as its scope's latest, unless a later as-of day is already kept."""
    await db.execute(
        """INSERT INTO alert_forecasts (scope, as_of, forecast) VALUES ($1, $2, $3::jsonb)
           ON CONFLICT (scope) DO UPDATE SET as_of = excluded.as_of, forecast = excluded.forecast,
               updated_at = now()
           WHERE alert_forecasts.as_of <= excluded.as_of""",
        forecast.scope, forecast.as_of, msgspec.json.encode(forecast).decode(),
    )


async def remembered_forecast(db: Queryable, scope: str) -> ForecastUpdated | None:
    raw = await db.fetchval("SELECT forecast::text FROM alert_forecasts WHERE scope = $1", scope)
    return None if raw is None else _forecast_decoder.decode(raw)
