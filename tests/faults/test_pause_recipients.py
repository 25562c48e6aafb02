"""Issue 11 item 9: the pause response names who the alert routes notify, without any secret."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiohttp
import asyncpg

from spendgate.proxy.service import serve
from spendgate.runtime import open_runtime
from spendgate.store.keys import store as vkeys
from tests.support.ports import free_port
from tests.support.proxy_harness import fake_upstream, proxy_settings
from tests.support.waiting import eventually

SLACK_URL = "https://hooks.slack.com/services/T0000/B0000/hunter2-webhook-secret"
ROUTES = f"""\
targets:
  slack:platform-em: {{url: "{SLACK_URL}"}}
  email:finops: {{to: [finops@corp.example]}}
  pagerduty:ml-oncall: {{routing_key: {{secret: pd_ml}}}}
developer_email: "{{developer}}@corp.example"
routes:
  - name: platform-pause
    match: {{team: platform, stage: [downgrade, pause]}}
    notify: [slack:platform-em, developer]
  - name: finops-now
    match: {{stage: pause}}
    notify: [email:finops, slack:platform-em]
  - name: finops-digest
    match: {{cost_center: "*"}}
    digest: {{every: day, at: "17:00"}}
    notify: [pagerduty:ml-oncall]
  - name: ml-only
    match: {{team: ml}}
    notify: [pagerduty:ml-oncall]
"""


async def _healthy(url: str) -> bool:
    try:
        async with aiohttp.ClientSession() as http, http.get(url) as resp:
            return resp.status == 200
    except aiohttp.ClientError:
        return False


async def test_the_pause_names_the_routed_recipients_without_secrets(db_url: str, pool: asyncpg.Pool,
                                                                     tmp_path: Path) -> None:
    """A paused key's 429 names the immediate route targets and the developer's address, never a URL or key."""
    routes = tmp_path / "routes.yaml"
    routes.write_text(ROUTES)
    created = await vkeys.create_key(pool, developer="hal", team="platform", cost_center="cc-7")
    await pool.execute("INSERT INTO budgets (scope, daily_micros) VALUES ($1, 1)", f"key:{created.key.key_id}")
    async with fake_upstream() as upstream:
        port = free_port()
        settings = proxy_settings(db_url, tmp_path / "data", upstream.url, proxy_port=port,
                                  alerts={"routes_file": routes})
        stop = asyncio.Event()
        async with open_runtime(settings, run_migrations=False) as runtime:
            task = asyncio.create_task(serve(runtime, stop))
            try:
                await eventually(lambda: _healthy(f"http://127.0.0.1:{port}/healthz"), what="proxy up")
                url = f"http://127.0.0.1:{port}/v1/responses"
                headers = {"Authorization": f"Bearer {created.secret}"}
                async with aiohttp.ClientSession() as http:
                    async with http.post(url, json={"model": "gpt-5.1", "input": "x" * 4000},
                                         headers=headers) as first:
                        await first.read()
                    async with http.post(url, json={"model": "gpt-5.1", "input": "y"}, headers=headers) as second:
                        status, raw = second.status, await second.read()
                        promo = second.headers["x-codex-promo-message"]
            finally:
                stop.set()
                await task
    expected = ["slack:platform-em", "email:hal@corp.example", "email:finops"]
    doc = json.loads(raw)
    assert status == 429 and doc["error"]["alerted"] == expected
    assert doc["error"]["message"].endswith("Alerted: slack:platform-em, email:hal@corp.example, email:finops.")
    assert promo.endswith("(alerted: slack:platform-em, email:hal@corp.example, email:finops)")
    for secret in ("hooks.slack.com", "hunter2", "pd_ml", "pagerduty"):
        assert secret not in raw.decode() and secret not in promo
