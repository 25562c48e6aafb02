"""``GET /v1/spendgate/me``: what a developer holding only their ``sk-sg-`` key may know about their spend.

Authenticated like a model request (the same key cache, the same OpenAI-shaped 401 for an unknown or
revoked key), answered by the proxy itself: never forwarded upstream, never evented, never counted as
spend. The answer names the key's own developer, team and cost center and, for every budget that
applies to their requests (their key, themself, their team, their cost center, the org, and those
scopes' per-model budgets), its spend and stage per period and when that period resets; then the
developer's cost today and their costliest sessions this month. Nothing about anyone else: a team or
org budget's total is shown, never who spent it.

This is not the hot path: it is registered beside it (a fixed route aiohttp matches before the
``/v1/*`` catch-all), and it reads PostgreSQL, bounded by :data:`MAX_CONCURRENT` reads at a time per
proxy (a flood cannot take the pool from the enforcement loops) and :data:`TIMEOUT_S` each.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime

import asyncpg
import msgspec
from aiohttp import web

from spendgate.core.db import DATABASE_TROUBLE
from spendgate.core.logs import get_logger
from spendgate.domain.enforcement.scopes import Principal, split_scope
from spendgate.domain.periods import PeriodKind, period_containing
from spendgate.proxy import errors
from spendgate.proxy.handler import bearer
from spendgate.proxy.keycache import KeyCache
from spendgate.store.balances.standing import standings
from spendgate.store.balances.store import spent_micros
from spendgate.store.budgets.store import active_raises, budgets_of
from spendgate.store.keys.store import VirtualKey
from spendgate.store.usage.reads import top_sessions

log = get_logger(__name__)

PATH = "/v1/spendgate/me"
OBJECT = "spendgate.me"
"""The document's ``object`` field: what ``spendgate me`` checks to know it talks to a spendgate proxy."""
TIMEOUT_S = 3.0
MAX_CONCURRENT = 4
DEFAULT_SESSIONS = 10
MAX_SESSIONS = 50
MAX_QUERY_CHARS = 256


class BudgetLine(msgspec.Struct, frozen=True, kw_only=True):
    scope: str
    """The budget's scope without its model (``team:platform``)."""
    model: str | None
    """The one model a per-model budget counts; null: every model."""
    period: str
    """``day``, ``week`` (ISO, from Monday) or ``month``, in the budget's time zone."""
    start: date
    spent_micros: int
    budget_micros: int
    """The period's budget plus the raises active now."""
    remaining_micros: int
    """What is left before the budget (never below 0)."""
    stage: str
    resets_at: datetime


class SessionOut(msgspec.Struct, frozen=True, kw_only=True):
    session_id: str
    repo: str | None
    cost_micros: int
    requests: int


class Today(msgspec.Struct, frozen=True, kw_only=True):
    date: date
    timezone: str
    cost_micros: int


class Me(msgspec.Struct, frozen=True, kw_only=True):
    object: str = OBJECT
    as_of: datetime
    key_id: str
    key_prefix: str
    developer: str
    team: str
    cost_center: str | None
    today: Today
    budgets: list[BudgetLine]
    """Every budget the key's requests count in, narrowest scope first, each period it has an amount for."""
    top_sessions: list[SessionOut]
    """The developer's costliest sessions this month (in ``today.timezone``), costliest first."""


_encoder = msgspec.json.Encoder()


def _principal(key: VirtualKey) -> Principal:
    return Principal(key.key_id, key.developer, key.team, key.cost_center or None)


async def me_of(db: asyncpg.Pool, key: VirtualKey, now: datetime, *, default_timezone: str, sessions: int) -> Me:
    """The self-service document of ``key``'s holder at ``now``."""
    scopes = _principal(key).scopes()
    rank = {s: i for i, s in enumerate(scopes)}
    mine = sorted((b for b in await budgets_of(db) if split_scope(b.scope)[0] in rank),
                  key=lambda b: (rank[split_scope(b.scope)[0]], b.scope))
    raises = await active_raises(db, now, [b.scope for b in mine]) if mine else []
    lines: list[BudgetLine] = []
    for b in mine:
        base, model = split_scope(b.scope)
        lines.extend(BudgetLine(scope=base, model=model, period=s.period.value, start=s.start,
                                spent_micros=s.spent_micros, budget_micros=s.budget_micros,
                                remaining_micros=max(0, s.budget_micros - s.spent_micros), stage=s.stage,
                                resets_at=s.resets_at)
                     for s in await standings(db, b, raises, now))
    developer_scope = f"developer:{key.developer}"
    tz = next((b.timezone for b in mine if b.scope == developer_scope), default_timezone)
    day = period_containing(PeriodKind.DAY, now, tz)
    month = period_containing(PeriodKind.MONTH, now, tz)
    today = Today(date=day.start, timezone=tz,
                  cost_micros=await spent_micros(db, developer_scope, PeriodKind.DAY, day.start))
    top = await top_sessions(db, developer_scope, month.starts_at, month.ends_at, sessions) if sessions else []
    return Me(as_of=now, key_id=key.key_id, key_prefix=key.key_prefix, developer=key.developer, team=key.team,
              cost_center=key.cost_center or None, today=today, budgets=lines,
              top_sessions=[SessionOut(session_id=s.session_id, repo=s.repo, cost_micros=s.cost_micros,
                                       requests=s.requests) for s in top])


@dataclass
class MeView:
    """The handler of :data:`PATH`, bound to the proxy's key cache and database pool."""

    keys: KeyCache
    pool: asyncpg.Pool
    default_timezone: str = "UTC"
    timeout_s: float = TIMEOUT_S
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)

    def __post_init__(self) -> None:
        self._slots = asyncio.Semaphore(MAX_CONCURRENT)

    async def handle(self, request: web.Request) -> web.Response:
        key = _authenticated(request, self.keys)
        if isinstance(key, web.Response):
            return key
        sessions = _sessions_param(request)
        if isinstance(sessions, web.Response):
            return sessions
        if self._slots.locked():
            return errors.error_response(429, "Too many spendgate self-service requests at once; try again in a "
                                              "moment.", type_="requests", code="rate_limit_exceeded",
                                         headers={"Retry-After": "1"})
        try:
            async with self._slots:
                me = await asyncio.wait_for(
                    me_of(self.pool, key, self.clock(), default_timezone=self.default_timezone, sessions=sessions),
                    self.timeout_s)
        except DATABASE_TROUBLE as exc:
            log.warning("self-service read failed", key_id=key.key_id, error=type(exc).__name__)
            return errors.error_response(503, "spendgate could not read your spend right now; try again shortly.",
                                         type_="server_error", code="spend_unavailable")
        return web.Response(body=_encoder.encode(me), content_type="application/json",
                            headers={"Cache-Control": "no-store"})


def _authenticated(request: web.Request, keys: KeyCache) -> VirtualKey | web.Response:
    secret = bearer(request.headers.get("Authorization"))
    if secret is None:
        return errors.unauthorized("You didn't provide an API key. Send your spendgate virtual key as "
                                   "'Authorization: Bearer sk-sg-...'.")
    key = keys.lookup(secret)
    if key is None:
        return errors.unauthorized("Incorrect API key provided: the spendgate virtual key is unknown or revoked.")
    return key


def _sessions_param(request: web.Request) -> int | web.Response:
    """``?sessions=N`` (0 to :data:`MAX_SESSIONS`), the only parameter; anything else is a 400."""
    if len(request.query_string) > MAX_QUERY_CHARS:
        return errors.error_response(400, "The query string is too long.", code="invalid_request")
    unknown = sorted(set(request.query) - {"sessions"})
    if unknown:
        return errors.error_response(400, f"Unknown parameter {unknown[0]!r}: only 'sessions' is accepted.",
                                     code="unknown_parameter", param=unknown[0][:40])
    raw = request.query.getall("sessions", [])
    if not raw:
        return DEFAULT_SESSIONS
    text = raw[-1].strip()
    if len(raw) > 1 or not text.isascii() or not text.isdigit() or int(text) > MAX_SESSIONS:
        return errors.error_response(400, f"'sessions' must be one whole number from 0 to {MAX_SESSIONS}.",
                                     code="invalid_value", param="sessions")
    return int(text)
