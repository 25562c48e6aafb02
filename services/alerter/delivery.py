"""Delivering jobs: one attempt at a time (recorded and published), retried with exponential backoff
and jitter that honours ``Retry-After``, dead-lettered after the last attempt.

Each target has its own queue and workers, so a slow or dead channel delays only its own alerts;
the consumer only enqueues. Jobs are durable rows, so whatever is in flight at shutdown stays
pending and is picked up at the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Literal

import asyncpg

from spendgate.alerter.channels import DeliveryError
from spendgate.alerter.targets import Directory
from spendgate.core.bus import Bus
from spendgate.core.logs import get_logger
from spendgate.core.metrics import DELIVERY_BUCKETS_S, Metrics
from spendgate.core.supervisor import Beat, Supervisor
from spendgate.core.tracing import Tracer
from spendgate.domain.constants import TOPIC_ALERT
from spendgate.domain.errors import BusError
from spendgate.domain.events import AlertDelivery, encode
from spendgate.domain.ids import uuid7
from spendgate.store.alerts import store
from spendgate.store.alerts.store import Job

log = get_logger(__name__)

Clock = Callable[[], datetime]
Outcome = Literal["delivered", "failed", "dead_lettered"]


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int = 5
    base_s: float = 1.0
    max_s: float = 300.0
    retry_after_max_s: float = 900.0
    rng: random.Random = field(default_factory=random.Random, compare=False)

    def delay_s(self, attempt: int, retry_after_s: float | None = None) -> float:
        """Wait before attempt ``attempt + 1``: equal-jitter exponential, at least ``Retry-After``."""
        ceiling = min(self.max_s, self.base_s * 2 ** (attempt - 1))
        delay = ceiling / 2 + self.rng.uniform(0, ceiling / 2)
        if retry_after_s is not None:
            delay = max(delay, min(retry_after_s, self.retry_after_max_s))
        return float(delay)


class DeliveryMetrics:
    """The alerter's instruments: attempts by kind and outcome, and how long a delivered alert took."""

    def __init__(self, metrics: Metrics) -> None:
        self.attempts = metrics.counter("spendgate_alerter_deliveries", "Delivery attempts by alert kind and outcome",
                                        ["kind", "outcome"])
        self.latency_s = metrics.histogram(
            "spendgate_alerter_delivery_latency_seconds",
            "From the event alerted on (a threshold crossing) to its delivery through a channel",
            ["kind"], buckets=DELIVERY_BUCKETS_S)

    def attempt(self, job: Job, outcome: Outcome, at: datetime) -> None:
        self.attempts.labels(job.message.kind, outcome).inc()
        if outcome == "delivered":
            since = job.message.occurred_at or job.message.created_at
            self.latency_s.labels(job.message.kind).observe(max((at - since).total_seconds(), 0.0))


class Deliverer:
    """One attempt: send through the channel, keep it in the history, publish it on spendgate.alert.v1."""

    def __init__(self, pool: asyncpg.Pool, bus: Bus, directory: Directory, *, source: str, owner: str,
                 lease_s: float, attempt_timeout_s: float, clock: Clock = utc_now, metrics: Metrics | None = None,
                 tracer: Tracer | None = None) -> None:
        self.pool, self.bus, self.directory = pool, bus, directory
        self.source, self.attempt_timeout_s, self.clock = source, attempt_timeout_s, clock
        self.owner, self.lease_s = owner, lease_s
        self.metrics = DeliveryMetrics(metrics) if metrics is not None else None
        self.tracer = tracer

    async def claim(self, job: Job) -> bool:
        """Take or renew the job's lease; False when another alerter has it or it is finished."""
        return await store.claim(self.pool, job.job_id, self.owner, self.lease_s)

    async def attempt(self, job: Job, attempt: int, *, last: bool) -> DeliveryError | None:
        """Try once; None on success, else the error (already recorded, dead-lettered when final)."""
        if self.tracer is None:
            return await self._attempt(job, attempt, last=last)
        with self.tracer.span("spendgate.alert.deliver", {
                "spendgate.alert.id": job.alert_id, "spendgate.alert.kind": job.message.kind,
                "spendgate.alert.route": job.route, "spendgate.alert.attempt": attempt}) as span:
            error = await self._attempt(job, attempt, last=last)
            span.set_attribute("spendgate.alert.delivered", error is None)
            return error

    async def _attempt(self, job: Job, attempt: int, *, last: bool) -> DeliveryError | None:
        error: DeliveryError | None = None
        status: int | None = None
        try:
            channel = self.directory.get(job.target)
            async with asyncio.timeout(self.attempt_timeout_s):
                status = await channel.send(job.message, job.action)
        except DeliveryError as exc:
            error = exc
        except TimeoutError:
            error = DeliveryError(f"no answer within {self.attempt_timeout_s:g}s")
        # The supervisor of one channel call: a bug there is a failed attempt (recorded, retried,
        # dead-lettered at the last), not a crash of the worker.
        except Exception as exc:
            log.exception("channel failed unexpectedly", target=job.target)
            error = DeliveryError(f"unexpected {type(exc).__name__}")
        final = error is not None and (last or not error.retriable)
        outcome: Outcome = "delivered" if error is None else "dead_lettered" if final else "failed"
        delivery = AlertDelivery(
            delivery_id=uuid7(), alert_id=job.alert_id, kind=job.message.kind, scope=job.message.scope,
            route=job.route, channel=job.target, attempt=attempt, outcome=outcome,
            http_status=error.http_status if error else status, error=error.message if error else None,
            attempted_at=self.clock(),
        )
        await asyncio.shield(self._record(job, delivery))
        if self.metrics is not None:
            self.metrics.attempt(job, outcome, delivery.attempted_at)
        if error is None:
            log.info("alert delivery", target=job.target, alert_id=job.alert_id, attempt=attempt, outcome=outcome,
                     http_status=delivery.http_status)
        else:  # an operator must hear of it: retried or dead-lettered, the alert has not arrived
            log.warning("alert delivery failed", target=job.target, alert_id=job.alert_id, attempt=attempt,
                        outcome=outcome, http_status=delivery.http_status, error=error.message,
                        retriable=error.retriable)
        return error

    async def _record(self, job: Job, delivery: AlertDelivery) -> None:
        await store.record_attempt(self.pool, job, delivery)
        try:
            await self.bus.publish(TOPIC_ALERT, delivery.alert_id, encode(delivery, source=self.source))
        except BusError as exc:  # the history row is the record; the topic copy is best effort
            log.warning("could not publish alert delivery", error=exc.message)


async def deliver_with_retries(deliverer: Deliverer, job: Job, policy: RetryPolicy, stop: asyncio.Event, *,
                               attempts: int | None = None) -> bool:
    """Attempts until delivered, dead-lettered, or ``stop`` (the job then stays pending). True if delivered.

    Attempt numbers continue from the job's; ``attempts`` (a replay's budget) defaults to what is left
    of the policy's ``max_attempts``, and at least one (should ``max_attempts`` have been lowered).
    """
    attempt = job.attempts
    last = attempt + attempts if attempts is not None else max(policy.max_attempts, attempt + 1)
    while attempt < last:
        if not await deliverer.claim(job):
            log.info("alert job taken over or finished elsewhere", job_id=job.job_id, target=job.target)
            return False
        attempt += 1
        error = await deliverer.attempt(job, attempt, last=attempt >= last)
        if error is None:
            return True
        if not error.retriable or attempt >= last:
            return False
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), policy.delay_s(attempt, error.retry_after_s))
        if stop.is_set():
            return False
    return False


class Dispatcher:
    """Per-target queues, each drained by its own workers, which the supervisor runs (and restarts
    with backoff should one fail: its job stays pending in the table, and is claimed again once its
    lease runs out)."""

    def __init__(self, deliverer: Deliverer, policy: RetryPolicy, stop: asyncio.Event, *,
                 supervisor: Supervisor, workers_per_target: int = 2) -> None:
        self.deliverer, self.policy, self.stop = deliverer, policy, stop
        self.supervisor = supervisor
        self.workers_per_target = workers_per_target
        self._queues: dict[str, asyncio.Queue[Job | None]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._known: set[str] = set()

    def submit(self, job: Job) -> None:
        if job.job_id in self._known:
            return
        self._known.add(job.job_id)
        queue = self._queues.get(job.target)
        if queue is None:
            queue = self._queues[job.target] = asyncio.Queue()
            # One health entry for every worker: target names (developers' addresses) stay off /healthz.
            self._tasks += [self.supervisor.spawn("alerter.delivery", partial(self._worker, queue), self.stop)
                            for _ in range(self.workers_per_target)]
        queue.put_nowait(job)

    async def _worker(self, queue: asyncio.Queue[Job | None], stop: asyncio.Event, beat: Beat) -> None:
        while True:
            job = await queue.get()
            if job is None:
                return
            if stop.is_set():  # shutting down: it stays pending for the next start
                continue
            try:
                await deliver_with_retries(self.deliverer, job, self.policy, stop)
            finally:
                self._known.discard(job.job_id)
            beat()

    async def close(self, *, drain_timeout_s: float = 10.0) -> None:
        """Let in-flight attempts finish (``stop`` cuts backoffs short) within a deadline, then cancel."""
        for queue in self._queues.values():
            for _ in range(self.workers_per_target):
                queue.put_nowait(None)
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=drain_timeout_s)
            for task in pending:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        self._queues.clear()
