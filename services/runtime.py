"""Open what every service needs — the database (configured or embedded), migrations, the pool and
the bus — from the settings. The one place that wires adapters; services receive them ready."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg

from .bus import Bus, create_bus
from .config import Settings
from .db import create_pool, database_url_for, migrate


@dataclass
class Runtime:
    settings: Settings
    db_url: str
    pool: asyncpg.Pool
    bus: Bus


@contextlib.asynccontextmanager
async def open_database(settings: Settings, *, run_migrations: bool = True) -> AsyncIterator[tuple[str, asyncpg.Pool]]:
    async with database_url_for(settings.database_url, settings.pg_dir) as url:
        if run_migrations:
            await migrate(url)
        pool = await create_pool(url)
        try:
            yield url, pool
        finally:
            await pool.close()


@contextlib.asynccontextmanager
async def open_runtime(
    settings: Settings, *, run_migrations: bool = True, start_bus: bool = True
) -> AsyncIterator[Runtime]:
    """Database (embedded unless ``database_url`` is set), migrations, pool and bus, closed on exit."""
    async with open_database(settings, run_migrations=run_migrations) as (url, pool):
        bus = create_bus(settings, pool=pool, dsn=url)
        if start_bus:
            await bus.start()
        try:
            yield Runtime(settings, url, pool, bus)
        finally:
            if start_bus:
                await bus.stop()
