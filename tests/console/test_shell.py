"""The console's shell: served by the admin app at ``/``, behind the identity chain, assets public."""

from __future__ import annotations

import asyncpg

from spendgate.admin.console.identity import Identity, Role, may_read_developer, may_read_team
from spendgate.admin.console.web import csv_response
from tests.support.admin_server import admin_client, auth


async def test_a_page_needs_an_identity_and_assets_do_not(pool: asyncpg.Pool) -> None:
    async with admin_client(pool) as client:
        anonymous = await client.get("/")
        assert anonymous.status == 401
        page = await client.get("/", headers=auth())
        assert page.status == 200 and page.content_type == "text/html"
        html = await page.text()
        assert "break-glass admin token" in html and 'href="#main"' in html
        assert "script-src 'self'" in page.headers["Content-Security-Policy"]
        asset = await client.get("/static/vendor/uplot-1.6.32/uPlot.iife.min.js")
        assert asset.status == 200 and "uPlot" in await asset.text()
        escape = await client.get("/static/../app.py")
        assert escape.status != 200


def test_roles_read_what_they_own() -> None:
    manager = Identity(subject="m", name="M", role=Role.MANAGER, teams=frozenset({"platform"}))
    dev = Identity(subject="d", name="D", role=Role.DEVELOPER, developer="alice")
    assert may_read_team(manager, "platform") and not may_read_team(manager, "payments")
    assert may_read_developer(dev, "alice", "payments") and not may_read_developer(dev, "bob", "payments")
    assert not may_read_team(dev, "payments")


def test_csv_cells_cannot_run_as_formulas() -> None:
    body = csv_response("x.csv", ["repo"], [["=HYPERLINK(\"http://evil\")"], ["ok"]]).text
    assert body is not None and "'=HYPERLINK" in body
