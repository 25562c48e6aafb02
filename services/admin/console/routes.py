"""The console's routes, added to the admin application by :func:`add_console`."""

from __future__ import annotations

from aiohttp import web

from spendgate.admin.console import alerts_page, budgets_page, policy_page
from spendgate.admin.console.audit import add_audit
from spendgate.admin.console.auth_chain import PUBLIC_PREFIXES
from spendgate.admin.console.web import STATIC, render


async def overview(request: web.Request) -> web.Response:
    return render(request, "overview.html", title="Overview")


def add_console(app: web.Application) -> None:
    app[PUBLIC_PREFIXES].append("/static/")
    app.router.add_static("/static/", STATIC, append_version=False)
    app.router.add_get("/", overview, name="overview")
    for pages in (budgets_page, alerts_page, policy_page):  # the pages that change things
        pages.add_routes(app)
    add_audit(app)
