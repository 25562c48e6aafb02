"""No silent mistakes: what an operator gets wrong is refused or warned about, through the real CLI on a
real database, with exit codes that agree between commands."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest
from click.testing import CliRunner, Result

from spendgate.cli import main
from spendgate.domain.enforcement.policy import budget_of
from spendgate.store.budgets import store as budgets
from spendgate.store.keys import store as keys
from tests.support.admin_traffic import fold_through_ledger, known_month
from tests.support.ports import free_port


async def cli(db_url: str, tmp_path: Path, *args: str) -> Result:
    env = {"SPENDGATE_DATABASE_URL": db_url, "SPENDGATE_DATA_DIR": str(tmp_path), "SPENDGATE_CONFIG": "",
           "SPENDGATE_LOG_LEVEL": "error", "SPENDGATE_ADMIN_URL": ""}
    return await asyncio.to_thread(CliRunner().invoke, main, list(args), env=env, catch_exceptions=False)


@pytest.fixture
async def alice(pool: asyncpg.Pool) -> keys.VirtualKey:
    return (await keys.create_key(pool, developer="alice", team="platform")).key


async def test_a_budget_for_a_key_takes_its_prefix_and_refuses_an_unknown_key(
    db_url: str, tmp_path: Path, pool: asyncpg.Pool, alice: keys.VirtualKey
) -> None:
    """key:<prefix as keys list shows it> sets the key's budget under its id; a key that does not exist is refused."""
    done = await cli(db_url, tmp_path, "budgets", "set", "--scope", f"key:{alice.key_prefix}", "--daily", "5")
    assert done.exit_code == 0, done.output
    assert await budgets.get_budget(pool, f"key:{alice.key_id}") is not None
    shown = await cli(db_url, tmp_path, "budgets", "show", "--scope", f"key:{alice.key_prefix}", "--format", "json")
    assert json.loads(shown.stdout)["budget"]["scope"] == f"key:{alice.key_id}"
    missing = await cli(db_url, tmp_path, "budgets", "set", "--scope", "key:sk-sg-nothere", "--daily", "5")
    assert missing.exit_code == 1
    assert missing.stderr == "error: no key 'sk-sg-nothere' (see spendgate keys list --all)\n"
    assert await pool.fetchval("SELECT count(*) FROM budgets") == 1


async def test_an_ambiguous_prefix_says_so(db_url: str, tmp_path: Path, pool: asyncpg.Pool,
                                           alice: keys.VirtualKey) -> None:
    """A prefix two keys share is refused as ambiguous by budgets set and keys revoke, naming both keys."""
    other = (await keys.create_key(pool, developer="bob", team="platform")).key
    await pool.execute("UPDATE virtual_keys SET key_prefix = $1 WHERE key_id = $2", alice.key_prefix, other.key_id)
    for args in (["budgets", "set", "--scope", f"key:{alice.key_prefix}", "--daily", "5"],
                 ["keys", "revoke", alice.key_prefix]):
        done = await cli(db_url, tmp_path, *args)
        assert done.exit_code == 1 and "is ambiguous" in done.stderr, (args, done.output)
        assert alice.key_id in done.stderr and other.key_id in done.stderr
    assert all(k.active for k in await keys.list_keys(pool))


async def test_revoking_a_revoked_key_says_so(db_url: str, tmp_path: Path, alice: keys.VirtualKey) -> None:
    """The first revoke succeeds; the second exits 1 saying when the key was revoked."""
    first = await cli(db_url, tmp_path, "keys", "revoke", alice.key_prefix)
    assert first.exit_code == 0 and f"revoked {alice.key_id}" in first.stdout
    again = await cli(db_url, tmp_path, "keys", "revoke", alice.key_id)
    assert again.exit_code == 1 and again.stderr.startswith(f"error: key {alice.key_id} (alice) was already revoked")


async def test_an_unknown_developer_or_team_is_warned_with_a_guess(db_url: str, tmp_path: Path,
                                                                    alice: keys.VirtualKey) -> None:
    """budgets set on developer:alcie or team:platfrom goes ahead with a warning naming the likely name."""
    dev = await cli(db_url, tmp_path, "budgets", "set", "--scope", "developer:alcie", "--daily", "5")
    assert dev.exit_code == 0 and "budget for developer:alcie" in dev.stdout
    assert dev.stderr.startswith("warning: no developer 'alcie'") and "(did you mean 'alice'?)" in dev.stderr
    team = await cli(db_url, tmp_path, "budgets", "set", "--scope", "team:platfrom", "--monthly", "50")
    assert "(did you mean 'platform'?)" in team.stderr
    known = await cli(db_url, tmp_path, "budgets", "set", "--scope", "team:platform", "--monthly", "50")
    assert known.exit_code == 0 and known.stderr == ""


async def test_a_report_that_finds_nothing_for_a_misspelt_filter_warns(db_url: str, tmp_path: Path,
                                                                       pool: asyncpg.Pool) -> None:
    """An empty report filtered on an unknown developer warns with a guess; an empty one on a known name does not."""
    await fold_through_ledger(pool, known_month())
    window = ["--from", "2026-11-01", "--to", "2026-11-30"]
    typo = await cli(db_url, tmp_path, "report", "chargeback", *window, "--developer", "carlo")
    assert typo.exit_code == 0 and "(did you mean 'carol'?)" in typo.stderr
    sessions = await cli(db_url, tmp_path, "sessions", "list", *window, "--team", "payment")
    assert "warning: no team 'payment'" in sessions.stderr
    quiet = await cli(db_url, tmp_path, "report", "chargeback", "--from", "2026-10-01", "--to", "2026-10-31",
                      "--developer", "carol")
    assert quiet.exit_code == 0 and quiet.stderr == ""


async def test_raises_must_end_in_the_future(db_url: str, tmp_path: Path, pool: asyncpg.Pool) -> None:
    """A raise whose --until has passed is refused before anything is written."""
    await budgets.set_budget(pool, budget_of("org", daily_micros=5_000_000, monthly_micros=None), actor="t")
    done = await cli(db_url, tmp_path, "budgets", "raise", "--scope", "org", "--by", "10",
                     "--until", "2020-01-01T00:00Z", "--reason", "late")
    assert done.exit_code == 2 and "is in the past: a raise must end in the future" in done.stderr
    assert await pool.fetchval("SELECT count(*) FROM budget_raises") == 0


async def test_a_missing_scope_is_an_error_for_show_and_delete_alike(db_url: str, tmp_path: Path) -> None:
    """show and delete of a scope without a budget both exit 1 with the same message."""
    shown = await cli(db_url, tmp_path, "budgets", "show", "--scope", "team:ghost")
    deleted = await cli(db_url, tmp_path, "budgets", "delete", "--scope", "team:ghost")
    assert shown.exit_code == deleted.exit_code == 1
    assert shown.stderr == deleted.stderr == "error: no budget for team:ghost\n"


async def test_forecast_refuses_the_future_and_a_scope_without_data(db_url: str, tmp_path: Path,
                                                                     pool: asyncpg.Pool) -> None:
    """--as-of tomorrow is refused; a --scope with neither a monthly budget nor spend exits 1 instead of
    printing nothing."""
    future = await cli(db_url, tmp_path, "forecast", "--as-of", "2999-01-01")
    assert future.exit_code == 2 and "is in the future" in future.stderr
    nothing = await cli(db_url, tmp_path, "forecast", "--scope", "team:ghost")
    assert nothing.exit_code == 1 and nothing.stderr.startswith("error: nothing to forecast for team:ghost")
    await budgets.set_budget(pool, budget_of("team:ghost", daily_micros=5_000_000, monthly_micros=None), actor="t")
    daily_only = await cli(db_url, tmp_path, "forecast", "--scope", "team:ghost")
    assert daily_only.exit_code == 1


async def test_read_commands_do_not_migrate(postgres_server: object, tmp_path: Path) -> None:
    """A database without spendgate's tables is not migrated by keys list: it is told to run spendgate migrate."""
    url = await postgres_server.new_empty_database()  # type: ignore[attr-defined]
    done = await cli(url, tmp_path, "keys", "list")
    assert done.exit_code == 1 and "run `spendgate migrate`" in done.stderr
    conn = await asyncpg.connect(url)
    try:
        assert await conn.fetchval("SELECT to_regclass('alembic_version')") is None
    finally:
        await conn.close()


@pytest.mark.parametrize("flag", ["--port", "--admin-port"])
def test_up_refuses_a_port_in_use_before_it_says_it_is_up(db_url: str, tmp_path: Path, flag: str) -> None:
    """`spendgate up` with a taken --port or --admin-port exits at once with one line naming the option."""
    with socket.create_server(("127.0.0.1", 0)) as taken:
        busy, other = taken.getsockname()[1], free_port()
        ports = {"--port": busy, "--admin-port": other} if flag == "--port" else {"--port": other, "--admin-port": busy}
        env = {**os.environ, "SPENDGATE_DATABASE_URL": db_url, "SPENDGATE_DATA_DIR": str(tmp_path),
               "SPENDGATE_ADMIN_TOKEN": "t", "SPENDGATE_CONFIG": "", "SPENDGATE_LOG_LEVEL": "error"}
        done = subprocess.run([sys.executable, "-m", "spendgate", "up", "--port", str(ports["--port"]),
                               "--admin-port", str(ports["--admin-port"])],
                              env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 1 and "spendgate is up" not in done.stdout
    assert done.stderr == (f"error: port {busy} on 127.0.0.1 is already in use (another spendgate?): choose "
                           f"another with {flag}\n")
