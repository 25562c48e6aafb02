"""``spendgate demo``: seed the configured database with a month of traffic, through the real services.

What a newcomer would otherwise have to wait a month for, in well under a minute: a virtual key per
developer (:mod:`spendgate.demo.traffic`), budgets sized so that teams stand at different stages, the
month's usage events published on the configured bus and folded by the real ledger service (balances,
sessions, threshold crossings and their outbox), the alerter service turning the crossings into alerts
and delivering them to two webhooks this command serves for the while (one answers, one keeps failing,
so the alert history shows deliveries and dead letters), and one forecast pass. Nothing is written
around those services: the console reads what they wrote.

A database that already holds keys or budgets is refused unless ``force``; one that holds this demo
already is left as it is (running the command twice is harmless).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from aiohttp import web

from spendgate.alerter import service as alerter_service
from spendgate.core.config import Settings
from spendgate.demo.traffic import DAYS, TEAMS, developers, month_of_traffic
from spendgate.domain.constants import TOPIC_USAGE
from spendgate.domain.enforcement.policy import Budget, budget_of
from spendgate.domain.errors import SpendgateError
from spendgate.domain.events import UsageRecorded, encode
from spendgate.domain.periods import PeriodKind, period_containing
from spendgate.forecaster.service import Forecaster
from spendgate.ledger import service as ledger_service
from spendgate.runtime import Runtime, open_runtime
from spendgate.store.alerts.store import alert_history
from spendgate.store.budgets import store as budgets_store
from spendgate.store.keys import store as keys_store
from spendgate.store.usage.store import stored_event_ids

Progress = Callable[[str], None]
ACTOR = "spendgate demo"
FOLD_DEADLINE_S = 90.0
ALERTS_DEADLINE_S = 20.0
PUBLISH_CHUNK = 1_000
TEAM_STAGE_RATIO = {"platform": 0.86, "payments": 0.97, "data": 1.13, "mobile": 0.55, "search": 0.35}
"""Each team's month-to-date spend over its monthly budget: alert, downgrade, pause, ok, ok."""


@dataclass(frozen=True, slots=True)
class Seeded:
    events: int
    keys: int
    budgets: int
    alerts: int
    already: bool = False
    sample_key: str | None = None
    """One demo developer's virtual key (alice's), to try ``spendgate me`` with."""


def _quiet(_line: str) -> None:
    pass


async def seed(settings: Settings, *, force: bool = False, progress: Progress = _quiet,
               now: datetime | None = None) -> Seeded:
    """Seed the demo into the configured database (created and migrated if need be)."""
    now = now or datetime.now(UTC)
    async with _webhooks() as (good_url, failing_url):
        routes = settings.data_dir / "demo-alert-routes.yaml"
        settings = settings.model_copy(update={"alerts": settings.alerts.model_copy(update={
            "routes_file": routes, "max_attempts": 2, "backoff_base_s": 0.05, "backoff_max_s": 0.1})})
        async with open_runtime(settings, create=True, progress=progress) as runtime:
            existing = await keys_store.list_keys(runtime.pool)
            demo_people = {(d, t.name) for d, t in developers()}
            if existing and {(k.developer, k.team) for k in existing} <= demo_people:
                return Seeded(0, len(existing), 0, 0, already=True)
            if (existing or await budgets_store.budgets_of(runtime.pool)) and not force:
                raise SpendgateError("the database already holds keys or budgets: the demo goes into an empty "
                                     "one (run it with another --data-dir or SPENDGATE_DATABASE_URL), or pass "
                                     "--force to add it to this one")
            _write_routes(routes, good_url, failing_url)
            return await _seed(runtime, now, progress)


async def _seed(runtime: Runtime, now: datetime, progress: Progress) -> Seeded:
    pool, settings = runtime.pool, runtime.settings
    started = time.monotonic()
    key_ids, secrets_of = {}, {}
    for developer, team in developers():
        created = await keys_store.create_key(pool, developer=developer, team=team.name, cost_center=team.cost_center)
        key_ids[developer], secrets_of[developer] = created.key.key_id, created.secret
    events = month_of_traffic(now, key_ids, settings.pricing.table())
    budgets = demo_budgets(events, now)
    for b in budgets:
        await budgets_store.set_budget(pool, b, actor=ACTOR)
    progress(f"Publishing {len(events):,} usage events of {len(key_ids)} developers on the {settings.bus} bus")
    for i in range(0, len(events), PUBLISH_CHUNK):
        chunk = events[i:i + PUBLISH_CHUNK]
        await runtime.bus.publish_many(TOPIC_USAGE, [(e.key_id, encode(e, source="spendgate/demo")) for e in chunk])
    stop = asyncio.Event()
    services = [asyncio.create_task(ledger_service.serve(runtime, stop)),
                asyncio.create_task(alerter_service.serve(runtime, stop))]
    try:
        progress("Folding them with the ledger")
        await _until(lambda: _all_folded(runtime, events), FOLD_DEADLINE_S, "the ledger to fold the demo's events",
                     services)
        progress("Forecasting the month")
        await Forecaster(pool, runtime.bus, settings).run_pass(now)
        progress("Delivering the alerts (the data-oncall-demo webhook fails on purpose: dead letters to replay)")
        await _until(lambda: _alerts_settled(runtime), ALERTS_DEADLINE_S, "the alerter to deliver the alerts",
                     services)
        alerts = len(await alert_history(pool, limit=1_000))
    finally:
        stop.set()
        await asyncio.gather(*services, return_exceptions=True)
    progress(f"Demo seeded in {time.monotonic() - started:.1f} s")
    return Seeded(len(events), len(key_ids), len(budgets), alerts, sample_key=secrets_of["alice"])


def demo_budgets(events: list[UsageRecorded], now: datetime) -> list[Budget]:
    """Budgets that put each team at the stage :data:`TEAM_STAGE_RATIO` names, plus the org, two cost centers,
    a per-model budget and two developers' daily budgets (alice's twice her average day, erin's about hers)."""
    month = period_containing(PeriodKind.MONTH, now, "UTC")
    by_scope: dict[str, int] = defaultdict(int)
    for e in events:
        if e.occurred_at >= month.starts_at:
            for scope in (f"team:{e.team}", f"cost_center:{e.cost_center}", "org", f"model:{e.model_used}"):
                by_scope[scope] += e.cost_micros
        by_scope[f"developer:{e.developer}"] += e.cost_micros

    def amount(spent: int, ratio: float) -> int:
        """To the cent (so the stage is the one asked for, even on the 1st of the month), at least a cent."""
        return max(10_000, round(spent / ratio / 10_000) * 10_000)

    out = [budget_of(f"team:{t.name}", daily_micros=None, monthly_micros=amount(by_scope[f"team:{t.name}"],
                                                                                  TEAM_STAGE_RATIO[t.name]),
                     at_pause="cheapest")
           for t in TEAMS]
    out += [budget_of("org", daily_micros=None, monthly_micros=amount(by_scope["org"], 0.7)),
            budget_of("cost_center:CC-ENG", daily_micros=None, monthly_micros=amount(by_scope["cost_center:CC-ENG"],
                                                                                      0.8)),
            budget_of("cost_center:CC-PRODUCT", daily_micros=None,
                      monthly_micros=amount(by_scope["cost_center:CC-PRODUCT"], 0.45)),
            budget_of("org", daily_micros=None, model="claude-sonnet-4-5",
                      monthly_micros=amount(by_scope["model:claude-sonnet-4-5"], 0.9)),
            budget_of("developer:alice", daily_micros=amount(by_scope["developer:alice"] // DAYS, 0.5),
                      monthly_micros=None),
            budget_of("developer:erin", daily_micros=amount(by_scope["developer:erin"] // DAYS, 0.9),
                      monthly_micros=None)]
    return out


async def _all_folded(runtime: Runtime, events: list[UsageRecorded]) -> bool:
    ids = [e.event_id for e in events]
    return len(await stored_event_ids(runtime.pool, ids)) == len(ids)


async def _alerts_settled(runtime: Runtime) -> bool:
    """Every alert recorded so far has finished its deliveries (delivered, or dead after its attempts)."""
    history = await alert_history(runtime.pool, limit=1_000)
    return bool(history) and all(j.status in ("delivered", "dead") for a in history for j in a.jobs)


async def _until(check: Callable[[], Awaitable[bool]], deadline_s: float, what: str,
                 services: list[asyncio.Task[None]]) -> None:
    deadline = time.monotonic() + deadline_s
    while not await check():
        for task in services:
            if task.done() and task.exception() is not None:
                raise SpendgateError(f"a service stopped while waiting for {what}: {task.exception()}")
        if time.monotonic() > deadline:
            raise SpendgateError(f"gave up waiting for {what} after {deadline_s:g} s")
        await asyncio.sleep(0.2)  # polling the database for a condition, with a deadline


def _write_routes(path: Path, good_url: str, failing_url: str) -> None:
    signing = secrets.token_urlsafe(24)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "# Written by `spendgate demo`: the two webhooks it served while seeding (they are gone now).\n"
        "targets:\n"
        f"  webhook:finops-demo: {{url: '{good_url}', signing_secret: '{signing}'}}\n"
        f"  webhook:data-oncall-demo: {{url: '{failing_url}', signing_secret: '{signing}'}}\n"
        "routes:\n"
        "  - name: finops\n"
        "    match: {scope: [team, cost_center, org]}\n"
        "    notify: [webhook:finops-demo]\n"
        "  - name: data-oncall\n"
        "    match: {team: data}\n"
        "    notify: [webhook:data-oncall-demo]\n")


@contextlib.asynccontextmanager
async def _webhooks() -> AsyncIterator[tuple[str, str]]:
    """Two webhook receivers on 127.0.0.1 for the seeding's while: one answers 204, one 503."""

    async def ok(_request: web.Request) -> web.Response:
        return web.Response(status=204)

    async def failing(_request: web.Request) -> web.Response:
        return web.Response(status=503)

    app = web.Application()
    app.router.add_post("/ok", ok)
    app.router.add_post("/failing", failing)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}/ok", f"http://127.0.0.1:{port}/failing"
    finally:
        await runner.cleanup()
