"""Admin API handlers for what people read: chargeback and cache reports, sessions, teams, forecasts, alerts.

Each handler parses its query, then calls the very function the CLI calls against the database.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from spendgate.admin.access import forbidden, readable_filters, require, require_developer
from spendgate.admin.alert_query import KINDS, MAX_ALERTS
from spendgate.admin.alerts import AlertList, DeadLetterList, alert_list, dead_letter_list, parse_since
from spendgate.admin.cache import CacheReport, cache_report
from spendgate.admin.console.auth_chain import identity_of
from spendgate.admin.console.identity import Role, may_read_scope, may_read_team, reads_everything
from spendgate.admin.deps import DEPS
from spendgate.admin.directory import Forecasts, Teams, list_forecasts, list_teams
from spendgate.admin.middleware import bad_request, json_response, not_found
from spendgate.admin.openapi import Operation, Param
from spendgate.admin.reports import Chargeback, chargeback
from spendgate.admin.sessions import SessionAmbiguous, SessionDetail, SessionNotFound, session_detail
from spendgate.admin.window import GROUPINGS, Filters, Window, parse_date
from spendgate.domain.periods import zone

_DATE = {"type": "string", "format": "date"}
MAX_TEXT = 256
_TEXT = {"type": "string", "minLength": 1, "maxLength": MAX_TEXT}
WINDOW_PARAMS = (
    Param("from", _DATE, "first local day (inclusive); default: the 1st of this month"),
    Param("to", _DATE, "last local day (inclusive); default: the last day of this month"),
    Param("tz", {"type": "string", "minLength": 1, "maxLength": 64},
          "IANA timezone of the days (default: settings default_timezone)"),
)
FILTER_PARAMS = tuple(Param(c, _TEXT, f"only usage of this {c.replace('_', ' ')}")
                      for c in ("developer", "team", "cost_center", "repo"))


def _window(request: web.Request) -> Window:
    deps = request.app[DEPS]
    tz = _text(request, "tz") or deps.settings.default_timezone
    zone(tz)
    return Window.of(parse_date(request.query.get("from"), what="from"),
                     parse_date(request.query.get("to"), what="to"), tz=tz, now=deps.now())


def _text(request: web.Request, name: str) -> str | None:
    value = request.query.get(name)
    if value is not None and not 1 <= len(value) <= MAX_TEXT:
        raise bad_request(f"{name} must be 1 to {MAX_TEXT} characters")
    return value


def _filters(request: web.Request) -> Filters:
    """The report's filters, narrowed to what the caller may read (403 for someone else's)."""
    return readable_filters(identity_of(request), Filters(
        developer=_text(request, "developer"), team=_text(request, "team"),
        cost_center=_text(request, "cost_center"), repo=_text(request, "repo")))


def _int(request: web.Request, name: str, default: int, lo: int, hi: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise bad_request(f"{name} must be a whole number, not {raw!r}") from None
    if not lo <= value <= hi:
        raise bad_request(f"{name} must be between {lo} and {hi}")
    return value


def _by(request: web.Request, default: str) -> str:
    by = request.query.get("by", default)
    if by not in GROUPINGS:
        raise bad_request(f"by must be one of {', '.join(GROUPINGS)}, not {by!r}")
    return by


async def get_chargeback(request: web.Request) -> web.Response:
    deps = request.app[DEPS]
    report = await chargeback(deps.pool, deps.prices, by=_by(request, "team"), window=_window(request),
                              filters=_filters(request))
    return json_response(report)


async def get_cache(request: web.Request) -> web.Response:
    deps = request.app[DEPS]
    report = await cache_report(
        deps.pool, by=_by(request, "developer"), window=_window(request), filters=_filters(request),
        flag_below_pct=_int(request, "flag_below_pct", deps.settings.cache_flag_below_pct, 0, 100),
        min_requests=_int(request, "min_requests", deps.settings.cache_flag_min_requests, 1, 1_000_000))
    return json_response(report)


async def list_sessions(request: web.Request) -> web.Response:
    deps = request.app[DEPS]
    report = await chargeback(deps.pool, deps.prices, by="session", window=_window(request),
                              filters=_filters(request))
    return json_response(report)


async def get_session(request: web.Request) -> web.Response:
    deps = request.app[DEPS]
    who = identity_of(request)
    developer = _text(request, "developer")
    if who.role is Role.DEVELOPER:  # their own session of that id, never someone else's
        if developer not in (None, who.developer):
            raise forbidden("a developer reads only their own sessions")
        developer = who.developer
    try:
        detail = await session_detail(deps.pool, deps.prices, request.match_info["session_id"], developer)
    except SessionNotFound as exc:
        raise not_found(str(exc)) from None
    except SessionAmbiguous as exc:
        raise bad_request(str(exc)) from None
    require_developer(who, detail.line.developer or "", detail.line.team)
    return json_response(detail)


async def get_teams(request: web.Request) -> web.Response:
    deps = request.app[DEPS]
    who = identity_of(request)
    found = await list_teams(deps.pool, now=deps.now(), tz=deps.settings.default_timezone)
    if reads_everything(who):
        return json_response(found)
    return json_response(Teams(month=found.month, teams=[t for t in found.teams if may_read_team(who, t.team)]))


async def get_forecasts(request: web.Request) -> web.Response:
    deps = request.app[DEPS]
    who = identity_of(request)
    found = await list_forecasts(deps.pool, scope=_text(request, "scope"))
    return json_response(Forecasts(forecasts=[f for f in found.forecasts if may_read_scope(who, f.scope)]))


async def get_alerts(request: web.Request) -> web.Response:
    who, scope = identity_of(request), _text(request, "scope")
    if not reads_everything(who) and (scope is None or not may_read_scope(who, scope)):
        raise forbidden(f"the {who.role} role may list the alerts of its own scope only (scope=team:<yours>)")
    kind = request.query.get("kind")
    if kind is not None and kind not in KINDS:
        raise bad_request(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
    found = await alert_list(request.app[DEPS].pool, scope=scope, kind=kind,
                             since=parse_since(request.query.get("since")),
                             limit=_int(request, "limit", 100, 1, MAX_ALERTS))
    return json_response(found)


async def get_dead_letters(request: web.Request) -> web.Response:
    require(request, reads_everything(identity_of(request)), "read the alert dead letters")
    include = request.query.get("all", "false")
    if include not in ("true", "false"):
        raise bad_request("all must be true or false")
    return json_response(await dead_letter_list(request.app[DEPS].pool, include_replayed=include == "true"))


_BY = {"type": "string", "enum": list(GROUPINGS)}
REPORT_TAGS = ("reports",)


def operations() -> list[Operation]:
    by = Param("by", _BY, "group lines by session, developer, team, cost center or repo")
    pct: dict[str, Any] = {"type": "integer", "minimum": 0, "maximum": 100}
    count: dict[str, Any] = {"type": "integer", "minimum": 1, "maximum": 1_000_000}
    return [
        Operation("GET", "/v1/reports/chargeback", "chargeback", "Chargeback lines and their total",
                  get_chargeback, Chargeback, params=(by, *WINDOW_PARAMS, *FILTER_PARAMS), tags=REPORT_TAGS),
        Operation("GET", "/v1/reports/cache", "cacheReport", "Prompt-cache hit rates, savings and flagged sessions",
                  get_cache, CacheReport,
                  params=(by, *WINDOW_PARAMS, *FILTER_PARAMS,
                          Param("flag_below_pct", pct, "flag sessions under this hit rate"),
                          Param("min_requests", count, "only judge sessions with this many requests")),
                  tags=REPORT_TAGS),
        Operation("GET", "/v1/sessions", "listSessions", "Sessions as chargeback lines", list_sessions,
                  Chargeback, params=(*WINDOW_PARAMS, *FILTER_PARAMS), tags=("sessions",)),
        Operation("GET", "/v1/sessions/{session_id}", "getSession", "One session, its turns and requests",
                  get_session, SessionDetail, errors=(400, 404), tags=("sessions",),
                  params=(Param("session_id", {"type": "string"}, "the Codex session id", where="path"),
                          Param("developer", _TEXT, "the developer whose session it is (needed when the "
                                "session id was used by several developers' keys)"))),
        Operation("GET", "/v1/teams", "listTeams", "Teams and cost centers with their developers and spend",
                  get_teams, Teams, errors=(), tags=("directory",)),
        Operation("GET", "/v1/forecasts", "listForecasts", "Latest month-end forecast per scope",
                  get_forecasts, Forecasts, params=(Param("scope", _TEXT, "only this scope"),),
                  tags=("forecasts",)),
        Operation("GET", "/v1/alerts", "listAlerts",
                  "Recorded alerts, newest first, each with its deliveries (delivered, pending or dead)",
                  get_alerts, AlertList, tags=("alerts",), params=(
                      Param("scope", _TEXT, "this scope's alerts, e.g. team:platform"),
                      Param("kind", {"type": "string", "enum": list(KINDS)}, "this kind of alert"),
                      Param("since", {"type": "string", "minLength": 10, "maxLength": 64},
                            "alerts recorded at or after this time (ISO 8601 with a timezone, or a day)"),
                      Param("limit", {"type": "integer", "minimum": 1, "maximum": MAX_ALERTS},
                            "at most this many (default 100)"))),
        Operation("GET", "/v1/alerts/dead-letters", "listDeadLetters",
                  "Alert deliveries that failed their last attempt, oldest first",
                  get_dead_letters, DeadLetterList, tags=("alerts",), params=(
                      Param("all", {"type": "string", "enum": ["true", "false"]},
                            "include dead letters already replayed (default false)"),)),
    ]
