"""The admin API's side of the role rules: refuse (403, in the API's JSON error shape) what the caller's
identity may not do, narrow report filters to what it may read, and audit changes with the real identity.

The rules themselves live in :mod:`spendgate.admin.console.identity`; this module only applies them to
requests.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from aiohttp import web

from spendgate.admin.console.auth_chain import identity_of
from spendgate.admin.console.identity import Identity, Role, may_read_developer, may_read_team, reads_everything
from spendgate.admin.deps import DEPS
from spendgate.admin.middleware import ApiError
from spendgate.admin.window import Filters
from spendgate.store.access import store as access


def forbidden(message: str) -> ApiError:
    return ApiError(403, "forbidden", message)


def require(request: web.Request, allowed: bool, what: str) -> Identity:
    """The caller, when ``allowed``; else 403 naming what their role may not do."""
    who = identity_of(request)
    if not allowed:
        raise forbidden(f"the {who.role} role may not {what}")
    return who


def readable_filters(who: Identity, filters: Filters) -> Filters:
    """``filters`` narrowed to what ``who`` may read: a developer's own usage, a manager's team; a filter
    naming someone else's developer or team is refused, not silently emptied."""
    if reads_everything(who):
        return filters
    if who.role is Role.DEVELOPER:
        if filters.developer not in (None, who.developer) or who.developer is None:
            raise forbidden("a developer reads only their own usage")
        return replace(filters, developer=who.developer)
    if who.role is Role.MANAGER:
        if filters.team is None:
            if len(who.teams) != 1:
                raise forbidden(f"name one of your teams with team= ({', '.join(sorted(who.teams)) or 'none'})")
            return replace(filters, team=next(iter(who.teams)))
        if not may_read_team(who, filters.team):
            raise forbidden(f"a manager reads only their teams' usage, not team {filters.team!r}")
        return filters
    raise forbidden("this role reads no usage")


def require_developer(who: Identity, developer: str, team: str | None) -> None:
    if not may_read_developer(who, developer, team):
        raise forbidden("this session belongs to someone whose spend you may not read")


async def audit(request: web.Request, action: str, target: str, detail: Mapping[str, Any] | None = None) -> None:
    """Record a change made by this request's identity."""
    await access.record(request.app[DEPS].pool, actor=identity_of(request).actor, action=action, target=target,
                        detail=detail)


def actor(request: web.Request) -> str:
    return identity_of(request).actor
