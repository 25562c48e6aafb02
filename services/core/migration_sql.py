"""Helpers every migration uses (each table family's, the bus's): run a multi-statement SQL script, drop tables."""

from __future__ import annotations

from alembic import op


def execute_script(script: str) -> None:
    """Run ``script`` statement by statement (asyncpg prepares each one, so they cannot be batched)."""
    for statement in script.split(";\n"):
        if statement.strip():
            op.execute(statement)


def drop_tables(tables: str) -> None:
    """Drop the whitespace-separated ``tables`` (dependents first, as listed)."""
    for table in tables.split():
        op.execute(f"DROP TABLE IF EXISTS {table} CASCADE")
