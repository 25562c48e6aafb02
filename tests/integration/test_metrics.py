"""Prometheus metrics of every service, scraped from the real endpoints after real traffic."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from pathlib import Path

import aiohttp
import asyncpg

from spendgate.core.bus.postgres import PostgresBus
from spendgate.domain.enforcement.policy import budget_of
from spendgate.runtime import run_services
from spendgate.store.budgets.store import set_budget
from spendgate.store.keys import store as vkeys
from spendgate.up import services
from tests.support.alerts import Receivers
from tests.support.factories import usage_event
from tests.support.ledger import folded_count, publish, spawn_ledger
from tests.support.otlp import OtlpReceiver, spans_named
from tests.support.ports import free_ports
from tests.support.proxy_harness import fake_upstream, proxy_settings
from tests.support.scrape import Scrape, dashboard_metric_names, scrape
from tests.support.waiting import eventually

TOKEN = "metrics-token-for-tests"
ROUTES = """
targets:
  slack:finops: {{url: "{url}"}}
routes:
  - name: everyone
    match: {{cost_center: "*"}}
    notify: [slack:finops]
"""


async def _count(pool: asyncpg.Pool, sql: str) -> int:
    return int(await pool.fetchval(sql))


async def _status(url: str, token: str | None = None) -> int:
    """The HTTP status of a GET (0 while nothing listens there)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        async with aiohttp.ClientSession() as http, http.get(url, headers=headers) as response:
            return response.status
    except aiohttp.ClientConnectorError:
        return 0


def _assert_dashboard_uses_only(exposed: Scrape) -> None:
    """Every metric a dashboard expression names is one the services expose (histogram and counter
    sample suffixes included)."""
    names = exposed.sample_names | exposed.families
    for title, used in dashboard_metric_names().items():
        assert used, f"panel {title!r} queries no spendgate metric"
        missing = used - names
        assert not missing, f"panel {title!r} queries metrics nobody exposes: {sorted(missing)}"


async def test_spendgate_up_exposes_the_metrics_and_spans_of_every_service(db_url: str, tmp_path: Path) -> None:
    """`spendgate up` in this process: requests through the proxy, their fold, a budget crossing alerted
    on Slack and a forecast pass all move their metrics, on the proxy's /metrics and on the ops port;
    the dashboard's expressions name only metrics found there; each service's spans arrive over OTLP."""
    proxy_port, ops_port = free_ports(2)
    routes_file = tmp_path / "routes.yaml"
    async with Receivers() as slack, OtlpReceiver() as otlp, fake_upstream() as upstream:
        routes_file.write_text(ROUTES.format(url=slack.url("slack")))
        settings = proxy_settings(
            db_url, tmp_path, upstream.url, proxy_port=proxy_port, ops_port=ops_port, metrics_token=TOKEN,
            instance="up-metrics", alerts={"routes_file": str(routes_file), "backoff_base_s": 0.02},
            otel={"endpoint": otlp.endpoint, "export_interval_s": 0.05})
        pool = await asyncpg.create_pool(db_url, min_size=1, max_size=4)
        assert pool is not None
        stop = asyncio.Event()
        try:
            created = await vkeys.create_key(pool, developer="alice", team="platform", cost_center="cc-42")
            task = asyncio.create_task(run_services(settings, services(), stop=stop))
            base = f"http://127.0.0.1:{proxy_port}"
            await eventually(lambda: _status(f"{base}/healthz"), until=lambda s: s == 200, timeout_s=60,
                             what="the proxy listening")
            headers = {"Authorization": f"Bearer {created.secret}"}
            async with aiohttp.ClientSession() as http:
                for _ in range(3):
                    async with http.post(f"{base}/v1/responses", headers=headers,
                                         json={"model": "gpt-5.1-mini", "input": "hi"}) as response:
                        assert response.status == 200
            await eventually(lambda: _count(pool, "SELECT count(*) FROM usage_events"), until=lambda n: n == 3,
                             timeout_s=20, what="three events folded")
            spent = await _count(pool, "SELECT sum(cost_micros) FROM usage_events")
            await set_budget(pool, budget_of("team:platform", daily_micros=None, monthly_micros=spent), actor="test")
            await eventually(lambda: slack.count_delivered("slack"), timeout_s=20, what="the alert on Slack")
            proxy = await eventually(lambda: scrape(f"{base}/metrics", TOKEN),
                                     until=lambda s: s.total("spendgate_alerter_delivery_latency_seconds_count") >= 1
                                     and s.total("spendgate_forecaster_run_seconds_count") >= 1,
                                     timeout_s=20, what="delivery and forecast figures")
            ops = await scrape(f"http://127.0.0.1:{ops_port}/metrics", TOKEN)
            health = await _status(f"http://127.0.0.1:{ops_port}/healthz")
            unauthorised = (await _status(f"{base}/metrics", "wrong"),
                            await _status(f"http://127.0.0.1:{ops_port}/metrics"))
            for name in ("chat gpt-5.1-mini", "spendgate.ledger.fold", "spendgate.alert.deliver"):
                await eventually(lambda name=name: spans_named(otlp, name), what=f"a {name!r} span")
        finally:
            stop.set()
            with contextlib.suppress(UnboundLocalError):
                await asyncio.wait_for(task, 30)
            await pool.close()

    assert proxy.value("spendgate_proxy_metered_requests_total", status="ok") == 3
    assert proxy.value("spendgate_proxy_upstream_responses_total", code="200") == 3
    assert proxy.value("spendgate_proxy_request_duration_seconds_count") == 3
    assert proxy.value("spendgate_proxy_added_latency_seconds_count") == 3
    assert 0 < proxy.value("spendgate_proxy_added_latency_seconds_sum") < 3
    assert proxy.value("spendgate_spend_micros_total", team="platform", model="gpt-5.1-mini") == spent > 0
    assert proxy.value("spendgate_proxy_spool_segments") >= 0
    assert proxy.value("spendgate_proxy_bus_publish_lag_seconds") >= 0
    assert proxy.value("spendgate_ledger_events_folded_total") == 3
    assert proxy.value("spendgate_ledger_fold_batch_seconds_count") >= 1
    assert proxy.labelled("spendgate_ledger_consumer_lag", "partition") == {"0", "1", "2", "3"}
    assert proxy.total("spendgate_ledger_crossings_total") >= 1
    assert proxy.total("spendgate_alerter_deliveries_total", outcome="delivered") >= 1
    assert proxy.value("spendgate_forecaster_scopes") == 0  # its pass ran at start, before any budget
    assert ops.families == proxy.families  # one process, one registry, on both ports
    assert health == 200 and unauthorised == (401, 401)
    _assert_dashboard_uses_only(proxy)
    [deliver, *_] = otlp.named("spendgate.alert.deliver")
    assert deliver.attributes["spendgate.alert.delivered"] is True
    assert deliver.attributes["spendgate.alert.route"] == "everyone"
    assert slack.url("slack").encode() not in b"".join(otlp.bodies)  # a channel's address stays out


async def test_a_standalone_ledger_serves_health_and_metrics_on_its_ops_port(
    db_url: str, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    """`spendgate ledger` as its own process with ops_port: /healthz answers, /metrics counts the events
    it folded and reports the lag of every partition it holds."""
    [ops_port] = free_ports(1)
    bus = PostgresBus(pool, db_url, partitions=4)
    await publish(bus, [usage_event(key_id=f"k_{i}") for i in range(5)])
    proc = spawn_ledger(db_url, {"SPENDGATE_BUS": "postgres"}, tmp_path, {"SPENDGATE_OPS_PORT": str(ops_port),
                                                        "SPENDGATE_METRICS_TOKEN": TOKEN})
    try:
        await eventually(lambda: folded_count(pool), until=lambda n: n == 5, timeout_s=30, what="5 events folded")
        url = f"http://127.0.0.1:{ops_port}"
        metrics = await eventually(lambda: scrape(f"{url}/metrics", TOKEN),
                                   until=lambda s: s.total("spendgate_ledger_events_folded_total") == 5,
                                   what="the folded count on /metrics")
        assert metrics.labelled("spendgate_ledger_consumer_lag", "partition") == {"0", "1", "2", "3"}
        assert metrics.value("spendgate_ledger_fold_batch_seconds_count") >= 1
        assert await _status(f"{url}/healthz") == 200
        assert await _status(f"{url}/metrics") == 401
    finally:
        proc.send_signal(signal.SIGTERM)
        await asyncio.to_thread(proc.wait, 30)
    assert proc.returncode == 0, proc.stderr.read().decode() if proc.stderr else ""
