"""The nightly report and the forecast commands against real PostgreSQL and a real SMTP server."""

from __future__ import annotations

import asyncio
import email
import email.policy
import io
import json
import re
import socket
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import asyncpg
import numpy as np
import pytest
from aiosmtpd.controller import Controller
from click.testing import CliRunner, Result
from PIL import Image

from spendgate.cli import main
from spendgate.core.bus.postgres import PostgresBus
from spendgate.core.config import Settings
from spendgate.core.config_services import ForecastSettings, SmtpSettings
from spendgate.forecaster.service import Forecaster
from tests.support import forecast_ledger
from tests.support.waiting import eventually


class Inbox:
    """aiosmtpd handler keeping every message it receives."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(email.message_from_bytes(envelope.content, policy=email.policy.default))  # type: ignore[arg-type]
        return "250 OK"


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    yield inbox, port
    controller.stop()


@pytest.fixture
async def ledger(pool: asyncpg.Pool) -> None:
    """Two teams with budgets and 3.5 months of weekday-heavy usage; bob's spend triples in the last week."""
    await forecast_ledger.seed(pool)


def check_png(data: bytes) -> None:
    """A PNG drawn for the report's 1,050 px column at 1.5x, wider than tall."""
    image = Image.open(io.BytesIO(data))
    image.load()
    assert image.format == "PNG" and image.size[0] >= 1500 and 300 < image.size[1] < image.size[0] / 2


async def test_nightly_report_arrives_by_smtp_with_inline_charts(
    pool: asyncpg.Pool, db_url: str, tmp_path: Path, ledger: None, smtp: tuple[Inbox, int]
) -> None:
    """The worker mails the report once a day: text and HTML parts, teams by risk then the org and developers,
    an inline PNG chart for every budgeted scope."""
    await pool.executemany("INSERT INTO budgets (scope, monthly_micros) VALUES ($1, $2)",
                           [("org", 9_000_000_000), ("developer:bob", 1_000_000_000)])
    inbox, port = smtp
    settings = Settings(database_url=db_url, data_dir=tmp_path, smtp=SmtpSettings(host="127.0.0.1", port=port),
                        forecast=ForecastSettings(paths=300, report_recipients=["finops@example.com"]))
    worker = Forecaster(pool, PostgresBus(pool, db_url), settings)
    now = datetime(2026, 3, 15, 7, tzinfo=UTC)
    assert await worker.maybe_send_report(now) is True
    await eventually(lambda: asyncio.sleep(0, len(inbox.messages)), what="report delivered")
    assert await worker.maybe_send_report(now + timedelta(hours=1)) is False

    msg = inbox.messages[0]
    assert msg["To"] == "finops@example.com" and "March 2026" in msg["Subject"]
    assert "of 4 budgets over at P50" in msg["Subject"]
    text = msg.get_body(preferencelist=("plain",))
    html = msg.get_body(preferencelist=("html",))
    assert text is not None and html is not None
    body = html.get_content()
    assert "Teams by risk" in body and body.index("<td class='l'>platform</td>") < body.index("<td class='l'>web</td>")
    assert body.index("Teams by risk") < body.index("The organisation") < body.index("Developers by risk")
    assert "Teams by risk" in text.get_content() and "bob" in text.get_content()
    platform = body[body.index("<h3>team platform</h3>"):body.index("<h3>team web</h3>")]
    assert platform.index("bob") < platform.index("alice")  # the driver of the change comes first
    sessions = platform[platform.index("Costliest sessions"):]
    assert re.findall(r"<td class='l'>(s-[a-z]+)-\d{4}</td>", sessions)[0] == "s-bob"
    cids = re.findall(r"src='cid:([^']+)'", body)
    images = {part["Content-ID"].strip("<>"): part.get_content() for part in msg.walk()
              if part.get_content_type() == "image/png"}
    assert len(cids) == 4 and set(cids) == set(images) and "<svg" not in body  # mail clients show PNG, not SVG
    for data in images.values():
        check_png(data)
    assert await pool.fetchval("SELECT sent_at IS NOT NULL FROM forecast_reports WHERE report_date = $1",
                               now.date())


def invoke(db_url: str, tmp_path: Path, *args: str) -> Result:
    env = {"SPENDGATE_DATABASE_URL": db_url, "SPENDGATE_DATA_DIR": str(tmp_path), "SPENDGATE_LOG_LEVEL": "error"}
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


async def test_report_out_writes_a_page_with_inline_svg_charts(
    db_url: str, tmp_path: Path, ledger: None
) -> None:
    """`forecast report --out` writes one HTML page: each scope's chart inline as SVG, wide and phone-sized."""
    out = tmp_path / "report.html"
    result = await asyncio.to_thread(invoke, db_url, tmp_path, "forecast", "report", "--as-of", "2026-03-14",
                                     "--out", str(out))
    assert result.exit_code == 0, result.output
    html = out.read_text()
    assert html.count('class="chart wide"') == 2 and html.count('class="chart narrow"') == 2
    assert "data:image" not in html and "<?xml" not in html
    assert re.findall(r"<figure data-scope='([^']+)'", html) == ["team:platform", "team:web"]
    again = await asyncio.to_thread(invoke, db_url, tmp_path, "forecast", "report", "--as-of", "2026-03-14",
                                    "--out", str(out))
    assert again.exit_code == 1 and "already exists: pass --force" in again.output, again.output
    out.write_text("old")
    forced = await asyncio.to_thread(invoke, db_url, tmp_path, "forecast", "report", "--as-of", "2026-03-14",
                                     "--out", str(out), "--force")
    assert forced.exit_code == 0 and out.read_text() == html, forced.output


async def test_forecast_as_of_sees_the_ledger_as_it_stood_that_day(
    pool: asyncpg.Pool, db_url: str, tmp_path: Path, ledger: None
) -> None:
    """`forecast --as-of D --format json` sums events up to the end of D; later events do not change it."""
    args = ("forecast", "--as-of", "2026-03-10", "--format", "json", "--scope", "team:platform")
    before = await asyncio.to_thread(invoke, db_url, tmp_path, *args)
    assert before.exit_code == 0, before.output
    [row] = json.loads(before.stdout)
    spent = await pool.fetchval(
        """SELECT sum(cost_micros) FROM usage_events WHERE team = 'platform'
           AND occurred_at >= '2026-03-01T00:00Z' AND occurred_at < '2026-03-11T00:00Z'""")
    assert (row["scope"], row["as_of"], row["actual_micros"]) == ("team:platform", "2026-03-10", spent)
    assert row["p10_micros"] <= row["p50_micros"] <= row["p90_micros"] and row["budget_micros"] == 2_000_000_000
    await forecast_ledger.add_events(
        pool, [forecast_ledger.event_row(datetime(2026, 3, 11, 0, 0, 1, tzinfo=UTC), "platform", "bob", 10**9)])
    after = await asyncio.to_thread(invoke, db_url, tmp_path, *args)
    assert json.loads(after.stdout) == [row]
    table = await asyncio.to_thread(invoke, db_url, tmp_path, "forecast", "--as-of", "2026-03-10")
    assert "team:platform" in table.stdout and "team:web" in table.stdout and "p50" in table.stdout


def test_backtest_command_scores_a_users_csv(tmp_path: Path) -> None:
    """`forecast backtest --series` prints coverage and pinball for any date,cost_usd file, vs the run-rate."""
    rng = np.random.default_rng(5)
    shape = [100, 110, 110, 105, 90, 25, 20]
    lines = ["date,cost_usd"]
    day = date(2025, 1, 1)
    for _ in range(300):
        lines.append(f"{day},{shape[day.weekday()] * rng.lognormal(0, 0.25):.2f}")
        day += timedelta(days=1)
    path = tmp_path / "daily.csv"
    path.write_text("\n".join(lines) + "\n")
    result = CliRunner().invoke(main, ["forecast", "backtest", "--series", str(path), "--format", "json",
                                       "--paths", "300"])
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout)
    assert metrics["months"] == 7 and 70 <= metrics["coverage_pct"] <= 92
    assert metrics["pinball_mean_pct"] < metrics["runrate_pinball_mean_pct"]
    text = CliRunner().invoke(main, ["forecast", "backtest", "--series", str(path), "--paths", "300"])
    assert "P10-P90 coverage" in text.stdout and "run-rate" in text.stdout
    bad = tmp_path / "bad.csv"
    bad.write_text("date,cost_usd\n2025-01-01,12.50\n2025-01-02,twelve\n")
    failed = CliRunner().invoke(main, ["forecast", "backtest", "--series", str(bad)])
    assert failed.exit_code != 0 and "bad.csv:3" in failed.output


def _series_csv(path: Path, first: date, days: int, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    shape = [100, 110, 110, 105, 90, 25, 20]
    rows = ["date,cost_usd"] + [f"{first + timedelta(days=i)},"
                                f"{shape[(first + timedelta(days=i)).weekday()] * rng.lognormal(0, 0.25):.2f}"
                                for i in range(days)]
    path.write_text("\n".join(rows) + "\n")
    return path


def test_backtest_works_from_four_weeks_of_history_and_says_which_warm_up(tmp_path: Path) -> None:
    """A new customer has one or two months: a two-month export mid-month to mid-month is scored on its one
    whole month from the day four weeks of history precede a forecast, and says so; shorter is refused."""
    two_months = _series_csv(tmp_path / "two.csv", date(2026, 9, 15), 61, seed=3)  # 15 Sep - 14 Nov
    result = CliRunner().invoke(main, ["forecast", "backtest", "--series", str(two_months), "--format", "json",
                                       "--paths", "200"])
    assert result.exit_code == 0, result.output
    m = json.loads(result.stdout)
    assert (m["months"], m["warmup_days"], m["warmup"]) == (1, 28, "origins after the warm-up")
    assert m["origins"] == 19  # at the end of 12 October (28 days of history since 15 September) to the 30th
    text = CliRunner().invoke(main, ["forecast", "backtest", "--series", str(two_months), "--paths", "200"])
    assert "28 days of history before each scored forecast" in text.stdout
    assert "n/a: no whole month has four weeks" in text.stdout
    long = _series_csv(tmp_path / "long.csv", date(2026, 1, 1), 150, seed=4)
    assert json.loads(CliRunner().invoke(main, ["forecast", "backtest", "--series", str(long), "--format", "json",
                                                "--paths", "100"]).stdout)["warmup_days"] == 56
    short = _series_csv(tmp_path / "short.csv", date(2026, 9, 15), 40, seed=5)  # no whole month
    refused = CliRunner().invoke(main, ["forecast", "backtest", "--series", str(short)])
    assert refused.exit_code != 0 and "needs one whole calendar month" in refused.output
