"""Admin API handlers for virtual keys (create, list, revoke), on :mod:`spendgate.store.keys.store`."""

from __future__ import annotations

from typing import Annotated

import msgspec
from aiohttp import web

from spendgate.admin.access import audit, require
from spendgate.admin.console.auth_chain import identity_of
from spendgate.admin.console.identity import may_manage_keys, may_read_developer
from spendgate.admin.deps import DEPS
from spendgate.admin.middleware import ApiError, bad_request, json_response, not_found
from spendgate.admin.openapi import Operation, Param
from spendgate.admin.views import KeyList, KeyOut, key_list, key_out
from spendgate.store.keys import store as keys

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._@+\-]{0,127}$"


Name = Annotated[str, msgspec.Meta(pattern=NAME_PATTERN)]


class KeyCreate(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    developer: Name
    team: Name
    cost_center: Name | None = None
    """Defaults to the team."""


class KeyCreated(msgspec.Struct, frozen=True, kw_only=True):
    key: KeyOut
    secret: str
    """The virtual key itself: shown once, never retrievable again."""


async def list_keys(request: web.Request) -> web.Response:
    include = request.query.get("include_revoked", "true")
    if include not in ("true", "false"):
        raise bad_request("include_revoked must be true or false")
    who = identity_of(request)
    found = await key_list(request.app[DEPS].pool, include_revoked=include == "true")
    return json_response(KeyList(keys=[k for k in found.keys if may_read_developer(who, k.developer, k.team)]))


async def create_key(request: web.Request) -> web.Response:
    require(request, may_manage_keys(identity_of(request)), "create virtual keys")
    body = msgspec.json.decode(await request.read(), type=KeyCreate)
    created = await keys.create_key(
        request.app[DEPS].pool, developer=body.developer, team=body.team, cost_center=body.cost_center)
    await audit(request, "key.create", created.key.key_id,
                {"prefix": created.key.key_prefix, "developer": created.key.developer, "team": created.key.team,
                 "cost_center": created.key.cost_center})
    return json_response(KeyCreated(key=key_out(created.key), secret=created.secret), status=201)


async def revoke_key(request: web.Request) -> web.Response:
    require(request, may_manage_keys(identity_of(request)), "revoke virtual keys")
    key_id = request.match_info["key_id"]
    try:
        revoked = await keys.revoke_key(request.app[DEPS].pool, key_id)
    except keys.AmbiguousKeyError as exc:
        raise ApiError(409, "conflict", exc.message) from exc
    if revoked is None:
        raise not_found(f"no virtual key {key_id!r}")
    await audit(request, "key.revoke", revoked.key_id,
                {"prefix": revoked.key_prefix, "developer": revoked.developer, "team": revoked.team})
    return json_response(key_out(revoked))


def operations() -> list[Operation]:
    tags = ("keys",)
    return [
        Operation("GET", "/v1/keys", "listKeys", "Virtual keys (never their secrets)", list_keys, KeyList,
                  params=(Param("include_revoked", {"type": "string", "enum": ["true", "false"]},
                                "also list revoked keys (default true)"),), tags=tags),
        Operation("POST", "/v1/keys", "createKey", "Create a virtual key for a developer", create_key,
                  KeyCreated, status=201, body=KeyCreate, tags=tags),
        Operation("DELETE", "/v1/keys/{key_id}", "revokeKey", "Revoke a virtual key", revoke_key, KeyOut,
                  params=(Param("key_id", {"type": "string"}, "key id or its displayed prefix", where="path"),),
                  errors=(400, 404, 409), tags=tags),
    ]
