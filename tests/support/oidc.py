"""A real OpenID Connect provider for tests (``oidc-provider-mock`` from PyPI, run as a process), the
console configured to sign in against it, and the sign-in flow driven over HTTP without a browser.

The provider signs ID tokens with its own RSA key (RS256, JWKS at ``/jwks``), enforces the nonce, and
serves an authorization form where a test picks the user (``sub``). A test gives a user claims (groups,
teams, developer id) with :meth:`MockIdP.set_user` before signing them in.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import asyncpg
from aiohttp.test_utils import TestClient, TestServer

from spendgate.admin.app import create_app
from spendgate.admin.deps import Deps
from spendgate.core.config import Settings
from spendgate.core.config_services import ConsoleSettings, OidcSettings
from tests.support.admin_server import ADMIN_TOKEN, NOW
from tests.support.ports import free_port

CLIENT_ID = "spendgate-console"
CLIENT_SECRET = "console-secret-for-tests"
ROLE_MAP = {"finops-team": "finops", "eng-managers": "manager", "engineers": "developer", "sg-admins": "admin"}


@dataclass(frozen=True)
class MockIdP:
    url: str

    async def set_user(self, sub: str, **claims: Any) -> None:
        async with aiohttp.ClientSession() as http, http.put(f"{self.url}/users/{sub}", json=claims) as resp:
            assert resp.status == 204, await resp.text()


@contextmanager
def running_idp() -> Iterator[MockIdP]:
    """The provider on a free port, ready (its discovery document answers) or failing within 20 s."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-W", "ignore", "-m", "oidc_provider_mock", "--port", str(port),
                             "--require-nonce", "true"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        import urllib.request
        while True:
            try:
                with urllib.request.urlopen(url + "/.well-known/openid-configuration", timeout=1) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    err = proc.stderr.read().decode() if proc.stderr and proc.poll() is not None else ""
                    raise RuntimeError(f"oidc-provider-mock did not start on {url}: {err[-2000:]}") from None
                time.sleep(0.05)  # polling a starting process's port with a deadline
        yield MockIdP(url)
    finally:
        proc.terminate()
        proc.wait(10)


def console_settings(idp: MockIdP, port: int, **console: Any) -> Settings:
    """Settings of an admin app on 127.0.0.1:``port`` signing in against ``idp`` (plain http: cookies not
    Secure), with the break-glass token as well."""
    from pydantic import SecretStr

    oidc = OidcSettings(issuer=idp.url, client_id=CLIENT_ID, client_secret=SecretStr(CLIENT_SECRET),
                        redirect_url=f"http://127.0.0.1:{port}/auth/callback", role_map=ROLE_MAP,  # type: ignore[arg-type]
                        teams_claim="teams", developer_claim="developer")
    return Settings(admin_token=SecretStr(ADMIN_TOKEN),
                    console=ConsoleSettings(**{"oidc": oidc, "secure_cookies": False, **console}))


class Clock:
    """The app's clock, moved by the test (sessions and tokens expire by it)."""

    def __init__(self, now: datetime = NOW) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@asynccontextmanager
async def console_client(pool: asyncpg.Pool, idp: MockIdP, clock: Clock | None = None,
                         **console: Any) -> AsyncIterator[TestClient]:  # type: ignore[type-arg]
    """The admin app on a known port (the IdP must know the redirect URL) with OIDC sign-in configured."""
    port = free_port()
    settings = console_settings(idp, port, **console)
    app = create_app(Deps(pool, settings, settings.pricing.table(), now=clock or Clock()))
    async with TestClient(TestServer(app, host="127.0.0.1", port=port)) as client:
        yield client


async def start_login(client: TestClient, next_path: str | None = None) -> str:  # type: ignore[type-arg]
    """``/login``: the IdP's authorization URL it redirects to (the login cookie lands in the client's jar)."""
    resp = await client.get("/login", params={"next": next_path} if next_path else None, allow_redirects=False)
    assert resp.status == 302, await resp.text()
    return resp.headers["Location"]


async def authorize(authorize_url: str, sub: str) -> str:
    """Pick ``sub`` on the IdP's form, as a person would: the callback URL with code and state."""
    async with aiohttp.ClientSession() as http, http.post(authorize_url, data={"sub": sub},
                                                          allow_redirects=False) as resp:
        assert resp.status == 302, await resp.text()
        return resp.headers["Location"]


async def sign_in(client: TestClient, sub: str, next_path: str | None = None) -> aiohttp.ClientResponse:  # type: ignore[type-arg]
    """The whole code flow over HTTP; the answer of ``/auth/callback`` (a 302 into the console on success)."""
    callback = await authorize(await start_login(client, next_path), sub)
    parts = urlsplit(callback)
    return await client.get(parts.path, params={k: v[0] for k, v in parse_qs(parts.query).items()},
                            allow_redirects=False)


def csrf_of(html: str) -> str:
    """The CSRF token a console page put in its forms."""
    marker = 'name="csrf_token" value="'
    start = html.index(marker) + len(marker)
    return html[start:html.index('"', start)]
