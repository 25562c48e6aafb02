"""The ID token check and the claims-to-role mapping, against tokens this test signs: a JWKS served over
real HTTP, a good token accepted, every forged or stale one refused, and a rotated key fetched once."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from joserfc import jwt
from joserfc.jwk import KeySet, OctKey, RSAKey

from spendgate.admin.console.identity import Role
from spendgate.admin.console.oidc import Provider, SignInError, identity_from_claims, pkce_challenge, verify_id_token
from spendgate.core.config_services import OidcSettings

ISSUER = "https://idp.example.com"
SETTINGS = OidcSettings(issuer=ISSUER, client_id="console", redirect_url="https://spend.example.com/auth/callback",
                        role_map={"finops-team": "finops", "eng-managers": "manager", "engineers": "developer"},
                        teams_claim="teams", developer_claim="preferred_username")
OLD, NEW = RSAKey.generate_key(2048, parameters={"kid": "old"}), RSAKey.generate_key(2048, parameters={"kid": "new"})


class Jwks:
    def __init__(self) -> None:
        self.keys = [OLD]
        self.fetches = 0

    async def handle(self, request: web.Request) -> web.Response:
        self.fetches += 1
        return web.json_response({"keys": [k.as_dict(private=False) for k in self.keys]})


@pytest.fixture
async def served() -> AsyncIterator[tuple[Provider, Jwks, aiohttp.ClientSession]]:
    jwks = Jwks()
    app = web.Application()
    app.router.add_get("/jwks", jwks.handle)
    async with TestServer(app, host="127.0.0.1") as server, aiohttp.ClientSession() as http:
        yield Provider(ISSUER, f"{ISSUER}/authorize", f"{ISSUER}/token", str(server.make_url("/jwks"))), jwks, http


def _claims(**changes: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": "console", "sub": "u1", "exp": now + 300, "iat": now, "nonce": "n-1",
              "name": "Uma", "groups": ["eng-managers"], "teams": ["platform", "data"]}
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


def _sign(claims: dict[str, Any], key: Any = OLD, alg: str = "RS256") -> str:
    return jwt.encode({"alg": alg, "kid": getattr(key, "kid", None) or "x"}, claims, key)


async def test_a_good_token_maps_to_its_role_and_teams(served: tuple[Provider, Jwks, aiohttp.ClientSession]) -> None:
    """Signature, iss, aud, exp and nonce check out; the groups claim gives the role, teams the teams."""
    provider, _, http = served
    claims = await verify_id_token(http, provider, SETTINGS, _sign(_claims()), nonce="n-1")
    who = identity_from_claims(claims, SETTINGS)
    assert who is not None and who.role is Role.MANAGER and who.teams == {"platform", "data"}
    assert who.actor == "oidc:u1" and who.name == "Uma"
    strongest = identity_from_claims(_claims(groups=["engineers", "finops-team"]), SETTINGS)
    assert strongest is not None and strongest.role is Role.FINOPS


@pytest.mark.parametrize(("what", "token_of"), [
    ("wrong nonce", lambda: _sign(_claims(nonce="n-2"))),
    ("no nonce", lambda: _sign(_claims(nonce=None))),
    ("other audience", lambda: _sign(_claims(aud="another-app"))),
    ("other issuer", lambda: _sign(_claims(iss="https://evil.example"))),
    ("expired", lambda: _sign(_claims(exp=int(time.time()) - 120))),
    ("unknown key", lambda: _sign(_claims(), RSAKey.generate_key(2048, parameters={"kid": "old"}))),
    ("HS256 with a guessable secret", lambda: _sign(_claims(), OctKey.import_key("console-secret" * 3), "HS256")),
    ("not a JWT", lambda: "not.a.jwt"),
])
async def test_forged_or_stale_tokens_are_refused(served: tuple[Provider, Jwks, aiohttp.ClientSession], what: str,
                                                  token_of: Any) -> None:
    """Each forged or stale token is a SignInError (no identity)."""
    provider, _, http = served
    with pytest.raises(SignInError):
        await verify_id_token(http, provider, SETTINGS, token_of(), nonce="n-1")


async def test_a_rotated_key_is_fetched_once(served: tuple[Provider, Jwks, aiohttp.ClientSession]) -> None:
    """A token signed with a key the cached set lacks makes one more JWKS fetch, then verifies."""
    provider, jwks, http = served
    await verify_id_token(http, provider, SETTINGS, _sign(_claims()), nonce="n-1")
    jwks.keys = [NEW]
    await verify_id_token(http, provider, SETTINGS, _sign(_claims(), NEW), nonce="n-1")
    assert jwks.fetches == 2
    assert isinstance(provider.keys, KeySet)


def test_claims_without_a_role_or_a_developer_id_sign_nobody_in() -> None:
    """Unmapped groups: no identity; a developer without the developer claim: none either (they would see
    nothing of their own); a mapped developer gets their id."""
    assert identity_from_claims(_claims(groups=["visitors"]), SETTINGS) is None
    assert identity_from_claims(_claims(groups="engineers"), SETTINGS) is None
    dev = identity_from_claims(_claims(groups="engineers", preferred_username="alice"), SETTINGS)
    assert dev is not None and dev.role is Role.DEVELOPER and dev.developer == "alice"


def test_pkce_challenge_is_rfc7636_s256() -> None:
    """The RFC 7636 appendix B example."""
    verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    assert pkce_challenge(verifier) == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
