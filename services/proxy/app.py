"""The proxy's aiohttp application: ``/v1/*`` through the hot path, a health probe, OpenAI-format errors.

``/healthz`` is open to anyone, so it says only how each component of this process is doing
(``{"status": "ok" | "degraded", "components": {"proxy": "ok", "ledger": "degraded", ...}, "tasks":
{...}}``), states only, never figures; it answers 200 whenever the proxy can answer at all, whatever
the other components' states. Counts and spend (keys, requests in flight, spool backlog, cost totals) are on
``/metrics``, which needs the ``metrics_token`` setting as a Bearer token (without one set, ``/metrics``
is a 404).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from spendgate.core.health import Health
from spendgate.core.logs import get_logger
from spendgate.core.metrics import CONTENT_TYPE, authorised
from spendgate.proxy import errors
from spendgate.proxy.handler import Proxy, ProxyState
from spendgate.proxy.me import PATH as ME_PATH

log = get_logger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The HTTP supervisor: anything unexpected becomes a logged 500 in OpenAI's error format."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status == 404:
            return errors.not_found()
        if exc.status == 413:
            return errors.error_response(413, exc.text or "request too large", code="request_too_large")
        return errors.error_response(exc.status, exc.reason, code=None)
    except Exception:
        log.exception("proxy handler failed", path=request.path, method=request.method)
        return errors.error_response(500, "spendgate hit an internal error; the request was not completed.",
                                     type_="server_error", code="internal_error")


def build_app(state: ProxyState, health: Health, *, metrics_token: str | None = None,
              me: Handler | None = None) -> web.Application:
    """The proxy's routes; ``me`` serves ``GET /v1/spendgate/me`` (:mod:`spendgate.proxy.me`), matched before the
    ``/v1/*`` catch-all so it never reaches the route table or an upstream."""
    proxy = Proxy(state)
    app = web.Application(middlewares=[error_middleware], client_max_size=state.max_body_bytes)

    async def healthz(_request: web.Request) -> web.Response:
        return web.json_response(health.report())

    async def metrics(request: web.Request) -> web.Response:
        allowed = authorised(request.headers.get("Authorization", ""), metrics_token)
        if allowed is None:
            return errors.not_found()
        if not allowed:
            return errors.metrics_unauthorized()
        return web.Response(body=state.metrics.render(), headers={"Content-Type": CONTENT_TYPE})

    m = state.metrics
    m.gauge("spendgate_proxy_in_flight", "Requests being served", lambda: state.in_flight)
    m.gauge("spendgate_proxy_spool_segments", "Spool depth: segments not yet acknowledged by the bus",
            lambda: state.emitter.backlog_segments)
    m.gauge("spendgate_proxy_bus_publish_lag_seconds",
            "Age of the oldest usage event spooled and not yet acknowledged by the bus (0: none waiting)",
            state.emitter.publish_lag_s)
    m.gauge("spendgate_proxy_events_published", "Usage events acknowledged by the bus",
            lambda: state.emitter.published)
    m.gauge("spendgate_proxy_bus_failures", "Failed publish attempts", lambda: state.emitter.failures)
    m.gauge("spendgate_proxy_virtual_keys", "Active virtual keys cached", lambda: len(state.keys))
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    if me is not None:
        app.router.add_get(ME_PATH, me, allow_head=False)
    app.router.add_route("*", "/v1/{tail:.*}", proxy.handle)
    return app
