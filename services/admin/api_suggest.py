"""``GET /v1/policy/suggestions``: what ``spendgate policy suggest`` prints, for the API and the console.

Admins and FinOps may ask for every team; a manager for one of their own teams (``?team=``); developers
not at all. The handler checks its input, then calls :func:`spendgate.admin.suggest.suggest`.
"""

from __future__ import annotations

from aiohttp import web

from spendgate.admin.console.auth_chain import identity_of
from spendgate.admin.console.identity import may_approve_suggestion, reads_everything
from spendgate.admin.deps import DEPS
from spendgate.admin.middleware import ApiError, bad_request, json_response
from spendgate.admin.openapi import Operation, Param
from spendgate.admin.suggest import (
    DEFAULT_DAYS,
    DEFAULT_TOLERANCE_PCT,
    MAX_DAYS,
    MAX_TEAM_CHARS,
    MAX_TOLERANCE_PCT,
    Suggestions,
    suggest,
)


def _number(request: web.Request, name: str, default: float, *, whole: bool) -> float:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw) if whole else float(raw)
    except ValueError:
        raise bad_request(f"{name} must be a {'whole ' if whole else ''}number, not {raw[:20]!r}") from None
    return value


async def get_suggestions(request: web.Request) -> web.Response:
    team = request.query.get("team")
    who = identity_of(request)
    if not reads_everything(who) and (team is None or not may_approve_suggestion(who, team)):
        raise ApiError(403, "forbidden", "admins and FinOps read every team's suggestions, a manager their own "
                       "teams' (name one with ?team=)")
    tolerance = _number(request, "tolerance", DEFAULT_TOLERANCE_PCT, whole=False)
    days = int(_number(request, "days", DEFAULT_DAYS, whole=True))
    deps = request.app[DEPS]
    found = await suggest(deps.pool, deps.settings, deps.prices, now=deps.now(), days=days, tolerance_pct=tolerance,
                          team=team)
    return json_response(found)


def operations() -> list[Operation]:
    return [
        Operation("GET", "/v1/policy/suggestions", "policySuggestions",
                  "Policy changes the recent turns say are safe, each with its math, dry-run and document",
                  get_suggestions, Suggestions, params=(
                      Param("team", {"type": "string", "minLength": 1, "maxLength": MAX_TEAM_CHARS},
                            "Only this team's turns (a manager must name one of their teams)"),
                      Param("tolerance", {"type": "number", "exclusiveMinimum": 0, "maximum": MAX_TOLERANCE_PCT},
                            "Largest quality regression allowed, percent (default 2)"),
                      Param("days", {"type": "integer", "minimum": 1, "maximum": MAX_DAYS},
                            "Days of turns to learn from (default 30)")),
                  errors=(400, 403), tags=("policy",)),
    ]
