"""The admin API application: every operation behind the admin token, JSON errors, and the OpenAPI 3.1
document at ``/openapi.json`` generated from the same operation list the router is built from."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from spendgate.admin import (
    api_guard,
    api_keys,
    api_outcomes,
    api_policy,
    api_ratelimits,
    api_reconciliation,
    api_reports,
    api_suggest,
    api_tokens,
    api_versions,
)
from spendgate.admin.console.auth_chain import PUBLIC_PREFIXES, RESOLVERS, admin_token_resolver, identity_middleware
from spendgate.admin.console.routes import add_console
from spendgate.admin.console.signin import add_sign_in
from spendgate.admin.deps import DEPS, Deps
from spendgate.admin.middleware import ApiError, error_middleware, json_response
from spendgate.admin.openapi import Handler, Operation, document
from spendgate.domain.errors import shown


def operations() -> list[Operation]:
    ops = [*api_keys.operations(), *api_policy.operations(), *api_reports.operations(),
           *api_reconciliation.operations(), *api_ratelimits.operations(), *api_tokens.operations(),
           *api_outcomes.operations(), *api_versions.operations(), *api_guard.operations(),
           *api_suggest.operations()]
    return [*ops, Operation("GET", "/openapi.json", "openapi", "This OpenAPI 3.1 document", _openapi,
                            dict[str, Any], errors=(), tags=("meta",))]


OPENAPI: web.AppKey[dict[str, Any]] = web.AppKey("openapi", dict)


async def _openapi(request: web.Request) -> web.Response:
    return json_response(request.app[OPENAPI])


def create_app(deps: Deps) -> web.Application:
    """The admin application: the console at ``/`` and the JSON API under ``/v1/``, every request with
    an identity (without a configured admin token or sign-in, every call is refused)."""
    token = deps.settings.admin_token.get_secret_value() if deps.settings.admin_token else None
    app = web.Application(middlewares=[error_middleware, identity_middleware],
                          client_max_size=4 * 1024 * 1024)
    app[DEPS] = deps
    app[RESOLVERS] = [admin_token_resolver(token)]
    app[PUBLIC_PREFIXES] = []
    add_sign_in(app)
    add_console(app)
    ops = operations()
    app[OPENAPI] = document(ops)
    for op in ops:
        app.router.add_route(op.method, op.path, known_query(op))
    return app


def known_query(op: Operation) -> Handler:
    """``op``'s handler, refusing a query parameter the operation does not declare: a misspelt filter
    (``?session_id=`` for ``?session=``) must not silently answer with everything."""
    allowed = frozenset(p.name for p in op.params if p.where == "query")
    takes = ", ".join(sorted(allowed)) or "none"

    async def handler(request: web.Request) -> web.StreamResponse:
        unknown = sorted(set(request.query) - allowed)
        if unknown:
            raise ApiError(400, "bad_request", f"unknown query parameter {shown(unknown[0])}: "
                                               f"{op.method} {op.path} takes {takes}")
        if len(request.query) != len(set(request.query)):  # ?days=1&days=90: handlers read the first, silently
            twice = next(k for k in request.query if len(request.query.getall(k)) > 1)
            raise ApiError(400, "bad_request", f"query parameter {shown(twice)} is given more than once")
        return await op.handler(request)

    return handler
