"""Signing in to the console with OpenID Connect: ``/login``, ``/auth/callback``, ``POST /logout``.

``/login`` starts the authorization code flow with PKCE: a random ``state`` (its SHA-256 stored with the
nonce, the PKCE verifier and where to go next, for ten minutes, and the state itself in a short-lived
cookie bound to this browser), then a redirect to the IdP. ``/auth/callback`` takes the stored attempt
(once: a replayed state or code fails), exchanges the code, verifies the ID token, maps its claims to a
role and opens a server-side session (:mod:`spendgate.store.access`): the cookie holds a random id,
``HttpOnly``, ``SameSite=Lax``, ``Secure`` unless configured off for plain-http localhost, and expires
with the session.
"""

from __future__ import annotations

import html
import secrets
from collections.abc import AsyncIterator
from datetime import timedelta
from urllib.parse import urlencode, urlsplit

import aiohttp
from aiohttp import web

from spendgate.admin.console.auth_chain import PUBLIC_PREFIXES, SIGN_IN, identity_of
from spendgate.admin.console.credentials import add_credentials, principal_of, session_cookie_name
from spendgate.admin.console.oidc import (
    Provider,
    SignInError,
    authorization_url,
    discover,
    exchange_code,
    identity_from_claims,
    verify_id_token,
)
from spendgate.admin.deps import DEPS
from spendgate.core.config_services import OidcSettings
from spendgate.core.logs import get_logger
from spendgate.store.access import store as access
from spendgate.store.access.store import LoginAttempt

log = get_logger(__name__)

LOGIN_COOKIE = "spendgate_login"
LOGIN_TTL = timedelta(minutes=10)
MAX_NEXT_CHARS = 2048
MAX_PARAM_CHARS = 4096
MAX_PENDING_LOGINS = 10_000
"""Sign-ins under way at once (each a row for ten minutes); beyond it /login answers 503, so a flood of
anonymous requests cannot grow the table without bound."""
HTTP: web.AppKey[aiohttp.ClientSession] = web.AppKey("oidc_http", aiohttp.ClientSession)
PROVIDER: web.AppKey[list[Provider]] = web.AppKey("oidc_provider", list)
"""The discovered provider, cached after the first sign-in (a one-item list; empty until then)."""


def safe_next(value: str | None) -> str:
    """Where to go after signing in: a path on this site only (``/teams?x=1``), never another host."""
    if not value or len(value) > MAX_NEXT_CHARS or not value.startswith("/") or value.startswith("//"):
        return "/"
    if "\\" in value or any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        return "/"
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return "/"
    return value


def _page(status: int, title: str, message: str, link: tuple[str, str] | None = None) -> web.Response:
    extra = f'<p><a href="{html.escape(link[0])}">{html.escape(link[1])}</a></p>' if link else ""
    body = (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)} · spendgate'
            f'</title><link rel="stylesheet" href="/static/console.css"></head><body><main id="main">'
            f"<h1>{html.escape(title)}</h1><p>{html.escape(message)}</p>{extra}</main></body></html>")
    return web.Response(status=status, text=body, content_type="text/html",
                        headers={"Cache-Control": "no-store", "Content-Security-Policy": "default-src 'self'"})


def _oidc(request: web.Request) -> OidcSettings | None:
    return request.app[DEPS].settings.console.oidc


async def _provider(request: web.Request, settings: OidcSettings) -> Provider:
    cached = request.app[PROVIDER]
    if not cached:
        cached.append(await discover(request.app[HTTP], settings))
    return cached[0]


async def sign_in_redirect(request: web.Request) -> web.StreamResponse:
    """An unauthenticated console page: off to sign in, coming back to this page."""
    if request.method not in ("GET", "HEAD"):
        return _page(401, "Not signed in", "Sign in before making changes.", ("/login", "Sign in"))
    raise web.HTTPFound("/login?" + urlencode({"next": request.rel_url.path_qs}))


async def login(request: web.Request) -> web.StreamResponse:
    settings = _oidc(request)
    if settings is None:
        return _page(401, "Sign-in is not configured",
                     "This console has no identity provider configured (console.oidc); use a named API "
                     "token or the break-glass admin token. See docs/console.md.")
    deps = request.app[DEPS]
    try:
        provider = await _provider(request, settings)
    except SignInError as exc:
        log.warning("sign-in: discovery failed", reason=str(exc))
        return _page(502, "Sign-in is unavailable", str(exc))
    state, nonce, verifier = secrets.token_urlsafe(32), secrets.token_urlsafe(32), secrets.token_urlsafe(48)
    attempt = LoginAttempt(nonce, verifier, safe_next(request.query.get("next")))
    await access.sweep(deps.pool, deps.now())
    if await access.pending_logins(deps.pool) >= MAX_PENDING_LOGINS:
        log.warning("sign-in refused: too many sign-ins under way", limit=MAX_PENDING_LOGINS)
        return _page(503, "Sign-in is busy", "Too many sign-ins are under way; try again in a few minutes.")
    await access.start_login(deps.pool, state, attempt, expires_at=deps.now() + LOGIN_TTL)
    response = web.HTTPFound(authorization_url(provider, settings, state=state, nonce=nonce, verifier=verifier))
    response.set_cookie(LOGIN_COOKIE, state, max_age=int(LOGIN_TTL.total_seconds()), path="/auth/",
                        secure=deps.settings.console.secure_cookies, httponly=True, samesite="Lax")
    raise response


def _failed(message: str) -> web.Response:
    return _page(400, "Sign-in failed", message, ("/login", "Try again"))


async def callback(request: web.Request) -> web.StreamResponse:
    settings = _oidc(request)
    if settings is None:
        raise web.HTTPNotFound()
    deps = request.app[DEPS]
    query = request.query
    if any(len(v) > MAX_PARAM_CHARS for v in query.values()):
        return _failed("The sign-in answer is too long.")
    if "error" in query:
        return _failed(f"The identity provider refused the sign-in ({query['error'][:100]}).")
    state, code = query.get("state", ""), query.get("code", "")
    bound = request.cookies.get(LOGIN_COOKIE, "")
    if not state or not code or not secrets.compare_digest(state.encode(), bound.encode()):
        return _failed("This sign-in was not started in this browser (state does not match).")
    attempt = await access.take_login(deps.pool, state, deps.now())
    if attempt is None:
        return _failed("This sign-in expired or was already used.")
    try:
        provider = await _provider(request, settings)
        id_token = await exchange_code(request.app[HTTP], provider, settings, code=code, verifier=attempt.code_verifier)
        claims = await verify_id_token(request.app[HTTP], provider, settings, id_token, nonce=attempt.nonce)
    except SignInError as exc:
        log.warning("sign-in failed", reason=str(exc))
        return _failed(str(exc))
    who = identity_from_claims(claims, settings)
    if who is None:
        log.info("sign-in refused: no console role", subject=str(claims.get("sub"))[:256])
        return _page(403, "No access", "Your account has no role in this console; ask an administrator to add "
                                       "you to one of the groups it maps to a role.")
    ttl = timedelta(seconds=deps.settings.console.session_ttl_s)
    session_id, _csrf = await access.create_session(deps.pool, principal_of(who), expires_at=deps.now() + ttl)
    await access.record(deps.pool, actor=who.actor, action="sign-in", target=who.name,
                        detail={"role": str(who.role), "teams": sorted(who.teams), "developer": who.developer})
    log.info("signed in", actor=who.actor, role=str(who.role))
    response = web.HTTPFound(attempt.next_path)
    response.set_cookie(session_cookie_name(deps.settings.console), session_id, max_age=int(ttl.total_seconds()),
                        path="/", secure=deps.settings.console.secure_cookies, httponly=True, samesite="Lax")
    response.del_cookie(LOGIN_COOKIE, path="/auth/")
    raise response


async def logout(request: web.Request) -> web.StreamResponse:
    """End this browser's session (a POST carrying the CSRF token, like every change)."""
    deps = request.app[DEPS]
    name = session_cookie_name(deps.settings.console)
    session_id = request.cookies.get(name)
    if session_id:
        await access.end_session(deps.pool, session_id)
        await access.record(deps.pool, actor=identity_of(request).actor, action="sign-out",
                            target=identity_of(request).name)
    response = web.HTTPSeeOther("/signed-out")
    response.del_cookie(name, path="/")
    raise response


async def signed_out(request: web.Request) -> web.StreamResponse:
    del request
    return _page(200, "Signed out", "You are signed out of the spendgate console.", ("/login", "Sign in again"))


async def _http_client(app: web.Application) -> AsyncIterator[None]:
    async with aiohttp.ClientSession() as http:
        app[HTTP] = http
        yield


def add_sign_in(app: web.Application) -> None:
    """Named API tokens and sign-in sessions in the identity chain, and the sign-in routes."""
    add_credentials(app)
    app[PROVIDER] = []
    if app[DEPS].settings.console.oidc is not None:
        app[SIGN_IN] = sign_in_redirect
    app[PUBLIC_PREFIXES].extend(["/login", "/auth/callback", "/signed-out"])
    app.cleanup_ctx.append(_http_client)
    app.router.add_get("/login", login, name="login")
    app.router.add_get("/auth/callback", callback, name="auth_callback")
    app.router.add_post("/logout", logout, name="logout")
    app.router.add_get("/signed-out", signed_out, name="signed_out")
