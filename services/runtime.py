"""Open what every service needs — the database (configured or embedded), migrations, the pool, the
bus, the process's health and its supervisor — from the settings, and run services on it. The one
place that wires adapters; services receive them ready. Which services run is the caller's choice,
named in code (``spendgate.up``, or an area's own command for one service per process)."""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from spendgate.core.bus import Bus, create_bus
from spendgate.core.config import Settings
from spendgate.core.db import create_pool, database_url_for
from spendgate.core.health import Health
from spendgate.core.logs import get_logger
from spendgate.core.metrics import Metrics
from spendgate.core.opsserver import serving_ops
from spendgate.core.progress import Progress, quiet, ticking
from spendgate.core.supervisor import Backoff, Beat, Supervisor, wait_or_stop
from spendgate.core.tracing import Tracer, open_tracer
from spendgate.domain.errors import BusUnavailableError, ConfigError, StoreError
from spendgate.store.migrations import migrate


@dataclass
class Runtime:
    """What a service receives. ``health`` is this process's one registry (``/healthz`` reads it);
    ``supervisor`` runs every background loop under the restart policy of ``settings.supervisor``;
    ``metrics`` is the process's Prometheus registry (``/metrics``); ``tracer`` is None unless OTLP
    tracing is configured."""

    settings: Settings
    db_url: str
    pool: asyncpg.Pool
    bus: Bus
    health: Health = field(default_factory=Health)
    metrics: Metrics = field(default_factory=Metrics)
    tracer: Tracer | None = None
    supervisor: Supervisor = field(init=False)

    def __post_init__(self) -> None:
        s = self.settings.supervisor
        self.supervisor = Supervisor(self.health, Backoff(base_s=s.backoff_base_s, cap_s=s.backoff_cap_s))


@contextlib.asynccontextmanager
async def open_database(settings: Settings, *, run_migrations: bool = True, create: bool = False,
                        progress: Progress = quiet) -> AsyncIterator[tuple[str, asyncpg.Pool]]:
    """The database (configured, else embedded under the data dir; only ``create`` may make a new one)."""
    async with database_url_for(settings.database_dsn, settings.pg_dir, create=create, progress=progress) as url:
        if run_migrations:
            progress("Applying database migrations")
            started = time.monotonic()
            await ticking(migrate(url), progress, "applying migrations")
            progress(f"Database schema up to date ({time.monotonic() - started:.1f} s)")
        pool = await create_pool(url)
        try:
            yield url, pool
        finally:
            await pool.close()


@contextlib.asynccontextmanager
async def open_runtime(
    settings: Settings, *, run_migrations: bool = True, start_bus: bool = True, create: bool = False,
    progress: Progress = quiet,
) -> AsyncIterator[Runtime]:
    """Database (embedded unless ``database_url`` is set), migrations, pool and bus, closed on exit."""
    async with open_database(settings, run_migrations=run_migrations, create=create,
                             progress=progress) as (url, pool):
        bus = create_bus(settings, pool=pool, dsn=url)
        if start_bus:
            await bus.start()
        tracer = open_tracer(settings)
        try:
            yield Runtime(settings, url, pool, bus, tracer=tracer)
        finally:
            if tracer is not None:
                await asyncio.to_thread(tracer.shutdown)  # sends the last spans (blocking HTTP)
            if start_bus:
                await bus.stop()


log = get_logger(__name__)

Serve = Callable[[Runtime, asyncio.Event], Coroutine[Any, Any, None]]
"""A service: runs until ``stop`` is set, then drains within its own deadline."""


async def run_services(settings: Settings, services: Mapping[str, Serve], *,
                       on_ready: Callable[[Runtime], None] | None = None,
                       stop: asyncio.Event | None = None, create: bool = False,
                       progress: Progress = quiet) -> None:
    """Open the runtime and run ``services`` until ``stop`` is set (by default: SIGTERM / SIGINT).

    Each service runs under the supervisor: one that fails is restarted with backoff while the others
    go on serving. Only a :class:`ConfigError` (a setting that cannot work) ends the run early; it is
    raised once every service has stopped. With ``ops_port`` set, the process serves its ``/healthz``
    and ``/metrics`` there (:mod:`spendgate.core.opsserver`). ``create`` lets the run make a new embedded database
    (``spendgate up``); ``progress`` hears each step of the start (``up`` prints them).
    """
    with _stop_on_signals(stop) as stop:
        async with contextlib.AsyncExitStack() as stack:
            runtime = await _open_when_reachable(stack, settings, create=create, progress=progress, stop=stop)
            if runtime is None:
                return
            if settings.ops_port is not None:
                token = settings.metrics_token.get_secret_value() if settings.metrics_token else None
                await stack.enter_async_context(serving_ops(settings.host, settings.ops_port, runtime.health,
                                                            runtime.metrics, token))
            progress(f"Starting {', '.join(services)}")
            tasks = [runtime.supervisor.spawn(name, _service_loop(serve, runtime), stop, ok_on_start=True,
                                              fatal=(ConfigError,))
                     for name, serve in services.items()]

            def stop_if_failed(task: asyncio.Task[None]) -> None:
                if not task.cancelled() and task.exception() is not None:
                    stop.set()

            for task in tasks:
                task.add_done_callback(stop_if_failed)
            log.info("services started", services=sorted(services), bus=settings.bus)
            try:
                if on_ready is not None:
                    on_ready(runtime)
                await stop.wait()
            finally:
                stop.set()
                outcomes = await asyncio.gather(*tasks, return_exceptions=True)
            for outcome in outcomes:
                if isinstance(outcome, Exception):
                    raise outcome


UNREACHABLE = (OSError, StoreError, BusUnavailableError, asyncpg.CannotConnectNowError,
               asyncpg.PostgresConnectionError)
"""Failures to open the runtime that time can cure (the database or the broker not up yet, or down)."""


def _unreachable(exc: BaseException) -> bool:
    """``exc``, or what it wraps (alembic's SQLAlchemy errors wrap asyncpg's), is in :data:`UNREACHABLE`."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, UNREACHABLE):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


async def _open_when_reachable(stack: contextlib.AsyncExitStack, settings: Settings, *, create: bool,
                               progress: Progress, stop: asyncio.Event) -> Runtime | None:
    """:func:`open_runtime`, retried with the supervisor's backoff while the database or the broker cannot
    be reached (a service started before them, or during an outage, waits instead of exiting); None
    when ``stop`` is set first. Anything else (a ConfigError, a failed migration) is raised at once, and
    so is any failure of the embedded PostgreSQL: it is this process's own, and waiting cures nothing."""
    s = settings.supervisor
    backoff, rng, attempt = Backoff(base_s=s.backoff_base_s, cap_s=s.backoff_cap_s), random.Random(), 0
    while not stop.is_set():
        try:
            return await stack.enter_async_context(open_runtime(settings, create=create, progress=progress))
        except Exception as exc:  # classified below: only what waiting can cure is retried
            if not _unreachable(exc) or (not settings.database_url and not isinstance(exc, BusUnavailableError)):
                raise
            attempt += 1
            delay_s = backoff.delay_s(attempt, rng)
            log.warning("database or bus unreachable at start; retrying", attempt=attempt,
                        retry_in_s=round(delay_s, 3), error=str(exc))
            progress(f"Cannot reach the database or the bus yet ({exc}); retrying in {delay_s:.1f} s")
            await wait_or_stop(delay_s, stop)
    return None


def _service_loop(serve: Serve, runtime: Runtime) -> Callable[[asyncio.Event, Beat], Coroutine[Any, Any, None]]:
    async def loop(stop: asyncio.Event, _beat: Beat) -> None:
        await serve(runtime, stop)

    return loop


@contextlib.contextmanager
def _stop_on_signals(stop: asyncio.Event | None) -> Iterator[asyncio.Event]:
    """The caller's ``stop``, or a new one that SIGTERM and SIGINT set (handlers removed on exit)."""
    if stop is not None:
        yield stop
        return
    event = asyncio.Event()
    loop = asyncio.get_running_loop()
    installed = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, event.set)
            installed.append(sig)
    try:
        yield event
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)
