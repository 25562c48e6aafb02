"""The usage reads of the other workers: the policy dry-run's replay and the spend before its window,
the alerter's and the forecaster's spend per scope, and the reconciliation's daily usage per model.
Part of the usage store's PostgreSQL adapter (:mod:`.store`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import date, datetime
from typing import NamedTuple

from spendgate.core.db import Conn, Queryable
from spendgate.domain.alerts import SessionLine, scope_name
from spendgate.domain.enforcement.scopes import split_scope
from spendgate.domain.usage import StoredUsage

# -- policy dry-run: the window's events, and the spend before it ----------------------------------------


class QuarterHourSpend(NamedTuple):
    key_id: str
    developer: str
    team: str
    at: datetime
    spent_micros: int
    cost_center: str = ""
    model_used: str = ""


async def quarter_hour_spend(db: Queryable, start: datetime, end: datetime,
                             team: str | None = None) -> list[QuarterHourSpend]:
    """Spend in ``[start, end)`` (of ``team`` if given) per key, developer, team, cost center, model used and
    quarter hour (binned from the epoch)."""
    rows = await db.fetch(
        """SELECT key_id, developer, team, date_bin('15 minutes', occurred_at, 'epoch') AS at,
                  sum(cost_micros)::bigint AS spent, cost_center, model_used
           FROM usage_events WHERE occurred_at >= $1 AND occurred_at < $2 AND ($3::text IS NULL OR team = $3)
           GROUP BY 1, 2, 3, 4, 6, 7""",
        start, end, team)
    return [QuarterHourSpend(*r) for r in rows]


_REPLAY_COLUMNS = ("event_id::text, occurred_at, key_id, developer, team, session_id, turn_id, model_requested, "
                   "model_used, route_reason, stage, status, input_tokens, cached_tokens, output_tokens, "
                   "cost_micros, retry, cache_write_5m_tokens, cache_write_1h_tokens, cost_center")


async def replay_batches(conn: Conn, start: datetime, end: datetime, *, batch_rows: int,
                         team: str | None = None, event_ids: bool = True) -> AsyncIterator[list[StoredUsage]]:
    """The events of ``[start, end)`` (of ``team`` if given) in time order, ``batch_rows`` at a time (a cursor:
    inside a transaction). ``event_ids=False``: every ``event_id`` is empty (a replay that keeps no trace needs
    none, and a million of them cost seconds to read); the order is the same."""
    columns = _REPLAY_COLUMNS if event_ids else "''::text AS event_id" + _REPLAY_COLUMNS.removeprefix("event_id::text")
    order = "ORDER BY occurred_at, usage_events.event_id::text"
    if team is None:
        cursor = await conn.cursor(
            f"SELECT {columns} FROM usage_events WHERE occurred_at >= $1 AND occurred_at < $2 {order}", start, end)
    else:
        cursor = await conn.cursor(
            f"SELECT {columns} FROM usage_events WHERE team = $3 AND occurred_at >= $1 AND occurred_at < $2 {order}",
            start, end, team)
    while batch := await cursor.fetch(batch_rows):
        yield [StoredUsage(*r) for r in batch]


# -- the alerter and the forecaster -----------------------------------------------------------------------

_SCOPE_COLUMN = {"key": "key_id", "developer": "developer", "team": "team", "cost_center": "cost_center"}


async def top_sessions(db: Queryable, scope: str, start: datetime, end: datetime, limit: int) -> list[SessionLine]:
    """The costliest sessions of ``scope`` (every session for ``org`` or another kind) in ``[start, end)``,
    each one developer's (two developers' keys that sent the same session id are two lines)."""
    kind, name = scope_name(scope)
    column = _SCOPE_COLUMN.get(kind)
    where = f"AND {column} = $4" if column else "AND $4::text IS NULL"
    rows = await db.fetch(
        f"""SELECT session_id, developer, max(repo) AS repo, sum(cost_micros)::bigint AS cost, count(*) AS n
            FROM usage_events
            WHERE occurred_at >= $1 AND occurred_at < $2 AND session_id IS NOT NULL {where}
            GROUP BY developer, session_id ORDER BY cost DESC, session_id, developer LIMIT $3""",
        start, end, limit, name if column else None,
    )
    return [SessionLine(session_id=r["session_id"], developer=r["developer"], repo=r["repo"],
                        cost_micros=r["cost"], requests=r["n"]) for r in rows]


def _scope_condition(scope: str, param: int) -> tuple[str, list[str]]:
    """SQL condition selecting a scope's events (of a per-model scope: those its model served), and its
    parameters; ValueError for a scope of no known kind."""
    base, model = split_scope(scope)
    if model is not None:
        condition, params = _scope_condition(base, param)
        return f"{condition} AND model_used = ${param + len(params)}", [*params, model]
    kind, _, name = scope.partition(":")
    column = _SCOPE_COLUMN.get(kind)
    if scope == "org":
        return "TRUE", []
    if column is None or not name:
        raise ValueError(f"unknown scope {scope!r}: use key:<id>, developer:<name>, team:<name>, "
                         "cost_center:<name> or org")
    return f"{column} = ${param}", [name]


async def scope_spend(db: Queryable, scope: str, starts_at: datetime, ends_at: datetime) -> tuple[int, int]:
    """What ``scope`` (a per-model scope: its model) spent over events in ``[starts_at, ends_at)``, and its
    requests (refused ones are not requests): a balance counted afresh from the events."""
    condition, params = _scope_condition(scope, 3)
    row = await db.fetchrow(
        f"""SELECT COALESCE(sum(cost_micros), 0)::bigint AS spent, count(*) FILTER (WHERE status <> 'refused') AS n
            FROM usage_events WHERE occurred_at >= $1 AND occurred_at < $2 AND {condition}""",
        starts_at, ends_at, *params,
    )
    assert row is not None
    return int(row["spent"]), int(row["n"])


async def daily_spend(db: Queryable, scope: str, timezone: str, starts_at: datetime,
                      ends_at: datetime) -> list[tuple[date, int]]:
    """Spend of ``scope`` per local day of ``timezone``, over events in ``[starts_at, ends_at)``."""
    condition, params = _scope_condition(scope, 4)
    rows = await db.fetch(
        f"""SELECT (occurred_at AT TIME ZONE $1)::date AS day, sum(cost_micros)::bigint AS spent
            FROM usage_events
            WHERE occurred_at >= $2 AND occurred_at < $3 AND {condition}
            GROUP BY 1""",
        timezone, starts_at, ends_at, *params,
    )
    return [(r["day"], int(r["spent"])) for r in rows]


class DeveloperTrend(NamedTuple):
    developer: str
    recent_micros: int
    before_micros: int


async def developer_trends(db: Queryable, team: str, *, begin: datetime, split: datetime, end: datetime,
                           limit: int) -> list[DeveloperTrend]:
    """The team's developers by how much more they spent in ``[split, end)`` than in ``[begin, split)``."""
    rows = await db.fetch(
        """SELECT developer, recent, before FROM (
               SELECT developer,
                      COALESCE(sum(cost_micros) FILTER (WHERE occurred_at >= $2), 0)::bigint AS recent,
                      COALESCE(sum(cost_micros) FILTER (WHERE occurred_at < $2), 0)::bigint AS before
               FROM usage_events WHERE team = $1 AND occurred_at >= $3 AND occurred_at < $4
               GROUP BY developer) AS d
           ORDER BY recent - before DESC, developer LIMIT $5""",
        team, split, begin, end, limit,
    )
    return [DeveloperTrend(r["developer"], int(r["recent"]), int(r["before"])) for r in rows]


class SessionSpend(NamedTuple):
    session_id: str
    developer: str
    repo: str | None
    cost_micros: int
    requests: int


async def team_sessions(db: Queryable, team: str, *, start: datetime, end: datetime,
                        limit: int) -> list[SessionSpend]:
    """The team's costliest sessions in ``[start, end)``, each one developer's."""
    rows = await db.fetch(
        """SELECT session_id, developer, min(repo) AS repo, sum(cost_micros)::bigint AS cost, count(*) AS requests
           FROM usage_events
           WHERE team = $1 AND session_id IS NOT NULL AND occurred_at >= $2 AND occurred_at < $3
           GROUP BY developer, session_id ORDER BY cost DESC, session_id, developer LIMIT $4""",
        team, start, end, limit,
    )
    return [SessionSpend(r["session_id"], r["developer"], r["repo"], int(r["cost"]), int(r["requests"]))
            for r in rows]


# -- reads: reconciliation with the provider's bill -----------------------------------------------------

class DailyModelUsage(NamedTuple):
    """What the ledger counted for one UTC day, model and endpoint (reconciliation's side of the bill)."""

    day: date
    model: str
    endpoint: str
    upstream: str | None
    """The upstream that served them (the pool's name, ``usage_events.upstream``); None for events that
    name none (recorded before the pool, the Anthropic routes, no upstream reached)."""
    requests: int
    input_tokens: int
    output_tokens: int
    cost_micros: int


async def daily_model_usage(db: Queryable, start: date, end: date) -> list[DailyModelUsage]:
    """Requests (refusals left out), tokens and cost per UTC day, model used, endpoint and upstream,
    ``start`` to ``end`` inclusive."""
    rows = await db.fetch(
        """SELECT (occurred_at AT TIME ZONE 'UTC')::date AS day, model_used, endpoint, upstream,
                  count(*) FILTER (WHERE status <> 'refused'), sum(input_tokens)::bigint,
                  sum(output_tokens)::bigint, sum(cost_micros)::bigint
           FROM usage_events
           WHERE occurred_at >= ($1::date)::timestamp AT TIME ZONE 'UTC'
             AND occurred_at < ($2::date + 1)::timestamp AT TIME ZONE 'UTC'
           GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4""", start, end)
    return [DailyModelUsage(*r) for r in rows]


async def retry_spend(db: Queryable, start: datetime, end: datetime, team: str | None) -> dict[str, tuple[int, int]]:
    """team → (retry requests, their cost) from ``start`` to ``end`` (``policy suggest``'s retry caps)."""
    rows = await db.fetch(
        """SELECT team, count(*) AS n, coalesce(sum(cost_micros), 0)::bigint AS cost FROM usage_events
           WHERE retry AND occurred_at >= $1 AND occurred_at < $2 AND ($3::text IS NULL OR team = $3)
             AND team IS NOT NULL GROUP BY team""", start, end, team)
    return {r["team"]: (r["n"], r["cost"]) for r in rows}
