"""Chargeback: one line per session, developer, team, cost center or repo, read from the usage events.

Every figure comes from ``usage_events`` (the facts the ledger folds), so the total of a report over
a whole budget period equals the ledger's balance for that period to the micro-dollar. Downgrade
savings reprice each downgraded request at its *requested* model's current unit prices with the one
cost function (:func:`spendgate.domain.pricing.cost_micros`) and subtract what it actually cost.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime

import asyncpg
import msgspec

from spendgate.admin.window import Filters, Window, group_column
from spendgate.domain.errors import UnknownModelError
from spendgate.domain.pricing import PriceTable, cost_micros


class ChargebackLine(msgspec.Struct, frozen=True, kw_only=True):
    """One group's spend. Developer, team, cost center and repo are set when the group has just one."""

    group: str | None
    """The session id, developer, team, cost center or repo; null for events without one."""
    developer: str | None
    team: str | None
    cost_center: str | None
    repo: str | None
    first_at: datetime
    last_at: datetime
    sessions: int
    turns: int
    requests: int
    """Requests that reached the provider (refused ones are counted apart, as the ledger does)."""
    refused: int
    input_tokens: int
    cached_tokens: int
    output_tokens: int
    reasoning_tokens: int
    cost_micros: int
    retries: int
    retry_cost_micros: int
    downgraded: int
    """Requests served by a cheaper model than requested (downgrade or pause-cheapest)."""
    downgrade_saved_micros: int
    """What the downgraded requests would have cost at the requested model's prices, minus their cost."""
    unpriced_downgrades: int = 0
    """Downgraded requests whose requested model has no price now (left out of the savings)."""


class Chargeback(msgspec.Struct, frozen=True, kw_only=True):
    by: str
    from_date: str
    to_date: str
    timezone: str
    lines: list[ChargebackLine]
    total: ChargebackLine | None
    """All lines together (null when the window holds no usage)."""


_TURNS = """
    SELECT {column} AS grp, session_id, turn_id,
           min(developer) AS developer_lo, max(developer) AS developer_hi, min(team) AS team_lo,
           max(team) AS team_hi, min(cost_center) AS cost_center_lo, max(cost_center) AS cost_center_hi,
           min(repo) AS repo_lo, max(repo) AS repo_hi, min(occurred_at) AS first_at, max(occurred_at) AS last_at,
           count(*) FILTER (WHERE status <> 'refused') AS requests,
           count(*) FILTER (WHERE status = 'refused') AS refused,
           sum(input_tokens) AS input_tokens, sum(cached_tokens) AS cached_tokens,
           sum(output_tokens) AS output_tokens, sum(reasoning_tokens) AS reasoning_tokens,
           sum(cost_micros) AS cost_micros, count(*) FILTER (WHERE retry) AS retries,
           sum(cost_micros) FILTER (WHERE retry) AS retry_cost_micros,
           count(*) FILTER (WHERE route_reason <> 'requested') AS downgraded
    FROM usage_events WHERE {where} GROUP BY 1, 2, 3
"""
"""First level: one row per (group, session, turn), so the distinct counts below run over turns, not events."""

_ONE = "CASE WHEN min({c}_lo) = max({c}_hi) THEN min({c}_lo) END AS {c}"

_LINES = f"""
    WITH t AS ({_TURNS})
    SELECT grp, GROUPING(grp) AS is_total,
           {", ".join(_ONE.format(c=c) for c in ("developer", "team", "cost_center", "repo"))},
           min(first_at) AS first_at, max(last_at) AS last_at,
           count(DISTINCT session_id) AS sessions,
           count(DISTINCT session_id || chr(31) || turn_id) AS turns,
           sum(requests)::bigint AS requests, sum(refused)::bigint AS refused,
           sum(input_tokens)::bigint AS input_tokens, sum(cached_tokens)::bigint AS cached_tokens,
           sum(output_tokens)::bigint AS output_tokens, sum(reasoning_tokens)::bigint AS reasoning_tokens,
           sum(cost_micros)::bigint AS cost_micros, sum(retries)::bigint AS retries,
           coalesce(sum(retry_cost_micros), 0)::bigint AS retry_cost_micros,
           sum(downgraded)::bigint AS downgraded
    FROM t GROUP BY GROUPING SETS ((grp), ())
    ORDER BY is_total, cost_micros DESC, grp NULLS LAST
"""
"""Second level: a line per group plus the total (the empty grouping set), in one pass."""


async def chargeback(conn: asyncpg.Connection | asyncpg.Pool, prices: PriceTable, *, by: str,
                     window: Window, filters: Filters = Filters()) -> Chargeback:
    """Chargeback lines for ``window`` grouped ``by`` session|developer|team|cost_center|repo, costliest first."""
    column = group_column(by)
    where, params = filters.sql(window)
    rows = await conn.fetch(_LINES.replace("{column}", column).replace("{where}", where), *params)
    saved, unpriced = await _downgrade_savings(conn, prices, column, where, params)
    lines = [_line(r, saved.get(r["grp"], 0), unpriced.get(r["grp"], 0)) for r in rows if not r["is_total"]]
    total = None
    for r in rows:
        if r["is_total"] and r["first_at"] is not None:
            total = _line(r, sum(saved.values()), sum(unpriced.values()))
    return Chargeback(by=by, from_date=window.from_date.isoformat(), to_date=window.to_date.isoformat(),
                      timezone=window.tz, lines=lines, total=total)


async def _downgrade_savings(conn: asyncpg.Connection | asyncpg.Pool, prices: PriceTable, column: str,
                             where: str, params: list[object]) -> tuple[dict[str | None, int], dict[str | None, int]]:
    rows = await conn.fetch(
        f"SELECT {column} AS grp, model_requested, input_tokens, cached_tokens, output_tokens, cost_micros "
        f"FROM usage_events WHERE {where} AND route_reason <> 'requested'", *params)
    saved: dict[str | None, int] = defaultdict(int)
    unpriced: dict[str | None, int] = defaultdict(int)
    for r in rows:
        try:
            price = prices.lookup(r["model_requested"]).price
        except UnknownModelError:
            unpriced[r["grp"]] += 1
            continue
        would_cost = cost_micros(price, input_tokens=r["input_tokens"], cached_tokens=r["cached_tokens"],
                                 output_tokens=r["output_tokens"])
        saved[r["grp"]] += would_cost - r["cost_micros"]
    return saved, unpriced


def _line(r: asyncpg.Record, saved: int, unpriced: int) -> ChargebackLine:
    return ChargebackLine(
        group=r["grp"], developer=r["developer"], team=r["team"], cost_center=r["cost_center"],
        repo=r["repo"], first_at=r["first_at"], last_at=r["last_at"], sessions=r["sessions"],
        turns=r["turns"], requests=r["requests"], refused=r["refused"], input_tokens=r["input_tokens"],
        cached_tokens=r["cached_tokens"], output_tokens=r["output_tokens"],
        reasoning_tokens=r["reasoning_tokens"], cost_micros=r["cost_micros"], retries=r["retries"],
        retry_cost_micros=r["retry_cost_micros"], downgraded=r["downgraded"],
        downgrade_saved_micros=saved, unpriced_downgrades=unpriced,
    )
