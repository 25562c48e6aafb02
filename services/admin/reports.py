"""Chargeback: one line per session (of one developer), developer, team, cost center or repo, read from the
usage events.

Every figure comes from ``usage_events`` (the facts the ledger folds), so the total of a report over
a whole budget period equals the ledger's balance for that period to the micro-dollar. Downgrade
savings reprice each downgraded request at its *requested* model's current unit prices with the one
cost function (:func:`spendgate.domain.pricing.cost_micros`) and subtract what it actually cost.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime

import msgspec

from spendgate.admin.window import Filters, Window, group_column
from spendgate.core.db import Queryable
from spendgate.domain.errors import UnknownModelError
from spendgate.domain.pricing import PriceTable, cost_micros
from spendgate.store.usage import store as usage_store
from spendgate.store.usage.reports import ChargebackRow, DowngradedRequest


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


async def chargeback(conn: Queryable, prices: PriceTable, *, by: str, window: Window,
                     filters: Filters = Filters()) -> Chargeback:
    """Chargeback lines for ``window`` grouped ``by`` session|developer|team|cost_center|repo, costliest first.
    A session line is one developer's: the same client-sent session id from two developers' keys is two
    lines, each naming its developer."""
    column = group_column(by)
    usage = filters.usage(window)
    rows, total_row = await usage_store.chargeback_rows(conn, column, usage)
    saved, unpriced = _downgrade_savings(prices, await usage_store.downgraded_requests(conn, column, usage))
    lines = [_line(r, saved.get((r.owner, r.group), 0), unpriced.get((r.owner, r.group), 0)) for r in rows]
    total = None if total_row is None else _line(total_row, sum(saved.values()), sum(unpriced.values()))
    return Chargeback(by=by, from_date=window.from_date.isoformat(), to_date=window.to_date.isoformat(),
                      timezone=window.tz, lines=lines, total=total)


_Group = tuple[str | None, str | None]
"""A line's (owner, group): the developer and session id of a session line, (None, value) otherwise."""


def _downgrade_savings(prices: PriceTable, rows: Iterable[DowngradedRequest]
                       ) -> tuple[dict[_Group, int], dict[_Group, int]]:
    saved: dict[_Group, int] = defaultdict(int)
    unpriced: dict[_Group, int] = defaultdict(int)
    for r in rows:
        try:
            price = prices.lookup(r.model_requested).price
        except UnknownModelError:
            unpriced[r.owner, r.group] += 1
            continue
        would_cost = cost_micros(price, input_tokens=r.input_tokens, cached_tokens=r.cached_tokens,
                                 output_tokens=r.output_tokens, cache_write_5m_tokens=r.cache_write_5m_tokens,
                                 cache_write_1h_tokens=r.cache_write_1h_tokens)
        saved[r.owner, r.group] += would_cost - r.cost_micros
    return saved, unpriced


def _line(r: ChargebackRow, saved: int, unpriced: int) -> ChargebackLine:
    return ChargebackLine(
        group=r.group, developer=r.developer, team=r.team, cost_center=r.cost_center,
        repo=r.repo, first_at=r.first_at, last_at=r.last_at, sessions=r.sessions,
        turns=r.turns, requests=r.requests, refused=r.refused, input_tokens=r.input_tokens,
        cached_tokens=r.cached_tokens, output_tokens=r.output_tokens,
        reasoning_tokens=r.reasoning_tokens, cost_micros=r.cost_micros, retries=r.retries,
        retry_cost_micros=r.retry_cost_micros, downgraded=r.downgraded,
        downgrade_saved_micros=saved, unpriced_downgrades=unpriced,
    )
