"""Delivery guarantees against real receivers and the real Postgres bus: one notification per
crossing however often it is redelivered, retries with backoff and Retry-After, dead letters and replay,
and a dead channel that blocks nobody else."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import pytest
from structlog.testing import capture_logs

from spendgate.domain.constants import ALL_TOPICS, GROUP_ALERTER, TOPIC_BUDGET
from spendgate.domain.ids import uuid7
from tests.support.alerts import (
    Receivers,
    count,
    crossing,
    run_cli,
    running_alerter,
    settings_for,
    size,
)
from tests.support.kafka import KafkaForTest
from tests.support.waiting import eventually

ROUTES = """
targets:
  slack:platform-em: {{url: "{slack}"}}
  webhook:flaky: {{url: "{flaky}", signing_secret: s3cret}}
  webhook:down: {{url: "{down}", signing_secret: s3cret}}
routes:
  - name: platform
    match: {{cost_center: platform}}
    notify: [slack:platform-em]
  - name: flaky
    match: {{cost_center: flaky}}
    notify: [webhook:flaky]
  - name: down
    match: {{cost_center: down}}
    notify: [webhook:down, slack:platform-em]
"""


def routes(rx: Receivers) -> str:
    return ROUTES.format(slack=rx.url("slack"), flaky=rx.url("flaky"), down=rx.url("down"))


async def committed(pool: asyncpg.Pool) -> int:
    return int(await pool.fetchval(
        "SELECT coalesce(sum(next_offset), 0) FROM bus_group_offsets WHERE group_id = $1 AND topic = $2",
        GROUP_ALERTER, TOPIC_BUDGET))


async def test_a_crossing_delivered_three_times_yields_one_notification(
    db_url: str, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    """The same crossing three times on the bus, then again after lost commits: one alert, one Slack message."""
    async with Receivers() as rx:
        settings = settings_for(db_url, tmp_path, routes(rx))
        event = crossing()
        twin = crossing(crossing_id=uuid7())  # same scope, period and threshold under another id
        async with running_alerter(settings, pool, db_url) as alerter:
            await alerter.publish(event, event, event, twin)
            await eventually(lambda: committed(pool), until=lambda n: n == 4, what="all four consumed")
            await eventually(lambda: size(rx.delivered("slack")), what="the slack message")
        await pool.execute("DELETE FROM bus_group_offsets WHERE group_id = $1", GROUP_ALERTER)  # commits lost
        async with running_alerter(settings, pool, db_url):
            await eventually(lambda: committed(pool), until=lambda n: n == 4, what="all four redelivered")
        assert len(rx.requests["slack"]) == 1
        assert await count(pool, "SELECT count(*) FROM alerts") == 1
        assert await count(pool, "SELECT count(*) FROM alert_jobs") == 1


@pytest.mark.kafka
async def test_on_kafka_a_crossing_delivered_three_times_yields_one_notification(
    db_url: str, pool: asyncpg.Pool, tmp_path: Path, kafka: KafkaForTest
) -> None:
    """Same guarantee on Apache Kafka: three copies, then a later crossing, two messages."""
    bus = kafka.bus(topics=ALL_TOPICS)
    await bus.start()
    try:
        async with Receivers() as rx:
            settings = settings_for(db_url, tmp_path, routes(rx))
            async with running_alerter(settings, pool, db_url, bus=bus) as alerter:
                event = crossing()
                await alerter.publish(event, event, event, crossing(threshold_pct=80, stage="alert"))
                await eventually(lambda: size(rx.delivered("slack")), until=lambda n: n >= 2, timeout_s=30,
                                 what="the later crossing, behind the copies in the same partition")
            assert len(rx.requests["slack"]) == 2
            assert await count(pool, "SELECT count(*) FROM alerts") == 2
    finally:
        await bus.stop()


async def test_a_receiver_failing_twice_gets_the_alert_on_the_third_attempt(
    db_url: str, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    """500, 500, then 200: delivered on attempt three, every attempt kept in the history, each failure a warning."""
    async with Receivers() as rx:
        rx.script("flaky", [500, 500])
        settings = settings_for(db_url, tmp_path, routes(rx), max_attempts=5)
        with capture_logs() as logs:
            async with running_alerter(settings, pool, db_url) as alerter:
                await alerter.publish(crossing(cost_center="flaky", team="flaky", scope="team:flaky"))
                await eventually(lambda: size(rx.delivered("flaky")), what="delivery on the third attempt")
                rows = await eventually(
                    lambda: pool.fetch("SELECT attempt, outcome, http_status FROM alert_deliveries ORDER BY attempt"),
                    until=lambda r: len(r) == 3, what="three attempts recorded")
        failed = [(e["log_level"], e["attempt"]) for e in logs if e["event"] == "alert delivery failed"]
        assert failed == [("warning", 1), ("warning", 2)]  # the success is at info (below the tests' level)
        assert all(e["error"] == "receiver answered HTTP 500" for e in logs if e["event"] == "alert delivery failed")
        assert [(r["attempt"], r["outcome"], r["http_status"]) for r in rows] == [
            (1, "failed", 500), (2, "failed", 500), (3, "delivered", 200)]
        assert [r.status for r in rx.requests["flaky"]] == [500, 500, 200]
        assert await count(pool, "SELECT count(*) FROM alert_dead_letters") == 0


async def test_retry_after_is_honoured(db_url: str, pool: asyncpg.Pool, tmp_path: Path) -> None:
    """A 429 with Retry-After: 1 delays the next attempt by at least a second, though backoff is 20 ms."""
    async with Receivers() as rx:
        rx.script("flaky", [429], headers={"Retry-After": "1"})
        settings = settings_for(db_url, tmp_path, routes(rx))
        async with running_alerter(settings, pool, db_url) as alerter:
            await alerter.publish(crossing(cost_center="flaky", team="flaky", scope="team:flaky"))
            await eventually(lambda: size(rx.delivered("flaky")), what="delivery after Retry-After")
        times = await pool.fetch("SELECT attempted_at FROM alert_deliveries ORDER BY attempt")
        # attempted_at comes from the injected clock, so measure on the receiver side instead
        assert len(times) == 2
        first, second = rx.requests["flaky"]
        assert second.received_s - first.received_s >= 1.0


async def test_a_dead_receiver_ends_in_dead_letters_and_replay_delivers_it_after_recovery(
    db_url: str, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    """A receiver that never answers: dead-lettered after the last attempt while Slack is served at once;
    after it recovers `spendgate alerts replay` delivers it and `alerts dead` no longer lists it."""
    async with Receivers() as rx:
        rx.hang("down")
        settings = settings_for(db_url, tmp_path, routes(rx), request_timeout_s=0.3, max_attempts=3)
        async with running_alerter(settings, pool, db_url) as alerter:
            await alerter.publish(crossing(cost_center="down", team="down", scope="team:down"))
            await eventually(lambda: size(rx.delivered("slack")), what="slack while the webhook hangs")
            assert await count(pool, "SELECT count(*) FROM alert_dead_letters") == 0
            await alerter.publish(crossing(threshold_pct=80, stage="alert"))
            await eventually(lambda: size(rx.delivered("slack")), until=lambda n: n == 2,
                             what="a second alert while the webhook still hangs")
            await eventually(lambda: count(pool, "SELECT count(*) FROM alert_dead_letters"), timeout_s=30,
                             what="the dead letter")
        assert len(rx.requests["down"]) == 3 and not rx.delivered("down")
        env = {"SPENDGATE_DATABASE_URL": db_url, "SPENDGATE_DATA_DIR": str(tmp_path),
               "SPENDGATE_ALERTS__ROUTES_FILE": str(settings.alerts.routes_file),
               "SPENDGATE_ALERTS__REQUEST_TIMEOUT_S": "0.3", "SPENDGATE_LOG_LEVEL": "warning"}
        code, out = await run_cli("dead", env=env)
        assert code == 0 and "webhook:down" in out and "1 dead letters" in out, out

        rx.recover("down")
        code, out = await run_cli("replay", env=env)
        assert code == 0 and "1 delivered" in out, out
        (delivered,) = rx.delivered("down")
        assert delivered.json()["alert"]["scope"] == "team:down"
        assert await count(pool, "SELECT count(*) FROM alert_dead_letters WHERE replayed_at IS NOT NULL") == 1
        assert await count(pool, "SELECT count(*) FROM audit_log WHERE action = 'alert.replay' "
                                 "AND actor LIKE 'cli:%' AND detail->>'delivered' = '1'") == 1
        code, out = await run_cli("dead", env=env)
        assert "0 dead letters" in out, out

