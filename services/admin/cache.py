"""Prompt-cache observability: hit rate (cached ÷ input tokens) per developer, repo or session, what the
cache saved, what the misses cost, and the sessions whose prompt shape deserves a look.

Money uses the unit prices each event was metered with:

- ``saved``: cached tokens × (input price − cached-input price), what caching took off the bill;
- ``miss_cost``: uncached input tokens × (input price − cached-input price), what the misses cost
  beyond what the same tokens would have cost at cached-input prices.

Both are summed exactly in SQL ``numeric`` and rounded once per line to whole micro-dollars.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

import msgspec

from spendgate.admin.window import Filters, Window, group_column
from spendgate.core.db import Queryable
from spendgate.store.usage.reports import CacheRow, cache_rows

DEFAULT_FLAG_BELOW_PCT = 30
DEFAULT_MIN_REQUESTS = 5


class CacheLine(msgspec.Struct, frozen=True, kw_only=True):
    group: str | None
    developer: str | None
    repo: str | None
    requests: int
    input_tokens: int
    cached_tokens: int
    hit_rate_pct: str | None
    """Cached ÷ input tokens in percent, one decimal, as an exact string; null without input tokens."""
    saved_micros: int
    miss_cost_micros: int


class CacheReport(msgspec.Struct, frozen=True, kw_only=True):
    by: str
    from_date: str
    to_date: str
    timezone: str
    flag_below_pct: int
    min_requests: int
    lines: list[CacheLine]
    total: CacheLine | None
    flagged_sessions: list[CacheLine]
    """Sessions with at least ``min_requests`` requests and a hit rate under ``flag_below_pct``, worst first."""


async def cache_report(conn: Queryable, *, by: str, window: Window,
                       filters: Filters = Filters(), flag_below_pct: int = DEFAULT_FLAG_BELOW_PCT,
                       min_requests: int = DEFAULT_MIN_REQUESTS) -> CacheReport:
    """Hit rates grouped ``by`` developer|repo|session (or team, cost_center), lowest hit rate first."""
    rows = await cache_rows(conn, group_column(by), filters.usage(window))
    lines = [_line(r) for r in rows if r.level == "line"]
    total = next((_line(r) for r in rows if r.level == "total"), None)
    flagged = [_line(r) for r in rows if r.level == "session" and r.group is not None
               and r.requests >= min_requests and r.cached_tokens * 100 < flag_below_pct * r.input_tokens]
    return CacheReport(
        by=by, from_date=window.from_date.isoformat(), to_date=window.to_date.isoformat(), timezone=window.tz,
        flag_below_pct=flag_below_pct, min_requests=min_requests, lines=sorted(lines, key=_worst_first),
        total=total, flagged_sessions=sorted(flagged, key=_worst_first),
    )


def hit_rate_pct(cached_tokens: int, input_tokens: int) -> str | None:
    if input_tokens <= 0:
        return None
    rate = (Decimal(cached_tokens) * 100 / Decimal(input_tokens)).quantize(Decimal("0.1"), ROUND_HALF_UP)
    return str(rate)


def _worst_first(line: CacheLine) -> tuple[int, Decimal, int, str]:
    # Lines without input tokens last; then lowest exact hit rate, costliest misses, name.
    if line.input_tokens <= 0:
        return (1, Decimal(0), 0, line.group or "")
    return (0, Decimal(line.cached_tokens) / Decimal(line.input_tokens), -line.miss_cost_micros,
            line.group or "")


def _line(r: CacheRow) -> CacheLine:
    return CacheLine(
        group=r.group, developer=r.developer, repo=r.repo, requests=r.requests,
        input_tokens=r.input_tokens, cached_tokens=r.cached_tokens,
        hit_rate_pct=hit_rate_pct(r.cached_tokens, r.input_tokens),
        saved_micros=r.saved_micros, miss_cost_micros=r.miss_cost_micros,
    )
