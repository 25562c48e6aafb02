"""The CLI reads the same reports from the database and through the admin API, in table, CSV and JSON."""

from __future__ import annotations

import asyncio
import csv
import io
from datetime import date
from pathlib import Path

import asyncpg
import msgspec
import pytest
import yaml
from aiohttp import web
from click.testing import CliRunner, Result

from spendgate.admin.app import create_app
from spendgate.admin.deps import Deps
from spendgate.admin.dryrun import DryRun, dry_run
from spendgate.admin.reports import Chargeback, chargeback
from spendgate.admin.window import Window
from spendgate.cli import main
from spendgate.domain.enforcement import policy_from_document
from spendgate.domain.money import usd_str
from tests.support.admin_enforced import LIVE_POLICY
from tests.support.admin_server import ADMIN_TOKEN, NOW, admin_settings
from tests.support.admin_traffic import PRICES, fold_through_ledger, known_month
from tests.support.ports import free_port

NOVEMBER = ["--from", "2026-11-01", "--to", "2026-11-30"]


@pytest.fixture
async def month(pool: asyncpg.Pool) -> None:
    await fold_through_ledger(pool, known_month())


async def cli(db_url: str, tmp_path: Path, *args: str) -> Result:
    """Run ``spendgate …`` in a worker thread (it runs its own event loop), against the test database."""
    env = {"SPENDGATE_DATABASE_URL": db_url, "SPENDGATE_DATA_DIR": str(tmp_path),
           "SPENDGATE_ADMIN_TOKEN": ADMIN_TOKEN, "SPENDGATE_LOG_LEVEL": "error", "SPENDGATE_ADMIN_URL": ""}
    result = await asyncio.to_thread(CliRunner().invoke, main, list(args), env=env, catch_exceptions=False)
    return result


async def test_chargeback_json_is_the_report_and_csv_total_matches_it(pool: asyncpg.Pool, db_url: str,
                                                                       tmp_path: Path, month: None) -> None:
    """--format json decodes to the report function's result; the CSV's TOTAL cost is the exact dollar total."""
    window = Window.of(date(2026, 11, 1), date(2026, 11, 30), tz="UTC", now=NOW)
    want = await chargeback(pool, PRICES, by="developer", window=window)
    as_json = await cli(db_url, tmp_path, "report", "chargeback", "--by", "developer", *NOVEMBER, "--format", "json")
    assert as_json.exit_code == 0, as_json.output
    assert msgspec.json.decode(as_json.output, type=Chargeback) == want
    as_csv = await cli(db_url, tmp_path, "report", "chargeback", "--by", "developer", *NOVEMBER, "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(as_csv.output)))
    assert [r["group"] for r in rows] == [line.group for line in want.lines] + ["TOTAL"]
    assert want.total is not None and rows[-1]["cost_usd"] == usd_str(want.total.cost_micros)
    table = await cli(db_url, tmp_path, "report", "chargeback", "--by", "team", *NOVEMBER)
    assert table.exit_code == 0 and "TOTAL" in table.output and "saved" in table.output


async def test_cli_output_is_identical_through_the_database_and_the_api(pool: asyncpg.Pool, db_url: str,
                                                                         tmp_path: Path, month: None) -> None:
    """Chargeback, cache and session reports print byte for byte the same with and without --api."""
    settings = admin_settings()
    runner = web.AppRunner(create_app(Deps(pool, settings, PRICES, now=lambda: NOW)))
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        for args in (["report", "chargeback", "--by", "session", *NOVEMBER, "--format", "csv"],
                     ["report", "chargeback", "--by", "repo", *NOVEMBER, "--team", "platform"],
                     ["report", "cache", "--by", "developer", *NOVEMBER, "--format", "json"],
                     ["report", "cache", "--by", "session", *NOVEMBER, "--flag-below", "50"],
                     ["sessions", "show", "sess-refused"]):
            direct = await cli(db_url, tmp_path, *args)
            via_api = await cli(db_url, tmp_path, *args, "--api", f"http://127.0.0.1:{port}")
            assert direct.exit_code == via_api.exit_code == 0, direct.output + via_api.output
            assert direct.output == via_api.output and len(direct.output) > 100
        missing = await cli(db_url, tmp_path, "sessions", "show", "nope", "--api", f"http://127.0.0.1:{port}")
        assert missing.exit_code == 1 and "no usage recorded" in missing.output
    finally:
        await runner.cleanup()


async def test_policy_apply_show_and_dry_run_from_the_command_line(pool: asyncpg.Pool, db_url: str,
                                                                   tmp_path: Path, month: None) -> None:
    """apply makes the file the live policy, show prints it back in the same format, dry-run reports on it."""
    proposal = tmp_path / "proposal.yaml"
    proposal.write_text(yaml.safe_dump(LIVE_POLICY))
    applied = await cli(db_url, tmp_path, "policy", "apply", str(proposal))
    assert applied.exit_code == 0, applied.output
    assert "set: developer:alice" in applied.output and "set: org" in applied.output
    shown = await cli(db_url, tmp_path, "policy", "show")
    doc = yaml.safe_load(shown.output)
    assert [b["scope"] for b in doc["budgets"]] == ["developer:alice", "org", "team:payments"]
    again = tmp_path / "shown.yaml"
    again.write_text(shown.output)
    unchanged = await cli(db_url, tmp_path, "policy", "apply", str(again))
    assert unchanged.output.count("unchanged:") == 3 and "set:" not in unchanged.output
    text = await cli(db_url, tmp_path, "policy", "dry-run", str(again), "--days", "30")
    assert text.exit_code == 0 and "Replayed" in text.output and "developer:alice" in text.output
    as_json = await cli(db_url, tmp_path, "policy", "dry-run", str(again), "--days", "30", "--format", "json")
    assert msgspec.json.decode(as_json.output)["days"] == 30
    bad = tmp_path / "bad.yaml"
    bad.write_text("budgets: [{scope: 'planet:mars', daily: '1'}]")
    refused = await cli(db_url, tmp_path, "policy", "dry-run", str(bad))
    assert refused.exit_code == 1 and "error:" in refused.output
    exploring = tmp_path / "exploring.yaml"
    exploring.write_text("exploration: {share_pct: 10, teams: [platform], max_input_tokens: 10000}")
    explored = await cli(db_url, tmp_path, "policy", "dry-run", str(exploring), "--days", "30")
    assert explored.exit_code == 0 and "on the next cheaper model" in explored.output, explored.output
    hostile = tmp_path / "hostile.yaml"
    hostile.write_text("exploration: {share_pct: 0.5, teams: [platform], max_input_tokens: 10000}")
    refused = await cli(db_url, tmp_path, "policy", "dry-run", str(hostile))
    assert refused.exit_code == 1 and "exploration.share_pct" in refused.output and "Traceback" not in refused.output


async def test_policy_dry_run_and_apply_through_the_api(pool: asyncpg.Pool, db_url: str, tmp_path: Path,
                                                       month: None) -> None:
    """`policy dry-run --api` prints what dry_run computes at the API's clock; `policy apply --api` applies."""
    proposal = tmp_path / "proposal.yaml"
    proposal.write_text(yaml.safe_dump(LIVE_POLICY))
    settings = admin_settings()
    runner = web.AppRunner(create_app(Deps(pool, settings, PRICES, now=lambda: NOW)))
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    api = ["--api", f"http://127.0.0.1:{port}"]
    try:
        printed = await cli(db_url, tmp_path, "policy", "dry-run", str(proposal), "--format", "json", *api)
        assert printed.exit_code == 0, printed.output
        direct, _ = await dry_run(pool, policy_from_document(LIVE_POLICY, settings.enforcement), PRICES, days=30,
                                  now=NOW)
        got = msgspec.json.decode(printed.output, type=DryRun)
        assert msgspec.structs.replace(got, elapsed_ms=0) == msgspec.structs.replace(direct, elapsed_ms=0)
        applied = await cli(db_url, tmp_path, "policy", "apply", str(proposal), *api)
        assert applied.exit_code == 0 and applied.output.count("set: ") == 3
    finally:
        await runner.cleanup()
    assert await pool.fetchval("SELECT count(*) FROM budgets") == 3
