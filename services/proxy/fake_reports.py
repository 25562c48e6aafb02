"""The fake upstream's billing reports: what the providers' admin APIs answer, computed from the model
requests the fake really served plus injected "bypass" traffic (requests that never went through
spendgate), for reconciliation tests and demos.

- OpenAI (``Authorization: Bearer <admin key>``): ``GET /v1/organization/usage/completions``
  (``start_time``/``end_time`` Unix seconds, ``bucket_width=1d``, ``group_by=model|api_key_id``,
  ``limit`` ≤ 31, ``page``) and ``GET /v1/organization/costs`` (``group_by=line_item``, ``limit`` ≤ 180;
  line items ``"<model>, input"``, ``"<model>, cached input"``, ``"<model>, output"``; ``amount.value`` in
  dollars, a JSON number).
- Anthropic (``x-api-key: <admin key>``): ``GET /v1/organizations/usage_report/messages``
  (``starting_at``/``ending_at`` RFC 3339, ``group_by[]=model|api_key_id``, ``limit`` ≤ 31, ``page``) and
  ``GET /v1/organizations/cost_report`` (``group_by[]=description``; ``amount`` in cents, a decimal string).

Every report answers daily buckets from the start, ``limit`` per page, with ``has_more`` and an opaque
``next_page``. A wrong or missing admin key gets the provider's 401. Costs come from spendgate's shipped
price table, priced per line item on the day's summed tokens, the way a bill is.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import msgspec
from aiohttp import web

from spendgate.domain.errors import UnknownModelError
from spendgate.domain.pricing import ModelPrice, PriceTable

OPENAI_ADMIN_KEY = "sk-admin-fake-reports"
ANTHROPIC_ADMIN_KEY = "sk-ant-admin01-fake-reports"
DAY_S = 86_400
MAX_DAYS = 3660
_encoder = msgspec.json.Encoder(decimal_format="number")


def key_id(credential: str | None) -> str | None:
    """The provider's id of an API key, as the fake derives it (``key_`` + a hash: never the key)."""
    if not credential:
        return None
    secret = credential.removeprefix("Bearer ").strip()
    return "key_" + hashlib.sha256(secret.encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class Billed:
    """One request as the provider bills it."""

    provider: str
    """``openai`` or ``anthropic``."""
    day: date
    model: str
    api_key_id: str | None
    input_tokens: int
    """Every input token, cache reads and writes included."""
    cached_tokens: int
    cache_write_5m_tokens: int
    cache_write_1h_tokens: int
    output_tokens: int
    requests: int = 1
    """Model requests this line stands for (a bypass of several requests is one line of their totals)."""


class BypassRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``POST /_fake/bypass``: traffic billed on ``day`` that never went through the gateway: ``requests``
    model requests of these token totals."""

    provider: str
    day: date
    model: str
    input_tokens: int
    output_tokens: int
    cached_tokens: int = 0
    requests: int = 1
    api_key_id: str | None = None


def bypass_lines(raw: bytes) -> list[Billed]:
    """The billed line a bypass body asks for; ``ValueError`` for a body that makes no sense."""
    try:
        b = msgspec.json.decode(raw, type=BypassRequest)
    except msgspec.DecodeError as exc:
        raise ValueError(str(exc)) from None
    if b.provider not in ("openai", "anthropic"):
        raise ValueError("provider must be openai or anthropic")
    if not (0 <= b.cached_tokens <= b.input_tokens < 10**12 and 0 <= b.output_tokens < 10**12):
        raise ValueError("token counts must be 0 <= cached_tokens <= input_tokens < 1e12")
    if not 1 <= b.requests <= 10_000 or not 1 <= len(b.model) <= 128:
        raise ValueError("requests must be 1 to 10000 and model 1 to 128 characters")
    return [Billed(b.provider, b.day, b.model, b.api_key_id or "key_bypass", b.input_tokens, b.cached_tokens, 0, 0,
                   b.output_tokens, b.requests)]


class _BadQuery(Exception):
    pass


def _int(query: Any, name: str, default: int | None, low: int, high: int) -> int:
    raw = query.get(name)
    if raw is None:
        if default is None:
            raise _BadQuery(f"{name} is required")
        return default
    try:
        value = int(raw)
    except ValueError:
        raise _BadQuery(f"{name} must be an integer") from None
    if not low <= value <= high:
        raise _BadQuery(f"{name} must be between {low} and {high}")
    return value


def _rfc3339(query: Any, name: str, default: datetime | None) -> datetime:
    raw = query.get(name)
    if raw is None:
        if default is None:
            raise _BadQuery(f"{name} is required")
        return default
    try:
        at = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise _BadQuery(f"{name} must be an RFC 3339 time") from None
    if at.tzinfo is None:
        raise _BadQuery(f"{name} needs a timezone")
    return at.astimezone(UTC)


def _page(query: Any, count: int) -> int:
    token = query.get("page")
    if token is None:
        return 0
    try:
        index = int(base64.urlsafe_b64decode(token.removeprefix("page_").encode()).decode())
    except (ValueError, UnicodeDecodeError):
        raise _BadQuery("page is not a next_page token of this report") from None
    if not 0 <= index < count:
        raise _BadQuery("page is out of range")
    return index


def _token(index: int) -> str:
    return "page_" + base64.urlsafe_b64encode(str(index).encode()).decode()


def _days(start: datetime, end: datetime) -> list[date]:
    first = start.date()
    last = (end - timedelta(microseconds=1)).date()
    count = (last - first).days + 1
    if count > MAX_DAYS:
        raise _BadQuery("the range is too long")
    return [first + timedelta(days=i) for i in range(max(count, 0))]


def _group(lines: Iterable[Billed], fields: set[str]) -> dict[tuple[str | None, str | None], list[Billed]]:
    groups: dict[tuple[str | None, str | None], list[Billed]] = {}
    for b in lines:
        key = (b.model if "model" in fields else None, b.api_key_id if "api_key_id" in fields else None)
        groups.setdefault(key, []).append(b)
    return groups


def _price(prices: PriceTable, model: str) -> ModelPrice | None:
    try:
        return prices.lookup(model).price
    except UnknownModelError:
        return None


def _dollars(tokens: int, micros_per_m: int) -> Decimal:
    """The exact cost of ``tokens`` at ``micros_per_m`` micro-dollars per million, in dollars."""
    return Decimal(tokens * micros_per_m) / Decimal(10**12)


class Reports:
    """The four report routes over whatever ``billed()`` returns at the time of each request."""

    def __init__(self, billed: Callable[[], list[Billed]], *, openai_admin_key: str = OPENAI_ADMIN_KEY,
                 anthropic_admin_key: str = ANTHROPIC_ADMIN_KEY, prices: PriceTable | None = None) -> None:
        self.billed = billed
        self.openai_admin_key, self.anthropic_admin_key = openai_admin_key, anthropic_admin_key
        self.prices = prices or PriceTable()

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/v1/organization/usage/completions", self._openai_usage)
        app.router.add_get("/v1/organization/costs", self._openai_costs)
        app.router.add_get("/v1/organizations/usage_report/messages", self._anthropic_usage)
        app.router.add_get("/v1/organizations/cost_report", self._anthropic_costs)

    # -- OpenAI --------------------------------------------------------------------------------------

    def _openai_auth(self, request: web.Request) -> web.Response | None:
        if request.headers.get("Authorization") != f"Bearer {self.openai_admin_key}":
            return _openai_error(401, "Incorrect API key provided: this endpoint needs an admin key.",
                                 "invalid_request_error", "invalid_api_key")
        return None

    def _openai_window(self, request: web.Request, max_limit: int) -> tuple[list[date], int, int]:
        q = request.query
        if q.get("bucket_width", "1d") != "1d":
            raise _BadQuery("the fake serves bucket_width=1d only")
        start = _int(q, "start_time", None, 0, 10**11)
        limit = _int(q, "limit", 7, 1, max_limit)
        end = _int(q, "end_time", start + limit * DAY_S, start + 1, 10**11)
        days = _days(datetime.fromtimestamp(start, UTC), datetime.fromtimestamp(end, UTC))
        return days, _page(q, len(days)) if days else 0, limit

    async def _openai_usage(self, request: web.Request) -> web.Response:
        if (refused := self._openai_auth(request)) is not None:
            return refused
        try:
            days, first, limit = self._openai_window(request, 31)
            fields = set(request.query.getall("group_by", []))
            if fields - {"model", "api_key_id", "project_id", "user_id", "batch"}:
                raise _BadQuery("group_by must be model, api_key_id, project_id, user_id or batch")
        except _BadQuery as exc:
            return _openai_error(400, str(exc), "invalid_request_error", None)
        billed = [b for b in self.billed() if b.provider == "openai"]
        buckets = []
        for day in days[first:first + limit]:
            results = []
            for (model, key), group in sorted(_group((b for b in billed if b.day == day), fields).items(),
                                              key=lambda kv: (kv[0][0] or "", kv[0][1] or "")):
                results.append({
                    "object": "organization.usage.completions.result",
                    "input_tokens": sum(b.input_tokens for b in group),
                    "output_tokens": sum(b.output_tokens for b in group),
                    "input_cached_tokens": sum(b.cached_tokens for b in group),
                    "input_audio_tokens": 0, "output_audio_tokens": 0,
                    "num_model_requests": sum(b.requests for b in group),
                    "project_id": None, "user_id": None, "api_key_id": key, "model": model, "batch": None})
            buckets.append(_openai_bucket(day, results))
        return _openai_page(buckets, first + limit, len(days))

    async def _openai_costs(self, request: web.Request) -> web.Response:
        if (refused := self._openai_auth(request)) is not None:
            return refused
        try:
            days, first, limit = self._openai_window(request, 180)
            fields = set(request.query.getall("group_by", []))
            if fields - {"line_item", "project_id"}:
                raise _BadQuery("group_by must be project_id or line_item")
        except _BadQuery as exc:
            return _openai_error(400, str(exc), "invalid_request_error", None)
        billed = [b for b in self.billed() if b.provider == "openai"]
        buckets = []
        for day in days[first:first + limit]:
            items: dict[str | None, Decimal] = {}
            for (model, _), group in sorted(_group((b for b in billed if b.day == day), {"model"}).items(),
                                            key=lambda kv: kv[0][0] or ""):
                assert model is not None
                price = _price(self.prices, model)
                if price is None:
                    continue
                cached = sum(b.cached_tokens for b in group)
                for label, amount in (
                        ("input", _dollars(sum(b.input_tokens for b in group) - cached, price.input_micros)),
                        ("cached input", _dollars(cached, price.cached_input_micros)),
                        ("output", _dollars(sum(b.output_tokens for b in group), price.output_micros))):
                    item = f"{model}, {label}" if "line_item" in fields else None
                    items[item] = items.get(item, Decimal(0)) + amount
            results = [{"object": "organization.costs.result", "amount": {"value": value, "currency": "usd"},
                        "line_item": item, "project_id": None} for item, value in items.items()]
            buckets.append(_openai_bucket(day, results))
        return _openai_page(buckets, first + limit, len(days))

    # -- Anthropic -----------------------------------------------------------------------------------

    def _anthropic_auth(self, request: web.Request) -> web.Response | None:
        if request.headers.get("x-api-key") != self.anthropic_admin_key:
            return _anthropic_error(401, "authentication_error", "invalid x-api-key: this endpoint needs an admin key")
        return None

    def _anthropic_window(self, request: web.Request) -> tuple[list[date], int, int]:
        q = request.query
        if q.get("bucket_width", "1d") != "1d":
            raise _BadQuery("the fake serves bucket_width=1d only")
        start = _rfc3339(q, "starting_at", None)
        limit = _int(q, "limit", 7, 1, 31)
        end = _rfc3339(q, "ending_at", start + timedelta(days=limit))
        if end <= start:
            raise _BadQuery("ending_at must be after starting_at")
        days = _days(start, end)
        return days, _page(q, len(days)) if days else 0, limit

    async def _anthropic_usage(self, request: web.Request) -> web.Response:
        if (refused := self._anthropic_auth(request)) is not None:
            return refused
        try:
            days, first, limit = self._anthropic_window(request)
            fields = set(request.query.getall("group_by[]", []))
            if fields - {"model", "api_key_id", "workspace_id", "service_tier", "context_window"}:
                raise _BadQuery("group_by[] must be api_key_id, workspace_id, model, service_tier or context_window")
        except _BadQuery as exc:
            return _anthropic_error(400, "invalid_request_error", str(exc))
        billed = [b for b in self.billed() if b.provider == "anthropic"]
        buckets = []
        for day in days[first:first + limit]:
            results = []
            for (model, key), group in sorted(_group((b for b in billed if b.day == day), fields).items(),
                                              key=lambda kv: (kv[0][0] or "", kv[0][1] or "")):
                w5 = sum(b.cache_write_5m_tokens for b in group)
                w1 = sum(b.cache_write_1h_tokens for b in group)
                read = sum(b.cached_tokens for b in group)
                results.append({
                    "uncached_input_tokens": sum(b.input_tokens for b in group) - read - w5 - w1,
                    "cache_creation": {"ephemeral_1h_input_tokens": w1, "ephemeral_5m_input_tokens": w5},
                    "cache_read_input_tokens": read, "output_tokens": sum(b.output_tokens for b in group),
                    "server_tool_use": {"web_search_requests": 0}, "api_key_id": key, "workspace_id": None,
                    "model": model, "service_tier": None, "context_window": None})
            buckets.append(_anthropic_bucket(day, results))
        return _anthropic_page(buckets, first + limit, len(days))

    async def _anthropic_costs(self, request: web.Request) -> web.Response:
        if (refused := self._anthropic_auth(request)) is not None:
            return refused
        try:
            days, first, limit = self._anthropic_window(request)
            fields = set(request.query.getall("group_by[]", []))
            if fields - {"workspace_id", "description"}:
                raise _BadQuery("group_by[] must be workspace_id or description")
        except _BadQuery as exc:
            return _anthropic_error(400, "invalid_request_error", str(exc))
        billed = [b for b in self.billed() if b.provider == "anthropic"]
        buckets = []
        for day in days[first:first + limit]:
            items: dict[tuple[str | None, str | None], Decimal] = {}
            for (model, _), group in sorted(_group((b for b in billed if b.day == day), {"model"}).items(),
                                            key=lambda kv: kv[0][0] or ""):
                assert model is not None
                price = _price(self.prices, model)
                if price is None:
                    continue
                read = sum(b.cached_tokens for b in group)
                w5 = sum(b.cache_write_5m_tokens for b in group)
                w1 = sum(b.cache_write_1h_tokens for b in group)
                uncached = sum(b.input_tokens for b in group) - read - w5 - w1
                for token_type, amount in (
                        ("uncached_input_tokens", _dollars(uncached, price.input_micros)),
                        ("cache_read_input_tokens", _dollars(read, price.cached_input_micros)),
                        ("cache_creation.ephemeral_5m_input_tokens", _dollars(w5, price.write_5m_micros)),
                        ("cache_creation.ephemeral_1h_input_tokens", _dollars(w1, price.write_1h_micros)),
                        ("output_tokens", _dollars(sum(b.output_tokens for b in group), price.output_micros))):
                    key = (model, token_type) if "description" in fields else (None, None)
                    items[key] = items.get(key, Decimal(0)) + amount
            results = [{"currency": "USD", "amount": format(value * 100, "f"), "workspace_id": None,
                        "description": f"{model} Usage - {token_type}" if model else None,
                        "cost_type": "tokens" if model else None, "context_window": "0-200k" if model else None,
                        "model": model, "service_tier": "standard" if model else None, "token_type": token_type}
                       for (model, token_type), value in items.items()]
            buckets.append(_anthropic_bucket(day, results))
        return _anthropic_page(buckets, first + limit, len(days))


def _openai_bucket(day: date, results: list[dict[str, Any]]) -> dict[str, Any]:
    start = int(datetime.combine(day, datetime.min.time(), tzinfo=UTC).timestamp())
    return {"object": "bucket", "start_time": start, "end_time": start + DAY_S, "results": results}


def _openai_page(buckets: list[dict[str, Any]], next_index: int, count: int) -> web.Response:
    more = next_index < count
    doc = {"object": "page", "data": buckets, "has_more": more, "next_page": _token(next_index) if more else None}
    return web.Response(body=_encoder.encode(doc), content_type="application/json")


def _anthropic_bucket(day: date, results: list[dict[str, Any]]) -> dict[str, Any]:
    return {"starting_at": f"{day.isoformat()}T00:00:00Z",
            "ending_at": f"{(day + timedelta(days=1)).isoformat()}T00:00:00Z", "results": results}


def _anthropic_page(buckets: list[dict[str, Any]], next_index: int, count: int) -> web.Response:
    more = next_index < count
    doc = {"data": buckets, "has_more": more, "next_page": _token(next_index) if more else None}
    return web.Response(body=_encoder.encode(doc), content_type="application/json")


def _openai_error(status: int, message: str, type_: str, code: str | None) -> web.Response:
    return web.Response(status=status, content_type="application/json",
                        body=_encoder.encode({"error": {"message": message, "type": type_, "code": code,
                                                        "param": None}}))


def _anthropic_error(status: int, type_: str, message: str) -> web.Response:
    return web.Response(status=status, content_type="application/json",
                        body=_encoder.encode({"type": "error", "error": {"type": type_, "message": message}}))
