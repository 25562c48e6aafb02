"""The forecasts store's contract (forecasts, forecast_overruns, forecast_reports), run against every
implementation."""

from __future__ import annotations

import abc
from dataclasses import replace
from datetime import UTC, date, datetime

import asyncpg

from spendgate.core.bus import MemoryBus
from spendgate.domain.constants import TOPIC_FORECAST
from spendgate.domain.events import ForecastOverrun, ForecastUpdated, decode
from spendgate.domain.forecast import BandPoint, Forecast
from spendgate.store.forecasts.port import POSTGRES, ForecastStore

MONTH = date(2026, 11, 1)
AT = datetime(2026, 11, 10, 12, tzinfo=UTC)


def forecast(as_of: date, p50_micros: int, *, budget_micros: int | None = 1000,
             crosses: date | None = None) -> Forecast:
    return Forecast(month=MONTH, as_of=as_of, actual_micros=300, p10_micros=p50_micros - 100,
                    p50_micros=p50_micros, p90_micros=p50_micros + 100, budget_micros=budget_micros,
                    p10_crosses_on=None, p50_crosses_on=crosses, p90_crosses_on=crosses, model="test",
                    band=(BandPoint(date(2026, 11, 30), p50_micros - 100, p50_micros, p50_micros + 100),),
                    inputs={"days": 9})


class ForecastStoreContract(abc.ABC):
    """A pass is recorded whole; an overrun once per scope and month; the outbox publishes each row once."""

    @abc.abstractmethod
    def create_store(self) -> ForecastStore: ...

    async def test_a_pass_records_forecasts_and_the_first_overrun_only(self, pool: asyncpg.Pool) -> None:
        """The first P50 crossing of a month is new once; a rerun of the day replaces its forecast."""
        store = self.create_store()
        over = forecast(date(2026, 11, 9), 1200, crosses=date(2026, 11, 25))
        async with pool.acquire() as conn:
            fresh = await store.save_pass(conn, [("team:a", over), ("team:b", forecast(date(2026, 11, 9), 500)),
                                                 ("org", forecast(date(2026, 11, 9), 900, budget_micros=None))], AT)
            assert fresh == ["team:a"]
            assert await store.save_pass(conn, [("team:a", replace(over, p50_micros=1300))], AT) == []
        latest = {f.scope: f for f in await store.latest_forecasts(pool)}
        assert sorted(latest) == ["org", "team:a", "team:b"]
        assert (latest["team:a"].p50_micros, latest["team:a"].p50_crosses_on) == (1300, date(2026, 11, 25))
        assert latest["org"].budget_micros is None and latest["team:a"].computed_at == AT

    async def test_the_latest_forecast_is_the_latest_as_of_day(self, pool: asyncpg.Pool) -> None:
        """Per scope the newest as-of day wins, whatever order the passes ran in; a scope can be asked alone."""
        store = self.create_store()
        async with pool.acquire() as conn:
            await store.save_pass(conn, [("team:a", forecast(date(2026, 11, 9), 700))], AT)
            await store.save_pass(conn, [("team:a", forecast(date(2026, 11, 8), 600))], AT)
            await store.save_pass(conn, [("team:b", forecast(date(2026, 11, 9), 100))], AT)
        [a] = await store.latest_forecasts(pool, "team:a")
        assert (a.as_of, a.p50_micros) == (date(2026, 11, 9), 700)
        assert await store.latest_forecasts(pool, "team:c") == []

    async def test_the_outbox_publishes_every_row_once(self, pool: asyncpg.Pool) -> None:
        """Updates and first overruns go out once; a replaced forecast goes out again."""
        store = self.create_store()
        bus = MemoryBus(partitions=1)
        over = forecast(date(2026, 11, 9), 1200, crosses=date(2026, 11, 25))
        async with pool.acquire() as conn:
            await store.save_pass(conn, [("team:a", over), ("team:b", forecast(date(2026, 11, 9), 500))], AT)
        assert await store.publish_pending(pool, bus) == (2, 1)
        assert await store.publish_pending(pool, bus) == (0, 0)
        async with pool.acquire() as conn:
            await store.save_pass(conn, [("team:a", replace(over, p50_micros=1300))], AT)
        assert await store.publish_pending(pool, bus) == (1, 0)
        consumer = bus.consumer("g", [TOPIC_FORECAST])
        await consumer.start()
        events = [decode(r.value).data for r in await consumer.poll(timeout_s=0.1)]
        kinds = sorted(type(e).__name__ for e in events)
        assert kinds == ["ForecastOverrun", "ForecastUpdated", "ForecastUpdated", "ForecastUpdated"]
        overrun = next(e for e in events if isinstance(e, ForecastOverrun))
        assert (overrun.scope, overrun.team, overrun.p50_micros) == ("team:a", "a", 1200)
        assert [e.p50_micros for e in events if isinstance(e, ForecastUpdated) and e.scope == "team:a"] == [1200, 1300]

    async def test_the_nightly_report_is_claimed_once_a_day(self, pool: asyncpg.Pool) -> None:
        """One claim per day; a released claim (sending failed) can be taken again; a sent one cannot."""
        store = self.create_store()
        day = date(2026, 11, 10)
        assert await store.claim_report(pool, day, AT) is True
        assert await store.claim_report(pool, day, AT) is False
        await store.release_report(pool, day)
        assert await store.claim_report(pool, day, AT) is True
        await store.mark_report_sent(pool, day)
        assert await store.claim_report(pool, day, AT) is False
        assert await store.claim_report(pool, date(2026, 11, 11), AT) is True


    async def test_the_latest_band_of_a_scope_comes_back_day_by_day(self, pool: asyncpg.Pool) -> None:
        """latest_band returns the scope's newest forecast with its cumulative band; None for a scope
        without one."""
        store = self.create_store()
        async with pool.acquire() as conn:
            await store.save_pass(conn, [("team:a", forecast(date(2026, 11, 8), 700))], AT)
            await store.save_pass(conn, [("team:a", forecast(date(2026, 11, 9), 800))], AT)
        found = await store.latest_band(pool, "team:a")
        assert found is not None and found.forecast.as_of == date(2026, 11, 9)
        assert (found.days, found.p10_micros, found.p50_micros, found.p90_micros) == \
            ([date(2026, 11, 30)], [700], [800], [900])
        assert await store.latest_band(pool, "team:nobody") is None


class TestPostgresForecastStore(ForecastStoreContract):
    def create_store(self) -> ForecastStore:
        return POSTGRES
