"""The alert history as people read it: what fired, and whether each delivery got through.

``alert_list`` is what ``GET /v1/alerts`` returns and what ``spendgate alerts list`` prints (from the
database, or through the API with ``--api``): the alerter's records, read through the alerts store.
``dead_letter_list`` is the same for ``GET /v1/alerts/dead-letters`` and ``spendgate alerts dead``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal

import msgspec

from spendgate.admin.window import WindowError
from spendgate.core.db import Queryable
from spendgate.store.alerts import store
from spendgate.store.alerts.store import AlertEntry, JobStatus

if TYPE_CHECKING:
    import asyncpg

AlertStatus = Literal["delivered", "pending", "failed", "digest", "unrouted"]


class DeliveryOut(msgspec.Struct, frozen=True, kw_only=True):
    route: str
    target: str
    """A channel target, e.g. ``slack:platform-em``."""
    action: Literal["trigger", "resolve"]
    status: JobStatus
    """``dead``: it failed its last attempt (``spendgate alerts dead`` / ``replay``)."""
    attempts: int
    last_error: str | None
    updated_at: datetime


class AlertOut(msgspec.Struct, frozen=True, kw_only=True):
    alert_id: str
    created_at: datetime
    kind: str
    """``alert``, ``downgrade``, ``pause``, ``forecast_overrun``, ``retry_loop``, ``reconciliation_gap``,
    ``policy_rollback``, ``digest`` or ``test``."""
    severity: str
    scope: str
    developer: str | None
    team: str | None
    cost_center: str | None
    title: str
    summary: str
    status: AlertStatus
    """``failed`` when a delivery is dead, else ``pending`` while one is, else ``delivered`` when every one
    got through; ``digest`` when it only went to digest routes, ``unrouted`` when no route matched."""
    deliveries: list[DeliveryOut]
    digest_routes: list[str]


class AlertList(msgspec.Struct, frozen=True, kw_only=True):
    alerts: list[AlertOut]
    """Newest first."""


def parse_since(raw: str | None, *, what: str = "since") -> datetime | None:
    """An ISO 8601 time with a timezone (``2026-12-01T08:00Z``), or a day (``2026-12-01``: its UTC midnight)."""
    if raw is None:
        return None
    try:
        since = datetime.fromisoformat(raw)
    except ValueError:
        raise WindowError(f"{what} must be a day or an ISO 8601 time such as 2026-12-01T08:00Z, not {raw!r}") from None
    if since.tzinfo is None:
        if len(raw) != len("2026-12-01"):
            raise WindowError(f"{what} needs a timezone, e.g. 2026-12-01T08:00Z")
        since = since.replace(tzinfo=UTC)
    return since


def status_of(entry: AlertEntry) -> AlertStatus:
    states = {j.status for j in entry.jobs}
    if "dead" in states:
        return "failed"
    if "pending" in states:
        return "pending"
    if states:
        return "delivered"
    return "digest" if entry.digest_routes else "unrouted"


def _out(e: AlertEntry) -> AlertOut:
    m = e.message
    return AlertOut(
        alert_id=m.alert_id, created_at=e.created_at, kind=m.kind, severity=m.severity, scope=m.scope,
        developer=m.developer, team=m.team, cost_center=m.cost_center, title=m.title, summary=m.summary,
        status=status_of(e), digest_routes=e.digest_routes,
        deliveries=[DeliveryOut(route=j.route, target=j.target, action=j.action,
                                status=j.status, attempts=j.attempts, last_error=j.last_error, updated_at=j.updated_at)
                    for j in e.jobs],
    )


async def alert_list(db: Queryable, *, scope: str | None = None, kind: str | None = None,
                     since: datetime | None = None, limit: int = 100) -> AlertList:
    """The newest ``limit`` alerts (of ``scope`` / ``kind`` / from ``since``), with their deliveries."""
    found = await store.alert_history(db, scope=scope, kind=kind, since=since, limit=limit)
    return AlertList(alerts=[_out(e) for e in found])


class DeadLetterOut(msgspec.Struct, frozen=True, kw_only=True):
    dead_letter_id: int
    created_at: datetime
    kind: str
    scope: str
    route: str
    target: str
    action: Literal["trigger", "resolve"]
    attempts: int
    last_error: str | None
    replayed_at: datetime | None
    """When ``spendgate alerts replay`` re-sent it; unset while it waits."""
    job_id: str
    alert_id: str


class DeadLetterList(msgspec.Struct, frozen=True, kw_only=True):
    dead_letters: list[DeadLetterOut]
    """Oldest first."""


async def dead_letter_list(pool: asyncpg.Pool, *, include_replayed: bool = False) -> DeadLetterList:
    """Deliveries that failed their last attempt (and, with ``include_replayed``, those re-sent since)."""
    found = await store.dead_letters(pool, include_replayed=include_replayed)
    return DeadLetterList(dead_letters=[
        DeadLetterOut(dead_letter_id=d.dead_letter_id, created_at=d.created_at, kind=d.kind, scope=d.scope,
                      route=d.route, target=d.target, action=d.action, attempts=d.attempts,
                      last_error=d.last_error, replayed_at=d.replayed_at, job_id=d.job_id, alert_id=d.alert_id)
        for d in found
    ])


REPLAY_OWNER_PREFIX = "console-replay/"


async def hand_back_for_replay(pool: asyncpg.Pool, ids: list[int], *, actor: str) -> int:
    """Give unreplayed dead letters (``ids``, or all when empty) back to the running alerter: each job is
    pending again under a lease that has already run out, so the alerter's next sweep (every
    ``alerts.schedule_every_s``) sends it as ``spendgate alerts replay`` would. The admin service does
    not deliver itself: it holds no channel secrets. The lease owner names ``actor``. Returns how many."""
    jobs = await store.claim_dead(pool, REPLAY_OWNER_PREFIX + actor, 0.0, ids)
    return len(jobs)
