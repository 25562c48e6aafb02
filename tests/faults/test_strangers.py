"""Issue 11, item 11: little is told to strangers. ``/healthz`` is liveness only (states, no figures),
``/metrics`` (key counts, spend totals) needs the metrics token, and a 502 does not name the upstream:
only the log does."""

from __future__ import annotations

import json
from pathlib import Path

import aiohttp
from structlog.testing import capture_logs

from tests.support.ports import free_port
from tests.support.proxy_harness import running_proxy


async def test_healthz_says_only_how_components_are(db_url: str, tmp_path: Path) -> None:
    """/healthz answers the overall status and each component's and task's state: words, no figures."""
    async with running_proxy(db_url, tmp_path) as h, aiohttp.ClientSession() as http, \
            http.get(h.base_url.removesuffix("/v1") + "/healthz") as resp:
        assert resp.status == 200
        doc = await resp.json()
    assert set(doc) == {"status", "components", "tasks"}
    states = [doc["status"], *doc["components"].values(), *doc["tasks"].values()]
    assert all(isinstance(v, str) and not any(c.isdigit() for c in v) for v in states)


async def test_metrics_need_the_metrics_token(db_url: str, tmp_path: Path) -> None:
    """Without a configured token /metrics is a 404; with one, a wrong or missing Bearer is a 401 in OpenAI
    format and the right one gets the figures."""
    async with aiohttp.ClientSession() as http:
        async with running_proxy(db_url, tmp_path / "a") as h, \
                http.get(h.base_url.removesuffix("/v1") + "/metrics") as resp:
            assert resp.status == 404
            assert "spendgate_proxy" not in await resp.text()
        async with running_proxy(db_url, tmp_path / "b", metrics_token="s3cret-metrics") as h:
            url = h.base_url.removesuffix("/v1") + "/metrics"
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Bearer {h.secret}"}):
                async with http.get(url, headers=headers) as resp:
                    assert resp.status == 401
                    assert (await resp.json())["error"]["code"] == "invalid_metrics_token"
            async with http.get(url, headers={"Authorization": "Bearer s3cret-metrics"}) as resp:
                assert resp.status == 200
                assert "spendgate_proxy_virtual_keys" in await resp.text()


async def test_bad_gateway_does_not_name_the_upstream(db_url: str, tmp_path: Path) -> None:
    """With the upstream unreachable the client gets a 502 that names no host or port; the log does."""
    port = free_port()
    async with running_proxy(db_url, tmp_path, upstream_url=f"http://127.0.0.1:{port}/v1") as h, \
            aiohttp.ClientSession() as http:
        with capture_logs() as logs:
            async with http.post(f"{h.base_url}/responses", json={"model": "gpt-5.1", "input": "hi"},
                                 headers=h.headers()) as resp:
                assert resp.status == 502
                text = await resp.text()
    assert "127.0.0.1" not in text and str(port) not in text
    assert json.loads(text)["error"]["code"] == "upstream_unreachable"
    assert any(str(port) in str(entry) for entry in logs)
