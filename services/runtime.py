"""Open what every service needs — the database (configured or embedded), migrations, the pool and
the bus — from the settings, and run services on it. The one place that wires adapters; services
receive them ready. Which services run is the caller's choice, named in code (``spendgate.up``, or an
area's own command for one service per process)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import Any

import asyncpg

from spendgate.core.bus import Bus, create_bus
from spendgate.core.config import Settings
from spendgate.core.db import create_pool, database_url_for
from spendgate.core.logs import get_logger
from spendgate.store.migrations import migrate


@dataclass
class Runtime:
    settings: Settings
    db_url: str
    pool: asyncpg.Pool
    bus: Bus


@contextlib.asynccontextmanager
async def open_database(settings: Settings, *, run_migrations: bool = True,
                        create: bool = False) -> AsyncIterator[tuple[str, asyncpg.Pool]]:
    """The database (configured, else embedded under the data dir; only ``create`` may make a new one)."""
    async with database_url_for(settings.database_url, settings.pg_dir, create=create) as url:
        if run_migrations:
            await migrate(url)
        pool = await create_pool(url)
        try:
            yield url, pool
        finally:
            await pool.close()


@contextlib.asynccontextmanager
async def open_runtime(
    settings: Settings, *, run_migrations: bool = True, start_bus: bool = True, create: bool = False
) -> AsyncIterator[Runtime]:
    """Database (embedded unless ``database_url`` is set), migrations, pool and bus, closed on exit."""
    async with open_database(settings, run_migrations=run_migrations, create=create) as (url, pool):
        bus = create_bus(settings, pool=pool, dsn=url)
        if start_bus:
            await bus.start()
        try:
            yield Runtime(settings, url, pool, bus)
        finally:
            if start_bus:
                await bus.stop()


log = get_logger(__name__)

Serve = Callable[[Runtime, asyncio.Event], Coroutine[Any, Any, None]]
"""A service: runs until ``stop`` is set, then drains within its own deadline."""


async def run_services(settings: Settings, services: Mapping[str, Serve], *,
                       on_ready: Callable[[Runtime], None] | None = None, create: bool = False) -> None:
    """Open the runtime and run ``services`` until SIGTERM / SIGINT (or one of them fails)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    async with open_runtime(settings, create=create) as runtime:
        tasks = [asyncio.create_task(fn(runtime, stop), name=name) for name, fn in services.items()]
        log.info("services started", services=sorted(services), bus=settings.bus)
        if on_ready is not None:
            on_ready(runtime)
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        for task in done:
            if not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
