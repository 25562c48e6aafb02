"""The new budget shapes through the real CLI and the admin API on real PostgreSQL: what they store and show,
and the one-line errors (CLI) and 400s (API) for bad shapes."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import asyncpg
import pytest
from click.testing import CliRunner, Result

from spendgate.cli import main
from spendgate.store.budgets import store as budgets
from tests.support.admin_server import admin_client, auth

USD = 1_000_000


async def cli(db_url: str, tmp_path: Path, *args: str) -> Result:
    env = {"SPENDGATE_DATABASE_URL": db_url, "SPENDGATE_DATA_DIR": str(tmp_path), "SPENDGATE_CONFIG": "",
           "SPENDGATE_LOG_LEVEL": "error", "SPENDGATE_ADMIN_URL": ""}
    return await asyncio.to_thread(CliRunner().invoke, main, list(args), env=env, catch_exceptions=False)


async def test_the_cli_sets_and_shows_a_per_model_weekly_step_down_budget(db_url: str, tmp_path: Path,
                                                                         pool: asyncpg.Pool) -> None:
    """``budgets set --model --weekly --at-pause step_down --cascade`` stores the shape; ``show`` names the week."""
    done = await cli(db_url, tmp_path, "budgets", "set", "--scope", "org", "--model", "gpt-5.1", "--weekly", "50",
                     "--at-pause", "step_down", "--cascade", "gpt-5.1=gpt-5.1-mini, gpt-4.1-mini")
    assert done.exit_code == 0, done.output
    assert "budget for org|model:gpt-5.1: daily -, monthly -, weekly $50.00" in done.stdout
    stored = await budgets.get_budget(pool, "org|model:gpt-5.1")
    assert stored is not None
    assert (stored.model, stored.weekly_micros, stored.at_pause, stored.cascades) == (
        "gpt-5.1", 50 * USD, "step_down", (("gpt-5.1", ("gpt-5.1-mini", "gpt-4.1-mini")),))
    assert await pool.fetchval("SELECT model FROM budgets WHERE scope = 'org|model:gpt-5.1'") == "gpt-5.1"
    shown = await cli(db_url, tmp_path, "budgets", "show", "--scope", "org|model:gpt-5.1", "--format", "json")
    assert shown.exit_code == 0, shown.output
    doc = json.loads(shown.stdout)
    assert [p["period"] for p in doc["periods"]] == ["week"]
    assert doc["budget"]["cascades"] == {"gpt-5.1": ["gpt-5.1-mini", "gpt-4.1-mini"]}
    table = await cli(db_url, tmp_path, "budgets", "show", "--scope", "org", "--model", "gpt-5.1")
    assert "own cascades: gpt-5.1 > gpt-5.1-mini > gpt-4.1-mini" in table.stdout
    cc = await cli(db_url, tmp_path, "budgets", "set", "--scope", "cost_center:cc-eng", "--monthly", "900")
    assert cc.exit_code == 0, cc.output
    gone = await cli(db_url, tmp_path, "budgets", "delete", "--scope", "org", "--model", "gpt-5.1")
    assert gone.exit_code == 0 and await budgets.get_budget(pool, "org|model:gpt-5.1") is None


@pytest.mark.parametrize(
    ("args", "code", "fragment"),
    [
        (("--scope", "org", "--model", "gpt 5.1", "--monthly", "5"), 2, "a model id such as gpt-5.1"),
        (("--scope", "org|model:gpt-5.1", "--model", "gpt-5.1", "--monthly", "5"), 1, "give the model once"),
        (("--scope", "project:x", "--monthly", "5"), 2, "cost_center:<name>"),
        (("--scope", "org", "--weekly", "0"), 2, "more than $0"),
        (("--scope", "org", "--weekly", "ten"), 2, "--weekly"),
        (("--scope", "org", "--monthly", "5", "--at-pause", "slow_down"), 2, "step_down"),
        (("--scope", "org", "--monthly", "5", "--cascade", "gpt-5.1"), 2, "MODEL=CHEAPER"),
        (("--scope", "org", "--monthly", "5", "--cascade", "gpt-5.1=a", "--cascade", "gpt-5.1=b"), 2, "twice"),
        (("--scope", "org", "--monthly", "5", "--cascade", "gpt-5.1=" + ",".join(f"m{i}" for i in range(9))), 2,
         "1 to 8"),
        (("--scope", "org", "--monthly", "5", "--cascade", "gpt-5.1=no-such-model"), 2, "no price: no-such-model"),
        (("--scope", "org", "--monthly", "5", "--cascade", "gpt-5.1=gpt-4.1-mini", "--no-cascades"), 2, "not both"),
    ],
)
async def test_bad_shapes_on_the_cli_are_one_line_errors(db_url: str, tmp_path: Path, pool: asyncpg.Pool,
                                                         args: tuple[str, ...], code: int, fragment: str) -> None:
    """A misspelt model, a doubled model, an unknown scope kind, a zero or over-precise weekly amount, an unknown
    pause mode and malformed, doubled, overlong or unpriced cascades: one ``error:`` line, no budget stored."""
    done = await cli(db_url, tmp_path, "budgets", "set", *args)
    assert done.exit_code == code, done.output
    assert done.stderr.startswith("error: ") and done.stderr.count("\n") == 1 and fragment in done.stderr
    assert "Traceback" not in done.output
    assert await pool.fetchval("SELECT count(*) FROM budgets") == 0


async def test_the_api_takes_the_new_shapes_and_refuses_bad_ones(pool: asyncpg.Pool) -> None:
    """PUT /v1/budgets/org%7Cmodel:gpt-5.1 stores a per-model weekly budget with its own cascade; bad scopes, pause
    modes, cascades and amounts are 400s naming the problem, and nothing bad is stored."""
    async with admin_client(pool) as client:
        body_in = {"weekly": "10", "at_pause": "step_down", "cascades": {"gpt-5.1": ["gpt-4.1-mini"]}}
        resp = await client.put("/v1/budgets/org%7Cmodel:gpt-5.1", headers=auth(), json=body_in)
        assert resp.status == 200, await resp.text()
        body = await resp.json()
        assert (body["scope"], body["model"], body["weekly_micros"], body["cascades"]) == (
            "org|model:gpt-5.1", "gpt-5.1", 10 * USD, {"gpt-5.1": ["gpt-4.1-mini"]})
        shown = await (await client.get("/v1/budgets/org%7Cmodel:gpt-5.1", headers=auth())).json()
        assert [p["period"] for p in shown["periods"]] == ["week"]
        cleared = await client.put("/v1/budgets/org%7Cmodel:gpt-5.1", headers=auth(), json={"cascades": {}})
        assert (await cleared.json())["cascades"] is None

        for path, payload, fragment in [
            ("/v1/budgets/project:x", {"monthly": "1"}, "bad scope"),
            ("/v1/budgets/org%7Cmodel:gpt%205", {"monthly": "1"}, "bad scope"),
            ("/v1/budgets/org", {"monthly": "1", "at_pause": "slow_down"}, "at_pause"),
            ("/v1/budgets/org", {"weekly": "0"}, "positive"),
            ("/v1/budgets/org", {"weekly": 1.5}, "weekly"),
            ("/v1/budgets/org", {"monthly": "1", "cascades": {"gpt-5.1": ["no-such-model"]}}, "no price"),
            ("/v1/budgets/org", {"monthly": "1", "cascades": {"gpt-5.1": [f"m{i}" for i in range(9)]}}, "cascades"),
            ("/v1/budgets/org", {"monthly": "1", "cascades": {f"m{i}": ["x"] for i in range(65)}}, "cascades"),
        ]:
            bad = await client.put(path, headers=auth(), json=payload)
            assert bad.status == 400, (path, payload, await bad.text())
            assert fragment in (await bad.json())["error"]["message"], (path, payload)
    assert [b.scope for b in await budgets.budgets_of(pool)] == ["org|model:gpt-5.1"]
