"""The admin service: the admin API on ``settings.host:settings.admin_port`` until ``stop`` is set."""

from __future__ import annotations

import asyncio

from aiohttp import web

from spendgate.admin.app import create_app
from spendgate.admin.deps import Deps, utc_now
from spendgate.admin.middleware import unreadable
from spendgate.core.httpserver import QuietAppRunner, server_kwargs
from spendgate.core.logs import get_logger
from spendgate.runtime import Runtime
from spendgate.store.access import store as access

log = get_logger(__name__)


async def serve(runtime: Runtime, stop: asyncio.Event) -> None:
    """Serve the admin API and the console while anyone can use them: with the break-glass admin token, a
    configured sign-in (console.oidc) or a usable named API token. With none, it stays off (every call
    would be refused)."""
    settings = runtime.settings
    break_glass = settings.admin_token is not None and bool(settings.admin_token.get_secret_value())
    if not (break_glass or settings.console.oidc is not None
            or await access.any_usable_token(runtime.pool, utc_now())):
        log.warning("admin API not started: set SPENDGATE_ADMIN_TOKEN, configure console.oidc or create a named "
                    "API token (spendgate tokens create) to enable it")
        await stop.wait()
        return
    app = create_app(Deps(runtime.pool, settings, settings.pricing.table()))
    limits = server_kwargs(header_timeout_s=settings.header_timeout_s, max_header_bytes=settings.max_header_bytes)
    runner = QuietAppRunner(app, answer=unreadable, access_log=None, **limits)
    await runner.setup()
    site = web.TCPSite(runner, settings.host, settings.admin_port)
    await site.start()
    log.info("admin API listening", host=settings.host, port=settings.admin_port)
    try:
        await stop.wait()
    finally:
        await asyncio.shield(runner.cleanup())
