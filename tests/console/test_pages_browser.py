"""The reading pages in Debian's Chromium: the burndown chart is drawn with its series, legend and today
marker and answers hover; tables sort and filter from the keyboard; every page is screenshotted at 1280 px
and at phone width (375 px) into the test artifacts."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, ViewportSize

from spendgate.domain.events import UsageRecorded
from tests.support.admin_server import admin_client, auth
from tests.support.browser import chromium
from tests.support.console_data import NOW, QUERY, seeded_console
from tests.support.postgres import PostgresForTests

PAGES = {
    "overview": "/",
    "teams": "/teams" + QUERY,
    "team": "/teams/platform" + QUERY,
    "developers": "/developers" + QUERY,
    "developer": "/developers/alice" + QUERY,
    "sessions": "/sessions" + QUERY,
    "session": "/sessions/sess-today-bob?developer=bob",
    "cache": "/cache" + QUERY,
}
WIDTHS: dict[str, ViewportSize] = {"desktop": {"width": 1280, "height": 900}, "phone": {"width": 375, "height": 812}}


@pytest.fixture(scope="module")
async def served(postgres_server: PostgresForTests) -> AsyncIterator[tuple[str, list[UsageRecorded]]]:
    async with seeded_console(postgres_server) as (pool, month), admin_client(pool, now=NOW) as client:
        yield str(client.make_url("")).rstrip("/"), month


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with chromium() as b:
        yield b


@pytest.fixture
async def tab(browser: Browser) -> AsyncIterator[Page]:
    context = await browser.new_context(extra_http_headers=auth(), viewport=WIDTHS["desktop"])
    try:
        yield await context.new_page()
    finally:
        await context.close()


async def open_page(tab: Page, base: str, path: str) -> None:
    errors: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    tab.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    resp = await tab.goto(base + path)
    assert resp is not None and resp.status == 200, path
    await tab.wait_for_load_state("load")
    assert errors == [], (path, errors)


CHART = """() => {
  const el = document.querySelector('[data-chart=burndown]');
  if (!el || !el.uplot) return null;
  const u = el.uplot;
  return {labels: u.series.map(s => s.label), bands: u.bands.length, today: el.dataset.todayX || null,
          legend: Array.from(el.querySelectorAll('.u-legend .u-series th')).map(t => t.textContent.trim()),
          width: el.getBoundingClientRect().width, timeAxis: u.scales.x.time};
}"""


async def test_the_overview_draws_the_burndown_with_band_budget_and_today(
        served: tuple[str, list[UsageRecorded]], tab: Page) -> None:
    """uPlot draws spent, P10, P50, P90 and budget on a time axis with the P10-P90 band filled, a legend
    naming each series, the today marker, and shows the values under the pointer."""
    base, _ = served
    await open_page(tab, base, "/")
    await tab.wait_for_function("() => document.querySelector('[data-chart=burndown]')?.dataset.todayX")
    chart = await tab.evaluate(CHART)
    assert chart["labels"] == ["Day", "Spent", "P10", "P50", "P90", "Budget"]
    assert chart["bands"] == 1 and chart["timeAxis"] is True and chart["today"] is not None
    assert [name for name in ("Spent", "P50", "Budget") if any(name in t for t in chart["legend"])] == \
        ["Spent", "P50", "Budget"]
    box = await tab.locator("[data-chart=burndown] .u-over").bounding_box()
    assert box is not None
    await tab.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.5)
    spent_value = tab.locator("[data-chart=burndown] .u-legend .u-series").nth(1).locator(".u-value")
    await spent_value.wait_for()
    assert (await spent_value.text_content() or "").startswith("$")


async def test_tables_sort_and_filter_from_the_keyboard(served: tuple[str, list[UsageRecorded]], tab: Page) -> None:
    """Tab to the Cost header and press Enter: ascending, aria-sort says so; Enter again: descending. Typing
    in the labelled filter hides the rows that do not match."""
    base, _ = served
    await open_page(tab, base, "/teams/platform" + QUERY)
    header = tab.locator("#developers th", has_text="Cost")
    await header.focus()
    await tab.keyboard.press("Enter")
    assert await header.get_attribute("aria-sort") == "ascending"
    costs = [int(v) for v in await tab.locator("#developers tbody td:nth-child(4)").evaluate_all(
        "cells => cells.map(c => c.dataset.sort)")]
    assert costs == sorted(costs) and len(costs) == 2
    await tab.keyboard.press("Enter")
    assert await header.get_attribute("aria-sort") == "descending"
    costs = [int(v) for v in await tab.locator("#developers tbody td:nth-child(4)").evaluate_all(
        "cells => cells.map(c => c.dataset.sort)")]
    assert costs == sorted(costs, reverse=True)

    search = tab.get_by_label("Filter top sessions")
    await search.focus()
    await tab.keyboard.type("today")
    visible = await tab.locator("#sessions tbody tr:not([hidden])").count()
    assert visible == 1 and await tab.locator("#sessions tbody tr").count() > 1
    assert "1 of" in (await tab.locator('[data-count-for="sessions"]').text_content() or "")


@pytest.mark.parametrize("width", list(WIDTHS))
async def test_every_page_renders_at_desktop_and_phone_width(
        served: tuple[str, list[UsageRecorded]], browser: Browser, width: str,
        artifact: Callable[[str], Path]) -> None:
    """Each page loads without a script error, keeps its content within the screen (tables scroll inside
    their own box), and is saved as a screenshot."""
    base, _ = served
    context = await browser.new_context(extra_http_headers=auth(), viewport=WIDTHS[width])
    try:
        tab = await context.new_page()
        for name, path in PAGES.items():
            await open_page(tab, base, path)
            overflow = await tab.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
            assert overflow <= 1, (name, width, overflow)
            assert await tab.locator("h1").count() == 1
            await tab.screenshot(path=str(artifact(f"console/{name}-{width}.png")), full_page=True)
    finally:
        await context.close()
