"""Issue 14's whole journey in one browser session: sign in through a real OpenID Connect provider, open
every page over a month folded by the real ledger, check a figure against the chargeback report, create
and revoke a key, set a budget, replay a dead letter, and find each change on the Audit page under the
signed-in identity."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from pathlib import Path
from urllib.parse import quote

import asyncpg

from spendgate.admin.deps import DEPS
from spendgate.admin.reports import chargeback
from spendgate.admin.window import Window
from spendgate.domain.money import format_usd
from spendgate.store.budgets import store as budgets_store
from spendgate.store.keys import store as keys_store
from tests.support.admin_server import NOW
from tests.support.browser import chromium
from tests.support.console_data import seed_console
from tests.support.manage import seed_dead_letter
from tests.support.oidc import MockIdP, console_client


async def test_an_admin_signs_in_reads_every_page_and_every_change_is_audited_as_them(
        pool: asyncpg.Pool, idp: MockIdP, artifact: Callable[[str], Path]) -> None:
    events = await seed_console(pool)
    await seed_dead_letter(pool, target="slack:platform-em")
    await idp.set_user("ada", name="Ada Admin", groups=["sg-admins"])
    session = max((e for e in events if e.session_id), key=lambda e: e.cost_micros)
    async with console_client(pool, idp) as client, chromium() as browser:
        base = str(client.make_url("")).rstrip("/")
        page = await (await browser.new_context(viewport={"width": 1280, "height": 900})).new_page()
        page.on("dialog", lambda dialog: dialog.accept())
        await page.goto(f"{base}/")
        assert page.url.startswith(idp.url)
        await page.fill("input[name=sub]", "ada")
        await page.click("button[type=submit]:has-text('Authorize')")
        await page.wait_for_url(f"{base}/")
        assert (await page.text_content("header .who") or "").strip() == "Ada Admin · admin"

        pages = ["/", "/teams", "/teams/platform", "/developers", f"/developers/{session.developer}", "/sessions",
                 f"/sessions/{quote(session.session_id or '')}?developer={session.developer}", "/cache",
                 "/policy", "/budgets", "/alerts", "/audit"]
        for path in pages:
            answer = await page.goto(f"{base}{path}")
            assert answer is not None and answer.status == 200, path
            assert await page.locator("main h1").count() == 1, path

        # The team list's spend is the chargeback report's, to the cent.
        window = Window.of(date(2026, 11, 1), date(2026, 11, 30), tz="UTC", now=NOW)
        async with pool.acquire() as conn:
            report = await chargeback(conn, client.app[DEPS].prices, by="team", window=window)
        platform = next(line for line in report.lines if line.group == "platform")
        await page.goto(f"{base}/teams?from=2026-11-01&to=2026-11-30")
        row = page.locator("table tr", has=page.get_by_role("link", name="platform", exact=True))
        assert format_usd(platform.cost_micros) in await row.first.inner_text()

        await page.goto(f"{base}/budgets")
        budget_form = page.locator('form[action="/budgets/set"]')
        await budget_form.get_by_label("Scope kind").select_option("team")
        await budget_form.get_by_label("Name").fill("payments")
        await budget_form.get_by_label("Monthly (USD)").fill("4321")
        await budget_form.get_by_role("button", name="Set budget").click()
        await page.wait_for_url("**/budgets?done=set*")
        stored = await budgets_store.get_budget(pool, "team:payments")
        assert stored is not None and stored.monthly_micros == 4321 * 1_000_000

        key_form = page.locator('form[action="/budgets/keys/create"]')
        await key_form.get_by_label("Developer").fill("zed")
        await key_form.get_by_label("Team", exact=True).fill("platform")
        await key_form.get_by_role("button", name="Create key").click()
        secret = (await page.locator("#secret").inner_text()).strip()
        assert keys_store.looks_like_key(secret)
        (key,) = [k for k in await keys_store.list_keys(pool) if k.developer == "zed"]
        await page.get_by_role("link", name="Back to budgets and keys").click()
        await page.get_by_role("button", name=f"Revoke zed's key {key.key_prefix}").click()
        await page.wait_for_url("**/budgets?done=revoked*")

        await page.goto(f"{base}/alerts")
        await page.get_by_role("button", name="Replay dead letter").click()
        await page.wait_for_url("**/alerts?replayed_now=1")

        await page.goto(f"{base}/audit")
        audit = await page.locator("main table").first.inner_text()
        for action in ("budget.set", "key.create", "key.revoke", "alert.replay", "sign-in"):
            assert any(action in line and "Ada Admin" in line for line in audit.splitlines()), (action, audit)
        assert secret not in await page.content()
        await page.screenshot(path=str(artifact("console/journey-audit-1280.png")), full_page=True)
