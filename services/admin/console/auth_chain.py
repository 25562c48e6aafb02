"""Who is asking: the chain of identity resolvers every admin request goes through.

A resolver looks at a request and returns an :class:`Identity` or ``None``; the first that recognises the
request wins and its identity is put on the request (:func:`identity_of`). The chain starts with the
break-glass admin token (``SPENDGATE_ADMIN_TOKEN``, compared in constant time); sign-in sessions and named
API tokens add their resolvers to ``app[RESOLVERS]`` when the app is built.

A request nobody recognises gets 401: a JSON error on the API (``/v1/…``, ``/openapi.json``), and on a
console page the sign-in page (``app[SIGN_IN]``, a handler) or, without one configured, a 401 page.
Static assets are public: they carry no data.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from spendgate.admin.console.identity import Identity
from spendgate.admin.middleware import error_response, presented_token, token_matches
from spendgate.admin.openapi import Handler

Resolver = Callable[[web.Request], Awaitable[Identity | None]]

RESOLVERS: web.AppKey[list[Resolver]] = web.AppKey("identity_resolvers", list)
IDENTITY: web.RequestKey[Identity] = web.RequestKey("identity", Identity)
#: The sign-in session's CSRF token, set by the session resolver; forms carry it as ``csrf_token``.
CSRF_TOKEN: web.RequestKey[str] = web.RequestKey("csrf_token", str)
#: Paths served without an identity: assets and the sign-in flow. Resolvers may extend it.
PUBLIC_PREFIXES: web.AppKey[list[str]] = web.AppKey("public_prefixes", list)
#: The handler a console page answers with when nobody is signed in (the sign-in module sets it).
SIGN_IN: web.AppKey[Handler] = web.AppKey("sign_in")


def identity_of(request: web.Request) -> Identity:
    """The identity the middleware resolved for this request (every non-public handler has one)."""
    return request[IDENTITY]


def is_api(path: str) -> bool:
    return path.startswith("/v1/") or path == "/openapi.json"


def admin_token_resolver(admin_token: str | None) -> Resolver:
    async def resolve(request: web.Request) -> Identity | None:
        if token_matches(presented_token(request), admin_token):
            return Identity.break_glass()
        return None

    return resolve


async def _unrecognised(request: web.Request) -> web.StreamResponse:
    if is_api(request.path):
        return error_response(401, "unauthorized",
                              "this call needs a credential: a named API token or the break-glass admin token "
                              "(Authorization: Bearer …); virtual keys are not accepted here",
                              {"WWW-Authenticate": 'Bearer realm="spendgate-admin"'})
    sign_in = request.app.get(SIGN_IN)
    if sign_in is not None:
        return await sign_in(request)
    return web.Response(status=401, text="Sign-in is not configured: see docs/console.md.",
                        headers={"WWW-Authenticate": 'Bearer realm="spendgate-admin"'})


@web.middleware
async def identity_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if any(request.path.startswith(p) for p in request.app[PUBLIC_PREFIXES]):
        return await handler(request)
    for resolve in request.app[RESOLVERS]:
        who = await resolve(request)
        if who is not None:
            request[IDENTITY] = who
            return await handler(request)
    return await _unrecognised(request)
