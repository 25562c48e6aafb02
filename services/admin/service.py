"""The admin service: the admin API on ``settings.host:settings.admin_port`` until ``stop`` is set."""

from __future__ import annotations

import asyncio

from aiohttp import web

from spendgate.admin.app import create_app
from spendgate.admin.deps import Deps
from spendgate.core.logs import get_logger
from spendgate.runtime import Runtime

log = get_logger(__name__)


async def serve(runtime: Runtime, stop: asyncio.Event) -> None:
    """Serve the admin API; without an admin token it stays off (every call would be refused)."""
    settings = runtime.settings
    if settings.admin_token is None or not settings.admin_token.get_secret_value():
        log.warning("admin API not started: set SPENDGATE_ADMIN_TOKEN to enable it")
        await stop.wait()
        return
    app = create_app(Deps(runtime.pool, settings, settings.pricing.table()))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, settings.host, settings.admin_port)
    await site.start()
    log.info("admin API listening", host=settings.host, port=settings.admin_port)
    try:
        await stop.wait()
    finally:
        await asyncio.shield(runner.cleanup())
