"""Alerts follow budget changes (issue 12, item 1), through the real CLI and the real ledger and alerter
services on a real database: a budget lowered below spend alerts at once, a rebuild alerts nobody, the
forecast line reflects the spend, and ``alerts list`` / ``GET /v1/alerts`` show what fired and where it went."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import json
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg

from spendgate.alerter import service as alerter_service
from spendgate.core.bus.postgres import PostgresBus
from spendgate.core.config import Settings
from spendgate.domain.constants import TOPIC_FORECAST
from spendgate.domain.events import ForecastUpdated, encode
from spendgate.domain.ids import uuid7
from spendgate.ledger import service as ledger_service
from spendgate.runtime import Serve, run_services
from spendgate.store.keys import store as vkeys
from tests.support.admin_server import ADMIN_TOKEN, admin_client, admin_settings, auth
from tests.support.alerts import Receivers, crossing, running_alerter, settings_for, size
from tests.support.cli import spendgate
from tests.support.factories import usage_event
from tests.support.ledger import publish
from tests.support.waiting import eventually

ROUTES = """
targets:
  slack:mobile: {{url: "{slack}"}}
routes:
  - name: mobile
    match: {{cost_center: cc-mobile}}
    notify: [slack:mobile]
"""


@contextlib.asynccontextmanager
async def running(settings: Settings, services: Mapping[str, Serve]) -> AsyncIterator[None]:
    """The given services of ``spendgate up`` in this process, stopped on exit."""
    stop = asyncio.Event()
    task = asyncio.create_task(run_services(settings, services, stop=stop))
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


def mobile_usage(cost_micros: int, at: datetime) -> Any:
    return usage_event(key_id="k_dana", developer="dana", team="mobile", cost_center="cc-mobile",
                       cost_micros=cost_micros, occurred_at=at, event_id=uuid7())


async def month_spent(pool: asyncpg.Pool, scope: str) -> int:
    start = datetime.now(UTC).date().replace(day=1)
    return int(await pool.fetchval("SELECT coalesce(sum(spent_micros), 0) FROM balances WHERE scope = $1 "
                                   "AND period = 'month' AND period_start = $2", scope, start))


async def crossings(pool: asyncpg.Pool) -> list[tuple[int, str, str, bool]]:
    rows = await pool.fetch("SELECT threshold_pct, stage, cause, published_at IS NOT NULL AS published "
                            "FROM threshold_crossings WHERE scope = 'team:mobile' ORDER BY threshold_pct")
    return [tuple(r) for r in rows]  # type: ignore[misc]


async def test_a_budget_lowered_below_spend_alerts_at_once_and_once(
    db_url: str, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    """$0.0115 spent, `budgets set --monthly 0.012`: the 80 % and 95 % crossings are recorded, sent, delivered."""
    await vkeys.create_key(pool, developer="dana", team="mobile", cost_center="cc-mobile")
    now = datetime.now(UTC)
    async with Receivers() as rx:
        settings = settings_for(db_url, tmp_path, ROUTES.format(slack=rx.url("slack")))
        bus = PostgresBus(pool, db_url, partitions=settings.bus_partitions)
        async with running(settings, {"ledger": ledger_service.serve, "alerter": alerter_service.serve}):
            empty = ForecastUpdated(forecast_id=uuid7(), scope="team:mobile", month=now.date().replace(day=1),
                                    as_of=now.date(), actual_micros=0, p10_micros=0, p50_micros=0, p90_micros=0,
                                    model="none", team="mobile")  # made before any spend: "P50 $0.00"
            await bus.publish(TOPIC_FORECAST, "team:mobile", encode(empty, source="test"))
            await publish(bus, [mobile_usage(6_000, now), mobile_usage(5_500, now)])
            await eventually(lambda: month_spent(pool, "team:mobile"), until=lambda n: n == 11_500, what="usage folded")
            await eventually(lambda: pool.fetchval("SELECT count(*) FROM alert_forecasts"), what="forecast kept")

            done = await spendgate("budgets", "set", "--scope", "team:mobile", "--monthly", "0.012",
                                   db_url=db_url, data_dir=tmp_path)
            assert done.returncode == 0, done.stderr
            await eventually(lambda: size(rx.delivered("slack")), until=lambda n: n == 2, what="80 % and 95 % alerts")
            assert await crossings(pool) == [(80, "alert", "budget_change", True),
                                             (95, "downgrade", "budget_change", True)]

            for monthly in ("0.012", "0.010"):  # the same budget again: nothing; 115 %: the pause only
                done = await spendgate("budgets", "set", "--scope", "team:mobile", "--monthly", monthly,
                                       db_url=db_url, data_dir=tmp_path)
                assert done.returncode == 0, done.stderr
            await eventually(lambda: size(rx.delivered("slack")), until=lambda n: n == 3, what="the pause alert")
            await eventually(lambda: pool.fetchval("SELECT count(*) FROM budget_audit WHERE published_at IS NULL"),
                             until=lambda n: n == 0, what="every change published")
        assert [c[:2] for c in await crossings(pool)] == [(80, "alert"), (95, "downgrade"), (110, "pause")]
        texts = [json.dumps(r.json(), ensure_ascii=False) for r in rx.delivered("slack")]
        for title in ("[alert] team mobile (cost center cc-mobile): 95% of its monthly budget",
                      "[downgrade] team mobile (cost center cc-mobile): 95% of its monthly budget",
                      "[pause] team mobile (cost center cc-mobile): 115% of its monthly budget"):
            assert sum(title in t for t in texts) == 1, title
        assert all("budget was lowered" in t for t in texts)
        # The forecast line reflects the $0.0115 spent, not the forecast made before it.
        assert all("at this month's pace so far ($0.01 spent)" in t and "P50 $0.00" not in t for t in texts)
        assert len(rx.delivered("slack")) == 3


async def test_a_rebuild_recomputes_balances_and_alerts_nobody(
    db_url: str, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    """Last month's $1.20, re-folded by `ledger rebuild` under today's $1 budget, crosses nothing and sends nothing."""
    await vkeys.create_key(pool, developer="dana", team="mobile", cost_center="cc-mobile")
    now = datetime.now(UTC)
    last_month = now.replace(day=1, hour=12, minute=0) - timedelta(days=2)
    async with Receivers() as rx:
        settings = settings_for(db_url, tmp_path, ROUTES.format(slack=rx.url("slack")))
        bus = PostgresBus(pool, db_url, partitions=settings.bus_partitions)
        async with running(settings, {"ledger": ledger_service.serve, "alerter": alerter_service.serve}):
            await publish(bus, [mobile_usage(400_000, last_month + timedelta(minutes=i)) for i in range(3)])
            await eventually(lambda: pool.fetchval("SELECT count(*) FROM usage_events"), until=lambda n: n == 3,
                             what="last month folded (no budget then)")
            done = await spendgate("budgets", "set", "--scope", "team:mobile", "--monthly", "1",
                                   db_url=db_url, data_dir=tmp_path)
            assert done.returncode == 0, done.stderr
            await eventually(lambda: pool.fetchval("SELECT count(*) FROM budget_audit WHERE published_at IS NULL"),
                             until=lambda n: n == 0, what="the budget change judged (nothing spent this month)")

            done = await spendgate("ledger", "rebuild", db_url=db_url, data_dir=tmp_path)
            assert done.returncode == 0, done.stderr
            assert "from 3 events" in done.stdout
            assert await crossings(pool) == []
            last = date(last_month.year, last_month.month, 1)
            assert await pool.fetchval("SELECT spent_micros FROM balances WHERE scope = 'team:mobile' "
                                       "AND period = 'month' AND period_start = $1", last) == 1_200_000

            # A sentinel on the same partition, after anything the rebuild could have queued: this month's 85 %.
            await publish(bus, [mobile_usage(850_000, now)])
            await eventually(lambda: size(rx.delivered("slack")), what="the sentinel's alert")
            await eventually(lambda: pool.fetchval("SELECT count(*) FROM alerts"), what="its history row")
        assert await crossings(pool) == [(80, "alert", "usage", True)]
        assert await pool.fetchval("SELECT count(*) FROM alerts") == 1
        [sent] = rx.delivered("slack")
        assert "85% of its monthly budget" in json.dumps(sent.json())


async def test_alerts_list_shows_what_fired_and_where_it_went_in_the_cli_and_the_api(
    db_url: str, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    """A delivered pause and a dead-lettered one, as the CLI (table, CSV, JSON, --api) and the API list them."""
    routes = """
targets:
  slack:ok: {{url: "{ok}"}}
  webhook:down: {{url: "{down}", signing_secret: s3cret}}
routes:
  - name: all
    match: {{}}
    notify: [slack:ok]
  - name: paused-team
    match: {{team: search}}
    notify: [webhook:down]
"""
    async with Receivers() as rx:
        rx.script("down", [500, 500, 500])
        settings = settings_for(db_url, tmp_path, routes.format(ok=rx.url("ok"), down=rx.url("down")))
        async with running_alerter(settings, pool, db_url) as alerter:
            await alerter.publish(crossing(scope="team:platform"))
            await eventually(lambda: size(rx.delivered("ok")), what="the first pause delivered")
            await alerter.publish(crossing(scope="team:search", team="search", cost_center="search"))
            await eventually(lambda: pool.fetchval("SELECT count(*) FROM alert_jobs WHERE status = 'dead'"),
                             what="the webhook's job dead after three attempts")
            await eventually(lambda: size(rx.delivered("ok")), until=lambda n: n == 2, what="the second on slack")

    listed = await spendgate("alerts", "list", db_url=db_url, data_dir=tmp_path)
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[0].split() == ["created", "kind", "scope", "status", "deliveries"]
    assert all(len(line) <= 120 for line in lines)
    assert "team:search" in lines[2] and "failed" in lines[2]
    assert "slack:ok delivered; webhook:down dead (3 attempts)" in lines[2]
    assert "team:platform" in lines[3] and "delivered" in lines[3] and "slack:ok delivered" in lines[3]

    as_json = await spendgate("alerts", "list", "--format", "json", "--scope", "team:platform",
                              db_url=db_url, data_dir=tmp_path)
    [platform] = json.loads(as_json.stdout)["alerts"]
    assert (platform["kind"], platform["status"], platform["deliveries"][0]["status"]) == ("pause", "delivered",
                                                                                          "delivered")

    async with admin_client(pool, admin_settings(database_url=db_url)) as client:
        resp = await client.get("/v1/alerts", params={"kind": "pause", "limit": "10"}, headers=auth())
        assert resp.status == 200
        api = await resp.json()
        assert [a["status"] for a in api["alerts"]] == ["failed", "delivered"]
        assert api["alerts"][0]["deliveries"][1] | {"updated_at": None} == {
            "route": "paused-team", "target": "webhook:down", "action": "trigger", "status": "dead", "attempts": 3,
            "last_error": "receiver answered HTTP 500", "updated_at": None}
        assert (await client.get("/v1/alerts", params={"kind": "nope"}, headers=auth())).status == 400
        doc = await (await client.get("/openapi.json", headers=auth())).json()
        assert doc["paths"]["/v1/alerts"]["get"]["operationId"] == "listAlerts"

        through_api = await spendgate("alerts", "list", "--format", "csv", "--api", str(client.make_url("")),
                                      db_url=db_url, data_dir=tmp_path, SPENDGATE_ADMIN_TOKEN=ADMIN_TOKEN)
    assert through_api.returncode == 0, through_api.stderr
    rows = list(csv.DictReader(io.StringIO(through_api.stdout)))
    assert [(r["scope"], r["status"]) for r in rows] == [("team:search", "failed"), ("team:platform", "delivered")]
    assert rows[0]["deliveries"] == "slack:ok delivered; webhook:down dead (3 attempts: receiver answered HTTP 500)"
    assert list(rows[0]) == list(platform), "CSV carries the JSON's fields in its order"
    assert rows[0]["alert_id"] == api["alerts"][0]["alert_id"]

    no_token = await spendgate("alerts", "list", "--api", "http://127.0.0.1:9", db_url=db_url, data_dir=tmp_path)
    assert no_token.returncode == 1 and no_token.stderr.startswith("error: ") and "Traceback" not in no_token.stderr
