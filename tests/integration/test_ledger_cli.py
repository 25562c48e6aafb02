"""`spendgate migrate` and `spendgate ledger rebuild` as an operator runs them."""

from __future__ import annotations

from pathlib import Path

import asyncpg

from spendgate.store.usage.store import insert_events
from tests.support.cli import spendgate
from tests.support.factories import usage_event


async def test_migrate_is_idempotent(db_url: str, tmp_path: Path) -> None:
    """Running migrate on an up-to-date database succeeds and says so."""
    done = await spendgate("migrate", db_url=db_url, data_dir=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "up to date" in done.stdout


async def test_rebuild_command_recomputes_from_events(db_url: str, pool: asyncpg.Pool, tmp_path: Path) -> None:
    """Events stored without balances (e.g. after a bad deploy) are folded again by `ledger rebuild`."""
    events = [usage_event(), usage_event(developer="bob", key_id="k_bob")]
    async with pool.acquire() as conn:
        await insert_events(conn, events)
    done = await spendgate("ledger", "rebuild", db_url=db_url, data_dir=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "from 2 events" in done.stdout
    org = await pool.fetchval("SELECT spent_micros FROM balances WHERE scope = 'org' AND period = 'day'")
    assert org == sum(e.cost_micros for e in events)


async def test_bad_configuration_is_a_clear_error(db_url: str, tmp_path: Path) -> None:
    """A malformed setting stops the command with exit 2 and names the field."""
    (tmp_path / "bad.yaml").write_text("bus: carrier-pigeon\n")
    done = await spendgate("migrate", db_url=db_url, data_dir=tmp_path, SPENDGATE_CONFIG=str(tmp_path / "bad.yaml"))
    assert done.returncode == 2
    assert "carrier-pigeon" in done.stderr
