"""The providers' own usage and cost reports, read with an admin key, as :class:`Usage` lines per UTC day.

- OpenAI: ``GET /v1/organization/usage/completions`` (daily buckets grouped by ``model`` and
  ``api_key_id``: ``input_tokens`` with cached included, ``output_tokens``, ``num_model_requests``) and
  ``GET /v1/organization/costs`` (grouped by ``line_item``, e.g. ``"gpt-5.1, input"``; ``amount.value`` in
  dollars). Pages: ``limit`` buckets, then ``page=<next_page>`` while ``has_more``.
- Anthropic: ``GET /v1/organizations/usage_report/messages`` (``group_by[]=model&group_by[]=api_key_id``:
  ``uncached_input_tokens``, ``cache_read_input_tokens``, ``cache_creation.ephemeral_5m/1h_input_tokens``,
  ``output_tokens``; no request count) and ``GET /v1/organizations/cost_report`` (``group_by[]=description``:
  ``amount`` in cents as a decimal string, ``model``). Same ``has_more`` / ``next_page`` paging.

Token lines carry the upstream the key id maps to (``api_key_ids`` in the provider's settings; an
unmapped key is ``unmapped:<id>``) and no cost; cost lines carry the cost per (day, model) and no
tokens: neither provider splits cost by key and usage in one report. Anything unexpected raises
:class:`ProviderError` naming the provider and the report, never the key.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

import aiohttp

from spendgate.core.config_providers import ReconcileProvider, ReconcileSettings
from spendgate.domain.errors import SpendgateError
from spendgate.domain.reconcile import Usage

MAX_PAGE_BYTES = 8 * 1024 * 1024
ANTHROPIC_VERSION = "2023-06-01"


class ProviderError(SpendgateError):
    """A provider's report could not be read (refused key, outage, a shape we do not know); retriable for
    an outage, a 429 or a 5xx."""


def _day_start(day: date) -> datetime:
    return datetime.combine(day, time(), tzinfo=UTC)


def _as_int(value: object, what: str) -> int:
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or value < 0 or value >= 2**62:
        raise ValueError(f"{what} is not a token count: {value!r}")
    return value


def _micros(amount: Decimal, units_per_usd: int) -> int:
    if not amount.is_finite() or amount < 0 or amount > Decimal(10) ** 12:
        raise ValueError(f"cost amount out of range: {amount}")
    return int((amount * (1_000_000 // units_per_usd)).quantize(Decimal(1), rounding=ROUND_HALF_UP))


class Reader:
    """Reads one provider's reports over one aiohttp session."""

    def __init__(self, session: aiohttp.ClientSession, provider: ReconcileProvider,
                 settings: ReconcileSettings) -> None:
        self.session, self.provider, self.settings = session, provider, settings

    def _headers(self) -> dict[str, str]:
        key = self.provider.admin_key.get_secret_value()
        if self.provider.kind == "openai":
            return {"Authorization": f"Bearer {key}"}
        return {"x-api-key": key, "anthropic-version": ANTHROPIC_VERSION}

    async def _pages(self, path: str, params: list[tuple[str, str]]) -> AsyncIterator[dict[str, Any]]:
        """Each page of a report, following ``next_page`` while ``has_more``."""
        name = f"{self.provider.name}: {path}"
        page: str | None = None
        seen: set[str] = set()
        for _ in range(self.settings.max_pages):
            query = params + ([("page", page)] if page else [])
            doc = await self._get(name, path, query)
            yield doc
            if not doc.get("has_more"):
                return
            page = doc.get("next_page")
            if not isinstance(page, str) or not page or page in seen:
                raise ProviderError(f"{name}: has_more without a new next_page token")
            seen.add(page)
        raise ProviderError(f"{name}: still has_more after {self.settings.max_pages} pages "
                            "(reconcile.max_pages); refusing to page on")

    async def _get(self, name: str, path: str, query: list[tuple[str, str]]) -> dict[str, Any]:
        url = self.provider.url + path
        timeout = aiohttp.ClientTimeout(total=self.settings.timeout_s)
        try:
            async with self.session.get(url, params=query, headers=self._headers(), timeout=timeout,
                                        allow_redirects=False) as resp:
                raw = await resp.content.read(MAX_PAGE_BYTES + 1)
                status = resp.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ProviderError(f"{name}: cannot reach {self.provider.url} ({type(exc).__name__})",
                                retriable=True) from None
        if status in (401, 403):
            raise ProviderError(f"{name}: the admin key was refused (HTTP {status}); these reports need an "
                                "organization admin key, not a project or API key")
        if status != 200:
            raise ProviderError(f"{name}: HTTP {status}", retriable=status == 429 or status >= 500)
        if len(raw) > MAX_PAGE_BYTES:
            raise ProviderError(f"{name}: a page is larger than {MAX_PAGE_BYTES // 1024 // 1024} MiB")
        try:
            doc = json.loads(raw, parse_float=Decimal)
        except (ValueError, UnicodeDecodeError):
            raise ProviderError(f"{name}: the answer is not JSON") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("data"), list):
            raise ProviderError(f"{name}: the answer has no data list")
        return doc

    async def _collect(self, path: str, params: list[tuple[str, str]],
                       parse: Callable[[date, dict[str, Any]], Usage]) -> list[Usage]:
        out: list[Usage] = []
        async for doc in self._pages(path, params):
            for bucket in doc["data"]:
                try:
                    day = self._bucket_day(bucket)
                    results = bucket.get("results")
                    if not isinstance(results, list):
                        raise ValueError("a bucket has no results list")
                    out.extend(parse(day, r) for r in results if isinstance(r, dict))
                except (ValueError, TypeError, KeyError, InvalidOperation) as exc:
                    raise ProviderError(f"{self.provider.name}: {path}: unexpected report shape ({exc})") from None
        return out

    def _bucket_day(self, bucket: Any) -> date:
        if not isinstance(bucket, dict):
            raise ValueError("a bucket is not an object")
        if self.provider.kind == "openai":
            start = bucket["start_time"]
            if not isinstance(start, int) or isinstance(start, bool):
                raise ValueError(f"start_time {start!r}")
            return datetime.fromtimestamp(start, UTC).date()
        return datetime.fromisoformat(str(bucket["starting_at"]).replace("Z", "+00:00")).astimezone(UTC).date()

    def _upstream(self, key_id: object) -> str | None:
        if not isinstance(key_id, str) or not key_id:
            return None
        return self.provider.api_key_ids.get(key_id, f"unmapped:{key_id}")

    async def usage(self, start: date, end: date) -> list[Usage]:
        """Token lines and cost lines of the UTC days ``start``..``end``."""
        limit = str(self.settings.page_days)
        if self.provider.kind == "openai":
            window = [("start_time", str(int(_day_start(start).timestamp()))),
                      ("end_time", str(int(_day_start(end + timedelta(days=1)).timestamp()))),
                      ("bucket_width", "1d"), ("limit", limit)]
            tokens = await self._collect("/organization/usage/completions",
                                         [*window, ("group_by", "model"), ("group_by", "api_key_id")],
                                         self._openai_tokens)
            costs = await self._collect("/organization/costs", [*window, ("group_by", "line_item")], _openai_cost)
        else:
            window = [("starting_at", _day_start(start).isoformat().replace("+00:00", "Z")),
                      ("ending_at", _day_start(end + timedelta(days=1)).isoformat().replace("+00:00", "Z")),
                      ("bucket_width", "1d"), ("limit", limit)]
            tokens = await self._collect("/organizations/usage_report/messages",
                                         [*window, ("group_by[]", "model"), ("group_by[]", "api_key_id")],
                                         self._anthropic_tokens)
            costs = await self._collect("/organizations/cost_report", [*window, ("group_by[]", "description")],
                                        _anthropic_cost)
        return [u for u in tokens + costs if start <= u.day <= end]

    def _openai_tokens(self, day: date, r: dict[str, Any]) -> Usage:
        return Usage(day, str(r.get("model") or "(none)"), self._upstream(r.get("api_key_id")),
                     requests=_as_int(r.get("num_model_requests"), "num_model_requests"),
                     input_tokens=_as_int(r.get("input_tokens"), "input_tokens"),
                     output_tokens=_as_int(r.get("output_tokens"), "output_tokens"), cost_micros=None)

    def _anthropic_tokens(self, day: date, r: dict[str, Any]) -> Usage:
        writes = r.get("cache_creation") or {}
        if not isinstance(writes, dict):
            raise ValueError("cache_creation is not an object")
        total = (_as_int(r.get("uncached_input_tokens"), "uncached_input_tokens")
                 + _as_int(r.get("cache_read_input_tokens"), "cache_read_input_tokens")
                 + _as_int(writes.get("ephemeral_5m_input_tokens"), "ephemeral_5m_input_tokens")
                 + _as_int(writes.get("ephemeral_1h_input_tokens"), "ephemeral_1h_input_tokens"))
        return Usage(day, str(r.get("model") or "(none)"), self._upstream(r.get("api_key_id")),
                     input_tokens=total, output_tokens=_as_int(r.get("output_tokens"), "output_tokens"),
                     cost_micros=None)


def _openai_cost(day: date, r: dict[str, Any]) -> Usage:
    amount = r.get("amount") or {}
    if not isinstance(amount, dict) or str(amount.get("currency", "usd")).lower() != "usd":
        raise ValueError(f"a cost in another currency than usd: {amount!r}")
    line_item = str(r.get("line_item") or "(none)")
    model = line_item.rsplit(", ", 1)[0] if ", " in line_item else line_item
    return Usage(day, model, None, cost_micros=_micros(Decimal(str(amount.get("value", 0))), 1))


def _anthropic_cost(day: date, r: dict[str, Any]) -> Usage:
    if str(r.get("currency", "USD")).upper() != "USD":
        raise ValueError(f"a cost in another currency than USD: {r.get('currency')!r}")
    return Usage(day, str(r.get("model") or "(other)"), None, cost_micros=_micros(Decimal(str(r["amount"])), 100))


async def provider_usage(session: aiohttp.ClientSession, provider: ReconcileProvider, settings: ReconcileSettings,
                         start: date, end: date) -> list[Usage]:
    """``provider``'s token and cost lines of the UTC days ``start``..``end``."""
    return await Reader(session, provider, settings).usage(start, end)
