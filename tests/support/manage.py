"""Real parts for the console's pages that change things (no tests here): the admin app served on a free
port as a chosen identity, and a dead-lettered alert delivery written through the alerts store."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime

import asyncpg
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from spendgate.admin.app import create_app
from spendgate.admin.console.auth_chain import RESOLVERS
from spendgate.admin.console.identity import Identity, Role
from spendgate.admin.deps import Deps
from spendgate.core.config import Settings
from spendgate.domain.alerts import Message
from spendgate.domain.events import AlertDelivery
from spendgate.domain.ids import uuid7
from spendgate.store.alerts import store as alerts_store
from spendgate.store.alerts.store import Planned
from tests.support.admin_server import NOW, admin_settings

FINOPS = Identity(subject="fin-1", name="Fran FinOps", role=Role.FINOPS, via="oidc")
MANAGER = Identity(subject="mgr-1", name="Mo Manager", role=Role.MANAGER, teams=frozenset({"platform"}), via="oidc")
DEVELOPER = Identity(subject="dev-1", name="Ada Developer", role=Role.DEVELOPER, developer="ada", via="oidc")


@asynccontextmanager
async def console_as(pool: asyncpg.Pool, who: Identity | None = None, settings: Settings | None = None,
                     now: datetime = NOW) -> AsyncIterator[TestClient]:  # type: ignore[type-arg]
    """The admin app on a free 127.0.0.1 port. Requests with the break-glass token are the admin; requests
    without one are ``who`` (a resolver appended to the chain, as sign-in will be), or 401 when None."""
    settings = settings or admin_settings()
    app = create_app(Deps(pool, settings, settings.pricing.table(), now=lambda: now))
    if who is not None:
        async def resolve(request: web.Request) -> Identity | None:
            return who

        app[RESOLVERS].append(resolve)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        yield client


async def seed_dead_letter(pool: asyncpg.Pool, *, target: str, route: str = "platform-em",
                           team: str = "platform", at: datetime = NOW) -> str:
    """A pause alert for ``team`` whose one delivery (to ``target``) failed its last attempt; its job id."""
    message = Message(alert_id=uuid7(), kind="pause", severity="critical", scope=f"team:{team}",
                      title=f"team:{team} is paused", summary=f"team:{team} spent $1,120 of $1,000 this month",
                      team=team, cost_center=team, incident_key=f"spendgate:team:{team}:month", created_at=at)
    async with pool.acquire() as conn, conn.transaction():
        await alerts_store.insert_alert(conn, message.alert_id, f"seed:{message.alert_id}", message)
        jobs = await alerts_store.insert_jobs(conn, message.alert_id, [Planned(route, target)], message)
    job = jobs[0]
    await alerts_store.record_attempt(pool, job, AlertDelivery(
        delivery_id=uuid7(), alert_id=message.alert_id, kind="pause", scope=message.scope, route=route,
        channel=target, attempt=3, outcome="dead_lettered", http_status=503, error="HTTP 503", attempted_at=at))
    return job.job_id
