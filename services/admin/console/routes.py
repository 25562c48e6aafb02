"""The console's routes, added to the admin application by :func:`add_console`."""

from __future__ import annotations

from aiohttp import web

from spendgate.admin.console import alerts_page, budgets_page, policy_page, session_pages, spend_pages
from spendgate.admin.console.audit import add_audit
from spendgate.admin.console.auth_chain import PUBLIC_PREFIXES
from spendgate.admin.console.overview import overview
from spendgate.admin.console.web import STATIC


def add_console(app: web.Application) -> None:
    app[PUBLIC_PREFIXES].append("/static/")
    app.router.add_static("/static/", STATIC, append_version=False)
    app.router.add_get("/", overview, name="overview")
    # The reading pages (issue 14): teams, developers, sessions, the prompt cache.
    app.router.add_get("/teams", spend_pages.teams, name="teams")
    app.router.add_get("/teams/{team}", spend_pages.team, name="team")
    app.router.add_get("/developers", spend_pages.developers, name="developers")
    app.router.add_get("/developers/{developer}", spend_pages.developer, name="developer")
    app.router.add_get("/sessions", session_pages.sessions, name="sessions")
    app.router.add_get("/sessions/{session_id}", session_pages.session, name="session")
    app.router.add_get("/cache", session_pages.cache, name="cache")
    for pages in (budgets_page, alerts_page, policy_page):  # the pages that change things
        pages.add_routes(app)
    add_audit(app)
