"""Forecast overruns, retry loops, PagerDuty resolves, poison events and `alerts test` end to end."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import asyncpg
import pytest

from spendgate.domain.constants import GROUP_ALERTER, TOPIC_BUDGET, TOPIC_FORECAST
from spendgate.domain.events import ForecastOverrun, ForecastUpdated, RetryLoopDetected
from spendgate.domain.ids import uuid7
from tests.support.alerts import (
    NOW,
    Receivers,
    count,
    crossing,
    run_cli,
    running_alerter,
    settings_for,
    size,
)
from tests.support.waiting import eventually

ROUTES = """
targets:
  slack:platform-em: {{url: "{slack}"}}
  pagerduty:oncall: {{routing_key: rk, url: "{pd}"}}
routes:
  - name: budget
    match: {{cost_center: platform, stage: [pause, forecast_overrun]}}
    notify: [slack:platform-em, pagerduty:oncall]
  - name: loops
    match: {{stage: retry_loop}}
    notify: [slack:platform-em]
"""


def forecast(**kw: object) -> ForecastUpdated:
    fields: dict[str, object] = dict(
        forecast_id=uuid7(), scope="team:platform", month=date(2026, 11, 1), as_of=date(2026, 11, 26),
        actual_micros=1_120_000_000, p10_micros=1_050_000_000, p50_micros=1_200_000_000,
        p90_micros=1_400_000_000, budget_micros=1_000_000_000, p50_crosses_on=date(2026, 11, 27),
        model="test", team="platform", cost_center="platform")
    fields.update(kw)
    return ForecastUpdated(**fields)  # type: ignore[arg-type]


async def test_forecasts_retry_loops_and_pagerduty_resolve_at_reset(
    db_url: str, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    """A pause carries the latest forecast (made after its spend: quoted as is); an overrun and a retry
    loop are routed by stage; PagerDuty incidents are resolved with the same dedup_key once the period resets."""
    async with Receivers() as rx:
        settings = settings_for(db_url, tmp_path, ROUTES.format(slack=rx.url("slack"), pd=rx.url("pagerduty")))
        async with running_alerter(settings, pool, db_url) as alerter:
            await alerter.publish(forecast(as_of=date(2026, 11, 20), p50_micros=1), forecast(), topic=TOPIC_FORECAST)
            await eventually(lambda: count(pool, "SELECT count(*) FROM alert_forecasts WHERE as_of = '2026-11-26'"),
                             what="the latest forecast remembered")
            await alerter.publish(crossing())
            await eventually(lambda: size(rx.delivered("slack")), what="the pause")
            pause_text = str(rx.delivered("slack")[0].json())
            assert "P50 $1,200.00" in pause_text and "2026-11-27" in pause_text

            await alerter.publish(ForecastOverrun(
                overrun_id=uuid7(), scope="team:platform", month=date(2026, 11, 1), as_of=date(2026, 11, 26),
                p10_micros=1_050_000_000, p50_micros=1_200_000_000, p90_micros=1_400_000_000,
                budget_micros=1_000_000_000, p50_crosses_on=date(2026, 11, 27), team="platform",
                cost_center="platform"), topic=TOPIC_FORECAST)
            await alerter.publish(RetryLoopDetected(
                detection_id=uuid7(), session_id="sess-loop", key_id="k_bob", developer="bob", team="search",
                cost_center="search", tool_name="exec_command", command='{"cmd": "pytest -x"}', retries=3,
                retry_cost_micros=90_000, detected_at=NOW))
            await eventually(lambda: size(rx.delivered("slack")), until=lambda n: n == 3, what="overrun and loop")
            titles = sorted(r.json()["blocks"][0]["text"]["text"] for r in rx.delivered("slack")[1:])
            assert titles[0].startswith("[forecast] team platform") and titles[1].startswith("[retry loop] bob")
            await eventually(lambda: size(rx.delivered("pagerduty")), until=lambda n: n == 2,
                             what="pause and overrun triggers (the loop route has no PagerDuty)")

            alerter.clock.now = datetime(2026, 12, 1, 0, 0, 1, tzinfo=UTC)
            await eventually(lambda: size(rx.delivered("pagerduty")), until=lambda n: n == 4, what="two resolves")
        sent = [r.json() for r in rx.delivered("pagerduty")]
        triggers = {p["dedup_key"] for p in sent if p["event_action"] == "trigger"}
        resolves = {p["dedup_key"] for p in sent if p["event_action"] == "resolve"}
        assert triggers == resolves == {"spendgate:team:platform:month:2026-11-01",
                                        "spendgate:forecast:team:platform:2026-11-01"}


async def test_without_a_forecast_event_the_forecasters_table_is_read(
    db_url: str, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    """With no forecast on the bus, the forecaster's stored one is quoted, re-based on the spend it predates."""
    if await pool.fetchval("SELECT to_regclass('public.forecasts')") is None:
        pytest.skip("the forecaster's forecasts table has not landed")
    for as_of, p50 in ((date(2026, 11, 20), 1_000_000), (date(2026, 11, 25), 1_234_000_000)):
        await pool.execute(
            """INSERT INTO forecasts (scope, as_of, forecast_id, month, computed_at, actual_micros, p10_micros,
                   p50_micros, p90_micros, budget_micros, p50_crosses_on, model, inputs, band)
               VALUES ('team:platform', $1, $2, '2026-11-01', now(), 1, 2, $3, 4000000000, 1000000000,
                       '2026-11-28', 'test', '{}', '[]')""",
            as_of, uuid7(), p50)
    async with Receivers() as rx:
        settings = settings_for(db_url, tmp_path, ROUTES.format(slack=rx.url("slack"), pd=rx.url("pagerduty")))
        async with running_alerter(settings, pool, db_url) as alerter:
            await alerter.publish(crossing())
            await eventually(lambda: size(rx.delivered("slack")), what="the pause")
        text = str(rx.delivered("slack")[0].json())
        # $1,120 spent now plus 90 % (4.5 of its 5 days left) of the $1,234 it still expected
        assert ("month end P50 $2,230.60 (P10 $1,120.00 – P90 $4,720.00): the forecast of 2026-11-25 re-based on "
                "the $1,120.00 spent so far this month") in text


async def test_poison_events_are_dead_lettered_and_do_not_stop_the_alerter(
    db_url: str, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    """A malformed record goes to dead_letters; the crossing behind it is still delivered."""
    async with Receivers() as rx:
        settings = settings_for(db_url, tmp_path, ROUTES.format(slack=rx.url("slack"), pd=rx.url("pagerduty")))
        async with running_alerter(settings, pool, db_url) as alerter:
            await alerter.runtime.bus.publish(TOPIC_BUDGET, "team:platform", b"{not json")
            await alerter.publish(crossing())
            await eventually(lambda: size(rx.delivered("slack")), what="the crossing behind the poison")
        assert await count(pool, "SELECT count(*) FROM dead_letters WHERE consumer = 'alerter'") == 1
        assert await count(pool, "SELECT sum(next_offset) FROM bus_group_offsets WHERE group_id = $1",
                           GROUP_ALERTER) == 2


async def test_alerts_test_sends_a_test_message_through_a_route(
    db_url: str, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    """`spendgate alerts test --route budget` reaches every target of the route and says so."""
    async with Receivers() as rx:
        settings = settings_for(db_url, tmp_path, ROUTES.format(slack=rx.url("slack"), pd=rx.url("pagerduty")))
        env = {"SPENDGATE_DATABASE_URL": db_url, "SPENDGATE_DATA_DIR": str(tmp_path),
               "SPENDGATE_ALERTS__ROUTES_FILE": str(settings.alerts.routes_file), "SPENDGATE_LOG_LEVEL": "warning"}
        code, out = await run_cli("test", "--route", "budget", env=env)
        assert code == 0, out
        assert "slack:platform-em: delivered" in out and "pagerduty:oncall: delivered" in out
        assert "test message for route budget" in str(rx.delivered("slack")[0].json())
        code, out = await run_cli("test", "--route", "nope", env=env)
        assert code == 1 and "no route named 'nope'" in out
