"""The scale-out layout as separate OS processes on a real Apache Kafka broker and a PostgreSQL server: two
``spendgate proxy``, two ``spendgate ledger`` (one consumer group), one ``spendgate alerter`` and one
``spendgate forecaster``, the process layout deploy/ describes (docs/operations.md).

Developers spend through both proxies; mid-load one ledger is SIGKILLed (the group rebalances onto the
other) and one proxy is restarted (SIGTERM, drained, started again on its port and spool). Afterwards:
the ledger's balances are exactly what the fake upstream served, priced; every threshold crossing the
final balances imply is written once and delivered to the webhook once; the paused developer's spend
is within the fixed overshoot ceiling; and the peer-visibility window under that load is measured.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from spendgate.domain.enforcement.policy import budget_of
from spendgate.domain.pricing import PriceTable
from spendgate.proxy.fake_upstream import FakeConfig
from spendgate.store.budgets import store as budgets_store
from spendgate.store.keys import store as vkeys
from tests.integration.test_enforcement_concurrency import OVERSHOOT_CEILING
from tests.support.alerts import Receivers
from tests.support.enforced_proxy import USD, set_daily_budget
from tests.support.kafka import KafkaBroker
from tests.support.ledger import folded_count
from tests.support.peer_window import Pair, PeerWindow, served_cost
from tests.support.proxy_harness import UPSTREAM_KEY, fake_upstream
from tests.support.proxy_process import SpendgateProcess, service_process, spendgate_argv
from tests.support.waiting import eventually

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(240)]
"""35-60 s on the shared 2-core machine; six processes and a JVM starting on a busier one take longer."""

FAST_GROUP_ENV = {"SPENDGATE_KAFKA_SESSION_TIMEOUT_MS": "1000", "SPENDGATE_KAFKA_HEARTBEAT_INTERVAL_MS": "200",
                  "SPENDGATE_KAFKA_REBALANCE_TIMEOUT_MS": "2000"}
"""A SIGKILLed ledger's partitions move to the other one after about a second (the broker's test settings allow
a 500 ms minimum; production keeps the 10 s default)."""
WORKLOAD = FakeConfig(chunks=8, chunk_interval_ms=5, output_tokens=[200, 1_800], seed=23)
# Daily budgets, developer scope. pat is driven past the pause line by concurrent clients on both
# proxies; ana and ben stop at the stage named (so they cross some thresholds, not all).
PAUSE_BUDGET_USD = 1.0
BUDGETS_USD = {"pat": PAUSE_BUDGET_USD, "ana": 0.4, "ben": 0.25}
STOP_AT = {"ana": "alert", "ben": "downgrade"}
PAT_CLIENTS = 12
BACKGROUND_CLIENTS = 4
PROBE_TEAM_BUDGET_USD = 1_000.0
ORG_MONTHLY_USD = 100_000
THRESHOLDS = (80, 95, 110)
SAMPLES = 40
SAMPLE_TEAMS = 60
"""Teams for peer-window samples (each sample needs a team nobody else spends on)."""
ROUTES = """\
targets:
  webhook:finops: {{url: "{url}", signing_secret: {{secret: hook}}}}
routes:
  - name: every-stage
    match: {{stage: [alert, downgrade, pause]}}
    notify: [webhook:finops]
"""


def turn_body(n: str) -> dict[str, object]:
    return {"model": "gpt-5.1", "stream": True,
            "input": [{"type": "message", "role": "user", "content": f"{n} " + "x" * 4_600}]}


class Gateway:
    """Both proxies; a request goes to one and, if that one is down (restarting), to the other."""

    def __init__(self, proxies: list[SpendgateProcess]) -> None:
        self.proxies = proxies

    async def turn(self, http: aiohttp.ClientSession, secret: str, session: str, first: int) -> tuple[int, str]:
        """(status, stage header) of one streamed turn."""
        headers = {"Authorization": f"Bearer {secret}", "session-id": session}
        for attempt in range(2 * len(self.proxies)):
            proxy = self.proxies[(first + attempt) % len(self.proxies)]
            try:
                async with http.post(f"{proxy.base_url}/responses", json=turn_body(session), headers=headers) as r:
                    data = await r.read()
            except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError):
                continue  # this proxy is restarting (a drained stream still completes; a new one is refused)
            assert r.status in (200, 429), (r.status, data[:300])
            return r.status, r.headers.get("x-spendgate-stage", "")
        raise AssertionError("neither proxy answered")


async def developer_load(gw: Gateway, http: aiohttp.ClientSession, secret: str, name: str, client: int,
                         stop_at: str | None) -> int:
    """Turns alternating between the proxies until refused (or, with ``stop_at``, that stage is reached)."""
    for turn in range(1_000):
        status, stage = await gw.turn(http, secret, f"{name}-{client}", client + turn)
        if status == 429 or (stop_at is not None and stage == stop_at):
            return turn + 1
    raise AssertionError(f"{name} never reached {stop_at or 'the pause'}")


async def day_balances(pool: asyncpg.Pool) -> dict[str, int]:
    rows = await pool.fetch("SELECT scope, spent_micros FROM balances WHERE period = 'day'")
    return {r["scope"]: int(r["spent_micros"]) for r in rows}


async def test_separate_processes_on_apache_kafka(db_url: str, pool: asyncpg.Pool, tmp_path: Path,
                                                  fresh_kafka_broker: KafkaBroker,
                                                  artifact: Callable[[str], Path]) -> None:
    """Separate processes, a ledger SIGKILL and a proxy restart: exact balances, each crossing alerted once,
    the pause held across two proxies, and the peer-visibility window measured."""
    keys = {name: await vkeys.create_key(pool, developer=name, team="platform") for name in [*BUDGETS_USD, "carl"]}
    for name, usd in BUDGETS_USD.items():
        await set_daily_budget(pool, f"developer:{name}", usd)
    pairs = []
    for k in range(SAMPLE_TEAMS):
        writer = await vkeys.create_key(pool, developer=f"writer-{k}", team=f"probe-{k}")
        reader = await vkeys.create_key(pool, developer=f"reader-{k}", team=f"probe-{k}")
        await set_daily_budget(pool, f"team:probe-{k}", PROBE_TEAM_BUDGET_USD)
        pairs.append(Pair(writer.secret, reader.secret))
    await budgets_store.set_budget(pool, budget_of("org", daily_micros=None, monthly_micros=ORG_MONTHLY_USD * USD),
                                   actor="test")  # the forecaster forecasts month-end spend of monthly budgets
    budgets = {f"developer:{n}": round(usd * USD) for n, usd in BUDGETS_USD.items()}
    budgets |= {f"team:probe-{k}": round(PROBE_TEAM_BUDGET_USD * USD) for k in range(SAMPLE_TEAMS)}

    async with fake_upstream(WORKLOAD) as upstream, Receivers() as hooks, contextlib.AsyncExitStack() as stack:
        routes = tmp_path / "routes.yaml"
        routes.write_text(ROUTES.format(url=hooks.url("finops")))
        env = {"SPENDGATE_DATABASE_URL": db_url, "SPENDGATE_BUS": f"kafka://{fresh_kafka_broker.bootstrap}",
               "SPENDGATE_UPSTREAM_URL": upstream.url, "SPENDGATE_UPSTREAM_KEY": UPSTREAM_KEY,
               "SPENDGATE_DRAIN_TIMEOUT_S": "10", "SPENDGATE_ALERTS__ROUTES_FILE": str(routes),
               "SPENDGATE_ALERTS__SECRETS__HOOK": "hook-signing-secret", "SPENDGATE_ALERTS__BACKOFF_BASE_S": "0.05",
               "SPENDGATE_ALERTS__SCHEDULE_EVERY_S": "0.5", "SPENDGATE_FORECAST__INTERVAL_S": "5", **FAST_GROUP_ENV}

        def process(i: str, command: str) -> SpendgateProcess:
            own = {**env, "SPENDGATE_INSTANCE": i}
            if command == "proxy":
                return SpendgateProcess([*spendgate_argv(), "proxy"], data_dir=tmp_path / i, env=own)
            return service_process(command, tmp_path / i, own)

        proxies = [process(f"proxy-{i}", "proxy") for i in "ab"]
        ledgers = [process(f"ledger-{i}", "ledger") for i in "ab"]
        workers = [process("alerter", "alerter"), process("forecaster", "forecaster")]
        everyone = [*proxies, *ledgers, *workers]
        for p in everyone:
            stack.push_async_callback(p.kill)
        started = time.monotonic()
        await asyncio.gather(*(p.start() for p in everyone))
        print(f"\nsix processes started in {time.monotonic() - started:.1f} s")

        gw = Gateway(proxies)
        window = PeerWindow(upstream.fake, round(PROBE_TEAM_BUDGET_USD * USD), pairs,
                            writer_url=lambda: proxies[0].base_url, reader_url=proxies[1].base_url)
        measured = asyncio.Event()
        writer_proxy_up = asyncio.Event()
        writer_proxy_up.set()

        async def measure() -> None:
            async with aiohttp.ClientSession() as http:
                while len(window.samples_s) < SAMPLES:
                    assert window.unused, f"peer-window samples lost: {Counter(window.skipped)}"
                    await writer_proxy_up.wait()
                    await window.sample(http)
            measured.set()

        async def chaos() -> None:
            await eventually(lambda: folded_count(pool), until=lambda n: n >= 60, timeout_s=60,
                             what="the two ledgers folding the first events")
            await ledgers[0].kill()
            killed_at = await folded_count(pool)
            writer_proxy_up.clear()
            assert await proxies[0].terminate() == 0, proxies[0].output()
            await proxies[0].start()
            writer_proxy_up.set()
            await eventually(lambda: folded_count(pool), until=lambda n: n >= killed_at + 40, timeout_s=60,
                             what="the surviving ledger folding after the rebalance")

        async def background(http: aiohttp.ClientSession, client: int) -> None:
            """Unbudgeted turns through both proxies until the peer window is measured: the window is
            measured under load, not on an idle pair."""
            for turn in itertools.count():
                if measured.is_set():
                    return
                await gw.turn(http, keys["carl"].secret, f"carl-{client}", client + turn)

        async def load() -> None:
            connector = aiohttp.TCPConnector(limit=0)
            async with aiohttp.ClientSession(connector=connector) as http:
                runs = [developer_load(gw, http, keys["pat"].secret, "pat", c, None) for c in range(PAT_CLIENTS)]
                runs += [developer_load(gw, http, keys[n].secret, n, c, STOP_AT[n]) for c, n in enumerate(STOP_AT)]
                runs += [background(http, c) for c in range(BACKGROUND_CLIENTS)]
                await asyncio.gather(*runs)

        load_started = time.monotonic()
        await asyncio.gather(load(), chaos(), measure())
        print(f"load, ledger kill and proxy restart: {time.monotonic() - load_started:.1f} s")

        # Every request the fake served is folded once, priced as served.
        table = PriceTable()
        served = list(upstream.fake.served)
        expected_cost = sum(served_cost(table, s) for s in served)
        await eventually(lambda: pool.fetchrow("SELECT count(*) AS n, COALESCE(sum(cost_micros), 0)::bigint AS c "
                                               "FROM usage_events WHERE status <> 'refused'"),
                         until=lambda r: (r["n"], r["c"]) == (len(served), expected_cost), timeout_s=30,
                         what="every served request folded at its price")
        balances = await day_balances(pool)
        for name in [*BUDGETS_USD, "carl", "writer-0", "reader-0"]:
            own = sum(served_cost(table, s) for s in served if (s.session_id or "").startswith(f"{name}-"))
            assert balances[f"developer:{name}"] == own, name
        assert balances["org"] == expected_cost

        # Each crossing the final balances imply is written once and delivered once.
        want = {(scope, pct) for scope, budget in budgets.items() for pct in THRESHOLDS
                if balances.get(scope, 0) * 100 >= budget * pct}
        assert {("developer:pat", 110), ("developer:ana", 80), ("developer:ben", 95)} <= want
        rows = await eventually(lambda: pool.fetch("SELECT crossing_id, scope, threshold_pct FROM threshold_crossings"),
                                until=lambda rs: len(rs) >= len(want), timeout_s=30, what="crossings written")
        assert sorted((r["scope"], r["threshold_pct"]) for r in rows) == sorted(want)
        await eventually(lambda: hooks.count_delivered("finops"), until=lambda n: n >= len(want), timeout_s=30,
                         what="every crossing delivered to the webhook")
        assert await workers[0].terminate() == 0, workers[0].output()
        delivered = Counter(r.json()["alert"]["alert_id"] for r in hooks.delivered("finops"))
        assert delivered == Counter({str(r["crossing_id"]): 1 for r in rows})

        # The pause held across the two proxies within the fixed ceiling.
        pause_line = budgets["developer:pat"] * 110 // 100
        overshoot = balances["developer:pat"] - pause_line
        assert overshoot <= OVERSHOOT_CEILING, f"pat overshot the pause line by ${overshoot / USD:.4f}"

        assert await eventually(lambda: pool.fetchval("SELECT count(*) FROM forecasts WHERE scope = 'org'"),
                                timeout_s=30, what="the forecaster's pass over the org's monthly budget")
        stops = {}
        for p in [*proxies, ledgers[1], workers[1]]:
            t0 = time.monotonic()
            assert await p.terminate() == 0, p.output()
            stops[p.data_dir.name] = round(time.monotonic() - t0, 2)
        unconfirmed = sum(p.output().count("admission not confirmed") for p in proxies)

    figures = {"peer_window": window.summary(), "requests_served": len(served),
               "pat_overshoot_usd": overshoot / USD, "crossings": len(rows), "unconfirmed_admissions": unconfirmed,
               "sigterm_to_exit_s": stops}
    artifact("separate_processes.json").write_text(json.dumps(figures, indent=2))
    print(json.dumps({**figures, "peer_window": {k: v for k, v in window.summary().items() if k != "samples_ms"}}))
