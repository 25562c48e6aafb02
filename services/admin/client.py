"""Where the CLI's reports come from: the database directly, or a running admin API.

Both sources return the same typed reports: the database source calls the report functions, the
API source calls the admin API (whose handlers call those same functions) and decodes its JSON into
the same types. So ``spendgate report …`` prints the same thing either way.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime
from typing import Any, Protocol, TypeVar

import aiohttp
import asyncpg
import msgspec

from spendgate.admin.alerts import AlertList, alert_list
from spendgate.admin.cache import CacheReport, cache_report
from spendgate.admin.reports import Chargeback, chargeback
from spendgate.admin.sessions import SessionDetail, SessionNotFound, session_detail
from spendgate.admin.window import Filters, Window
from spendgate.core.config import Settings
from spendgate.domain.errors import SpendgateError
from spendgate.domain.periods import zone

T = TypeVar("T")


class ReportSource(Protocol):
    async def chargeback(self, by: str, from_date: date | None, to_date: date | None,
                         filters: Filters, tz: str | None = None) -> Chargeback: ...

    async def cache(self, by: str, from_date: date | None, to_date: date | None, filters: Filters,
                    flag_below_pct: int, min_requests: int, tz: str | None = None) -> CacheReport: ...

    async def session(self, session_id: str) -> SessionDetail: ...

    async def alerts(self, *, scope: str | None, kind: str | None, since: datetime | None,
                     limit: int) -> AlertList: ...


class DatabaseSource:
    def __init__(self, pool: asyncpg.Pool, settings: Settings) -> None:
        self.pool, self.settings, self.prices = pool, settings, settings.pricing.table()

    def _window(self, from_date: date | None, to_date: date | None, tz: str | None) -> Window:
        tz = tz or self.settings.default_timezone
        zone(tz)
        return Window.of(from_date, to_date, tz=tz, now=datetime.now(UTC))

    async def chargeback(self, by: str, from_date: date | None, to_date: date | None,
                         filters: Filters, tz: str | None = None) -> Chargeback:
        return await chargeback(self.pool, self.prices, by=by, window=self._window(from_date, to_date, tz),
                                filters=filters)

    async def cache(self, by: str, from_date: date | None, to_date: date | None, filters: Filters,
                    flag_below_pct: int, min_requests: int, tz: str | None = None) -> CacheReport:
        return await cache_report(self.pool, by=by, window=self._window(from_date, to_date, tz), filters=filters,
                                  flag_below_pct=flag_below_pct, min_requests=min_requests)

    async def session(self, session_id: str) -> SessionDetail:
        try:
            return await session_detail(self.pool, self.prices, session_id)
        except SessionNotFound as exc:
            raise SpendgateError(str(exc)) from None

    async def alerts(self, *, scope: str | None, kind: str | None, since: datetime | None,
                     limit: int) -> AlertList:
        return await alert_list(self.pool, scope=scope, kind=kind, since=since, limit=limit)


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


class ApiSource:
    """A running admin API at ``base_url`` (``http://127.0.0.1:8081``), called with the admin token."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str, token: str) -> None:
        self.http, self.base_url, self.token = session, base_url.rstrip("/"), token

    async def call(self, method: str, path: str, result: type[T], *, query: Mapping[str, str] | None = None,
                   body: Any = None) -> T:
        try:
            async with self.http.request(
                method, self.base_url + path, params=query, json=body,
                headers={"Authorization": f"Bearer {self.token}"},
            ) as resp:
                raw = await resp.read()
                if resp.status >= 400:
                    try:
                        message = msgspec.json.decode(raw)["error"]["message"]
                    except (msgspec.DecodeError, KeyError, TypeError):
                        message = raw.decode(errors="replace")[:500]
                    raise SpendgateError(f"admin API {resp.status}: {message}")
                return msgspec.json.decode(raw, type=result)
        except aiohttp.ClientError as exc:
            raise SpendgateError(f"cannot reach the admin API at {self.base_url}: {exc}") from exc

    async def chargeback(self, by: str, from_date: date | None, to_date: date | None,
                         filters: Filters, tz: str | None = None) -> Chargeback:
        return await self.call("GET", "/v1/reports/chargeback", Chargeback,
                               query=_query(by, from_date, to_date, filters, tz=tz))

    async def cache(self, by: str, from_date: date | None, to_date: date | None, filters: Filters,
                    flag_below_pct: int, min_requests: int, tz: str | None = None) -> CacheReport:
        return await self.call("GET", "/v1/reports/cache", CacheReport, query=_query(
            by, from_date, to_date, filters, flag_below_pct=flag_below_pct, min_requests=min_requests, tz=tz))

    async def session(self, session_id: str) -> SessionDetail:
        from urllib.parse import quote

        return await self.call("GET", f"/v1/sessions/{quote(session_id, safe='')}", SessionDetail)

    async def alerts(self, *, scope: str | None, kind: str | None, since: datetime | None,
                     limit: int) -> AlertList:
        query = {k: v for k, v in (("scope", scope), ("kind", kind),
                                   ("since", since.isoformat() if since else None)) if v is not None}
        return await self.call("GET", "/v1/alerts", AlertList, query={**query, "limit": str(limit)})
