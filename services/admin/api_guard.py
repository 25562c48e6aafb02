"""Admin API handlers for the guard and rationing (``spendgate policy guard | ration``): read-only checks.

``GET /v1/policy/guard`` judges the active version (it never rolls back: the guard worker does);
``GET /v1/policy/ration[?scope=]`` lists the rationing proposals. Both need
:func:`~spendgate.admin.console.identity.may_change_policy` (they show other teams' turns and budgets).
"""

from __future__ import annotations

from aiohttp import web

from spendgate.admin.access import require
from spendgate.admin.console.auth_chain import identity_of
from spendgate.admin.console.identity import may_change_policy
from spendgate.admin.deps import DEPS
from spendgate.admin.guard import GuardCheck, check
from spendgate.admin.middleware import ApiError, json_response
from spendgate.admin.openapi import Operation, Param
from spendgate.admin.ration import Rationing, proposals
from spendgate.domain.enforcement.scopes import parse_scope
from spendgate.domain.errors import ConfigError

MAX_SCOPE_CHARS = 300


async def get_guard(request: web.Request) -> web.Response:
    require(request, may_change_policy(identity_of(request)), "read the policy guard")
    deps = request.app[DEPS]
    return json_response(await check(deps.pool, deps.settings, deps.prices, now=deps.now()))


async def get_ration(request: web.Request) -> web.Response:
    require(request, may_change_policy(identity_of(request)), "read rationing proposals")
    deps = request.app[DEPS]
    given = request.query.getall("scope", [])
    if len(given) > 1:
        raise ApiError(400, "bad_request", "give scope at most once")
    scope = None
    if given:
        if len(given[0]) > MAX_SCOPE_CHARS:
            raise ApiError(400, "bad_request", f"scope is longer than {MAX_SCOPE_CHARS} characters")
        try:
            scope = parse_scope(given[0])
        except ConfigError as exc:
            raise ApiError(400, "bad_request", exc.message) from None
    return json_response(await proposals(deps.pool, deps.settings, deps.prices, now=deps.now(), scope=scope))


def operations() -> list[Operation]:
    p = ("policy",)
    scope = Param("scope", {"type": "string", "maxLength": MAX_SCOPE_CHARS}, "only this scope (team:platform, org, …)")
    return [
        Operation("GET", "/v1/policy/guard", "checkPolicyGuard",
                  "Judge the active version: per part it changed (routing rule, limit, budget, …), quality since "
                  "against before",
                  get_guard, GuardCheck, errors=(403,), tags=p),
        Operation("GET", "/v1/policy/ration", "listRationProposals",
                  "Changes that bring a scope's month-end P50 back under its monthly budget, least disruptive first",
                  get_ration, Rationing, params=(scope,), errors=(400, 403), tags=p),
    ]
