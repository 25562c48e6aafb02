"""Reconciliation with the provider's bill, end to end: traffic through the real proxy to the fake upstream,
folded by the ledger into real PostgreSQL, compared with the fake's OpenAI and Anthropic billing reports
(served from what it really answered, plus injected bypass traffic), the gap alert delivered once."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import msgspec
import pytest

from spendgate.core.config import Settings
from spendgate.core.config_providers import ReconcileSettings
from spendgate.domain.reconcile import PPM, Reconciliation, format_rate
from spendgate.ledger.consumer import LedgerConsumer
from spendgate.proxy.fake_reports import ANTHROPIC_ADMIN_KEY, OPENAI_ADMIN_KEY, key_id
from spendgate.proxy.upstreams import DEFAULT_NAME
from spendgate.reconcile.providers import ProviderError
from spendgate.reconcile.run import reconcile
from spendgate.reconcile.service import Reconciler
from tests.support.alerts import Receivers, running_alerter, settings_for, size
from tests.support.cli import spendgate
from tests.support.proxy_harness import UPSTREAM_KEY, Harness, fake_upstream, running_proxy
from tests.support.waiting import eventually

NO_DATABASE = "postgresql://nobody@127.0.0.1:9/none"
"""What the CLI tests that must fail before any query point at: nothing listens there."""
OPENAI_MODELS = ["gpt-5.1", "gpt-5.1", "gpt-5.1-mini", "gpt-4.1-mini"]
ROUTES = """
targets:
  webhook:finops: {{url: "{url}", signing_secret: s3cret}}
routes:
  - name: finops
    match: {{stage: reconciliation_gap}}
    notify: [webhook:finops]
"""


def providers(url: str, **extra: Any) -> dict[str, Any]:
    """Both providers pointed at the fake upstream, the upstream key's id mapped to an upstream name."""
    return {"providers": [
        {"name": "openai", "kind": "openai", "admin_key": OPENAI_ADMIN_KEY, "base_url": url,
         "api_key_ids": {key_id(UPSTREAM_KEY): DEFAULT_NAME}},
        {"name": "anthropic", "kind": "anthropic", "admin_key": ANTHROPIC_ADMIN_KEY, "base_url": url}],
        "gap_pct": 2, "gap_min_usd": "0.0001", **extra}


def with_providers(h: Harness, *, admin_key: str | None = None, **extra: Any) -> Settings:
    """The harness's settings with both providers on its fake upstream (``admin_key``: OpenAI's, if given)."""
    cfg = providers(h.upstream.url, **extra)
    if admin_key is not None:
        cfg["providers"][0]["admin_key"] = admin_key
    return h.runtime.settings.model_copy(update={"reconcile": ReconcileSettings.model_validate(cfg)})


async def send_traffic(h: Harness) -> None:
    """OpenAI Responses and Chat Completions, and Anthropic Messages, through the proxy; wait for the fold.

    Prompts of a few thousand tokens: the ledger rounds each request's cost to the micro-dollar and the bill
    each line item's, so on a day of a few micro-dollars the rates would differ in the third decimal."""
    pool: asyncpg.Pool = h.runtime.pool
    stop = asyncio.Event()
    ledger = asyncio.create_task(LedgerConsumer(pool, h.runtime.bus).run(stop))
    try:
        async with aiohttp.ClientSession() as http:
            for i, model in enumerate(OPENAI_MODELS):
                async with http.post(f"{h.base_url}/responses", headers=h.headers(),
                                     json={"model": model, "input": "count " * (12_000 + 3_000 * i)}) as r:
                    assert r.status == 200, await r.text()
            chat = {"model": "gpt-5.1", "messages": [{"role": "user", "content": "hi " * 9_000}]}
            async with http.post(f"{h.base_url}/chat/completions", headers=h.headers(), json=chat) as r:
                assert r.status == 200, await r.text()
            for stream in (False, True):
                async with http.post(f"{h.base_url}/messages",
                                     headers={"x-api-key": h.secret, "anthropic-version": "2023-06-01"},
                                     json={"model": "claude-sonnet-4-5", "max_tokens": 64, "stream": stream,
                                           "messages": [{"role": "user", "content": "read " * 5_000}]}) as r:
                    assert r.status == 200, await r.text()
                    await r.read()
        total = len(OPENAI_MODELS) + 3
        await eventually(lambda: pool.fetchval("SELECT count(*) FROM usage_events"),
                         until=lambda n: n == total, what="every request folded by the ledger")
    finally:
        stop.set()
        await ledger


async def bypass(h: Harness, **body: Any) -> None:
    async with aiohttp.ClientSession() as http, \
            http.post(h.upstream.url.removesuffix("/v1") + "/_fake/bypass", json=body) as r:
        assert r.status == 200, await r.text()


def report_requests(h: Harness, path: str) -> list[str]:
    return [r.raw_path for r in h.fake.received if r.raw_path.startswith(path)]


async def test_reconciliation_finds_the_bypass_day_and_captures_the_others(db_url: str, tmp_path: Path) -> None:
    """Yesterday's bypass traffic is a gap (capture 0.000, one alert); today both providers capture 1.000,
    per model and upstream; a rerun stores the same lines and raises no second alert."""
    async with running_proxy(db_url, tmp_path) as h:
        settings = with_providers(h)
        await send_traffic(h)
        today = datetime.now(UTC).date()
        yesterday = today - timedelta(days=1)
        await bypass(h, provider="openai", day=yesterday.isoformat(), model="gpt-5.1", input_tokens=120_000,
                     cached_tokens=20_000, output_tokens=9_000, requests=3, api_key_id="key_laptop")
        pool: asyncpg.Pool = h.runtime.pool

        outcome = await reconcile(pool, settings, yesterday - timedelta(days=1), today, now=datetime.now(UTC))

        by_day = {(line.provider, line.day): line for line in outcome.lines}
        assert {(g.provider, g.day) for g in outcome.new_gaps} == {("openai", yesterday)}
        [gap] = outcome.new_gaps
        assert gap.ledger_micros == 0 and gap.capture_ppm == 0 and gap.models == ("gpt-5.1",)
        assert by_day[("openai", yesterday)].ledger.cost_micros == 0
        today_lines = [line for line in outcome.lines if line.day == today]
        assert {line.provider for line in today_lines} == {"openai", "anthropic"}
        assert {line.model for line in today_lines} == {"gpt-5.1", "gpt-5.1-mini", "gpt-4.1-mini", "claude-sonnet-4-5"}
        for line in today_lines:
            assert line.tokens_capture_ppm in (PPM, None), line
            assert line.cost_capture_ppm is None or format_rate(line.cost_capture_ppm) == "1.000", line
        # OpenAI maps its key to the upstream the events name: tokens per upstream, cost per (day, model);
        # Anthropic maps none (and its route is not pooled): both per (day, model)
        assert {(line.provider, line.upstream) for line in today_lines if line.tokens_capture_ppm is not None} == {
            ("openai", DEFAULT_NAME), ("anthropic", None)}
        assert {line.model for line in today_lines if line.cost_capture_ppm is not None} == {
            "gpt-5.1", "gpt-5.1-mini", "gpt-4.1-mini", "claude-sonnet-4-5"}
        # the fake billed exactly what it served: every request's tokens, per model
        served_tokens = sum(s.input_tokens + s.output_tokens for s in h.fake.served)
        assert sum(line.provider_tokens for line in today_lines) == served_tokens

        stored = await pool.fetchval("SELECT count(*) FROM reconciliation_lines")
        again = await reconcile(pool, settings, yesterday - timedelta(days=1), today, now=datetime.now(UTC))
        assert again.new_gaps == [] and [(g.provider, g.day) for g in again.gaps] == [("openai", yesterday)]
        assert await pool.fetchval("SELECT count(*) FROM reconciliation_lines") == stored == len(outcome.lines)

        async with Receivers() as receivers:
            alert_settings = settings_for(db_url, tmp_path, ROUTES.format(url=receivers.url("finops")))
            async with running_alerter(alert_settings, pool, db_url, bus=h.runtime.bus):
                reconciler = Reconciler(pool, h.runtime.bus, settings)
                assert await reconciler.publish() == 1
                await reconcile(pool, settings, yesterday, yesterday, now=datetime.now(UTC))
                assert await reconciler.publish() == 0
                await eventually(lambda: size(receivers.delivered("finops")), what="the gap alert delivered")
                await eventually(lambda: pool.fetchval("SELECT count(*) FROM alerts WHERE kind = 'reconciliation_gap'"),
                                 until=lambda n: n == 1, what="the gap alert recorded")
            body = receivers.delivered("finops")[0].json()
            assert "openai" in json.dumps(body) and str(yesterday) in json.dumps(body)
        assert len(receivers.delivered("finops")) == 1


async def test_reports_are_read_page_by_page(db_url: str, tmp_path: Path) -> None:
    """With two day buckets a page, five days take three pages of each report, and every day is compared."""
    async with running_proxy(db_url, tmp_path) as h:
        settings = with_providers(h, page_days=2)
        today = datetime.now(UTC).date()
        for back in range(1, 5):
            await bypass(h, provider="anthropic", day=(today - timedelta(days=back)).isoformat(),
                         model="claude-sonnet-4-5", input_tokens=1000 * back, output_tokens=10)
        outcome = await reconcile(h.runtime.pool, settings, today - timedelta(days=4), today, now=datetime.now(UTC))
        pages = report_requests(h, "/v1/organizations/usage_report/messages")
        assert len(pages) == 3 and sum("page=" in p for p in pages) == 2
        assert len(report_requests(h, "/v1/organization/usage/completions")) == 3
        days = {line.day: line.provider_tokens for line in outcome.lines if line.provider == "anthropic"}
        assert days == {today - timedelta(days=b): 1000 * b + 10 for b in range(1, 5)}


async def test_a_refused_admin_key_is_a_clear_error(db_url: str, tmp_path: Path) -> None:
    """A project key where the admin key belongs: one error naming the provider, never the key."""
    async with running_proxy(db_url, tmp_path) as h:
        settings = with_providers(h, admin_key="sk-proj-not-an-admin-key")
        today = datetime.now(UTC).date()
        with pytest.raises(ProviderError, match="openai: /organization/usage/completions: the admin key was refused") \
                as caught:
            await reconcile(h.runtime.pool, settings, today, today, now=datetime.now(UTC))
        assert "sk-proj" not in caught.value.message and not caught.value.retriable
        assert await h.runtime.pool.fetchval("SELECT count(*) FROM reconciliation_lines") == 0


def _cli_env(url: str) -> dict[str, str]:
    return {"SPENDGATE_RECONCILE__PROVIDERS": json.dumps(providers(url)["providers"]),
            "SPENDGATE_RECONCILE__GAP_MIN_USD": "0.0001"}


async def test_cli_json_document_and_stored_for_the_admin_api(db_url: str, tmp_path: Path, pool: asyncpg.Pool) -> None:
    """`spendgate reconcile --format json` prints the admin API's document (from, to, days, lines; money in
    micro-dollars, capture in parts per million), warns once about a new gap, and stores what the API shows."""
    from spendgate.admin.api_reconciliation import stored_reconciliation

    async with fake_upstream() as upstream:
        yesterday = datetime.now(UTC).date() - timedelta(days=1)
        async with aiohttp.ClientSession() as http, http.post(
                upstream.url.removesuffix("/v1") + "/_fake/bypass",
                json={"provider": "openai", "day": yesterday.isoformat(), "model": "gpt-5.1",
                      "input_tokens": 50_000, "output_tokens": 2_000}) as r:
            assert r.status == 200
        env = _cli_env(upstream.url)
        done = await spendgate("reconcile", "--from", str(yesterday), "--to", str(yesterday), "--format", "json",
                               db_url=db_url, data_dir=tmp_path, **env)
        assert done.returncode == 0, done.stderr
        doc = msgspec.json.decode(done.stdout, type=Reconciliation, strict=True)
        raw = json.loads(done.stdout)
        assert set(raw) == {"from", "to", "days", "lines"} and raw["from"] == raw["to"] == str(yesterday)
        assert set(raw["lines"][0]) >= {"provider", "day", "model", "upstream", "ledger_cost_micros",
                                        "provider_cost_micros", "cost_capture_ppm", "tokens_capture_ppm"}
        [day] = doc.days
        assert (day.provider, day.gap, day.ledger_cost_micros, day.cost_capture_ppm) == ("openai", True, 0, 0)
        assert day.provider_cost_micros == 62_500 + 20_000  # 50k input at $1.25/M, 2k output at $10/M
        assert [line for line in done.stderr.splitlines() if line.startswith("warning:")] == [
            f"warning: openai billed $0.08 more than the ledger counted on {yesterday} (capture 0.000): "
            "recorded; the running worker raises a reconciliation_gap alert"]
        assert "Traceback" not in done.stderr

        again = await spendgate("reconcile", "--from", str(yesterday), "--to", str(yesterday),
                                db_url=db_url, data_dir=tmp_path, **env)
        assert again.returncode == 0 and "warning:" not in again.stderr, again.stderr
        assert "openai" in again.stdout and "$0.08" in again.stdout and "0.000" in again.stdout

    stored = await stored_reconciliation(pool, yesterday, yesterday, None)
    assert msgspec.json.encode(stored) == msgspec.json.encode(doc)


@pytest.mark.parametrize(("args", "message"), [
    (["--from", "2026-02-30"], "use a date such as 2026-11-01, not '2026-02-30'"),
    (["--from", "2026-11-20", "--to", "2026-11-10"], "--from 2026-11-20 is after --to 2026-11-10"),
    (["--to", "2999-01-01"], "--to 2999-01-01 is in the future"),
    (["--from", "2024-01-01", "--to", "2025-06-30"], "spans 547 days; at most 366 per run"),
    (["--provider", "opena"], "no provider 'opena' in reconcile.providers"),
])
async def test_cli_rejects_bad_ranges_in_one_line(args: list[str], message: str, tmp_path: Path) -> None:
    """Bad dates and ranges (unparseable, --from after --to, future, over a year) and unknown providers: exit 2,
    one `error:` line naming the problem, no traceback."""
    done = await spendgate("reconcile", *args, db_url=NO_DATABASE, data_dir=tmp_path,
                           **_cli_env("http://127.0.0.1:9/v1"))
    assert done.returncode == 2, done
    [line] = done.stderr.strip().splitlines()
    assert line.startswith("error:") and message in line, line


async def test_cli_without_providers_says_what_to_configure(db_url: str, tmp_path: Path) -> None:
    """No reconcile.providers: exit 2 and one line pointing at the setting and the docs."""
    done = await spendgate("reconcile", db_url=db_url, data_dir=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip() == ("error: no provider to reconcile with: set reconcile.providers "
                                   "(name, kind, admin_key); see docs/reconciliation.md")



async def test_admin_api_serves_stored_lines_and_refuses_bad_ranges(pool: asyncpg.Pool) -> None:
    """GET /v1/reconciliation shows what a run stored, with the day's gap flag; bad ranges are JSON 400s."""
    from spendgate.domain.reconcile import DayGap, Line, Usage
    from spendgate.store.reconciliation import store
    from tests.support.admin_server import NOW, admin_client, auth

    day = NOW.date() - timedelta(days=2)
    line = Line("openai", day, "gpt-5.1", None, Usage(day, "gpt-5.1", None, 3, 900, 90, 4_000),
                Usage(day, "gpt-5.1", None, 5, 1500, 150, 10_000))
    async with pool.acquire() as conn:
        await store.save_lines(conn, "openai", day, day, [line], NOW)
    await store.record_gaps(pool, [DayGap("openai", day, 4_000, 10_000, ("gpt-5.1",))], NOW)
    async with admin_client(pool) as client:
        found = await (await client.get("/v1/reconciliation", headers=auth())).json()
        default = (str(NOW.date() - timedelta(days=3)), str(NOW.date() - timedelta(days=1)))
        assert (found["from"], found["to"]) == default
        [d] = found["days"]
        assert (d["day"], d["gap"], d["cost_capture_ppm"], d["cost_gap_micros"]) == (str(day), True, 400_000, 6_000)
        [one] = found["lines"]
        assert (one["ledger_requests"], one["provider_requests"], one["tokens_capture_ppm"]) == (3, 5, 600_000)
        for query, says in (("from=2026-11-20&to=2026-11-10", "is after"), ("to=2027-01-01", "in the future"),
                            ("from=2024-01-01&to=2025-12-31", "at most 366"), ("from=yesterday", "must be a date")):
            r = await client.get(f"/v1/reconciliation?{query}", headers=auth())
            assert r.status == 400, query
            assert says in (await r.json())["error"]["message"], query


@pytest.mark.parametrize(("answer", "status", "says", "retriable"), [
    ({"data": [], "has_more": True, "next_page": "p1"}, 200, "has_more without a new next_page token", False),
    ({"data": "nope"}, 200, "the answer has no data list", False),
    ({"data": [{"start_time": 1_764_000_000, "results": [{"input_tokens": -5}]}], "has_more": False}, 200,
     "unexpected report shape (input_tokens is not a token count: -5)", False),
    ({"data": [{"results": []}], "has_more": False}, 200, "unexpected report shape", False),
    ({"error": {"message": "down"}}, 503, "HTTP 503", True),
])
async def test_a_report_we_cannot_trust_is_refused(answer: dict[str, Any], status: int, says: str,
                                                   retriable: bool) -> None:
    """Paging loops, missing data, negative counts, missing bucket times and outages: a ProviderError that says
    which, retriable only for the outage."""
    from aiohttp import web

    from spendgate.core.config_providers import ReconcileProvider
    from spendgate.reconcile.providers import provider_usage

    pages: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        pages.append(request.query.get("page", ""))
        if answer.get("has_more") and len(pages) > 1:  # the loop: the same token again
            return web.json_response({**answer, "next_page": "p1"})
        return web.json_response(answer, status=status)

    app = web.Application()
    app.router.add_get("/v1/organization/usage/completions", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    provider = ReconcileProvider(name="openai", kind="openai", admin_key="sk-admin-x",  # type: ignore[arg-type]
                                 base_url=f"http://127.0.0.1:{port}/v1")
    try:
        async with aiohttp.ClientSession() as http:
            with pytest.raises(ProviderError) as caught:
                await provider_usage(http, provider, ReconcileSettings(), datetime.now(UTC).date(),
                                     datetime.now(UTC).date())
    finally:
        await runner.cleanup()
    assert says in caught.value.message and caught.value.retriable is retriable
    assert "sk-admin" not in caught.value.message and len(pages) <= 2


async def test_the_nightly_run_happens_once_a_day_after_its_hour(db_url: str, tmp_path: Path) -> None:
    """Before reconcile.hour_utc nothing runs; after it the last lookback_days complete days are reconciled
    once (a second worker, or a second wake, finds the day taken); a refused key is not retried that day."""
    async with running_proxy(db_url, tmp_path) as h:
        pool: asyncpg.Pool = h.runtime.pool
        now = datetime.now(UTC).replace(hour=8, minute=0, second=0, microsecond=0)
        await bypass(h, provider="openai", day=str(now.date() - timedelta(days=2)), model="gpt-5.1",
                     input_tokens=400_000, output_tokens=1_000)
        reconciler = Reconciler(pool, h.runtime.bus, with_providers(h, hour_utc=9, lookback_days=2))
        assert await reconciler.run_nightly(now) is None
        outcome = await reconciler.run_nightly(now.replace(hour=9))
        assert outcome is not None
        assert (outcome.start, outcome.end) == (now.date() - timedelta(days=2), now.date() - timedelta(days=1))
        assert [(g.provider, g.day) for g in outcome.new_gaps] == [("openai", now.date() - timedelta(days=2))]
        assert await Reconciler(pool, h.runtime.bus, reconciler.settings).run_nightly(now.replace(hour=10)) is None

        refused = Reconciler(pool, h.runtime.bus, with_providers(h, admin_key="sk-wrong", hour_utc=9))
        tomorrow = now.replace(hour=9) + timedelta(days=1)
        assert await refused.run_nightly(tomorrow) is None
        assert await pool.fetchval("SELECT finished_at IS NOT NULL FROM reconciliation_runs WHERE run_date = $1",
                                   tomorrow.date())


async def test_the_fake_reports_check_the_admin_key_and_refuse_bad_bypasses() -> None:
    """Each report answers a wrong or missing admin key with its provider's 401 (a virtual or project key is
    not an admin key); a bypass with impossible counts is a 400 and bills nothing."""
    async with fake_upstream() as upstream:
        base = upstream.url.removesuffix("/v1")
        async with aiohttp.ClientSession() as http:
            for path, auth, shape in (
                    ("/v1/organization/usage/completions?start_time=0", {"Authorization": "Bearer sk-proj-x"}, "error"),
                    ("/v1/organization/costs?start_time=0", {}, "error"),
                    ("/v1/organizations/usage_report/messages?starting_at=2026-11-01T00:00:00Z",
                     {"x-api-key": "sk-ant-api03-x"}, "type"),
                    ("/v1/organizations/cost_report?starting_at=2026-11-01T00:00:00Z", {}, "type")):
                async with http.get(base + path, headers=auth) as r:
                    assert r.status == 401, path
                    assert shape in await r.json(), path
            one = {"provider": "openai", "day": "2026-11-01", "model": "m", "input_tokens": 1, "output_tokens": 1}
            for bad in ({"input_tokens": -1}, {"provider": "azure"}, {"cached_tokens": 5}, {"requests": 0},
                        {"day": "yesterday"}, {"admin": True}):
                body = {**one, **bad}
                async with http.post(base + "/_fake/bypass", json=body) as r:
                    assert r.status == 400, body
    assert upstream.fake.bypass == []
