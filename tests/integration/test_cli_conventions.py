"""One CLI convention, checked on every command: --format, --timezone, --api, --by spelling, help text,
global options after the subcommand, and tables, CSV and JSON that agree, through the real CLI on a
real database."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import re
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import asyncpg
import click
import pytest
from aiohttp import web
from click.testing import CliRunner, Result

from spendgate.admin.app import create_app
from spendgate.admin.deps import Deps
from spendgate.cli import main
from spendgate.domain.enforcement.policy import budget_of
from spendgate.store.budgets import store as budgets
from spendgate.store.keys import store as keys
from tests.support.admin_server import ADMIN_TOKEN, admin_settings
from tests.support.admin_traffic import PRICES, fold_through_ledger, known_month
from tests.support.ports import free_port

NOVEMBER = ["--from", "2026-11-01", "--to", "2026-11-30"]

LISTS: dict[str, tuple[list[str], Any]] = {
    "keys list": (["keys", "list", "--all"], lambda d: d["keys"]),
    "budgets list": (["budgets", "list"], lambda d: d["budgets"]),
    "sessions list": (["sessions", "list", *NOVEMBER], lambda d: d["lines"]),
    "report chargeback": (["report", "chargeback", "--by", "session", *NOVEMBER], lambda d: d["lines"]),
    "report cache": (["report", "cache", "--by", "cost-center", *NOVEMBER], lambda d: d["lines"]),
    "forecast": (["forecast", "--as-of", "2026-11-20"], lambda d: d),
    "alerts dead": (["alerts", "dead", "--all"], lambda d: d["dead_letters"]),
    "alerts list": (["alerts", "list"], lambda d: d["alerts"]),
}
"""Every list a read command prints, and where its rows are in its JSON."""
DOCUMENTS = {"budgets show", "sessions show", "policy dry-run", "forecast backtest", "policy guard", "policy ration",
             "policy suggest"}
"""Read commands that print one nested document: --format table|json (there are no rows for CSV)."""
THROUGH_API = {"keys list", "budgets list", "budgets show", "sessions list", "sessions show", "report chargeback",
               "report cache", "policy show", "alerts list", "alerts dead", "forecast", "policy guard",
               "policy ration", "policy suggest"}
"""Read commands whose data the admin API serves: each takes --api."""


def commands(command: click.Command = main, path: tuple[str, ...] = ()) -> Iterator[tuple[str, click.Command]]:
    yield " ".join(path), command
    if isinstance(command, click.Group):
        for name, sub in sorted(command.commands.items()):
            yield from commands(sub, (*path, name))


ALL = dict(commands())


def option(command: click.Command, name: str) -> click.Option | None:
    found = [p for p in command.params if isinstance(p, click.Option) and name in p.opts]
    return found[0] if found else None


def test_no_command_has_json_or_tz_flags() -> None:
    """No --json (it is --format json) and no --tz: a time zone is --timezone wherever one is taken. (A hidden
    alias is not a flag anyone is shown: `policy suggest --json` is kept because issue 13 spells it so.)"""
    for name, command in ALL.items():
        flags = {o for p in command.params if isinstance(p, click.Option) and not p.hidden for o in p.opts}
        assert not flags & {"--json", "--tz", "--time-zone"}, name
        assert all("zone" not in f or f == "--timezone" for f in flags), name


def test_every_command_that_writes_a_named_file_takes_force() -> None:
    """--out, --output and --save write a file the user names: each such command refuses to replace an
    existing one unless given --force (core.clitools.write_output_file)."""
    writers = {name for name, command in ALL.items()
               if any(option(command, flag) for flag in ("--out", "--output", "--save"))}
    assert {"policy suggest", "forecast report"} <= writers
    for name in writers:
        assert option(ALL[name], "--force") is not None, name


def test_every_read_command_takes_format_and_api_where_the_api_serves_it() -> None:
    """Lists take --format table|csv|json, documents table|json; what the admin API serves takes --api."""
    for name in LISTS:
        fmt = option(ALL[name], "--format")
        assert fmt is not None and isinstance(fmt.type, click.Choice), name
        assert list(fmt.type.choices) == ["table", "csv", "json"] and fmt.default == "table", name
    for name in DOCUMENTS:
        fmt = option(ALL[name], "--format")
        assert fmt is not None and isinstance(fmt.type, click.Choice), name
        assert list(fmt.type.choices) == ["table", "json"], name
    for name in THROUGH_API:
        api = option(ALL[name], "--api")
        assert api is not None and api.envvar == "SPENDGATE_ADMIN_URL", name


def test_by_values_are_spelt_as_the_filter_options() -> None:
    """`report … --by cost-center` matches `--cost-center`, for every report."""
    for name in ("report chargeback", "report cache"):
        by = option(ALL[name], "--by")
        assert by is not None and isinstance(by.type, click.Choice)
        for value in by.type.choices:
            assert option(ALL[name], f"--{value}") is not None or value == "session", (name, value)


def test_help_is_plain_text() -> None:
    """Every command's --help works and shows no reStructuredText (double backquotes, :roles:)."""
    runner = CliRunner()
    for name in ALL:
        result = runner.invoke(main, [*name.split(), "--help"])
        assert result.exit_code == 0, name
        assert "``" not in result.output and not re.search(r":(class|func|data|meth|mod):", result.output), name


async def test_data_dir_is_accepted_after_the_subcommand(db_url: str, tmp_path: Path, pool: asyncpg.Pool,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """`spendgate keys list --data-dir X` reads X's spendgate.yaml, as `spendgate --data-dir X keys list` does."""
    for name in ("SPENDGATE_DATABASE_URL", "SPENDGATE_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SPENDGATE_DATA_DIR", str(tmp_path / "elsewhere"))
    chosen = tmp_path / "chosen"
    chosen.mkdir()
    (chosen / "spendgate.yaml").write_text(f"database_url: '{db_url}'\n")
    await keys.create_key(pool, developer="alice", team="platform")
    runner = CliRunner()
    after = await asyncio.to_thread(runner.invoke, main, ["keys", "list", "--data-dir", str(chosen)])
    before = await asyncio.to_thread(runner.invoke, main, ["--data-dir", str(chosen), "keys", "list"])
    assert after.exit_code == before.exit_code == 0, after.output
    assert after.output == before.output and "alice" in after.output
    for args in (["budgets", "list"], ["report", "chargeback"], ["sessions", "list"]):
        done = await asyncio.to_thread(runner.invoke, main, [*args, "--data-dir", str(chosen)])
        assert done.exit_code == 0, (args, done.output)


@pytest.fixture
async def data(pool: asyncpg.Pool) -> None:
    """Keys (one revoked), budgets with a raise, and a month of Codex traffic folded by the ledger."""
    await fold_through_ledger(pool, known_month())
    for dev, team in (("alice", "platform"), ("bob", "platform"), ("carol", "payments")):
        await keys.create_key(pool, developer=dev, team=team, cost_center=f"CC-{team}")
    bob = next(k for k in await keys.list_keys(pool) if k.developer == "bob")
    await keys.revoke_key(pool, bob.key_id)
    await budgets.set_budget(pool, budget_of("team:platform", daily_micros=None, monthly_micros=400_000_000,
                                             timezone="Europe/Berlin"), actor="test")
    await budgets.set_budget(pool, budget_of("org", daily_micros=50_000_000, monthly_micros=900_000_000),
                             actor="test")
    from spendgate.domain.enforcement.policy import BudgetRaise

    await budgets.raise_budget(pool, BudgetRaise("org", 5_000_000, datetime(2099, 1, 1, tzinfo=UTC), "launch"),
                               actor="test")


def cli(db_url: str, tmp_path: Path, *args: str, **env: str) -> Result:
    base = {"SPENDGATE_DATABASE_URL": db_url, "SPENDGATE_DATA_DIR": str(tmp_path), "SPENDGATE_CONFIG": "",
            "SPENDGATE_ADMIN_TOKEN": ADMIN_TOKEN, "SPENDGATE_LOG_LEVEL": "error", "SPENDGATE_ADMIN_URL": ""}
    return CliRunner().invoke(main, list(args), env={**base, **env}, catch_exceptions=False)


NUMBER = re.compile(r"^(-|-?\$?\d{1,3}(,\d{3})*(\.\d+)?%?)$")
"""A cell of a number column: 1,234 or $0.0042 or 45.2% (or - for none)."""


def check_table(name: str, text: str) -> None:
    """≤ 120 columns, lower-case headers, text left-aligned and numbers right-aligned under their header."""
    lines = text.splitlines()
    assert all(len(line) <= 120 for line in lines), (name, max(map(len, lines)))
    assert lines[0] == lines[0].lower(), name
    spans = [(m.start(), m.end()) for m in re.finditer(r"-+", lines[1])]
    rows = [line.ljust(len(lines[1])) for line in lines[2:]]
    for start, end in spans:
        cells = [row[start:end].strip() for row in rows]
        if all(c == "-" for c in cells):
            continue
        numeric = all(NUMBER.match(c) for c in cells)
        for row in rows:
            assert row[end - 1 if numeric else start] != " ", (name, lines[0][start:end], row)


async def test_lists_agree_in_table_csv_and_json(db_url: str, tmp_path: Path, data: None) -> None:
    """For every list: CSV has JSON's fields in order (money as _usd), and the table fits 120 aligned columns."""
    for name, (args, rows_of) in LISTS.items():
        as_json = await asyncio.to_thread(cli, db_url, tmp_path, *args, "--format", "json")
        as_csv = await asyncio.to_thread(cli, db_url, tmp_path, *args, "--format", "csv")
        table = await asyncio.to_thread(cli, db_url, tmp_path, *args)
        assert as_json.exit_code == as_csv.exit_code == table.exit_code == 0, (name, as_json.output)
        rows = rows_of(json.loads(as_json.stdout))
        header = next(csv.reader(io.StringIO(as_csv.stdout)))
        if rows:
            assert [re.sub(r"_usd$", "_micros", h) for h in header] == list(rows[0]), name
            assert len(list(csv.reader(io.StringIO(as_csv.stdout)))) >= len(rows) + 1, name
        else:
            assert name in ("alerts dead", "alerts list"), f"{name} printed no rows"
        check_table(name, table.stdout.split("\n\n")[0].strip("\n"))


async def test_every_read_prints_the_same_through_the_admin_api(pool: asyncpg.Pool, db_url: str, tmp_path: Path,
                                                                data: None) -> None:
    """keys, budgets, sessions and the policy print byte for byte the same (stdout and stderr) with --api."""
    settings = admin_settings()
    runner = web.AppRunner(create_app(Deps(pool, settings, PRICES)))
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    session_id = json.loads((await asyncio.to_thread(
        cli, db_url, tmp_path, "sessions", "list", *NOVEMBER, "--format", "json")).stdout)["lines"][0]["group"]
    prefix = next(k for k in await keys.list_keys(pool) if k.developer == "alice").key_prefix
    try:
        for args in (["keys", "list"], ["keys", "list", "--all", "--format", "csv"], ["budgets", "list"],
                     ["budgets", "list", "--format", "json"], ["budgets", "show", "--scope", "org"],
                     ["budgets", "show", "--scope", "team:platform", "--format", "json"],
                     ["budgets", "show", "--scope", "team:nope"], ["budgets", "show", "--scope", f"key:{prefix}"],
                     ["sessions", "list", *NOVEMBER], ["sessions", "list", *NOVEMBER, "--developer", "alcie"],
                     ["sessions", "show", session_id], ["policy", "show"], ["policy", "show", "--format", "json"],
                     ["report", "chargeback", "--by", "cost-center", *NOVEMBER, "--format", "csv"],
                     ["alerts", "list", "--format", "csv"], ["alerts", "list", "--scope", f"key:{prefix}"],
                     ["alerts", "dead"], ["alerts", "dead", "--all", "--format", "json"]):
            direct = await asyncio.to_thread(cli, db_url, tmp_path, *args)
            via_api = await asyncio.to_thread(cli, db_url, tmp_path, *args, "--api", f"http://127.0.0.1:{port}")
            assert direct.exit_code == via_api.exit_code, (args, direct.output, via_api.output)
            assert (direct.stdout, direct.stderr) == (via_api.stdout, via_api.stderr), args
    finally:
        await runner.cleanup()


async def test_forecast_through_the_api_prints_the_forecasters_latest(pool: asyncpg.Pool, db_url: str,
                                                                     tmp_path: Path, data: None) -> None:
    """`forecast --api` prints the forecasts the worker stored, with when it computed them, in every format;
    `--as-of` (an audit computed now) needs the database and says so."""
    from spendgate.forecaster.engine import forecast_all
    from spendgate.store.forecasts import store as forecasts

    settings = admin_settings()
    computed_at = datetime(2026, 11, 21, 3, 0, tzinfo=UTC)
    async with pool.acquire() as conn:
        results = await forecast_all(conn, settings.forecast, computed_at, audit_day=date(2026, 11, 20))
        await forecasts.save_pass(conn, [(r.scope.scope, r.forecast) for r in results], computed_at)
    assert results
    runner = web.AppRunner(create_app(Deps(pool, settings, PRICES)))
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    api = f"http://127.0.0.1:{port}"
    try:
        doc = await asyncio.to_thread(cli, db_url, tmp_path, "forecast", "--api", api, "--format", "json")
        table = await asyncio.to_thread(cli, db_url, tmp_path, "forecast", "--api", api)
        one = await asyncio.to_thread(cli, db_url, tmp_path, "forecast", "--api", api, "--scope", "team:platform",
                                      "--format", "csv")
        audit = await asyncio.to_thread(cli, db_url, tmp_path, "forecast", "--api", api, "--as-of", "2026-11-20")
    finally:
        await runner.cleanup()
    assert doc.exit_code == table.exit_code == one.exit_code == 0, (doc.output, table.output, one.output)
    served = {f["scope"]: f for f in json.loads(doc.stdout)["forecasts"]}
    assert {s: f["p50_micros"] for s, f in served.items()} == {r.scope.scope: r.forecast.p50_micros for r in results}
    assert "computed" in table.stdout.splitlines()[0] and "2026-11-21 03:00" in table.stdout
    assert [r["scope"] for r in csv.DictReader(io.StringIO(one.stdout))] == ["team:platform"]
    assert audit.exit_code == 2 and "--as-of needs the database" in audit.output


def test_api_takes_only_an_http_url() -> None:
    """`--api notaurl` is a usage error on every command that takes it, before anything is read."""
    runner = CliRunner()
    for name, command in ALL.items():
        if option(command, "--api") is None:
            continue
        result = runner.invoke(main, [*name.split(), "--api", "notaurl"], env={"SPENDGATE_ADMIN_TOKEN": "t"})
        assert result.exit_code == 2, (name, result.output)
        assert "http://127.0.0.1:8081" in result.output and "Traceback" not in result.output, name
