"""OpenID Connect for the console: discovery, the authorization request (code flow with PKCE S256,
``state`` and ``nonce``), the code exchange and the ID token's verification, then claims to an identity.

The HTTP calls use aiohttp's client; the ID token is verified with joserfc against the provider's JWKS
(signature, ``iss``, ``aud``, ``exp``, ``nonce``). Keys are fetched again once when a token names a key id
the cached set lacks (the provider rotated its keys).
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from spendgate.admin.console.identity import Identity, Role, strongest
from spendgate.core.config_services import OidcSettings

ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "EdDSA")
"""Asymmetric signatures only: an ID token signed with the client secret (HS256) or unsigned is refused."""
MAX_RESPONSE_BYTES = 256 * 1024
LEEWAY_S = 60
TIMEOUT = aiohttp.ClientTimeout(total=10)


class SignInError(Exception):
    """The sign-in failed for a reason the person may see (nothing secret in the message)."""


def pkce_challenge(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


@dataclass
class Provider:
    """The IdP as its discovery document describes it, and its signing keys (cached)."""

    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    keys: KeySet | None = field(default=None, repr=False)


async def _json(http: aiohttp.ClientSession, method: str, url: str, **kwargs: Any) -> Any:
    try:
        async with http.request(method, url, timeout=TIMEOUT, **kwargs) as resp:
            body = await resp.content.read(MAX_RESPONSE_BYTES + 1)
            if len(body) > MAX_RESPONSE_BYTES:
                raise SignInError(f"the identity provider's answer from {url} is too large")
            try:
                value = json.loads(body) if body else None
            except ValueError:
                value = None
            if resp.status >= 400 or not isinstance(value, dict):
                code = value.get("error") if isinstance(value, dict) else None
                raise SignInError(f"the identity provider answered {resp.status}"
                                  + (f" ({code})" if isinstance(code, str) else "") + f" at {url}")
            return value
    except aiohttp.ClientError as exc:
        raise SignInError(f"cannot reach the identity provider at {url}: {type(exc).__name__}") from None


async def discover(http: aiohttp.ClientSession, settings: OidcSettings) -> Provider:
    doc = await _json(http, "GET", settings.issuer + "/.well-known/openid-configuration")
    if doc.get("issuer", "").rstrip("/") != settings.issuer:
        raise SignInError(f"the discovery document names issuer {doc.get('issuer')!r}, not the configured "
                          f"{settings.issuer!r}")
    try:
        return Provider(settings.issuer, str(doc["authorization_endpoint"]), str(doc["token_endpoint"]),
                        str(doc["jwks_uri"]))
    except KeyError as exc:
        raise SignInError(f"the discovery document lacks {exc.args[0]}") from None


def authorization_url(provider: Provider, settings: OidcSettings, *, state: str, nonce: str, verifier: str) -> str:
    query = {"response_type": "code", "client_id": settings.client_id, "redirect_uri": settings.redirect_url,
             "scope": " ".join(settings.scopes), "state": state, "nonce": nonce,
             "code_challenge": pkce_challenge(verifier), "code_challenge_method": "S256"}
    sep = "&" if "?" in provider.authorization_endpoint else "?"
    return provider.authorization_endpoint + sep + urlencode(query)


async def exchange_code(http: aiohttp.ClientSession, provider: Provider, settings: OidcSettings, *, code: str,
                        verifier: str) -> str:
    """The ID token the provider gives for this code (client_secret_basic when a secret is set)."""
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": settings.redirect_url,
            "code_verifier": verifier, "client_id": settings.client_id}
    headers = {}
    if settings.client_secret is not None:  # client_secret_basic: each part form-encoded first (RFC 6749 2.3.1)
        pair = f"{quote(settings.client_id, safe='')}:{quote(settings.client_secret.get_secret_value(), safe='')}"
        headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
    answer = await _json(http, "POST", provider.token_endpoint, data=form, headers=headers)
    token = answer.get("id_token")
    if not isinstance(token, str):
        raise SignInError("the identity provider's token answer has no id_token")
    return token


async def _keys(http: aiohttp.ClientSession, provider: Provider, *, refresh: bool) -> KeySet:
    if provider.keys is None or refresh:
        try:
            provider.keys = KeySet.import_key_set(await _json(http, "GET", provider.jwks_uri))
        except (JoseError, ValueError, TypeError) as exc:
            raise SignInError(f"the identity provider's JWKS cannot be read: {type(exc).__name__}") from None
    return provider.keys


async def verify_id_token(http: aiohttp.ClientSession, provider: Provider, settings: OidcSettings, id_token: str,
                          *, nonce: str, now_s: float | None = None) -> dict[str, Any]:
    """The ID token's claims once its signature, issuer, audience, expiry and nonce check out."""
    keys = await _keys(http, provider, refresh=False)
    try:
        token = jwt.decode(id_token, keys, algorithms=ALGORITHMS)
    except JoseError:  # perhaps a key the cached set lacks: the provider rotated; fetch once more
        try:
            token = jwt.decode(id_token, await _keys(http, provider, refresh=True), algorithms=ALGORITHMS)
        except JoseError as exc:
            raise SignInError(f"the ID token's signature does not verify ({exc.error})") from None
    when = int(time.time() if now_s is None else now_s)
    registry = jwt.JWTClaimsRegistry(
        now=when, leeway=LEEWAY_S, iss={"essential": True, "value": provider.issuer},
        aud={"essential": True, "value": settings.client_id}, exp={"essential": True},
        sub={"essential": True}, nonce={"essential": True, "value": nonce})
    try:
        registry.validate(token.claims)
    except JoseError as exc:
        raise SignInError(f"the ID token is not valid here: {exc.description or exc.error}") from None
    claims = dict(token.claims)
    aud = claims.get("aud")
    if isinstance(aud, list) and len(aud) > 1 and claims.get("azp") != settings.client_id:
        raise SignInError("the ID token is for several audiences and not authorised for this client")
    return claims


def _strings(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, Sequence):
        return [v for v in value if isinstance(v, str)]
    return []


MAX_CLAIM_CHARS = 256
MAX_TEAMS = 100


def identity_from_claims(claims: Mapping[str, Any], settings: OidcSettings) -> Identity | None:
    """The console identity these claims map to, or None when no role applies."""
    role = strongest({Role(settings.role_map[v]) for v in _strings(claims.get(settings.role_claim))
                      if v in settings.role_map})
    if role is None:
        return None
    teams = frozenset(t[:MAX_CLAIM_CHARS] for t in _strings(claims.get(settings.teams_claim))[:MAX_TEAMS]) \
        if settings.teams_claim else frozenset()
    developer = None
    if settings.developer_claim:
        found = _strings(claims.get(settings.developer_claim))
        developer = found[0][:MAX_CLAIM_CHARS] if found else None
    if role is Role.DEVELOPER and developer is None:
        return None  # a developer who cannot be matched to their keys would see nothing
    subject = str(claims["sub"])[:MAX_CLAIM_CHARS]
    names = _strings(claims.get(settings.name_claim)) or _strings(claims.get("email")) or [subject]
    return Identity(subject=subject, name=names[0][:MAX_CLAIM_CHARS], role=role, teams=teams, developer=developer,
                    via="oidc")
