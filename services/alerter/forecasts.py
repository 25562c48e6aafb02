"""The latest forecast for a scope: our own copy of spendgate.forecast.v1, else the forecaster's
``forecasts`` table when it exists (its columns are read by name, defensively)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import asyncpg
import msgspec

from spendgate.core.db import Conn
from spendgate.domain.events import ForecastUpdated

_decoder = msgspec.json.Decoder(ForecastUpdated)
_ORDER_COLUMNS = ("as_of", "computed_at", "created_at", "updated_at")


@dataclass(frozen=True, slots=True)
class ForecastView:
    as_of: date
    p10_micros: int
    p50_micros: int
    p90_micros: int
    p50_crosses_on: date | None = None


async def remember_forecast(conn: Conn, forecast: ForecastUpdated) -> None:
    await conn.execute(
        """INSERT INTO alert_forecasts (scope, as_of, forecast) VALUES ($1, $2, $3::jsonb)
           ON CONFLICT (scope) DO UPDATE SET as_of = excluded.as_of, forecast = excluded.forecast,
               updated_at = now()
           WHERE alert_forecasts.as_of <= excluded.as_of""",
        forecast.scope, forecast.as_of, msgspec.json.encode(forecast).decode(),
    )


async def latest_forecast(conn: Conn, scope: str) -> ForecastView | None:
    raw = await conn.fetchval("SELECT forecast::text FROM alert_forecasts WHERE scope = $1", scope)
    if raw is not None:
        f = _decoder.decode(raw)
        return ForecastView(f.as_of, f.p10_micros, f.p50_micros, f.p90_micros, f.p50_crosses_on)
    return await _from_forecaster_table(conn, scope)


async def _from_forecaster_table(conn: Conn, scope: str) -> ForecastView | None:
    if await conn.fetchval("SELECT to_regclass('public.forecasts')") is None:
        return None
    columns = {r["column_name"] for r in await conn.fetch(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = 'public' AND table_name = 'forecasts'"
    )}
    if not {"scope", "p10_micros", "p50_micros", "p90_micros"} <= columns:
        return None
    order = next((c for c in _ORDER_COLUMNS if c in columns), None)
    sql = "SELECT * FROM forecasts WHERE scope = $1" + (f" ORDER BY {order} DESC" if order else "") + " LIMIT 1"
    try:
        row = await conn.fetchrow(sql, scope)
    except asyncpg.PostgresError:
        return None
    if row is None:
        return None
    as_of = row["as_of"] if "as_of" in columns and isinstance(row["as_of"], date) else date.today()
    crosses = row["p50_crosses_on"] if "p50_crosses_on" in columns else None
    return ForecastView(as_of, int(row["p10_micros"]), int(row["p50_micros"]), int(row["p90_micros"]),
                        crosses if isinstance(crosses, date) else None)
