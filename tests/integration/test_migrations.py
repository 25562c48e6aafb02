"""Migrations: every branch applies from nothing, downgrades to nothing, and applies again."""

from __future__ import annotations

import asyncio

import asyncpg

from spendgate.core.db import _alembic_config, migrate
from tests.support.postgres import PostgresForTests


async def tables(url: str) -> set[str]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    finally:
        await conn.close()
    return {r["tablename"] for r in rows} - {"alembic_version"}


async def test_round_trip_from_an_empty_database(postgres_server: PostgresForTests) -> None:
    """upgrade heads → downgrade base leaves no table → upgrade heads gives the same schema."""
    from alembic import command

    url = await postgres_server.new_empty_database()
    await migrate(url)
    first = await tables(url)
    assert {"usage_events", "balances", "bus_log", "budgets", "forecasts", "alerts"} <= first
    await asyncio.to_thread(command.downgrade, _alembic_config(url), "base")
    assert await tables(url) == set()
    await migrate(url)
    assert await tables(url) == first
