"""Signing in with a real browser: Debian's Chromium (Playwright) through a real OpenID Connect provider's
form, back to the console page it asked for, with the identity shown; then a change made in that session
appears on the Audit page under the signed-in identity."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import asyncpg

from tests.support.browser import chromium
from tests.support.oidc import MockIdP, console_client


async def test_sign_in_in_the_browser_lands_on_the_page_with_the_identity(
        pool: asyncpg.Pool, idp: MockIdP, artifact: Callable[[str], Path]) -> None:
    """Open /audit signed out: the IdP's form, pick the user, back on /audit as Fay Finops; a budget set
    from that page's session (fetch with its CSRF token) shows on /audit as oidc:fay; sign out works."""
    await idp.set_user("fay", name="Fay Finops", groups=["finops-team"])
    async with console_client(pool, idp) as client, chromium() as browser:
        base = str(client.make_url("")).rstrip("/")
        page = await (await browser.new_context(viewport={"width": 1280, "height": 800})).new_page()
        await page.goto(f"{base}/audit?action=budget.")
        assert page.url.startswith(idp.url + "/oauth2/authorize")
        await page.fill("input[name=sub]", "fay")
        await page.click("button[type=submit]:has-text('Authorize')")
        await page.wait_for_url(f"{base}/audit?action=budget.")
        assert (await page.text_content("header .who") or "").strip() == "Fay Finops · finops"
        cookies = {c["name"]: c for c in await page.context.cookies()}
        session = cookies["spendgate_session"]
        assert session["httpOnly"] and session["sameSite"] == "Lax" and session["expires"] > 0
        status = await page.evaluate("""async () => {
            const token = document.querySelector('input[name=csrf_token]').value;
            const r = await fetch('/v1/budgets/team:platform', {method: 'PUT', body: '{"monthly": "900"}',
                headers: {'Content-Type': 'application/json', 'X-CSRF-Token': token}});
            return r.status; }""")
        assert status == 200
        await page.reload()
        assert await page.locator("td:text-is('oidc:fay') + td:text-is('budget.set')").count() == 1
        await page.screenshot(path=str(artifact("console/audit-1280.png")), full_page=True)
        await page.set_viewport_size({"width": 375, "height": 800})
        await page.screenshot(path=str(artifact("console/audit-375.png")), full_page=True)
        await page.click("form.signout button")
        await page.wait_for_url(f"{base}/signed-out")
        assert await pool.fetchval("SELECT count(*) FROM console_sessions") == 0
