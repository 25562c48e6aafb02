"""The forecaster's tables: forecasts (an outbox to spendgate.forecast.v1), overruns (once per scope and
month) and the nightly report's claim (once per day). Writes happen in one transaction per pass;
publishing reads the unpublished rows under ``FOR UPDATE SKIP LOCKED``, publishes them and marks them,
so a crash between the two only repeats a publish (consumers dedupe on the event id), never loses one."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime

import asyncpg

from spendgate.core.bus import Bus
from spendgate.core.db import Conn, Queryable
from spendgate.domain import constants as c
from spendgate.domain.events import ForecastOverrun, ForecastUpdated, encode, new_id
from spendgate.domain.forecast import Forecast

SOURCE = "spendgate/forecaster"
PUBLISH_BATCH = 1000


def _team(scope: str) -> str | None:
    return scope.removeprefix("team:") if scope.startswith("team:") else None


def _band_json(forecast: Forecast) -> str:
    band = forecast.band
    return json.dumps({"days": [p.day.isoformat() for p in band], "p10": [p.p10_micros for p in band],
                       "p50": [p.p50_micros for p in band], "p90": [p.p90_micros for p in band]})


async def save_pass(conn: Conn, results: Sequence[tuple[str, Forecast]], computed_at: datetime) -> list[str]:
    """Record a pass's (scope, forecast) pairs and any first P50 overrun of the month; returns the
    scopes newly overrun."""
    rows = []
    overruns = []
    for scope, f in results:
        rows.append((scope, f.as_of, new_id(), f.month, computed_at, f.actual_micros, f.p10_micros,
                     f.p50_micros, f.p90_micros, f.budget_micros, f.p10_crosses_on, f.p50_crosses_on,
                     f.p90_crosses_on, f.model, json.dumps(f.inputs), _band_json(f)))
        if f.budget_micros is not None and f.p50_crosses_on is not None:
            overruns.append((scope, f.month, new_id(), f.as_of, f.p10_micros, f.p50_micros,
                             f.p90_micros, f.budget_micros, f.p50_crosses_on, computed_at))
    async with conn.transaction():
        await conn.executemany(
            """INSERT INTO forecasts (scope, as_of, forecast_id, month, computed_at, actual_micros, p10_micros,
                   p50_micros, p90_micros, budget_micros, p10_crosses_on, p50_crosses_on, p90_crosses_on,
                   model, inputs, band)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15::jsonb, $16::jsonb)
               ON CONFLICT (scope, as_of) DO UPDATE SET forecast_id = EXCLUDED.forecast_id,
                   month = EXCLUDED.month, computed_at = EXCLUDED.computed_at,
                   actual_micros = EXCLUDED.actual_micros, p10_micros = EXCLUDED.p10_micros,
                   p50_micros = EXCLUDED.p50_micros, p90_micros = EXCLUDED.p90_micros,
                   budget_micros = EXCLUDED.budget_micros, p10_crosses_on = EXCLUDED.p10_crosses_on,
                   p50_crosses_on = EXCLUDED.p50_crosses_on, p90_crosses_on = EXCLUDED.p90_crosses_on,
                   model = EXCLUDED.model, inputs = EXCLUDED.inputs, band = EXCLUDED.band, published_at = NULL""",
            rows,
        )
        fresh: list[str] = []
        for o in overruns:
            inserted = await conn.fetchval(
                """INSERT INTO forecast_overruns (scope, month, overrun_id, as_of, p10_micros, p50_micros,
                       p90_micros, budget_micros, p50_crosses_on, created_at)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
                   ON CONFLICT (scope, month) DO NOTHING RETURNING scope""",
                *o,
            )
            if inserted is not None:
                fresh.append(str(inserted))
    return fresh


def _updated(r: asyncpg.Record) -> ForecastUpdated:
    return ForecastUpdated(
        forecast_id=str(r["forecast_id"]), scope=r["scope"], month=r["month"], as_of=r["as_of"],
        actual_micros=r["actual_micros"], p10_micros=r["p10_micros"], p50_micros=r["p50_micros"],
        p90_micros=r["p90_micros"], budget_micros=r["budget_micros"], p10_crosses_on=r["p10_crosses_on"],
        p50_crosses_on=r["p50_crosses_on"], p90_crosses_on=r["p90_crosses_on"], model=r["model"],
        team=_team(r["scope"]),
    )


def _overrun(r: asyncpg.Record) -> ForecastOverrun:
    return ForecastOverrun(
        overrun_id=str(r["overrun_id"]), scope=r["scope"], month=r["month"], as_of=r["as_of"],
        p10_micros=r["p10_micros"], p50_micros=r["p50_micros"], p90_micros=r["p90_micros"],
        budget_micros=r["budget_micros"], p50_crosses_on=r["p50_crosses_on"], team=_team(r["scope"]),
    )


async def _publish_table(pool: asyncpg.Pool, bus: Bus, table: str, id_column: str, order: str,
                         make: Callable[[asyncpg.Record], ForecastUpdated | ForecastOverrun]) -> int:
    sent = 0
    while True:
        async with pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                f"""SELECT * FROM {table} WHERE published_at IS NULL ORDER BY {order}
                    LIMIT {PUBLISH_BATCH} FOR UPDATE SKIP LOCKED"""
            )
            if not rows:
                return sent
            await bus.publish_many(c.TOPIC_FORECAST, [(r["scope"], encode(make(r), source=SOURCE, subject=r["scope"]))
                                                      for r in rows])
            await conn.execute(f"UPDATE {table} SET published_at = now() WHERE {id_column} = ANY($1::uuid[])",
                               [r[id_column] for r in rows])
            sent += len(rows)


async def publish_pending(pool: asyncpg.Pool, bus: Bus) -> tuple[int, int]:
    """Publish every unpublished forecast, then every unpublished overrun; returns how many of each."""
    updates = await _publish_table(pool, bus, "forecasts", "forecast_id", "computed_at", _updated)
    overruns = await _publish_table(pool, bus, "forecast_overruns", "overrun_id", "created_at", _overrun)
    return updates, overruns


@dataclass(frozen=True, slots=True)
class StoredForecast:
    scope: str
    month: date
    as_of: date
    actual_micros: int
    p10_micros: int
    p50_micros: int
    p90_micros: int
    budget_micros: int | None
    p10_crosses_on: date | None
    p50_crosses_on: date | None
    p90_crosses_on: date | None
    model: str
    computed_at: datetime


async def latest_forecasts(db: Queryable, scope: str | None = None) -> list[StoredForecast]:
    """The most recent stored forecast of each scope (or of ``scope`` alone), by scope."""
    rows = await db.fetch(
        """SELECT DISTINCT ON (scope) scope, month, as_of, actual_micros, p10_micros, p50_micros, p90_micros,
                  budget_micros, p10_crosses_on, p50_crosses_on, p90_crosses_on, model, computed_at
           FROM forecasts WHERE $1::text IS NULL OR scope = $1
           ORDER BY scope, as_of DESC""", scope)
    return [StoredForecast(*r) for r in rows]


async def claim_report(db: Queryable, report_date: date, claimed_at: datetime) -> bool:
    """Take the nightly report of ``report_date``; False when another worker already has (or sent it)."""
    claimed = await db.fetchval(
        """INSERT INTO forecast_reports (report_date, claimed_at) VALUES ($1, $2)
           ON CONFLICT (report_date) DO NOTHING RETURNING report_date""", report_date, claimed_at)
    return claimed is not None


async def release_report(db: Queryable, report_date: date) -> None:
    """Give the claim back (sending failed), so the next attempt can take it."""
    await db.execute("DELETE FROM forecast_reports WHERE report_date = $1", report_date)


async def mark_report_sent(db: Queryable, report_date: date) -> None:
    await db.execute("UPDATE forecast_reports SET sent_at = now() WHERE report_date = $1", report_date)


@dataclass(frozen=True, slots=True)
class ForecastBand:
    """The latest forecast of a scope with its cumulative band, day by day to month-end (the console's chart)."""

    forecast: StoredForecast
    days: list[date]
    p10_micros: list[int]
    p50_micros: list[int]
    p90_micros: list[int]


async def latest_band(db: Queryable, scope: str) -> ForecastBand | None:
    """The most recent forecast of ``scope`` and its band; None while the forecaster has written none."""
    row = await db.fetchrow(
        """SELECT scope, month, as_of, actual_micros, p10_micros, p50_micros, p90_micros, budget_micros,
                  p10_crosses_on, p50_crosses_on, p90_crosses_on, model, computed_at, band
           FROM forecasts WHERE scope = $1 ORDER BY as_of DESC LIMIT 1""", scope)
    if row is None:
        return None
    band = json.loads(row["band"]) if isinstance(row["band"], str) else row["band"]
    return ForecastBand(forecast=StoredForecast(*list(row.values())[:13]),
                        days=[date.fromisoformat(d) for d in band["days"]],
                        p10_micros=[int(v) for v in band["p10"]], p50_micros=[int(v) for v in band["p50"]],
                        p90_micros=[int(v) for v in band["p90"]])
