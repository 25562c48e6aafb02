"""The admin API application: every operation behind the admin token, JSON errors, and the OpenAPI 3.1
document at ``/openapi.json`` generated from the same operation list the router is built from."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from spendgate.admin import api_keys, api_policy, api_ratelimits, api_reconciliation, api_reports
from spendgate.admin.deps import DEPS, Deps
from spendgate.admin.middleware import auth_middleware, error_middleware, json_response
from spendgate.admin.openapi import Operation, document


def operations() -> list[Operation]:
    ops = [*api_keys.operations(), *api_policy.operations(), *api_reports.operations(),
           *api_reconciliation.operations(), *api_ratelimits.operations()]
    return [*ops, Operation("GET", "/openapi.json", "openapi", "This OpenAPI 3.1 document", _openapi,
                            dict[str, Any], errors=(), tags=("meta",))]


OPENAPI: web.AppKey[dict[str, Any]] = web.AppKey("openapi", dict)


async def _openapi(request: web.Request) -> web.Response:
    return json_response(request.app[OPENAPI])


def create_app(deps: Deps) -> web.Application:
    """The admin application; refuses every call when ``deps.settings.admin_token`` is unset."""
    token = deps.settings.admin_token.get_secret_value() if deps.settings.admin_token else None
    app = web.Application(middlewares=[error_middleware, auth_middleware(token)],
                          client_max_size=4 * 1024 * 1024)
    app[DEPS] = deps
    ops = operations()
    app[OPENAPI] = document(ops)
    for op in ops:
        app.router.add_route(op.method, op.path, op.handler)
    return app
