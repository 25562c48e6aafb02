"""Where the CLI's read commands get their data: the database directly, or a running admin API.

Both sources return the same typed documents: the database source calls the functions the admin
API's handlers call, the API source calls the admin API and decodes its JSON into the same types. So
``spendgate report …``, ``sessions …``, ``keys list``, ``budgets list|show``, ``policy show`` and
``alerts list|dead`` print the same thing either way (``--api URL``). A document the API does not have is the same
one-line error both ways (``no budget for team:x``).

aiohttp is imported only when ``--api`` is used: a command on the database does not pay for it.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote

import msgspec

from spendgate.core.clitools import Ctx
from spendgate.domain.errors import SpendgateError

if TYPE_CHECKING:
    import asyncpg

    from spendgate.admin.alerts import AlertList, DeadLetterList
    from spendgate.admin.cache import CacheReport
    from spendgate.admin.directory import Teams
    from spendgate.admin.reports import Chargeback
    from spendgate.admin.sessions import SessionDetail
    from spendgate.admin.turns import TurnList
    from spendgate.admin.views import Budgets, BudgetStatus, KeyList
    from spendgate.admin.window import Filters, Window
    from spendgate.core.adminapi import AdminApi
    from spendgate.core.config import Settings



class Source(Protocol):
    async def chargeback(self, by: str, from_date: date | None, to_date: date | None,
                         filters: Filters, tz: str | None = None) -> Chargeback: ...

    async def cache(self, by: str, from_date: date | None, to_date: date | None, filters: Filters,
                    flag_below_pct: int, min_requests: int, tz: str | None = None) -> CacheReport: ...

    async def sessions(self, from_date: date | None, to_date: date | None, filters: Filters,
                       tz: str | None = None) -> Chargeback: ...

    async def session(self, session_id: str, developer: str | None = None) -> SessionDetail: ...

    async def keys(self, *, include_revoked: bool) -> KeyList: ...

    async def budgets(self) -> Budgets: ...

    async def budget(self, scope: str) -> BudgetStatus: ...

    async def policy(self) -> dict[str, Any]: ...

    async def teams(self) -> Teams: ...

    async def alerts(self, *, scope: str | None, kind: str | None, since: datetime | None,
                     limit: int) -> AlertList: ...

    async def dead_letters(self, *, include_replayed: bool) -> DeadLetterList: ...

    async def turns(self, *, session: str | None, team: str | None, since: datetime | None,
                    limit: int) -> TurnList: ...


@contextlib.asynccontextmanager
async def open_source(ctx: Ctx, api_url: str | None) -> AsyncIterator[Source]:
    """The admin API at ``api_url`` when given (with ``SPENDGATE_ADMIN_TOKEN``), else the database."""
    settings = ctx.settings
    if api_url:
        async with open_api(settings, api_url) as api:
            yield api
        return
    async with ctx.database() as pool:
        yield DatabaseSource(pool, settings)


@contextlib.asynccontextmanager
async def open_api(settings: Settings, api_url: str) -> AsyncIterator[ApiSource]:
    from spendgate.core.adminapi import open_admin_api

    async with open_admin_api(settings, api_url) as api:
        yield ApiSource(api)


class DatabaseSource:
    def __init__(self, pool: asyncpg.Pool, settings: Settings) -> None:
        self.pool, self.settings, self.prices = pool, settings, settings.pricing.table()

    def _window(self, from_date: date | None, to_date: date | None, tz: str | None) -> Window:
        from spendgate.admin.window import Window
        from spendgate.domain.periods import zone

        tz = tz or self.settings.default_timezone
        zone(tz)
        return Window.of(from_date, to_date, tz=tz, now=datetime.now(UTC))

    async def chargeback(self, by: str, from_date: date | None, to_date: date | None,
                         filters: Filters, tz: str | None = None) -> Chargeback:
        from spendgate.admin.reports import chargeback

        return await chargeback(self.pool, self.prices, by=by, window=self._window(from_date, to_date, tz),
                                filters=filters)

    async def cache(self, by: str, from_date: date | None, to_date: date | None, filters: Filters,
                    flag_below_pct: int, min_requests: int, tz: str | None = None) -> CacheReport:
        from spendgate.admin.cache import cache_report

        return await cache_report(self.pool, by=by, window=self._window(from_date, to_date, tz), filters=filters,
                                  flag_below_pct=flag_below_pct, min_requests=min_requests)

    async def sessions(self, from_date: date | None, to_date: date | None, filters: Filters,
                       tz: str | None = None) -> Chargeback:
        return await self.chargeback("session", from_date, to_date, filters, tz)

    async def session(self, session_id: str, developer: str | None = None) -> SessionDetail:
        from spendgate.admin.sessions import SessionAmbiguous, SessionNotFound, session_detail

        try:
            return await session_detail(self.pool, self.prices, session_id, developer)
        except (SessionNotFound, SessionAmbiguous) as exc:
            raise SpendgateError(str(exc)) from None

    async def keys(self, *, include_revoked: bool) -> KeyList:
        from spendgate.admin.views import key_list

        return await key_list(self.pool, include_revoked=include_revoked)

    async def budgets(self) -> Budgets:
        from spendgate.admin.views import budget_list

        return await budget_list(self.pool, datetime.now(UTC))

    async def budget(self, scope: str) -> BudgetStatus:
        from spendgate.admin.views import budget_status

        found = await budget_status(self.pool, scope, datetime.now(UTC))
        if found is None:
            raise SpendgateError(f"no budget for {scope}")
        return found

    async def policy(self) -> dict[str, Any]:
        from spendgate.admin.policy import live_policy, to_document

        return to_document(await live_policy(self.pool, self.settings.enforcement, datetime.now(UTC)))

    async def teams(self) -> Teams:
        from spendgate.admin.directory import list_teams

        return await list_teams(self.pool, now=datetime.now(UTC), tz=self.settings.default_timezone)

    async def alerts(self, *, scope: str | None, kind: str | None, since: datetime | None,
                     limit: int) -> AlertList:
        from spendgate.admin.alerts import alert_list

        return await alert_list(self.pool, scope=scope, kind=kind, since=since, limit=limit)

    async def dead_letters(self, *, include_replayed: bool) -> DeadLetterList:
        from spendgate.admin.alerts import dead_letter_list

        return await dead_letter_list(self.pool, include_replayed=include_replayed)

    async def turns(self, *, session: str | None, team: str | None, since: datetime | None,
                    limit: int) -> TurnList:
        from spendgate.admin.turns import turn_list

        return await turn_list(self.pool, now=datetime.now(UTC), since=since, session_id=session, team=team,
                               limit=limit)


def _query(by: str | None, from_date: date | None, to_date: date | None, filters: Filters,
           **extra: object) -> dict[str, str]:
    """Query parameters for a report; ``extra`` values that are None are left out."""
    q: dict[str, str] = {k: str(v) for k, v in extra.items() if v is not None}
    if by is not None:
        q["by"] = by
    if from_date is not None:
        q["from"] = from_date.isoformat()
    if to_date is not None:
        q["to"] = to_date.isoformat()
    for name in ("developer", "team", "cost_center", "repo"):
        if (value := getattr(filters, name)) is not None:
            q[name] = value
    return q


class _PolicyDocument(msgspec.Struct, frozen=True):
    policy: dict[str, Any]


class ApiSource:
    """A running admin API, decoded into the same documents the database source returns."""

    def __init__(self, api: AdminApi) -> None:
        self.call = api.call

    async def chargeback(self, by: str, from_date: date | None, to_date: date | None,
                         filters: Filters, tz: str | None = None) -> Chargeback:
        from spendgate.admin.reports import Chargeback

        return await self.call("GET", "/v1/reports/chargeback", Chargeback,
                               query=_query(by, from_date, to_date, filters, tz=tz))

    async def cache(self, by: str, from_date: date | None, to_date: date | None, filters: Filters,
                    flag_below_pct: int, min_requests: int, tz: str | None = None) -> CacheReport:
        from spendgate.admin.cache import CacheReport

        return await self.call("GET", "/v1/reports/cache", CacheReport, query=_query(
            by, from_date, to_date, filters, flag_below_pct=flag_below_pct, min_requests=min_requests, tz=tz))

    async def sessions(self, from_date: date | None, to_date: date | None, filters: Filters,
                       tz: str | None = None) -> Chargeback:
        from spendgate.admin.reports import Chargeback

        return await self.call("GET", "/v1/sessions", Chargeback, query=_query(None, from_date, to_date, filters,
                                                                                tz=tz))

    async def session(self, session_id: str, developer: str | None = None) -> SessionDetail:
        from spendgate.admin.sessions import SessionDetail

        query = {"developer": developer} if developer else None
        return await self.call("GET", f"/v1/sessions/{quote(session_id, safe='')}", SessionDetail, query=query)

    async def keys(self, *, include_revoked: bool) -> KeyList:
        from spendgate.admin.views import KeyList

        return await self.call("GET", "/v1/keys", KeyList,
                               query={"include_revoked": "true" if include_revoked else "false"})

    async def budgets(self) -> Budgets:
        from spendgate.admin.views import Budgets

        return await self.call("GET", "/v1/budgets", Budgets)

    async def budget(self, scope: str) -> BudgetStatus:
        from spendgate.admin.views import BudgetStatus

        return await self.call("GET", f"/v1/budgets/{quote(scope, safe=':')}", BudgetStatus)

    async def policy(self) -> dict[str, Any]:
        return (await self.call("GET", "/v1/policy", _PolicyDocument)).policy

    async def teams(self) -> Teams:
        from spendgate.admin.directory import Teams

        return await self.call("GET", "/v1/teams", Teams)

    async def alerts(self, *, scope: str | None, kind: str | None, since: datetime | None,
                     limit: int) -> AlertList:
        from spendgate.admin.alerts import AlertList

        query = {k: v for k, v in (("scope", scope), ("kind", kind),
                                   ("since", since.isoformat() if since else None)) if v is not None}
        return await self.call("GET", "/v1/alerts", AlertList, query={**query, "limit": str(limit)})

    async def dead_letters(self, *, include_replayed: bool) -> DeadLetterList:
        from spendgate.admin.alerts import DeadLetterList

        return await self.call("GET", "/v1/alerts/dead-letters", DeadLetterList,
                               query={"all": "true" if include_replayed else "false"})

    async def turns(self, *, session: str | None, team: str | None, since: datetime | None,
                    limit: int) -> TurnList:
        from spendgate.admin.turns import TurnList

        query = {k: v for k, v in (("session", session), ("team", team),
                                   ("since", since.isoformat() if since else None)) if v is not None}
        return await self.call("GET", "/v1/turns", TurnList, query={**query, "limit": str(limit)})
