"""The report's charts as a browser shows them: headless Chromium renders the HTML page, and each chart's
drawn parts, read back from the SVG in the page, must say what the forecast says.

Dollars come from the picture itself: the budget line and the x axis at $0 (both located by id) are two
reference heights on the same axes, so a point's height converts to dollars by proportion; the $0 line
also spans the month from its start to its end, which converts a point's x to days.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from playwright.async_api import Page

from spendgate.core.config import Settings
from spendgate.core.config_services import ForecastSettings
from spendgate.domain.forecast import Forecast
from spendgate.forecaster.chart import chart_id
from spendgate.forecaster.engine import forecast_all
from spendgate.forecaster.render import report_html
from spendgate.forecaster.report import build_report
from tests.integration.test_forecast_report import invoke
from tests.support import forecast_ledger
from tests.support.browser import chromium

CENT_USD = 0.01
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}

READ_CHART = """(cid) => {
  const svg = document.getElementById(cid);
  if (!svg) return null;
  const box = svg.getBoundingClientRect();
  const part = (name) => {
    const path = document.querySelector(`[id="${cid}-${name}"] path`);
    return path ? path.getAttribute("d") : null;
  };
  return {shown: box.width > 0 && box.height > 0, width_px: box.width,
          parts: Object.fromEntries(["actual", "band", "p50", "budget", "zero", "crossing"].map(n => [n, part(n)]))};
}"""


def points(d: str) -> list[tuple[float, float]]:
    """The vertices of an SVG path as matplotlib writes it (M/L commands, optionally closed with z)."""
    numbers = [float(n) for n in re.findall(r"-?\d+(?:\.\d+)?(?:e-?\d+)?", d)]
    return list(zip(numbers[::2], numbers[1::2], strict=True))


@dataclass(frozen=True)
class DrawnChart:
    """One chart's parts in SVG user coordinates, and the conversions the reference lines give."""

    parts: dict[str, list[tuple[float, float]]]
    closed: dict[str, bool]
    budget_usd: float
    days_in_month: int

    def usd(self, y: float) -> float:
        zero_y, budget_y = self.parts["zero"][0][1], self.parts["budget"][0][1]
        return self.budget_usd * (y - zero_y) / (budget_y - zero_y)

    def day(self, x: float) -> float:
        (start_x, _), (end_x, _) = self.parts["zero"][0], self.parts["zero"][-1]
        return self.days_in_month * (x - start_x) / (end_x - start_x)


async def read_chart(page: Page, scope: str, fc: Forecast, *, narrow: bool = False) -> DrawnChart:
    cid = chart_id(scope) + ("-narrow" if narrow else "")
    found: dict[str, Any] | None = await page.evaluate(READ_CHART, cid)
    assert found is not None, f"no chart {cid} in the page"
    assert found["shown"], f"chart {cid} is not displayed at this width"
    assert fc.budget_micros is not None
    drawn = {name: d for name, d in found["parts"].items() if d is not None}
    parts = {name: points(d) for name, d in drawn.items()}
    return DrawnChart(parts, {name: d.rstrip().endswith("z") for name, d in drawn.items()}, fc.budget_micros / 1e6, 31)


def check_against_forecast(chart: DrawnChart, fc: Forecast, now_day: float) -> None:
    """The fan opens at the last actual point, at today's spend; the P50 path ends at month end at P50."""
    p50, actual, band = chart.parts["p50"], chart.parts["actual"], chart.parts["band"]
    assert abs(chart.usd(p50[-1][1]) - fc.p50_micros / 1e6) <= CENT_USD
    assert chart.day(p50[-1][0]) == pytest.approx(chart.days_in_month, abs=1e-3)
    assert p50[0] == pytest.approx(actual[-1], abs=1e-4)  # the same point, to the SVG's 6 decimals
    assert abs(chart.usd(actual[-1][1]) - fc.actual_micros / 1e6) <= CENT_USD
    assert chart.day(actual[-1][0]) == pytest.approx(now_day, abs=1e-3)
    # The band is one closed polygon: along P90 from the fan's apex to month end, back along P10, closed to
    # the apex; so it opens at the last actual point and is widest at month end, between P10 and P90.
    assert band[0] == pytest.approx(actual[-1], abs=1e-4) and chart.closed["band"]
    month_end = [y for x, y in band if chart.day(x) == pytest.approx(chart.days_in_month, abs=1e-3)]
    assert len(month_end) == 2
    assert chart.usd(min(month_end)) == pytest.approx(fc.p90_micros / 1e6, abs=CENT_USD)  # SVG y grows downwards
    assert chart.usd(max(month_end)) == pytest.approx(fc.p10_micros / 1e6, abs=CENT_USD)
    if fc.p50_crosses_on is None:
        assert "crossing" not in chart.parts
    else:
        crossing_day = chart.day(chart.parts["crossing"][0][0])
        assert fc.p50_crosses_on.day - 1 < crossing_day <= fc.p50_crosses_on.day


@pytest.fixture
async def ledger(pool: asyncpg.Pool) -> None:
    """Two teams with budgets and 3.5 months of weekday-heavy usage; bob's spend triples in the last week."""
    await forecast_ledger.seed(pool)


async def test_report_page_in_chromium_draws_each_forecast(
    db_url: str, tmp_path: Path, ledger: None, artifact: Callable[[str], Path]
) -> None:
    """In the `forecast report --out` page each chart's P50 path ends at `forecast --format json`'s P50 and its
    fan opens at the actual spend, at desktop and phone widths; screenshots are kept as artifacts."""
    out = artifact("forecast-report/report-as-of-2026-03-14.html")
    made = await asyncio.to_thread(invoke, db_url, tmp_path, "forecast", "report", "--as-of", "2026-03-14",
                                   "--out", str(out), "--force")  # the artifact of the run before is replaced
    assert made.exit_code == 0, made.output
    listed = await asyncio.to_thread(invoke, db_url, tmp_path, "forecast", "--as-of", "2026-03-14", "--format",
                                     "json")
    forecasts = {row["scope"]: row for row in json.loads(listed.stdout)
                 if row["budget_micros"] is not None}  # unbudgeted scopes are forecast, not in the report
    assert set(forecasts) == {"team:platform", "team:web"}
    async with chromium() as browser:
        for viewport, narrow in ((DESKTOP, False), (PHONE, True)):
            page = await browser.new_page(viewport=viewport)
            await page.goto(out.as_uri())
            for scope, row in forecasts.items():
                fc = _forecast_of(row)
                chart = await read_chart(page, scope, fc, narrow=narrow)
                check_against_forecast(chart, fc, now_day=14.0)
            await page.screenshot(path=artifact(f"forecast-report/report-{viewport['width']}px.png"), full_page=True)
            await page.close()


async def test_live_report_fan_opens_at_todays_partial_spend(
    pool: asyncpg.Pool, db_url: str, tmp_path: Path, ledger: None, artifact: Callable[[str], Path]
) -> None:
    """The 07:00 report counts the spend of today's first hours: the fan opens at 7/24 of the 15th, at the
    actual spend, not at the end of the day above it; developer and org budgets get charts too."""
    await forecast_ledger.add_events(
        pool, [forecast_ledger.event_row(datetime(2026, 3, 15, 3, tzinfo=UTC), "platform", "bob", 70_000_000)])
    await forecast_ledger.fold_balances(pool)
    await pool.executemany("INSERT INTO budgets (scope, monthly_micros) VALUES ($1, $2)",
                           [("org", 9_000_000_000), ("developer:bob", 1_500_000_000)])
    settings = Settings(database_url=db_url, data_dir=tmp_path, forecast=ForecastSettings(paths=300))
    now = datetime(2026, 3, 15, 7, tzinfo=UTC)
    async with pool.acquire() as conn:
        report = await build_report(conn, settings, now, formats=("svg",))
        forecasts = {r.scope.scope: r.forecast for r in await forecast_all(conn, settings.forecast, now)
                     if r.forecast.budget_micros is not None}  # the report's: the budgeted scopes
    assert set(forecasts) == {"team:platform", "team:web", "org", "developer:bob"}
    page_file = artifact("forecast-report/report-live-2026-03-15T07.html")
    page_file.write_text(report_html(report))
    async with chromium() as browser:
        page = await browser.new_page(viewport=DESKTOP)
        await page.goto(page_file.as_uri())
        for scope, fc in forecasts.items():
            chart = await read_chart(page, scope, fc)
            check_against_forecast(chart, fc, now_day=14 + 7 / 24)
        await page.screenshot(path=artifact("forecast-report/report-live-1280px.png"), full_page=True)


def _forecast_of(row: dict[str, Any]) -> Forecast:
    """The parts of `forecast --format json`'s row the chart is checked against."""
    crosses = row["p50_crosses_on"]
    return Forecast(
        month=datetime.fromisoformat(row["month"]).date(), as_of=datetime.fromisoformat(row["as_of"]).date(),
        actual_micros=row["actual_micros"], p10_micros=row["p10_micros"], p50_micros=row["p50_micros"],
        p90_micros=row["p90_micros"], budget_micros=row["budget_micros"], p10_crosses_on=None,
        p50_crosses_on=None if crosses is None else datetime.fromisoformat(crosses).date(), p90_crosses_on=None,
        model=row["model"], band=())
