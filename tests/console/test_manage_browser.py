"""The console's pages that change things, driven in Debian's Chromium (Playwright) as the break-glass
admin: set a budget, add a raise, create a key (its secret shown once) and revoke it, replay a dead letter
all the way to the receiver through a running alerter, dry-run an uploaded proposal and apply it.
Screenshots at 1280 px and at phone width (375 px) are kept as test artifacts."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
from aiohttp.test_utils import TestClient
from playwright.async_api import BrowserContext, Page
from pydantic import SecretStr

from spendgate.store.alerts import store as alerts_store
from spendgate.store.budgets import store as budgets_store
from spendgate.store.keys import store as keys_store
from tests.support.admin_server import ADMIN_TOKEN, auth
from tests.support.alerts import Receivers, running_alerter, seed_usage, settings_for
from tests.support.browser import chromium
from tests.support.manage import console_as, seed_dead_letter
from tests.support.waiting import eventually

USD = 1_000_000
WIDE = {"width": 1280, "height": 900}
PHONE = {"width": 375, "height": 812}
Artifact = Callable[[str], Path]
UNLABELLED = """Array.from(document.querySelectorAll("input, select, textarea, button"))
  .filter(e => e.type !== "hidden" && !e.hidden && !(e.labels && e.labels.length)
               && !e.getAttribute("aria-label") && !(e.tagName === "BUTTON" && e.textContent.trim()))
  .map(e => e.outerHTML.slice(0, 80))"""
WIDER_THAN_SCREEN = """Array.from(document.querySelectorAll("body *"))
  .filter(e => !e.closest(".table-wrap") && e.getBoundingClientRect().right > window.innerWidth + 1)
  .slice(0, 5).map(e => e.tagName + "." + e.className + " " + Math.round(e.getBoundingClientRect().right))"""


def base(client: TestClient) -> str:  # type: ignore[type-arg]
    return str(client.make_url("")).rstrip("/")


async def screenshots(context: BrowserContext, url: str, name: str, artifact: Artifact) -> None:
    """The page at 1280 px and at 375 px; at phone width nothing may be wider than the screen but tables,
    which scroll inside their own box."""
    for viewport in (WIDE, PHONE):
        page = await context.new_page()
        await page.set_viewport_size(viewport)
        await page.goto(url)
        overflow = await page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        wide = await page.evaluate(WIDER_THAN_SCREEN)
        assert overflow <= 1, f"{name} is {overflow}px wider than a {viewport['width']}px screen: {wide}"
        assert await page.evaluate(UNLABELLED) == [], f"{name} has controls without a label"
        await page.screenshot(path=artifact(f"console-manage/{name}-{viewport['width']}px.png"), full_page=True)
        await page.close()


async def test_budget_raise_and_key_in_chromium(pool: asyncpg.Pool, artifact: Artifact) -> None:
    """An admin sets a budget and a raise from the forms, creates a key whose secret the result page shows
    once (stored hashed, never on the list again), then revokes it after a confirmation dialog."""
    async with console_as(pool) as client, chromium() as browser:
        context = await browser.new_context(extra_http_headers=auth(), viewport=WIDE)
        page = await context.new_page()
        await page.goto(f"{base(client)}/budgets")
        budget_form = page.locator('form[action="/budgets/set"]')
        await budget_form.get_by_label("Scope kind").select_option("team")
        await budget_form.get_by_label("Name").fill("platform")
        await budget_form.get_by_label("Monthly (USD)").fill("2500")
        await budget_form.get_by_role("button", name="Set budget").click()
        await page.wait_for_url("**/budgets?done=set*")
        assert "Budget set for team:platform." in await page.get_by_role("status").inner_text()
        stored = await budgets_store.get_budget(pool, "team:platform")
        assert stored is not None and stored.monthly_micros == 2500 * USD

        raise_form = page.locator('form[action="/budgets/raise"]')
        await raise_form.get_by_label("Scope kind").select_option("team")
        await raise_form.get_by_label("Name").fill("platform")
        await raise_form.get_by_label("By (USD)").fill("300")
        await raise_form.get_by_label("Until (UTC)").fill("2026-12-04T18:00")
        await raise_form.get_by_label("Reason").fill("launch week")
        await raise_form.get_by_role("button", name="Add raise").click()
        await page.wait_for_url("**/budgets?done=raised*")
        assert "launch week" in await page.locator("#raises-table").inner_text()
        month = page.locator("#budgets-table tr", has_text="month")
        assert "$2,800.00" in await month.inner_text()

        first = await page.evaluate("document.activeElement.tagName")
        await page.keyboard.press("Tab")
        assert (first, await page.evaluate("document.activeElement.textContent")) == ("BODY", "Skip to content")
        sort = page.get_by_role("button", name="Sort by Spent")
        await sort.focus()
        await page.keyboard.press("Enter")  # the column headers sort from the keyboard
        assert await page.locator("#budgets-table th", has=sort).get_attribute("aria-sort") == "ascending"
        await page.get_by_label("Filter budgets").fill("no-such-scope")
        assert await page.locator("#budgets-table tbody tr:visible").count() == 0

        key_form = page.locator('form[action="/budgets/keys/create"]')
        await key_form.get_by_label("Developer").fill("ada")
        await key_form.get_by_label("Team", exact=True).fill("platform")
        await key_form.get_by_role("button", name="Create key").click()
        secret = (await page.locator("#secret").inner_text()).strip()
        assert keys_store.looks_like_key(secret) and secret not in page.url
        (key,) = await keys_store.list_keys(pool)
        assert bytes(await pool.fetchval("SELECT key_hash FROM virtual_keys")) == keys_store.hash_secret(secret)

        await page.get_by_role("link", name="Back to budgets and keys").click()
        assert secret not in await page.content()
        await screenshots(context, f"{base(client)}/budgets", "budgets", artifact)
        page.once("dialog", lambda dialog: dialog.accept())
        await page.get_by_role("button", name=f"Revoke ada's key {key.key_prefix}").click()
        await page.wait_for_url("**/budgets?done=revoked*")
        revoked = await keys_store.get_key(pool, key.key_id)
        assert revoked is not None and revoked.revoked_at is not None
        await context.close()


ROUTES = """targets:
  slack:platform-em: {{url: "{url}"}}
routes:
  - name: platform-em
    match: {{team: platform}}
    notify: [slack:platform-em]
"""


async def test_a_dead_letter_replayed_in_chromium_reaches_the_receiver(
        pool: asyncpg.Pool, db_url: str, tmp_path: Path, artifact: Artifact) -> None:
    """The dead letter's Replay button hands it back to the running alerter, which delivers it to the
    receiver that is up again; the page then lists no dead letter and shows the route in force."""
    await seed_dead_letter(pool, target="slack:platform-em")
    async with Receivers() as rx:
        settings = settings_for(db_url, tmp_path, ROUTES.format(url=rx.url("slack")))
        settings = settings.model_copy(update={"admin_token": SecretStr(ADMIN_TOKEN)})
        async with running_alerter(settings, pool, db_url), console_as(pool, settings=settings) as client, \
                chromium() as browser:
            context = await browser.new_context(extra_http_headers=auth(), viewport=WIDE)
            page = await context.new_page()
            await page.goto(f"{base(client)}/alerts")
            assert "platform-em" in await page.locator("#routes-table").inner_text()
            await screenshots(context, f"{base(client)}/alerts", "alerts", artifact)
            await page.get_by_role("button", name="Replay dead letter").click()
            await page.wait_for_url("**/alerts?replayed_now=1")
            await eventually(lambda: rx.count_delivered("slack"), what="the replayed alert at the receiver")
            assert b"team:platform is paused" in rx.delivered("slack")[0].body
            await eventually(lambda: alerts_store.dead_letters(pool), until=lambda d: d == [],
                             what="the dead letter marked replayed")
            await page.reload()
            assert "No dead letters." in await page.locator("#dead-table").inner_text()
            await context.close()


PROPOSAL = """budgets:
  - scope: team:platform
    monthly: "3"
"""


async def _upload_and_dry_run(page: Page, proposal: Path) -> None:
    await page.get_by_label("Or upload a proposal file").set_input_files(proposal)
    await page.get_by_label("Days of traffic").fill("30")
    await page.get_by_role("button", name="Dry-run").click()
    await page.wait_for_url("**/policy/dry-run")


async def test_an_uploaded_proposal_is_dry_run_then_applied_in_chromium(
        pool: asyncpg.Pool, tmp_path: Path, artifact: Artifact) -> None:
    """The uploaded file is replayed over the stored traffic ($8 actual); Apply needs its checkbox
    (the browser will not send the form without it), then the proposal's budget is live."""
    for i in range(4):
        await seed_usage(pool, session_id=f"s{i}", repo="r", cost_micros=2 * USD,
                         at=datetime(2026, 11, 20 + i, tzinfo=UTC))
    proposal = tmp_path / "proposal.yaml"
    proposal.write_text(PROPOSAL)
    async with console_as(pool) as client, chromium() as browser:
        context = await browser.new_context(extra_http_headers=auth(), viewport=WIDE)
        await screenshots(context, f"{base(client)}/policy", "policy", artifact)
        page = await context.new_page()
        await page.goto(f"{base(client)}/policy")
        await _upload_and_dry_run(page, proposal)
        assert await page.locator("#dry-actual").inner_text() == "$8.00"
        assert "team:platform" in await page.locator("#dry-scopes").inner_text()
        await page.screenshot(path=artifact("console-manage/policy-dry-run-1280px.png"), full_page=True)
        await page.get_by_role("button", name="Apply").click()
        assert await budgets_store.get_budget(pool, "team:platform") is None  # the checkbox is required
        await page.get_by_label("I have read this dry-run").check()
        await page.get_by_role("button", name="Apply").click()
        await page.wait_for_url("**/policy/apply")
        assert "The proposal is live." in await page.get_by_role("status").inner_text()
        budget = await budgets_store.get_budget(pool, "team:platform")
        assert budget is not None and budget.monthly_micros == 3 * USD
        await context.close()
