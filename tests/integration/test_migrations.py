"""Migrations: every branch applies from nothing, downgrades to nothing, and applies again."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import asyncpg

from spendgate.store.migrations import _alembic_config, migrate
from tests.support.postgres import PostgresForTests
from tests.support.proxy_process import spendgate_argv


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


async def test_a_database_migrated_before_the_family_split_upgrades_in_place(
    postgres_server: PostgresForTests,
) -> None:
    """A database whose tables came from the old all-in-one 0001 takes the family branches as no-ops."""
    url = await postgres_server.new_empty_database()
    await migrate(url)
    schema = await tables(url)
    conn = await asyncpg.connect(url)
    try:  # the state the last release left: its four heads recorded, every table already there
        await conn.execute("DELETE FROM alembic_version")
        await conn.execute("DROP TABLE reconciliation_lines, reconciliation_gaps, reconciliation_runs")  # newer
        await conn.executemany("INSERT INTO alembic_version VALUES ($1)",
                               [("ledger_0001",), ("enforcement_0001",), ("forecaster_0001",), ("alerter_0001",)])
        await conn.execute("INSERT INTO budgets (scope, daily_micros) VALUES ('org', 5000000)")
    finally:
        await conn.close()
    await migrate(url)
    assert await tables(url) == schema
    conn = await asyncpg.connect(url)
    try:
        heads = {r[0] for r in await conn.fetch("SELECT version_num FROM alembic_version")}
        kept = await conn.fetchval("SELECT daily_micros FROM budgets WHERE scope = 'org'")
    finally:
        await conn.close()
    assert heads == {"usage_0008", "outcomes_evals_0001", "balances_shapes", "forecaster_0001",
                     "alerter_0001", "bus_0001", "budgets_shapes", "keys_0001", "deadletters_0001", "reconcile_0001",
                     "ratelimits_0001", "access_0001", "policies_0002_guard"}
    assert kept == 5_000_000


async def test_sessions_keyed_by_developer_merge_back_on_downgrade(postgres_server: PostgresForTests) -> None:
    """usage_0004 keys sessions and turns by (developer, session id); its downgrade merges one id's rows
    back into one (totals summed, the lowest developer kept) and upgrading again keeps the merged row."""
    from alembic import command

    url = await postgres_server.new_empty_database()
    await migrate(url)
    conn = await asyncpg.connect(url)
    try:
        for dev, cost in (("bob", 7), ("alice", 5)):
            await conn.execute(
                """INSERT INTO sessions (session_id, key_id, developer, team, cost_center, first_at, last_at,
                       turns, requests, cost_micros) VALUES ('s1', $1, $2, 't', 'cc', now(), now(), 1, 2, $3)""",
                f"k_{dev}", dev, cost)
            await conn.execute("INSERT INTO session_turns (developer, session_id, turn_id) VALUES ($1, 's1', 't1')",
                               dev)
    finally:
        await conn.close()
    await asyncio.to_thread(command.downgrade, _alembic_config(url), "usage_0003")
    conn = await asyncpg.connect(url)
    try:
        merged = [tuple(r) for r in await conn.fetch("SELECT developer, turns, requests, cost_micros FROM sessions")]
        turns = await conn.fetchval("SELECT count(*) FROM session_turns")
    finally:
        await conn.close()
    assert merged == [("alice", 2, 4, 12)] and turns == 1
    await migrate(url)
    conn = await asyncpg.connect(url)
    try:
        kept = [tuple(r) for r in await conn.fetch("SELECT developer, session_id, turn_id FROM session_turns")]
    finally:
        await conn.close()
    assert kept == [("alice", "s1", "t1")]


async def test_processes_migrating_a_new_database_at_once_all_succeed(postgres_server: PostgresForTests,
                                                                      tmp_path: Path) -> None:
    """Three `spendgate migrate` at once on an empty database (every scale-out process migrates at start):
    one applies the heads while the others wait on the lock, then find them applied; all exit 0."""
    url = await postgres_server.new_empty_database()
    env = {**os.environ, "SPENDGATE_DATABASE_URL": url, "SPENDGATE_DATA_DIR": str(tmp_path)}
    procs = [await asyncio.create_subprocess_exec(*spendgate_argv(), "migrate", env=env, stdout=asyncio.subprocess.PIPE,
                                                  stderr=asyncio.subprocess.STDOUT) for _ in range(3)]
    outputs = await asyncio.wait_for(asyncio.gather(*(p.communicate() for p in procs)), 120)
    assert [p.returncode for p in procs] == [0, 0, 0], [out.decode()[-500:] for out, _ in outputs]
    assert {"usage_events", "balances", "bus_log", "budgets", "forecasts", "alerts"} <= await tables(url)
