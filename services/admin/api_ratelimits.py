"""Admin API handlers for rate limits: list, set, delete (``spendgate ratelimits`` does the same on the database).

Every running proxy re-reads the limits within ``rate_limits.reload_s``. Values out of range, a bad scope
or unknown fields are a 400 naming the problem (the middleware turns msgspec's and the domain's
validation errors into that answer).
"""

from __future__ import annotations

import re
from typing import Annotated

import msgspec
from aiohttp import web

from spendgate.admin.access import actor, audit, require
from spendgate.admin.console.auth_chain import identity_of
from spendgate.admin.console.identity import may_set_rate_limits, reads_everything
from spendgate.admin.deps import DEPS
from spendgate.admin.middleware import ApiError, json_response, not_found
from spendgate.admin.openapi import Operation, Param
from spendgate.domain.ratelimits import MAX_RPM, MAX_TPM, RateLimit, rate_limit_of
from spendgate.store.ratelimits import store

LIMIT_SCOPE_PATTERN = r"^(key|developer|team):[^\x00-\x1f\x7f\s]([^\x00-\x1f\x7f]{0,198}[^\x00-\x1f\x7f\s])?$"

Rpm = Annotated[int, msgspec.Meta(ge=1, le=MAX_RPM, description="requests per minute")]
Tpm = Annotated[int, msgspec.Meta(ge=1, le=MAX_TPM, description="tokens per minute (input estimate + output)")]


class RateLimitIn(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The scope's limits; a kind left out is not limited. At least one is needed."""

    rpm: Rpm | None = None
    tpm: Tpm | None = None


class RateLimitOut(msgspec.Struct, frozen=True, kw_only=True):
    scope: str
    rpm: int | None
    tpm: int | None


class RateLimits(msgspec.Struct, frozen=True, kw_only=True):
    rate_limits: list[RateLimitOut]


class RateLimitDeleted(msgspec.Struct, frozen=True, kw_only=True):
    deleted: str


def _out(limit: RateLimit) -> RateLimitOut:
    return RateLimitOut(scope=limit.scope, rpm=limit.rpm, tpm=limit.tpm)


def _scope(request: web.Request) -> str:
    text = request.match_info["scope"]
    if re.fullmatch(LIMIT_SCOPE_PATTERN, text) is None:  # as given: no stray spaces, no control characters
        raise ApiError(400, "bad_request", f"bad rate-limit scope {text[:210]!r}: use key:<id>, developer:<name> "
                                           "or team:<name>")
    return text


async def list_rate_limits(request: web.Request) -> web.Response:
    require(request, reads_everything(identity_of(request)), "read the rate limits")
    found = await store.list_rate_limits(request.app[DEPS].pool)
    return json_response(RateLimits(rate_limits=[_out(lim) for lim in found]))


async def put_rate_limit(request: web.Request) -> web.Response:
    require(request, may_set_rate_limits(identity_of(request)), "set rate limits")
    scope = _scope(request)
    body = msgspec.json.decode(await request.read(), type=RateLimitIn)
    limit = rate_limit_of(scope, rpm=body.rpm, tpm=body.tpm)
    await store.set_rate_limit(request.app[DEPS].pool, limit, actor=actor(request))
    await audit(request, "ratelimit.set", scope, {"rpm": limit.rpm, "tpm": limit.tpm})
    return json_response(_out(limit))


async def delete_rate_limit(request: web.Request) -> web.Response:
    require(request, may_set_rate_limits(identity_of(request)), "delete rate limits")
    scope = _scope(request)
    if not await store.delete_rate_limit(request.app[DEPS].pool, scope):
        raise not_found(f"no rate limit for {scope}")
    await audit(request, "ratelimit.delete", scope)
    return json_response(RateLimitDeleted(deleted=scope))


def operations() -> list[Operation]:
    scope = Param("scope", {"type": "string", "pattern": LIMIT_SCOPE_PATTERN},
                  "key:<id>, developer:<name> or team:<name>", where="path")
    tags = ("rate limits",)
    return [
        Operation("GET", "/v1/rate-limits", "listRateLimits", "Requests- and tokens-per-minute limits",
                  list_rate_limits, RateLimits, errors=(), tags=tags),
        Operation("PUT", "/v1/rate-limits/{scope}", "setRateLimit", "Create or replace a scope's rate limits",
                  put_rate_limit, RateLimitOut, params=(scope,), body=RateLimitIn, tags=tags),
        Operation("DELETE", "/v1/rate-limits/{scope}", "deleteRateLimit", "Remove a scope's rate limits",
                  delete_rate_limit, RateLimitDeleted, params=(scope,), errors=(400, 404), tags=tags),
    ]
