"""A process's own ``/healthz`` and ``/metrics``, for services that have no HTTP port of their own.

``spendgate ledger``, ``alerter`` and ``forecaster`` run alone serve nothing else, so
:func:`spendgate.runtime.run_services` starts this server when ``ops_port`` is set. ``/healthz`` is
open and says states only (:meth:`spendgate.core.health.Health.report`); ``/metrics`` asks for the
``metrics_token`` as a Bearer token and is a 404 without one set, as on the proxy.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from aiohttp import web

from spendgate.core.health import Health
from spendgate.core.logs import get_logger
from spendgate.core.metrics import CONTENT_TYPE, Metrics, authorised

log = get_logger(__name__)


def ops_app(health: Health, metrics: Metrics, metrics_token: str | None) -> web.Application:
    async def healthz(_request: web.Request) -> web.Response:
        return web.json_response(health.report())

    async def render(request: web.Request) -> web.Response:
        allowed = authorised(request.headers.get("Authorization", ""), metrics_token)
        if allowed is None:
            return web.json_response({"error": "metrics are off: set metrics_token"}, status=404)
        if not allowed:
            return web.json_response({"error": "send 'Authorization: Bearer <metrics token>'"}, status=401,
                                     headers={"WWW-Authenticate": 'Bearer realm="metrics"'})
        return web.Response(body=metrics.render(), headers={"Content-Type": CONTENT_TYPE})

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", render)
    return app


@contextlib.asynccontextmanager
async def serving_ops(host: str, port: int, health: Health, metrics: Metrics,
                      metrics_token: str | None) -> AsyncIterator[int]:
    """Serve ``/healthz`` and ``/metrics`` on ``host:port`` (0: a free port); yields the bound port."""
    runner = web.AppRunner(ops_app(health, metrics, metrics_token), access_log=None, shutdown_timeout=2.0)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port, reuse_address=True)
        await site.start()
        bound = next(iter(runner.addresses))[1] if runner.addresses else port
        log.info("health and metrics listening", url=f"http://{host}:{bound}")
        yield int(bound)
    finally:
        await runner.cleanup()
