"""Admin API handlers for policy versions: list, one version, verify, rollback (``spendgate policy
versions | verify | rollback``). ``POST /v1/policy/apply`` (in :mod:`.api_policy`) stores a version too.

Changes are made by the request's identity (``Identity.actor`` is the approver), need
:func:`~spendgate.admin.console.identity.may_change_policy` and are audited.
"""

from __future__ import annotations

from typing import Annotated

import msgspec
from aiohttp import web

from spendgate.admin.access import actor, audit, require
from spendgate.admin.console.auth_chain import identity_of
from spendgate.admin.console.identity import may_change_policy
from spendgate.admin.deps import DEPS
from spendgate.admin.middleware import ApiError, json_response, not_found
from spendgate.admin.openapi import Operation, Param
from spendgate.admin.policy_versions import (
    VERSION_PATTERN,
    Verifications,
    VersionApplied,
    VersionDetail,
    VersionList,
    check,
    rollback,
    version_detail,
    version_id_of,
    versions,
)
from spendgate.domain.errors import ConfigError, StoreError
from spendgate.domain.policy_versions import MAX_REASON_CHARS
from spendgate.store.policies import store


class RollbackIn(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    to: Annotated[str, msgspec.Meta(pattern=VERSION_PATTERN)] | None = None
    """The version to restore; default: the active version's parent."""
    reason: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_REASON_CHARS)] = "rollback"


def _version_id(text: str) -> str:
    try:
        return version_id_of(text)
    except ConfigError as exc:
        raise ApiError(400, "bad_request", exc.message) from None


async def list_versions(request: web.Request) -> web.Response:
    given = request.query.getall("limit", ["50"])
    raw = given[0]
    if len(given) != 1 or not raw.isdigit() or not 1 <= int(raw) <= 10_000:
        raise ApiError(400, "bad_request", "limit must be a whole number from 1 to 10000")
    return json_response(VersionList(versions=await versions(request.app[DEPS].pool, limit=int(raw))))


async def get_version(request: web.Request) -> web.Response:
    pool = request.app[DEPS].pool
    version_id = _version_id(request.match_info["version"])
    found = await store.get_version(pool, version_id)
    if found is None:
        raise not_found(f"no policy version {version_id}")
    active = await store.active_version(pool)
    return json_response(version_detail(found, active.version_id if active else None))


async def verify_versions(request: web.Request) -> web.Response:
    deps = request.app[DEPS]
    version = request.query.get("version")
    flags = request.query.getall("all", ["false"])
    if len(flags) != 1 or flags[0] not in ("true", "false"):
        raise ApiError(400, "bad_request", "all must be true or false, given once")
    every = flags[0] == "true"
    if version is not None and every:
        raise ApiError(400, "bad_request", "give version or all, not both")
    return json_response(await check(deps.pool, deps.settings,
                                     version_id=None if version is None else _version_id(version), every=every))


async def post_rollback(request: web.Request) -> web.Response:
    require(request, may_change_policy(identity_of(request)), "roll back policies")
    deps = request.app[DEPS]
    body = msgspec.json.decode(await request.read(), type=RollbackIn)
    try:
        done = await rollback(deps.pool, deps.settings, deps.prices, now=deps.now(), approver=actor(request),
                              reason=body.reason, to=body.to)
    except StoreError as exc:
        if exc.retriable:
            raise
        raise ApiError(409, "conflict", exc.message) from None
    await audit(request, "policy.rollback", "policy", {"version": done.version_id, "parent": done.parent,
                                                       "set": done.set_budgets, "deleted": done.deleted_budgets})
    return json_response(done)


def operations() -> list[Operation]:
    p = ("policy",)
    version = Param("version", {"type": "string", "pattern": VERSION_PATTERN}, "a version id", where="path")
    limit = Param("limit", {"type": "integer", "minimum": 1, "maximum": 10_000}, "newest versions to list")
    one = Param("version", {"type": "string", "pattern": VERSION_PATTERN}, "the version to check (default: the "
                "active one)")
    every = Param("all", {"type": "boolean"}, "check every version")
    return [
        Operation("GET", "/v1/policy/versions", "listPolicyVersions", "Stored policy versions, newest first",
                  list_versions, VersionList, params=(limit,), tags=p),
        Operation("GET", "/v1/policy/versions/{version}", "getPolicyVersion",
                  "One policy version with its document and signature", get_version, VersionDetail,
                  params=(version,), errors=(400, 404), tags=p),
        Operation("GET", "/v1/policy/verify", "verifyPolicyVersions",
                  "Check the signatures of the active version, one version or all", verify_versions, Verifications,
                  params=(one, every), tags=p),
        Operation("POST", "/v1/policy/rollback", "rollbackPolicy",
                  "Make the previous (or a named) version active again, as a new version", post_rollback,
                  VersionApplied, body=RollbackIn, errors=(400, 403, 409), tags=p),
    ]
