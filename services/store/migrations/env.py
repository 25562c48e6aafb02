"""Alembic environment: raw-SQL migrations run over asyncpg (no ORM models)."""

from __future__ import annotations

import asyncio

import asyncpg
from alembic import context
from sqlalchemy import pool
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

dsn: str = context.config.attributes["dsn"]


def _run(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=None, transaction_per_migration=True)
    with context.begin_transaction():
        context.run_migrations()


MIGRATION_LOCK = 0x5D6A7E
"""Advisory lock held while migrating: every spendgate process migrates at start, and two alembic runs on
a new database at once both try to create its tables (the second failed on ``alembic_version``). The
second waits, then finds the heads applied."""


async def _main() -> None:
    lock = await asyncpg.connect(dsn)
    try:
        await lock.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK)  # released when ``lock`` closes
        engine = create_async_engine(
            "postgresql+asyncpg://", async_creator=lambda: asyncpg.connect(dsn), poolclass=pool.NullPool
        )
        async with engine.connect() as conn:
            await conn.run_sync(_run)
            await conn.commit()
        await engine.dispose()
    finally:
        await lock.close()


if context.is_offline_mode():
    raise SystemExit("offline (SQL script) migrations are not supported; run `spendgate migrate`")
asyncio.run(_main())
