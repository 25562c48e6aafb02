"""``spendgate demo`` (issue 14, item 4): one command seeds a month of traffic through the real ledger, alerter and
forecaster into the configured database, and the reports, budgets and alerts then show it."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import asyncpg
from click.testing import CliRunner, Result

from spendgate.cli import main
from spendgate.demo.traffic import TEAMS
from spendgate.store.alerts.store import alert_history, dead_letters
from spendgate.store.forecasts.store import latest_forecasts
from spendgate.store.keys import store as keys_store

TOKEN = "demo-test-admin-token-0123456789"


def spendgate(db_url: str, tmp_path: Path, *args: str) -> Result:
    env = {"SPENDGATE_DATABASE_URL": db_url, "SPENDGATE_DATA_DIR": str(tmp_path), "SPENDGATE_CONFIG": "",
           "SPENDGATE_ADMIN_TOKEN": TOKEN, "SPENDGATE_LOG_LEVEL": "error", "SPENDGATE_ADMIN_URL": ""}
    return CliRunner().invoke(main, list(args), env=env)


async def test_demo_seeds_a_month_the_reports_budgets_and_alerts_show(db_url: str, tmp_path: Path,
                                                                      pool: asyncpg.Pool) -> None:
    """After `spendgate demo`: every team charged back, teams at each stage, alerts delivered and dead, forecasts."""
    done = await asyncio.to_thread(spendgate, db_url, tmp_path, "demo")
    assert done.exit_code == 0, done.output
    assert "http://127.0.0.1:8081/" in done.stdout and TOKEN in done.stdout

    report = await asyncio.to_thread(spendgate, db_url, tmp_path, "report", "chargeback", "--by", "team",
                                     "--from", "2020-01-01", "--format", "json")
    assert report.exit_code == 0, report.output
    lines = {line["group"]: line for line in json.loads(report.stdout)["lines"]}
    assert set(lines) == {t.name for t in TEAMS}
    assert all(line["cost_micros"] > 1_000_000 and line["sessions"] > 10 for line in lines.values())
    assert lines["payments"]["downgraded"] > 0 and lines["data"]["downgraded"] > 0
    assert sum(line["retries"] for line in lines.values()) > 0

    stages = {}
    for team in ("platform", "payments", "data", "mobile"):
        shown = await asyncio.to_thread(spendgate, db_url, tmp_path, "budgets", "show", "--scope", f"team:{team}",
                                        "--format", "json")
        [month] = json.loads(shown.stdout)["periods"]
        stages[team] = month["stage"]
    assert stages == {"platform": "alert", "payments": "downgrade", "data": "pause", "mobile": "ok"}

    history = await alert_history(pool, limit=1_000)
    statuses = {j.status for a in history for j in a.jobs}
    assert {"delivered", "dead"} <= statuses
    assert await dead_letters(pool)
    assert {f.scope for f in await latest_forecasts(pool)} >= {"org", "team:data"}
    turns = await pool.fetchval("SELECT max(turns) FROM sessions")
    assert turns >= 3

    again = await asyncio.to_thread(spendgate, db_url, tmp_path, "demo")
    assert again.exit_code == 0 and "already in this database" in again.stdout
    assert len(await keys_store.list_keys(pool)) == 16


async def test_demo_refuses_a_database_in_use_unless_forced(db_url: str, tmp_path: Path, pool: asyncpg.Pool) -> None:
    """A database with someone's keys is refused in one line (nothing added); --force adds the demo beside them."""
    await keys_store.create_key(pool, developer="zoe", team="real-team")
    refused = await asyncio.to_thread(spendgate, db_url, tmp_path, "demo")
    assert refused.exit_code == 1 and "Traceback" not in refused.output
    errors = [line for line in refused.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "--force" in errors[0] and refused.stderr.strip().endswith(errors[0])
    assert len(await keys_store.list_keys(pool)) == 1
    assert await pool.fetchval("SELECT count(*) FROM usage_events") == 0
    forced = await asyncio.to_thread(spendgate, db_url, tmp_path, "demo", "--force")
    assert forced.exit_code == 0, forced.output
    assert len(await keys_store.list_keys(pool)) == 17
    assert await pool.fetchval("SELECT count(*) FROM usage_events WHERE developer = 'zoe'") == 0
    assert await pool.fetchval("SELECT count(*) FROM usage_events") > 1_000
