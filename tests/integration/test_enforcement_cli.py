"""``spendgate budgets`` against real PostgreSQL: set, list, show, raise and delete with audit rows."""

from __future__ import annotations

import json

import asyncpg
import click
from click.testing import CliRunner

from spendgate.admin.budgets_cli import COMMANDS
from spendgate.core.clitools import Ctx


@click.group()
@click.pass_context
def root(ctx: click.Context) -> None:
    ctx.obj = Ctx(None)


for command in COMMANDS:
    root.add_command(command)


def invoke(db_url: str, *args: str) -> str:
    result = CliRunner().invoke(root, list(args), env={"SPENDGATE_DATABASE_URL": db_url, "SPENDGATE_CONFIG": ""},
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_budget_lifecycle_through_the_cli(db_url: str) -> None:
    """set, set again (partial), raise, list, show and delete work and print what changed."""
    out = invoke(db_url, "budgets", "set", "--scope", "team:platform", "--daily", "40", "--monthly", "800",
                 "--timezone", "Europe/Berlin", "--thresholds", "80,95,110", "--at-pause", "cheapest",
                 "--actor", "ops")
    assert "daily $40.00, monthly $800.00 (Europe/Berlin" in out
    invoke(db_url, "budgets", "set", "--scope", "team:platform", "--daily", "45", "--actor", "ops")
    invoke(db_url, "budgets", "raise", "--scope", "team:platform", "--by", "20", "--until", "2099-12-01T00:00Z",
           "--reason", "release week", "--actor", "ops")
    listed = json.loads(invoke(db_url, "budgets", "list", "--format", "json"))
    assert listed["budgets"] == [{"scope": "team:platform", "daily_micros": 45_000_000, "monthly_micros": 800_000_000,
                                  "timezone": "Europe/Berlin", "thresholds_pct": [80, 95, 110],
                                  "at_pause": "cheapest", "retry_cap": None, "raised_micros": 20_000_000,
                                  "weekly_micros": None, "model": None, "cascades": None}]
    assert [r["reason"] for r in listed["raises"]] == ["release week"]
    assert "$20.00" in invoke(db_url, "budgets", "list").splitlines()[2]
    shown = json.loads(invoke(db_url, "budgets", "show", "--scope", "team:platform", "--format", "json"))
    assert [p["budget_micros"] for p in shown["periods"]] == [65_000_000, 820_000_000]
    assert shown["periods"][0]["stage"] == "ok" and shown["raises"][0]["reason"] == "release week"
    assert "deleted the budget of team:platform" in invoke(db_url, "budgets", "delete", "--scope", "team:platform")


async def test_cli_changes_are_audited(db_url: str, pool: asyncpg.Pool) -> None:
    """Each CLI change writes one audit row with the actor and the previous values."""
    import asyncio

    await asyncio.to_thread(invoke, db_url, "budgets", "set", "--scope", "org", "--monthly", "1000", "--actor", "cfo")
    await asyncio.to_thread(invoke, db_url, "budgets", "set", "--scope", "org", "--monthly", "1200", "--actor", "cfo")
    rows = await pool.fetch("SELECT action, actor, detail FROM budget_audit ORDER BY changed_at")
    assert [(r["action"], r["actor"]) for r in rows] == [("set", "cfo"), ("set", "cfo")]
    detail = json.loads(rows[1]["detail"])
    assert detail["monthly_micros"] == 1_200_000_000 and detail["previous"]["monthly_micros"] == 1_000_000_000


def test_bad_input_is_a_clear_error(db_url: str) -> None:
    """An unknown scope form is a usage error (exit 2); a raise of a scope without a budget exits 1."""
    r = CliRunner().invoke(root, ["budgets", "set", "--scope", "squad:x", "--daily", "1"],
                           env={"SPENDGATE_DATABASE_URL": db_url, "SPENDGATE_CONFIG": ""})
    assert r.exit_code == 2 and "'squad:x': use key:<id>" in r.output
    r = CliRunner().invoke(root, ["budgets", "raise", "--scope", "org", "--by", "1", "--until", "2099-01-01T00:00Z",
                                  "--reason", "x"], env={"SPENDGATE_DATABASE_URL": db_url, "SPENDGATE_CONFIG": ""})
    assert r.exit_code == 1 and "no budget for org" in r.output
