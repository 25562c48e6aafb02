"""Admin API for named API tokens (admin only): create (the secret shown once), list, revoke.

A token carries a role (and a manager's teams or a developer's id) and an expiry; it is presented as a
bearer token (``Authorization: Bearer sg-at-…``) and resolved by :mod:`spendgate.admin.console.credentials`.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Literal

import msgspec
from aiohttp import web

from spendgate.admin.access import audit, require
from spendgate.admin.console.auth_chain import identity_of
from spendgate.admin.console.identity import may_manage_tokens
from spendgate.admin.deps import DEPS
from spendgate.admin.middleware import ApiError, bad_request, json_response, not_found
from spendgate.admin.openapi import Operation, Param
from spendgate.store.access import store as access

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._@+\-]{0,63}$"
Name = Annotated[str, msgspec.Meta(pattern=NAME_PATTERN)]
Scope = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9._@+\-]{0,127}$")]


class TokenCreate(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    name: Name
    role: Literal["admin", "finops", "manager", "developer"]
    teams: Annotated[list[Scope], msgspec.Meta(max_length=100)] = []
    """A manager token's teams (required for role manager)."""
    developer: Scope | None = None
    """A developer token's developer id, as on their virtual keys (required for role developer)."""
    days: Annotated[int, msgspec.Meta(ge=1, le=3650)] = 90
    """Lifetime in days (at most the settings' console.api_token_max_days)."""


class TokenOut(msgspec.Struct, frozen=True, kw_only=True):
    token_id: str
    name: str
    token_prefix: str
    role: str
    teams: list[str]
    developer: str | None
    created_by: str
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None


class TokenCreated(msgspec.Struct, frozen=True, kw_only=True):
    token: TokenOut
    secret: str
    """The token itself: shown once, never retrievable again."""


class TokenList(msgspec.Struct, frozen=True, kw_only=True):
    tokens: list[TokenOut]


def token_out(t: access.ApiToken) -> TokenOut:
    p = t.principal
    return TokenOut(token_id=t.token_id, name=t.name, token_prefix=t.token_prefix, role=p.role, teams=list(p.teams),
                    developer=p.developer, created_by=t.created_by, created_at=t.created_at,
                    expires_at=t.expires_at, revoked_at=t.revoked_at)


def scope_problem(role: str, teams: list[str], developer: str | None) -> str | None:
    """A manager token needs teams, a developer token its developer id; other roles take neither."""
    if role == "manager" and not teams:
        return "a manager token needs teams (the teams it may read)"
    if role == "developer" and developer is None:
        return "a developer token needs developer (the developer id on their virtual keys)"
    if role != "manager" and teams:
        return f"teams apply to manager tokens only, not {role}"
    if role != "developer" and developer is not None:
        return f"developer applies to developer tokens only, not {role}"
    return None


async def create_token(request: web.Request) -> web.Response:
    who = require(request, may_manage_tokens(identity_of(request)), "manage API tokens")
    deps = request.app[DEPS]
    body = msgspec.json.decode(await request.read(), type=TokenCreate)
    problem = scope_problem(body.role, body.teams, body.developer)
    if problem is not None:
        raise bad_request(problem)
    limit = deps.settings.console.api_token_max_days
    if body.days > limit:
        raise bad_request(f"days must be at most {limit} (console.api_token_max_days)")
    try:
        token, secret = await access.create_token(
            deps.pool, name=body.name, role=body.role, teams=tuple(sorted(set(body.teams))),
            developer=body.developer, expires_at=deps.now() + timedelta(days=body.days), created_by=who.actor)
    except access.TokenNameTaken:
        raise ApiError(409, "conflict", f"a live token is already named {body.name!r}: revoke it or choose "
                                        "another name") from None
    await audit(request, "token.create", body.name, {"role": body.role, "teams": sorted(set(body.teams)),
                                                      "developer": body.developer, "days": body.days})
    return json_response(TokenCreated(token=token_out(token), secret=secret), status=201)


async def list_tokens(request: web.Request) -> web.Response:
    require(request, may_manage_tokens(identity_of(request)), "manage API tokens")
    include = request.query.get("include_revoked", "false")
    if include not in ("true", "false"):
        raise bad_request("include_revoked must be true or false")
    found = await access.list_tokens(request.app[DEPS].pool, include_revoked=include == "true")
    return json_response(TokenList(tokens=[token_out(t) for t in found]))


async def revoke_token(request: web.Request) -> web.Response:
    require(request, may_manage_tokens(identity_of(request)), "manage API tokens")
    deps = request.app[DEPS]
    name = request.match_info["name"]
    revoked = await access.revoke_token(deps.pool, name, deps.now())
    if revoked is None:
        raise not_found(f"no live API token {name[:64]!r}")
    await audit(request, "token.revoke", revoked.name, {"token_id": revoked.token_id})
    return json_response(token_out(revoked))


def operations() -> list[Operation]:
    tags = ("tokens",)
    return [
        Operation("GET", "/v1/tokens", "listTokens", "Named API tokens (never their secrets); admin only",
                  list_tokens, TokenList, errors=(400, 403), tags=tags,
                  params=(Param("include_revoked", {"type": "string", "enum": ["true", "false"]},
                                "also list revoked tokens (default false)"),)),
        Operation("POST", "/v1/tokens", "createToken", "Create a named, scoped, expiring API token; admin only",
                  create_token, TokenCreated, status=201, body=TokenCreate, errors=(400, 403, 409), tags=tags),
        Operation("DELETE", "/v1/tokens/{name}", "revokeToken", "Revoke a token by name or id; admin only",
                  revoke_token, TokenOut, errors=(403, 404), tags=tags,
                  params=(Param("name", {"type": "string"}, "the token's name or id", where="path"),)),
    ]
