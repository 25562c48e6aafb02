"""The console's credentials beyond the break-glass token: sign-in session cookies (with the CSRF check
every change from a cookie session passes) and named API tokens. Both are resolvers in the identity
chain (:mod:`.auth_chain`), added by :func:`add_credentials`.

CSRF: a cookie is sent by the browser whatever page started the request, so every request that is not
GET, HEAD or OPTIONS and is authenticated by the session cookie must carry the session's CSRF token (form
field ``csrf_token`` or header ``X-CSRF-Token``) and, when the browser sent ``Origin`` (or ``Referer``),
come from this console's own origin. A bearer token is never sent by a browser on its own, so requests
with one need neither.
"""

from __future__ import annotations

import hmac
from urllib.parse import urlsplit

from aiohttp import web

from spendgate.admin.console.auth_chain import CSRF_TOKEN, RESOLVERS
from spendgate.admin.console.identity import Identity, Role
from spendgate.admin.deps import DEPS
from spendgate.admin.middleware import ApiError, presented_token
from spendgate.core.config_services import ConsoleSettings
from spendgate.store.access import store as access
from spendgate.store.access.store import Principal

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
MAX_COOKIE_CHARS = 128


def session_cookie_name(console: ConsoleSettings) -> str:
    """``__Host-`` binds the cookie to this host, https and path ``/``; plain-http localhost cannot use it."""
    return "__Host-spendgate" if console.secure_cookies else "spendgate_session"


def identity_of_principal(p: Principal, via: str) -> Identity:
    return Identity(subject=p.subject, name=p.name, role=Role(p.role), teams=frozenset(p.teams),
                    developer=p.developer, via=via)


def principal_of(who: Identity) -> Principal:
    return Principal(who.subject, who.name, str(who.role), tuple(sorted(who.teams)), who.developer)


def _same_origin(request: web.Request) -> bool:
    source = request.headers.get("Origin") or request.headers.get("Referer")
    if not source:
        return True  # not a browser, or one that sends neither: the CSRF token still has to match
    return urlsplit(source).netloc.lower() == request.host.lower()


async def _presented_csrf(request: web.Request) -> str:
    header = request.headers.get(CSRF_HEADER)
    if header:
        return header
    if request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        value = (await request.post()).get(CSRF_FIELD)
        return value if isinstance(value, str) else ""
    return ""


async def check_csrf(request: web.Request, expected: str) -> None:
    """Refuse (403) a change from a cookie session without the session's CSRF token or from another origin."""
    if request.method in SAFE_METHODS:
        return
    if not _same_origin(request):
        raise ApiError(403, "forbidden", "cross-origin change refused: this request did not come from the console")
    presented = await _presented_csrf(request)
    if not presented or not hmac.compare_digest(presented.encode(), expected.encode()):
        raise ApiError(403, "forbidden", f"missing or wrong CSRF token: a change from a signed-in browser must "
                                         f"carry the {CSRF_FIELD} form field or the {CSRF_HEADER} header")


async def resolve_session(request: web.Request) -> Identity | None:
    deps = request.app[DEPS]
    session_id = request.cookies.get(session_cookie_name(deps.settings.console), "")
    if not session_id or len(session_id) > MAX_COOKIE_CHARS:
        return None
    found = await access.find_session(deps.pool, session_id, deps.now())
    if found is None:
        return None
    await check_csrf(request, found.csrf_token)
    request[CSRF_TOKEN] = found.csrf_token
    return identity_of_principal(found.principal, "oidc")


async def resolve_api_token(request: web.Request) -> Identity | None:
    secret = presented_token(request)
    if not secret.startswith(access.TOKEN_PREFIX) or len(secret) > MAX_COOKIE_CHARS:
        return None
    deps = request.app[DEPS]
    token = await access.token_by_secret(deps.pool, secret)
    if token is None:
        return None
    if token.revoked_at is not None:
        raise ApiError(401, "unauthorized", f"the API token {token.name!r} was revoked")
    if not token.usable_at(deps.now()):
        raise ApiError(401, "unauthorized", f"the API token {token.name!r} expired at "
                                            f"{token.expires_at:%Y-%m-%d %H:%M} UTC")
    return identity_of_principal(token.principal, "token")


def add_credentials(app: web.Application) -> None:
    """Named API tokens, then sign-in sessions, after the break-glass token already in the chain."""
    app[RESOLVERS].extend([resolve_api_token, resolve_session])
