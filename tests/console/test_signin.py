"""Signing in to the console through a real OpenID Connect provider (oidc-provider-mock), over HTTP:
the code flow with PKCE, state and nonce; sessions in PostgreSQL; hostile callbacks refused."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import asyncpg
import pytest

from spendgate.admin.console import signin
from spendgate.admin.console.signin import safe_next
from tests.support.oidc import Clock, MockIdP, authorize, console_client, csrf_of, sign_in, start_login


async def test_a_signed_in_manager_lands_on_the_page_they_asked_for(pool: asyncpg.Pool, idp: MockIdP) -> None:
    """An anonymous page redirects to /login?next=…; the flow sends PKCE S256, state and nonce; the callback
    sets an HttpOnly, SameSite=Lax session cookie and the page shows who signed in."""
    await idp.set_user("mia", name="Mia Manager", groups=["eng-managers"], teams=["platform"])
    async with console_client(pool, idp) as client:
        anonymous = await client.get("/audit?since=2026-11-01", allow_redirects=False)
        assert anonymous.status == 302 and anonymous.headers["Location"].startswith("/login?next=")
        authorize_url = await start_login(client, "/audit?since=2026-11-01")
        sent = parse_qs(urlsplit(authorize_url).query)
        assert sent["code_challenge_method"] == ["S256"] and len(sent["code_challenge"][0]) == 43
        assert sent["state"][0] and sent["nonce"][0] and sent["client_id"] == ["spendgate-console"]
        callback = await authorize(authorize_url, "mia")
        parts = urlsplit(callback)
        done = await client.get(parts.path, params={k: v[0] for k, v in parse_qs(parts.query).items()},
                                allow_redirects=False)
        assert done.status == 302 and done.headers["Location"] == "/audit?since=2026-11-01"
        cookie = next(v for k, v in done.headers.items() if k == "Set-Cookie" and "spendgate_session=" in v)
        assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Max-Age=28800" in cookie
        page = await client.get("/")
        assert page.status == 200
        html = await page.text()
        assert "Mia Manager · manager" in html and csrf_of(html)
        stored = await pool.fetchval("SELECT count(*) FROM console_sessions WHERE subject = 'mia'")
        assert stored == 1
        raw_id = client.session.cookie_jar.filter_cookies(client.make_url("/"))["spendgate_session"].value
        assert await pool.fetchval("SELECT count(*) FROM console_sessions WHERE session_hash = $1::text::bytea",
                                   raw_id) == 0  # only its SHA-256 is stored


async def test_forged_state_and_replayed_code_are_refused(pool: asyncpg.Pool, idp: MockIdP) -> None:
    """A callback whose state this browser did not start, a second use of a callback, and an old code under
    a fresh state: each is a 400 and opens no session."""
    await idp.set_user("fay", name="Fay", groups=["finops-team"])
    async with console_client(pool, idp) as client:
        callback = urlsplit(await authorize(await start_login(client), "fay"))
        params = {k: v[0] for k, v in parse_qs(callback.query).items()}
        forged = await client.get("/auth/callback", params={**params, "state": "forged-" + params["state"]})
        assert forged.status == 400 and "state does not match" in await forged.text()
        first = await client.get("/auth/callback", params=params, allow_redirects=False)
        assert first.status == 302
        again = await client.get("/auth/callback", params=params, allow_redirects=False,
                                 headers={"Cookie": f"spendgate_login={params['state']}"})  # the cookie is spent
        assert again.status == 400 and "already used" in await again.text()
        fresh = parse_qs(urlsplit(await start_login(client)).query)["state"][0]
        replayed = await client.get("/auth/callback", params={"code": params["code"], "state": fresh})
        assert replayed.status == 400 and "invalid_grant" in await replayed.text()
        assert await pool.fetchval("SELECT count(*) FROM console_sessions") == 1


async def test_next_never_leaves_the_console(pool: asyncpg.Pool, idp: MockIdP) -> None:
    """Open redirects through ``next`` land on /: other hosts, scheme-relative and backslash tricks."""
    for hostile in ("https://evil.example/", "//evil.example/x", "/\\evil.example", "javascript:alert(1)",
                    "/%0d%0aSet-Cookie:x=1", "/ok\r\nX: y"):
        assert safe_next(hostile) in ("/", "/%0d%0aSet-Cookie:x=1")
    assert safe_next("/teams/platform?period=month") == "/teams/platform?period=month"
    await idp.set_user("fay", name="Fay", groups=["finops-team"])
    async with console_client(pool, idp) as client:
        done = await sign_in(client, "fay", next_path="//evil.example/steal")
        assert done.status == 302 and done.headers["Location"] == "/"


async def test_tampered_and_expired_sessions_sign_nobody_in(pool: asyncpg.Pool, idp: MockIdP) -> None:
    """A changed cookie value is nobody; a session past console.session_ttl_s is nobody (back to sign-in)."""
    await idp.set_user("fay", name="Fay", groups=["finops-team"])
    clock = Clock()
    async with console_client(pool, idp, clock, session_ttl_s=600) as client:
        assert (await sign_in(client, "fay")).status == 302
        assert (await client.get("/", allow_redirects=False)).status == 200
        jar = client.session.cookie_jar
        good = jar.filter_cookies(client.make_url("/"))["spendgate_session"].value
        jar.clear()
        jar.update_cookies({"spendgate_session": good[:-2] + ("AA" if good[-2:] != "AA" else "BB")})
        assert (await client.get("/", allow_redirects=False)).status == 302
        jar.clear()
        jar.update_cookies({"spendgate_session": good})
        assert (await client.get("/", allow_redirects=False)).status == 200
        clock.now += timedelta(seconds=601)
        expired = await client.get("/", allow_redirects=False)
        assert expired.status == 302 and expired.headers["Location"].startswith("/login")
        api = await client.get("/v1/keys")
        assert api.status == 401


async def test_an_account_without_a_mapped_group_gets_no_session(pool: asyncpg.Pool, idp: MockIdP) -> None:
    """Claims that map to no role: 403 and no session; a developer without the developer claim likewise."""
    await idp.set_user("guest", name="Guest", groups=["visitors"])
    await idp.set_user("anon-dev", name="Dev", groups=["engineers"])
    async with console_client(pool, idp) as client:
        for sub in ("guest", "anon-dev"):
            refused = await sign_in(client, sub)
            assert refused.status == 403 and "no role" in await refused.text()
        assert await pool.fetchval("SELECT count(*) FROM console_sessions") == 0


async def test_sign_out_needs_the_csrf_token_and_ends_the_session(pool: asyncpg.Pool, idp: MockIdP) -> None:
    """POST /logout without the token is refused; with it the server-side session is gone."""
    await idp.set_user("fay", name="Fay", groups=["finops-team"])
    async with console_client(pool, idp) as client:
        await sign_in(client, "fay")
        token = csrf_of(await (await client.get("/")).text())
        refused = await client.post("/logout", data={}, allow_redirects=False)
        assert refused.status == 403
        done = await client.post("/logout", data={"csrf_token": token}, allow_redirects=False)
        assert done.status == 303 and done.headers["Location"] == "/signed-out"
        assert await pool.fetchval("SELECT count(*) FROM console_sessions") == 0
        assert (await client.get("/", allow_redirects=False)).status == 302


async def test_hostile_callbacks_and_login_floods_are_capped(pool: asyncpg.Pool, idp: MockIdP,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """An IdP error, an oversized parameter and a callback with no state are 400s that echo nothing
    dangerous; /login refuses (503) once too many sign-ins are under way."""
    monkeypatch.setattr(signin, "MAX_PENDING_LOGINS", 2)
    async with console_client(pool, idp) as client:
        refused = await client.get("/auth/callback", params={"error": "<script>x</script>"})
        assert refused.status == 400 and "<script>" not in await refused.text()
        assert (await client.get("/auth/callback", params={"code": "c" * 5000, "state": "s"})).status == 400
        assert (await client.get("/auth/callback", params={"code": "c"})).status == 400
        for _ in range(2):
            await start_login(client)
        busy = await client.get("/login", allow_redirects=False)
        assert busy.status == 503 and await pool.fetchval("SELECT count(*) FROM login_attempts") == 2


async def test_by_default_the_session_cookie_is_secure_and_host_bound(pool: asyncpg.Pool, idp: MockIdP) -> None:
    """With secure_cookies on (the default) the cookie is ``__Host-spendgate``, Secure, HttpOnly, Path=/."""
    await idp.set_user("fay", name="Fay", groups=["finops-team"])
    async with console_client(pool, idp, secure_cookies=True) as client:
        login = await client.get("/login", allow_redirects=False)
        assert "Secure" in login.headers["Set-Cookie"]  # so over plain http the test hands it back itself
        callback = urlsplit(await authorize(login.headers["Location"], "fay"))
        params = {k: v[0] for k, v in parse_qs(callback.query).items()}
        done = await client.get("/auth/callback", params=params, allow_redirects=False,
                                headers={"Cookie": f"spendgate_login={params['state']}"})
        cookie = next(v for k, v in done.headers.items() if k == "Set-Cookie" and v.startswith("__Host-spendgate="))
        assert "Secure" in cookie and "HttpOnly" in cookie and "Path=/" in cookie and "Domain" not in cookie
