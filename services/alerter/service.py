"""``spendgate alerter``: consume threshold crossings and forecasts, record alerts once, route them,
and hand deliveries to per-target workers; a scheduler sends digests and resolves PagerDuty incidents.

Offsets are committed after the alert, its jobs and digest items are in PostgreSQL, so a crash
redelivers, and redelivery finds the alert by its dedupe key and creates nothing. The consumer, the
scheduler and the delivery workers each run under the supervisor, which restarts them with backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
from functools import partial

import asyncpg

from spendgate.alerter.app import Alerter, open_alerter
from spendgate.alerter.delivery import Clock, Dispatcher, utc_now
from spendgate.alerter.digest import run_digest
from spendgate.alerter.messages import build_message
from spendgate.alerter.targets import developer_target
from spendgate.core.alert_routes import DEVELOPER
from spendgate.core.bus import Consumer, Record, TopicPartition
from spendgate.core.db import DATABASE_TROUBLE, Queryable
from spendgate.core.logs import get_logger
from spendgate.core.supervisor import Beat, wait_or_stop
from spendgate.domain.alerts import alert_from_event
from spendgate.domain.constants import GROUP_ALERTER, TOPIC_BUDGET, TOPIC_FORECAST
from spendgate.domain.enforcement import Policy
from spendgate.domain.enforcement.settings import EnforcementSettings
from spendgate.domain.errors import BusError, ConfigError, PoisonEventError
from spendgate.domain.events import ForecastUpdated, decode
from spendgate.runtime import Runtime
from spendgate.store.alerts import store
from spendgate.store.alerts.store import Planned
from spendgate.store.deadletters.store import add_dead_letter
from spendgate.store.policies.store import active_version

log = get_logger(__name__)
CONSUMER = "alerter"


async def _downgrade_limit(conn: Queryable, defaults: EnforcementSettings) -> int:
    """The downgrade size limit the proxies enforce: the active version's, else the settings'."""
    policy = Policy.from_settings(defaults)
    active = await active_version(conn)
    if active is not None:
        with contextlib.suppress(ConfigError):  # a version changed by hand: the proxies keep the one before
            policy = policy.under_version(active.version_id, active.document)
    return policy.downgrade_max_input_tokens


async def serve(runtime: Runtime, stop: asyncio.Event, *, clock: Clock = utc_now) -> None:
    async with open_alerter(runtime.settings, runtime.pool, runtime.bus, clock=clock, metrics=runtime.metrics,
                            tracer=runtime.tracer) as alerter:
        halt = asyncio.Event()  # ours, so a failure here never sets the caller's stop for other services
        supervisor = runtime.supervisor
        dispatcher = Dispatcher(alerter.deliverer, alerter.policy, halt, supervisor=supervisor,
                                workers_per_target=runtime.settings.alerts.workers_per_channel)
        deliverer = alerter.deliverer
        for job in await store.claim_orphans(runtime.pool, deliverer.owner, deliverer.lease_s, mine_too=True):
            dispatcher.submit(job)
        scheduler = supervisor.spawn("alerter.scheduler", partial(_schedule, alerter, runtime.pool, dispatcher), halt)
        if not alerter.rules.routes:
            log.warning("no alert routes configured (alerts.routes_file): alerts are recorded, not delivered")
        log.info("alerter started", routes=[r.name for r in alerter.rules.routes])
        try:
            await supervisor.run("alerter.consumer", partial(_consume, alerter, runtime, dispatcher), stop)
        finally:
            halt.set()
            await asyncio.gather(scheduler, return_exceptions=True)
            await dispatcher.close(drain_timeout_s=runtime.settings.drain_timeout_s)


async def _consume(alerter: Alerter, runtime: Runtime, dispatcher: Dispatcher, stop: asyncio.Event,
                   beat: Beat) -> None:
    """Ingest until ``stop``; a failure raises and the supervisor restarts from the committed offsets
    (redelivery is deduped)."""
    consumer = runtime.bus.consumer(GROUP_ALERTER, [TOPIC_BUDGET, TOPIC_FORECAST])
    done: dict[TopicPartition, int] = {}
    try:
        await consumer.start()
        while not stop.is_set():
            for record in await consumer.poll(max_records=100, timeout_s=0.5):
                await ingest(alerter, runtime.pool, dispatcher, record)
                done[record.tp] = record.offset + 1
            await consumer.commit(done)
            done = {}
            beat()
    finally:
        try:
            if done:  # a record failed: keep what was ingested before it
                await _commit_quietly(consumer, done)
        finally:
            await consumer.stop()


async def _commit_quietly(consumer: Consumer, done: dict[TopicPartition, int]) -> None:
    """Best effort, while failing anyway: the supervisor logs the failure that brought us here."""
    with contextlib.suppress(BusError, *DATABASE_TROUBLE):
        await consumer.commit(done)


async def ingest(alerter: Alerter, pool: asyncpg.Pool, dispatcher: Dispatcher, record: Record) -> None:
    """One bus record: remember a forecast, or record a new alert and enqueue its deliveries."""
    try:
        data = decode(record.value).data
    except PoisonEventError as exc:
        await add_dead_letter(pool, CONSUMER, record, exc.message)
        log.warning("poison event dead-lettered", topic=record.topic, offset=record.offset, reason=exc.message)
        return
    async with pool.acquire() as conn:
        if isinstance(data, ForecastUpdated):
            await store.remember_forecast(conn, data)
            return
        alert = alert_from_event(data)
        if alert is None or await store.alert_exists(conn, alert.dedup_key):
            return
        s = alerter.settings
        message = await build_message(conn, alert, now=alerter.clock(), top_n=s.alerts.top_sessions,
                                      small_turn_tokens=await _downgrade_limit(conn, s.enforcement),
                                      default_timezone=s.default_timezone,
                                      console_url=s.console_links.public_url)
        planned: list[Planned] = []
        digests: list[str] = []
        for route in alerter.rules.matching(alert.facts()):
            if route.digest is not None:
                digests.append(route.name)
                continue
            for target in route.notify:
                if target == DEVELOPER:
                    if alert.developer is None:
                        continue
                    target = developer_target(alert.developer)
                if all(p.target != target for p in planned):
                    planned.append(Planned(route.name, target, alerter.directory.kind_of(target) == "pagerduty"))
        jobs = await store.record_alert(conn, alert, message, planned, digests)
    for job in jobs or []:
        dispatcher.submit(job)


async def _schedule(alerter: Alerter, pool: asyncpg.Pool, dispatcher: Dispatcher, stop: asyncio.Event,
                    beat: Beat) -> None:
    every_s = alerter.settings.alerts.schedule_every_s
    while not stop.is_set():
        now = alerter.clock()
        for route in alerter.rules.routes:
            if route.digest is not None:
                for job in await run_digest(pool, route, now, console_url=alerter.settings.console_links.public_url):
                    dispatcher.submit(job)
        for job in await store.resolve_due_incidents(pool, now):
            dispatcher.submit(job)
        d = alerter.deliverer
        for job in await store.claim_orphans(pool, d.owner, d.lease_s, mine_too=False):
            dispatcher.submit(job)  # left by an alerter that died
        beat()
        await wait_or_stop(every_s, stop)
